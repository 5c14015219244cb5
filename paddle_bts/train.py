"""Official BTS training in Paddle; the mirror of torch_ref/train.py, name for name.

    python -m paddle_bts.train --config configs/bts_kitti.yaml [-o key=value -o key=value ...] [--force]
    python -m paddle.distributed.launch --gpus 0,1 paddle_bts/train.py --config ...   (data parallel)

Same recipe as the official torch code, in Paddle's own terms: parameters frozen with
`stop_gradient`; AdamW parameter groups (a list of dicts with their own `weight_decay`);
`paddle.optimizer.lr.PolynomialDecay(lr0, decay_steps=total, end_lr, power=0.9)` stepped after every
`optimizer.step()`, which gives the official LR at every iteration (PaddleDepth stepped it once per
epoch, so its LR stayed near lr0). Checkpoints: PaddleDepth folders `weights_<step>/` holding
`encoder.pdparams`, `depth.pdparams` and the optimizer state `adam.pdopt`; a loss log `loss_log_paddle.csv`.
`load_weights_folder` resumes a run (weights, adam.pdopt when the folder has it, global step and LR
position; `retrain: true` restarts at step 0). `encoder_weights` starts the encoder from torchvision's
ImageNet weights converted by conversion/backbone.py --to-paddle, the same numbers torch_ref.train starts from.
"""
import os
import sys

from bts_core.cli import quiet_paddle_import

quiet_paddle_import()   # run as a file, paddle comes before the paddle_bts package that does this

import paddle  # noqa: E402 (after quiet_paddle_import)

from bts_commands.training import epochs, run_folder, run_training, synthetic_tree, train_run
from bts_core.cli import staged_outputs
from bts_core.config import ConfigError
from bts_core.spec import check_encoder
from paddle_bts.backbone import load_encoder_weights
from paddle_bts.bn import bn_statistics
from paddle_bts.bts import build_model, freeze_encoder
from paddle_bts.checkpoint import load_weights, save_weights
from paddle_bts.loss import silog_loss
from paddle_bts.optimizer_state import OPTIMIZER_FILE, load_optimizer_state, read_optimizer_file

POWER = 0.9
LOSS_LOG = "loss_log_paddle.csv"   # beside torch's when both train with one config
CHECKPOINT_NAME = "weights_{step}"   # a PaddleDepth weight folder


def _bare(model):
    return model._layers if isinstance(model, paddle.DataParallel) else model


def _trainable(layer, stats):
    # Paddle lists BN running statistics among parameters (stop_gradient=True); never optimise them.
    return [p for p in layer.parameters() if not p.stop_gradient and id(p) not in stats]


def optimised_parameters(optimizer):
    return [p for group in optimizer._param_groups for p in group["params"]]


def build_optimizer(model, learning_rate=1e-4, epsilon=1e-3, encoder_weight_decay=1e-2):
    """AdamW of the official recipe. Applies the official freezing to `model` first; frozen parameters are
    left out of both groups. `learning_rate` may be a float or an LRScheduler (see build_scheduler)."""
    bare = _bare(model)
    freeze_encoder(bare)
    stats = {id(t) for t in bn_statistics(bare)}
    # A group's 'learning_rate' would be a multiplier of the base LR in Paddle: leave it out (1.0).
    return paddle.optimizer.AdamW(
        learning_rate=learning_rate, epsilon=epsilon,
        parameters=[{"params": _trainable(bare.encoder, stats), "weight_decay": encoder_weight_decay},
                    {"params": _trainable(bare.decoder, stats), "weight_decay": 0.0}])


def build_scheduler(optimizer, total_steps, end_learning_rate=None, global_step=0):
    """PolynomialDecay over `total_steps` iterations from the optimizer's LR to `end_learning_rate`
    (default 0.1 x that LR), attached to the optimizer at `global_step` (a resumed run's); train_step steps
    it every iteration."""
    learning_rate = optimizer.get_lr()
    end = 0.1 * learning_rate if end_learning_rate is None else end_learning_rate
    scheduler = paddle.optimizer.lr.PolynomialDecay(learning_rate=learning_rate, decay_steps=total_steps,
                                                    end_lr=end, power=POWER)
    optimizer.set_lr_scheduler(scheduler)
    if global_step:
        scheduler.step(global_step)   # the LR of the step the run starts at
    return scheduler


def train_step(model, optimizer, batch, scheduler=None, min_depth=1.0):
    """One official iteration on `batch` (dict: image Bx3xHxW, depth Bx1xHxW, focal B); returns the loss."""
    depth_est = model(batch["image"], batch["focal"])[-1]
    depth_gt = batch["depth"]
    loss = silog_loss()(depth_est, depth_gt, depth_gt > min_depth)
    loss.backward()
    optimizer.step()
    if scheduler is not None:
        scheduler.step()      # every iteration, after the step that used the current LR
    optimizer.clear_grad(set_to_zero=False)
    return float(loss.detach())


def run_epochs(model, optimizer, scheduler, batches, num_epochs, min_depth, on_step=None, on_epoch=None,
               start_epoch=0, global_step=0):
    """bts_commands.training.epochs with Paddle's step; the LR a step uses is read before it (train_step
    advances the scheduler after the step)."""
    def step(batch):
        lr = optimizer.get_lr()
        return train_step(model, optimizer, batch, scheduler, min_depth), lr
    model.train()
    return epochs(step, batches, num_epochs, on_step, on_epoch, start_epoch, global_step)


def set_device(config):
    import paddle_bts.runtime
    # Paddle's measured best CPU settings (all cores for its math library, MKL's AVX2 path on AMD):
    # train step 49.5 s -> 24.4 s at batch 2, 352x704 (reports/bench); harmless on GPU.
    paddle_bts.runtime.configure()
    if config["device"] == "auto":
        return paddle.set_device("gpu" if paddle.device.is_compiled_with_cuda()
                                 and paddle.device.cuda.device_count() > 0 else "cpu")
    return paddle.set_device(config["device"])


def save_checkpoint(model, optimizer, folder, global_step):
    """A PaddleDepth weight folder plus the optimizer state, appearing complete or not at all."""
    target = folder / CHECKPOINT_NAME.format(step=global_step)
    with staged_outputs([target], force=True, folder=True) as (staged,):
        save_weights(_bare(model), staged)
        paddle.save(optimizer.state_dict(), str(staged / OPTIMIZER_FILE))
    return target


def saved_optimizer_state(folder):
    """The optimizer state saved in a weight folder (PaddleDepth's adam.pdopt), or None when it has none."""
    path = os.path.join(folder, OPTIMIZER_FILE)
    return read_optimizer_file(path) if os.path.exists(path) else None


def world():
    """(rank, world size); > 1 only under `python -m paddle.distributed.launch`."""
    return paddle.distributed.get_rank(), paddle.distributed.get_world_size()


def shard(batch, rank, size):
    """This rank's share of a global batch: samples rank, rank + size, ... (the global batch size must be
    a multiple of the world size, as with the official per-GPU batch = batch_size / ngpus)."""
    return batch if size == 1 else {k: v[rank::size] for k, v in batch.items()}


def fit(config):
    """Trains as `config` (a validated bts_core.config dict) says; returns a summary (steps, last loss, files)."""
    from paddle_bts.data import make_loader

    if config["checkpoint_path"]:
        raise ConfigError("checkpoint_path is a torch checkpoint; Paddle starts from "
                                     "load_weights_folder (convert with conversion/torch2paddle.py)")
    rank, size = world()
    if config["batch_size"] % size:
        raise ConfigError(f"batch_size {config['batch_size']} is not a multiple of the {size} processes")
    if config["synthetic"] and rank == 0:
        config = synthetic_tree(config)
    set_device(config)
    if size > 1:
        paddle.distributed.init_parallel_env()
        if config["synthetic"]:
            paddle.distributed.barrier()          # rank 0 writes the tree
            config = synthetic_tree(config)
    paddle.seed(config["seed"])
    source = config["load_weights_folder"]
    saved = saved_optimizer_state(source) if source else None   # read before a long model build fails late
    model = build_model(config["encoder"], config["max_depth"], config["dataset"], config["bts_size"])
    if source:
        load_weights(model, source)
    if config["encoder_weights"]:   # torch's ImageNet weights, converted; the decoder stays Xavier
        said = load_encoder_weights(model, config["encoder_weights"])
        if rank == 0:
            print(said, flush=True)
    optimizer = build_optimizer(model, config["learning_rate"], config["adam_eps"], config["weight_decay"])
    saved_step = load_optimizer_state(optimizer, optimised_parameters(optimizer), saved, source) if saved else 0
    if size > 1:
        # ResNet encoders carry an ImageNet head the forward never uses; the other encoders use everything.
        model = paddle.DataParallel(model, find_unused_parameters=check_encoder(config["encoder"]).family == "resnet")

    folder = run_folder(config)
    return train_run(config, model, optimizer, make_loader=make_loader, build_scheduler=build_scheduler,
                     run_epochs=run_epochs, save=lambda step: save_checkpoint(model, optimizer, folder, step),
                     log_name=LOSS_LOG, desc="paddle_bts train", lead=rank == 0,
                     saved=(saved_step, saved is not None, source) if source else None,
                     shard=(lambda batch: shard(batch, rank, size)) if size > 1 else None)


def main(argv=None) -> int:
    return run_training(fit, argv, "Train BTS in Paddle with the official recipe.", CHECKPOINT_NAME)


if __name__ == "__main__":
    sys.exit(main())

"""Official BTS training (cleinc/bts bts_main.py) in torch; paddle_bts/train.py mirrors it name for name.

    python -m torch_ref.train --config configs/bts_kitti.yaml [-o key=value -o key=value ...] [--force]

Recipe: official encoder freezing; AdamW with two groups (encoder weight decay 1e-2, decoder 0),
eps 1e-3; LR = (lr0 - lr_end)(1 - step/total)^0.9 + lr_end written into the param groups every iteration,
after backward and before step (step 0 uses lr0); silog loss (variance focus 0.85) on the final depth
over ground truth > 1.0 m (KITTI) / 0.1 m (NYU). Checkpoints: official format (`model-<step>`, with the
optimizer state and global_step); a loss log `loss_log_torch.csv`. `checkpoint_path` resumes a run
(weights, optimizer state, global step and LR position; `retrain: true` restarts at step 0);
`encoder_weights` starts the encoder from a torchvision ImageNet checkpoint, as official training does.
"""
import sys

import torch

from bts_commands.training import epochs, run_folder, run_training, synthetic_tree, train_run
from bts_core.config import ConfigError
from torch_ref.backbone import load_backbone
from torch_ref.bts import build_model, freeze_encoder
from torch_ref.checkpoint import read_checkpoint, save_official_checkpoint
from torch_ref.loss import silog_loss
from torch_ref.optimizer_state import load_optimizer_state

POWER = 0.9
LOSS_LOG = "loss_log_torch.csv"   # beside Paddle's when both train with one config
CHECKPOINT_NAME = "model-{step}"    # the official name


def _bare(model):
    return model.module if isinstance(model, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)) else model


def build_optimizer(model, learning_rate=1e-4, epsilon=1e-3, encoder_weight_decay=1e-2):
    """AdamW of the official recipe. Applies the official freezing to `model` first (as bts_main.py does
    before building its optimizer)."""
    bare = _bare(model)
    freeze_encoder(bare)
    # every parameter, frozen ones included (they get no gradient, so no state), as bts_main.py: its
    # checkpoints' optimizer state then loads into the official code and back
    return torch.optim.AdamW([{"params": list(bare.encoder.parameters()), "weight_decay": encoder_weight_decay},
                              {"params": list(bare.decoder.parameters()), "weight_decay": 0.0}],
                             lr=learning_rate, eps=epsilon)


def poly_lr(step, total_steps, learning_rate, end_learning_rate):
    """The official formula (bts_main.py), evaluated as it is there."""
    return (learning_rate - end_learning_rate) * (1 - step / total_steps) ** POWER + end_learning_rate


class PolyLR:
    """The official schedule: `apply()` writes the LR of the current global step into every param group
    (call it after backward, before optimizer.step()); `step()` advances the global step."""

    def __init__(self, optimizer, total_steps, end_learning_rate=None, global_step=0):
        self.optimizer = optimizer
        self.learning_rate = optimizer.defaults["lr"]
        self.end_learning_rate = 0.1 * self.learning_rate if end_learning_rate is None else end_learning_rate
        self.total_steps = total_steps
        self.global_step = global_step
        self.last_lr = self.learning_rate

    def get_lr(self):
        """The LR of the current global step (as Paddle's LRScheduler.get_lr)."""
        return poly_lr(self.global_step, self.total_steps, self.learning_rate, self.end_learning_rate)

    def apply(self):
        self.last_lr = self.get_lr()
        for group in self.optimizer.param_groups:
            group["lr"] = self.last_lr
        return self.last_lr

    def step(self):
        self.global_step += 1


def build_scheduler(optimizer, total_steps, end_learning_rate=None, global_step=0):
    """The official poly schedule over `total_steps` iterations, from the optimizer's LR to `end_learning_rate`
    (default 0.1 x that LR), at `global_step` (a resumed run's)."""
    return PolyLR(optimizer, total_steps, end_learning_rate, global_step)


def train_step(model, optimizer, batch, scheduler=None, min_depth=1.0):
    """One official iteration on `batch` (dict: image Bx3xHxW, depth Bx1xHxW, focal B); returns the loss."""
    device = next(model.parameters()).device
    image, depth_gt, focal = (batch[k].to(device, non_blocking=True) for k in ("image", "depth", "focal"))
    depth_est = model(image, focal)[-1]
    loss = silog_loss()(depth_est, depth_gt, depth_gt > min_depth)
    loss.backward()
    if scheduler is not None:
        scheduler.apply()     # official order: after backward, before step, so step 0 uses lr0
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def run_epochs(model, optimizer, scheduler, batches, num_epochs, min_depth, on_step=None, on_epoch=None,
               start_epoch=0, global_step=0):
    """bts_commands.training.epochs with torch's step; the LR a step used is the one apply() wrote into
    the groups before it."""
    def step(batch):
        loss = train_step(model, optimizer, batch, scheduler, min_depth)
        return loss, optimizer.param_groups[0]["lr"]
    model.train()
    return epochs(step, batches, num_epochs, on_step, on_epoch, start_epoch, global_step)


def device_of(config):
    if config["device"] == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config["device"])


def save_checkpoint(model, optimizer, folder, global_step):
    path = folder / CHECKPOINT_NAME.format(step=global_step)
    save_official_checkpoint(_bare(model), path, global_step=global_step, optimizer=optimizer.state_dict())
    return path


def fit(config):
    """Trains as `config` (a validated bts_core.config dict) says; returns a summary (steps, last loss, files)."""
    from torch_ref.data import make_loader

    if config["load_weights_folder"]:
        raise ConfigError("load_weights_folder is a PaddleDepth folder; torch starts from "
                                     "checkpoint_path (convert with conversion/paddle2torch.py)")
    if config["synthetic"]:
        config = synthetic_tree(config)
    torch.manual_seed(config["seed"])
    source = config["checkpoint_path"]
    checkpoint = read_checkpoint(source) if source else None   # read before a long model build fails late
    model = build_model(config["encoder"], config["max_depth"], config["dataset"], config["bts_size"])
    if checkpoint:
        model.load_state_dict(checkpoint.model, strict=True)
    if config["encoder_weights"]:   # ImageNet weights, as official training starts; the decoder stays Xavier
        print(load_backbone(model, config["encoder_weights"]), flush=True)
    device = device_of(config)
    model.to(device)
    optimizer = build_optimizer(model, config["learning_rate"], config["adam_eps"], config["weight_decay"])
    if checkpoint and checkpoint.optimizer is not None:
        # as bts_main.py: the file's group settings (eps, weight decay) come with its state
        load_optimizer_state(optimizer, model, checkpoint.optimizer, source)

    folder = run_folder(config)
    saved = (checkpoint.global_step, checkpoint.optimizer is not None, source) if checkpoint else None
    return train_run(config, model, optimizer, make_loader=make_loader, build_scheduler=build_scheduler,
                     run_epochs=run_epochs, save=lambda step: save_checkpoint(model, optimizer, folder, step),
                     log_name=LOSS_LOG, desc="torch_ref train", saved=saved)


def main(argv=None) -> int:
    return run_training(fit, argv, "Train BTS in torch with the official recipe.", CHECKPOINT_NAME)


if __name__ == "__main__":
    sys.exit(main())

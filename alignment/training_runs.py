"""Pieces of a training run that the training stages share (alignment/test_training.py, test_resume.py):
the official recipe's settings, a synthetic KITTI tree, each framework's batches, both twins' state by
torch name, and the two starts a run can have (twin weights, or one ImageNet backbone file).
"""
import atexit
import contextlib
import functools
import io
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alignment import twins

LR0, EPS, WD = 1e-4, 1e-3, 1e-2   # the official recipe (bts_main.py, reference spec)


def torch_names(model):
    """Parameters and BN statistics by torch name, in registration order (num_batches_tracked left out:
    Paddle keeps no counter)."""
    return [n for n in model.state_dict() if not n.endswith("num_batches_tracked")]


def paddle_array(state, name, encoder):
    value = twins.numpy_of(state[twins.paddle_param_name(name, encoder)])
    return value.T if value.ndim == 2 else value   # Linear: Paddle stores [in, out]


def states(tm, pm, encoder, prefix=""):
    """{prefix + torch name: array} of every parameter and BN statistic, for both twins."""
    pstate = pm.state_dict()
    names = torch_names(tm)
    tstate = tm.state_dict()
    # copies: torch's numpy() shares memory with the live parameter, which later steps change
    return ({prefix + n: twins.numpy_of(tstate[n]).copy() for n in names},
            {prefix + n: paddle_array(pstate, n, encoder) for n in names})


TRAIN_IMAGES, TRAIN_BATCH, TRAIN_EPOCHS, TRAIN_SIZE = 10, 2, 2, (64, 128)   # 2 epochs x 5 steps


@functools.lru_cache(maxsize=None)
def synthetic_kitti():
    """A synthetic KITTI tree (bts_data) shared by this process's train cases; removed at exit."""
    from bts_data.synthetic import write_tree
    root = tempfile.mkdtemp(prefix="bts-train-stage-")
    atexit.register(shutil.rmtree, root, True)
    return write_tree(root, "kitti", TRAIN_IMAGES, seed=0)


def train_samples():
    from bts_data.dataset import BtsSamples
    return BtsSamples(synthetic_kitti().config("train", input_height=TRAIN_SIZE[0], input_width=TRAIN_SIZE[1]))


STEPS_PER_EPOCH = TRAIN_IMAGES // TRAIN_BATCH
TRAIN_STEPS = TRAIN_EPOCHS * STEPS_PER_EPOCH
RESUME_AT = 4   # the resume stage starts from torch's checkpoint here: epoch 0, batch 4 of 5


def recorded_batches(make_loader, samples, convert, seen, first_step=0, last_step=None):
    """Each epoch's batches from a framework's loader, for global steps first_step .. last_step - 1 (as a
    resumed run skips an epoch's batches already done); records each batch's arrays (to prove both sides
    trained on the same data) and casts them with `convert`."""
    start_epoch, skip = divmod(first_step, STEPS_PER_EPOCH)

    def batches(epoch):   # the loop asks for epochs from start_epoch on (run_steps starts it there)
        skipped = skip if epoch == start_epoch else 0
        step = epoch * STEPS_PER_EPOCH + skipped
        for batch in make_loader(samples, TRAIN_BATCH, seed=0, epoch=epoch, shuffle=True, num_workers=0,
                                 skip_batches=skipped):
            if last_step is not None and step >= last_step:
                return
            seen.append({k: twins.numpy_of(batch[k]) for k in ("image", "depth", "focal")})
            yield {k: convert(batch[k]) for k in ("image", "depth", "focal")}
            step += 1
    return batches


def run_steps(module, model, optimizer, scheduler, make_loader, convert, first_step=0, last_step=None,
              after_step=None):
    """Global steps first_step .. last_step - 1 (default: to the end of TRAIN_EPOCHS) of each framework's own
    training loop; returns (the loop's step records, the batches it saw). `after_step(record, optimizer)`:
    called after each step (the loop's on_step), e.g. to save a checkpoint."""
    records, seen = [], []

    def on_step(record):
        records.append(record)
        if after_step is not None:
            after_step(record, optimizer)
    batches = recorded_batches(make_loader, train_samples(), convert, seen, first_step, last_step)
    module.run_epochs(model, optimizer, scheduler, batches, TRAIN_EPOCHS, 1.0, on_step=on_step,
                      start_epoch=first_step // STEPS_PER_EPOCH, global_step=first_step)
    return records, seen


def train(module, model, make_loader, convert, steps, after_step=None):
    """`steps` (<= TRAIN_STEPS) steps of the official recipe from step 0 (a schedule of `steps` steps);
    `after_step(record, optimizer)` runs after each step (run_steps)."""
    optimizer = module.build_optimizer(model, LR0, EPS, WD)
    scheduler = module.build_scheduler(optimizer, steps)
    records, seen = run_steps(module, model, optimizer, scheduler, make_loader, convert, last_step=steps,
                              after_step=after_step)
    if len(records) != steps:
        raise RuntimeError(f"the run took {len(records)} steps, not {steps}")
    return records, seen


@dataclass(frozen=True)
class TorchRun:
    records: list            # the loop's step records
    seen: list               # the batches' arrays
    state: dict              # {"final/<torch name>": array} after the run
    checkpoint: Path         # its official checkpoint after RESUME_AT steps


# ---- where a run starts -----------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def backbone_files(encoder):
    """(torchvision-format file, its conversion folder): one seeded ImageNet-style backbone as torchvision saves
    it (conversion.seeded), converted and verified by conversion/backbone.py --to-paddle; removed at exit."""
    from conversion import backbone
    from conversion.seeded import save_seeded_backbone
    folder = Path(tempfile.mkdtemp(prefix="bts-backbone-"))
    atexit.register(shutil.rmtree, folder, True)
    source = save_seeded_backbone(encoder, folder / "imagenet.pth")
    with contextlib.redirect_stdout(io.StringIO()):
        code = backbone.main(["--to-paddle", str(source), "--encoder", encoder, "--output", str(folder / "paddle")])
    if code != 0:
        raise RuntimeError(f"conversion/backbone.py --to-paddle exited {code} for {encoder}")
    return source, folder / "paddle"


def backbone_torch_start(encoder, seed=0):
    """torch_ref as torch_ref.train starts a run with encoder_weights: official init (Xavier decoder) under
    the seed, then the encoder from the torchvision file, by the command's own loader."""
    import torch
    import torch_ref
    from torch_ref.backbone import load_backbone
    torch.manual_seed(seed)
    model = torch_ref.build_model(encoder)
    load_backbone(model, backbone_files(encoder)[0])
    return model


def backbone_twins(encoder):
    """(torch model, paddle model) in eval mode, both started from one backbone as their training commands start
    with encoder_weights: torch's encoder from the torchvision file, Paddle's from its conversion (paddle_bts.train's
    loader). The decoders: each framework's Xavier draws other numbers, so torch's decoder start is copied into
    Paddle by the converter (conversion.convert.torch_to_paddle)."""
    import paddle_bts
    from conversion.convert import torch_to_paddle
    from paddle_bts.backbone import load_encoder_weights
    from paddle_bts.checkpoint import set_strict
    torch_model = backbone_torch_start(encoder)
    paddle_model = paddle_bts.build_model(encoder)
    load_encoder_weights(paddle_model, backbone_files(encoder)[1])
    decoder = {k: v for k, v in torch_model.state_dict().items() if k.startswith("decoder.")}
    parts, report = torch_to_paddle(decoder, encoder, parts=("decoder",))
    report.raise_if_bad()
    set_strict(paddle_model.decoder, parts["decoder"], f"{encoder} decoder (torch's Xavier start)")
    return torch_model.to(twins.devices()[0]).eval(), paddle_model.eval()


STARTS = {"twins": (twins.torch_twin, twins.build_twins),   # one seeded model, converted whole
          "backbone": (backbone_torch_start, backbone_twins)}   # one ImageNet backbone file, decoder from torch


@functools.lru_cache(maxsize=2)
def torch_float64_run(encoder, start="twins", steps=TRAIN_STEPS):
    """torch's float64 run of `steps` steps (a schedule of as many) from the `start` (STARTS) weights, cached
    for the process: the train stage's reference (and its fp32 case's noise floor) and, through the official
    checkpoint it saves after RESUME_AT steps, the resume stage's start."""
    import torch_ref.train as ttrain
    from torch_ref.data import make_loader
    model = STARTS[start][0](encoder).to(twins.devices()[0]).double()
    folder = Path(tempfile.mkdtemp(prefix="bts-train-run-"))
    atexit.register(shutil.rmtree, folder, True)
    saved = []

    def save_at_resume_point(record, optimizer):
        if record["step"] + 1 == RESUME_AT:
            saved.append(ttrain.save_checkpoint(model, optimizer, folder, RESUME_AT))
    records, seen = train(ttrain, model, make_loader, lambda t: t.double(), steps, after_step=save_at_resume_point)
    state = model.state_dict()
    return TorchRun(records, seen, {f"final/{n}": twins.numpy_of(state[n]).copy() for n in torch_names(model)},
                    saved[0])


def curve(records, key):
    return np.array([r[key] for r in records], np.float64)

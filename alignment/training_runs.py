"""Pieces of a training run that the training stages share (alignment/test_training.py, test_resume.py):
the official recipe's settings, a synthetic KITTI tree, each framework's batches, and both twins' state
by torch name.
"""
import atexit
import functools
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
RESUME_AT = 4   # the resume stage starts from torch's checkpoint here: epoch 0, batch 4 of 5


def recorded_batches(make_loader, samples, convert, seen, first_step=0, last_step=None):
    """Each epoch's batches from a framework's loader, for global steps first_step .. last_step - 1 (as a
    resumed run skips an epoch's batches already done); records each batch's arrays (to prove both sides
    trained on the same data) and casts them with `convert`."""
    start_epoch, skip = divmod(first_step, STEPS_PER_EPOCH)

    def batches(epoch):
        if epoch < start_epoch:
            return
        step = epoch * STEPS_PER_EPOCH + (skip if epoch == start_epoch else 0)
        for batch in make_loader(samples, TRAIN_BATCH, seed=0, epoch=epoch, shuffle=True, num_workers=0,
                                 skip_batches=skip if epoch == start_epoch else 0):
            if last_step is not None and step >= last_step:
                return
            seen.append({k: twins.numpy_of(batch[k]) for k in ("image", "depth", "focal")})
            yield {k: convert(batch[k]) for k in ("image", "depth", "focal")}
            step += 1
    return batches


def run_steps(module, model, optimizer, scheduler, make_loader, convert, first_step=0, last_step=None,
              after_step=None):
    """Global steps first_step .. last_step - 1 (default: to the end of TRAIN_EPOCHS) of each framework's own
    training loop; returns (the loop's step records, the batches it saw). `after_step(record)`: called
    after each step (the loop's on_step)."""
    records, seen = [], []

    def on_step(record):
        records.append(record)
        if after_step is not None:
            after_step(record)
    batches = recorded_batches(make_loader, train_samples(), convert, seen, first_step, last_step)
    module.run_epochs(model, optimizer, scheduler, batches, TRAIN_EPOCHS, 1.0, on_step=on_step,
                      start_epoch=first_step // STEPS_PER_EPOCH, global_step=first_step)
    return records, seen


def train(module, model, make_loader, convert, steps, after_step=None):
    """`steps` steps of the official recipe from step 0 (a schedule of `steps` steps)."""
    optimizer = module.build_optimizer(model, LR0, EPS, WD)
    scheduler = module.build_scheduler(optimizer, steps)
    records, seen = run_steps(module, model, optimizer, scheduler, make_loader, convert, after_step=after_step)
    if len(records) != steps:
        raise RuntimeError(f"the run took {len(records)} steps, not {steps}")
    return records, seen


@dataclass(frozen=True)
class TorchRun:
    records: list            # the loop's step records
    seen: list               # the batches' arrays
    state: dict              # {"final/<torch name>": array} after the run
    checkpoint: Path         # its official checkpoint after RESUME_AT steps


@functools.lru_cache(maxsize=2)
def torch_float64_run(encoder):
    """torch's float64 run of TRAIN_EPOCHS from the twin weights, cached for the process: the train stage's
    reference (and its fp32 case's noise floor) and, through the official checkpoint it saves after
    RESUME_AT steps, the resume stage's start."""
    import torch_ref.train as ttrain
    from torch_ref.data import make_loader
    model = twins.torch_twin(encoder).to(twins.devices()[0]).double()
    folder = Path(tempfile.mkdtemp(prefix="bts-train-run-"))
    atexit.register(shutil.rmtree, folder, True)
    saved = []

    def save_at_resume_point(record):
        if record["step"] + 1 == RESUME_AT:
            saved.append(ttrain.save_checkpoint(model, optimizer, folder, RESUME_AT))
    optimizer = ttrain.build_optimizer(model, LR0, EPS, WD)
    scheduler = ttrain.build_scheduler(optimizer, TRAIN_EPOCHS * STEPS_PER_EPOCH)
    records, seen = run_steps(ttrain, model, optimizer, scheduler, make_loader, lambda t: t.double(),
                              after_step=save_at_resume_point)
    state = model.state_dict()
    return TorchRun(records, seen, {f"final/{n}": twins.numpy_of(state[n]).copy() for n in torch_names(model)},
                    saved[0])


def curve(records, key):
    return np.array([r[key] for r in records], np.float64)

"""A trained stand-in for an official checkpoint (there are no downloads here): torch_ref trained with
the official recipe on synthetic KITTI frames whose depth follows from the picture, saved as bts_main.py's
online evaluation saves its best model.

Random weights never show what a trained network does (saturated sigmoids, LPG denominators near zero
where planes face the camera); this does, in minutes on a CPU. It is made of torch_ref.train's
pieces (build_model, build_optimizer, build_scheduler, run_epochs, the loader) and torch_ref.evaluate, and
needs nothing from conversion: torch_ref is the lowest floor that can hold it.
"""
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bts_commands.training import schedule_length
from bts_core.config import MIN_GT_DEPTH, end_learning_rate, validate
from bts_core.spec import METRIC_NAMES
from bts_data import BtsSamples, write_tree
from torch_ref import evaluate as torch_eval
from torch_ref.bts import build_model
from torch_ref.checkpoint import save_official_checkpoint
from torch_ref.data import make_loader
from torch_ref.threads import torch_threads
from torch_ref.train import build_optimizer, build_scheduler, run_epochs

ENCODER = "mobilenetv2_bts"          # the smallest official encoder
# The length the tests and the deploy stage train: 8 epochs of 8 steps (16 frames, batch 2); held-out abs_rel
# falls from 0.222 (untrained) to 0.082 (measured; tests/test_stand_in.py states the figures).
QUICK_EPOCHS = 8
HELD_OUT_SEED = 7    # the stand-in trains on seed 0 and picks its best model on seed 1
HELD_OUT_IMAGES = 4
FRAME = (64, 160)                    # H x W of the synthetic frames, trained and evaluated whole (no KB crop)
LOWER_IS_BETTER = 6                  # bts_main.py: the first six of its metric order (silog .. log_rms), then d1-d3
BEST_NAME = "model-{step}-best_{metric}_{value:.5f}"   # bts_main.py's name for a best checkpoint
KEPT_BEST = "abs_rel"                # whose best file is kept (official: one file per metric, ~200 MB each here)


@dataclass
class BestMeasures:
    """bts_main.py's online-evaluation bookkeeping, in its types: the best of each metric and its step."""
    lower_better: torch.Tensor = field(default_factory=lambda: torch.zeros(6) + 1e3)
    higher_better: torch.Tensor = field(default_factory=lambda: torch.zeros(3))
    steps: np.ndarray = field(default_factory=lambda: np.zeros(9, dtype=np.int32))

    def _slot(self, name):
        """(tensor, index) holding the best of `name`: lower-is-better metrics first, as official."""
        i = METRIC_NAMES.index(name)
        return (self.lower_better, i) if i < LOWER_IS_BETTER else (self.higher_better, i - LOWER_IS_BETTER)

    def update(self, measures, step):
        """Takes one evaluation's metrics (dict by name); returns the names that improved, as official."""
        improved = []
        for i, name in enumerate(METRIC_NAMES):
            best, j = self._slot(name)
            if measures[name] < best[j] if best is self.lower_better else measures[name] > best[j]:
                best[j] = measures[name]
                self.steps[i] = step
                improved.append(name)
        return improved

    def value(self, name):
        best, j = self._slot(name)
        return float(best[j])

    def checkpoint_entries(self):
        return {"best_eval_measures_higher_better": self.higher_better.clone(),
                "best_eval_measures_lower_better": self.lower_better.clone(), "best_eval_steps": self.steps.copy()}


@dataclass
class StandIn:
    checkpoint: Path                 # model-<step>-best_abs_rel_<value>
    losses: list                     # the loss of every step
    evaluations: list                # (global step, metrics) of every online evaluation
    best: BestMeasures


def stand_in_config(tree, num_epochs, batch_size, seed):
    """The official recipe's config (bts_core.config defaults: AdamW lr 1e-4, eps 1e-3, encoder weight decay
    1e-2, poly LR to 0.1 x lr) on whole synthetic frames."""
    return validate({"encoder": ENCODER, "dataset": "kitti", "data_path": str(tree.data_path),
                     "gt_path": str(tree.gt_path), "filenames_file": str(tree.train), "input_height": FRAME[0],
                     "input_width": FRAME[1], "do_kb_crop": False, "batch_size": batch_size, "num_epochs": num_epochs,
                     "seed": seed})


def write_stand_in_tree(root, n_images, seed):
    """Synthetic KITTI frames of FRAME size whose depth is learnable: boxes stand on the road."""
    return write_tree(root, "kitti", n_images, seed=seed, size=FRAME, boxes_on_ground=True)


def write_held_out_tree(root):
    """Frames the stand-in never saw, neither in training nor in picking its best model."""
    return write_stand_in_tree(root, HELD_OUT_IMAGES, HELD_OUT_SEED)


def train_stand_in(folder, num_epochs=40, n_images=16, n_eval_images=4, batch_size=2, eval_freq=16, seed=0,
                   threads=1):
    """Trains ENCODER for num_epochs x (n_images // batch_size) steps on a synthetic tree written under
    `folder`, evaluating every `eval_freq` steps on a second tree (online evaluation, official protocol,
    Garg crop) and keeping the best abs_rel model as `folder/model-<step>-best_abs_rel_<value>` with the
    optimizer state and best measures. Global steps count the steps done (as torch_ref.train's checkpoints;
    bts_main.py labels a checkpoint with one less). On `threads` torch threads: measured, QUICK_EPOCHS took
    ~40 s on one and 687 s on two beside other processes."""
    with torch_threads(threads):
        return _train(Path(folder), num_epochs, n_images, n_eval_images, batch_size, eval_freq, seed)


def _train(folder, num_epochs, n_images, n_eval_images, batch_size, eval_freq, seed):
    tree = write_stand_in_tree(folder / "train", n_images, seed)
    online = BtsSamples(write_stand_in_tree(folder / "online_eval", n_eval_images, seed + 1).config(
        "online_eval", do_kb_crop=False))
    config = stand_in_config(tree, num_epochs, batch_size, seed)
    torch.manual_seed(seed)
    model = build_model(ENCODER, config["max_depth"], "kitti")
    optimizer = build_optimizer(model, config["learning_rate"], config["adam_eps"], config["weight_decay"])
    samples = BtsSamples(config)
    _, total = schedule_length(config, len(samples))
    scheduler = build_scheduler(optimizer, total, end_learning_rate(config))
    if total < eval_freq:
        raise ValueError(f"{total} steps with eval_freq {eval_freq}: no online evaluation would run, nothing be saved")
    run = StandIn(None, [], [], BestMeasures())

    def on_step(record):
        run.losses.append(record["loss"])
        step = record["step"] + 1
        if step % eval_freq:
            return
        measures = torch_eval.evaluate(model, online, "kitti", "garg", max_depth=config["max_depth"])
        run.evaluations.append((step, measures))
        if KEPT_BEST in run.best.update(measures, step):
            previous, run.checkpoint = run.checkpoint, folder / BEST_NAME.format(
                step=step, metric=KEPT_BEST, value=run.best.value(KEPT_BEST))
            save_official_checkpoint(model, run.checkpoint, global_step=step, optimizer=optimizer.state_dict(),
                                     **run.best.checkpoint_entries())
            if previous is not None:
                previous.unlink()   # as bts_main.py: only the newest best of a metric stays

    run_epochs(model, optimizer, scheduler, lambda epoch: make_loader(samples, batch_size, seed, epoch),
               config["num_epochs"], MIN_GT_DEPTH["kitti"], on_step)
    return run

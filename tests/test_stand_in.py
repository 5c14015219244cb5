"""A trained stand-in for an official checkpoint (torch_ref.stand_in; the `stand_in` fixture, tests/conftest.py):
saved as the official bts_main.py's online evaluation saves its best model, converted through the CLI with
its optimizer state, and evaluated in both frameworks on held-out synthetic frames with the official protocol
(whole 64x160 frames: --no-kb-crop; Garg crop, 1e-3..80 m). The two metric tables must agree to the `eval`
stage's tolerance, and the network must have learnt.
"""
import re

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import paddle_bts
import torch_ref
from alignment.tolerances import TOLERANCES
from bts_core.spec import METRIC_NAMES
from bts_data import BtsSamples, write_tree
from conversion import torch2paddle
from paddle_bts import evaluate as paddle_eval
from torch_ref import evaluate as torch_eval
from torch_ref.checkpoint import load_torch_file
from torch_ref.metrics import eval_mask
from torch_ref.stand_in import (BEST_NAME, ENCODER, FRAME, KEPT_BEST, LOWER_IS_BETTER, train_stand_in,
                                write_held_out_tree)

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # tests/conftest.py: measured faster here

# Measured (64 steps, held-out seed 7): abs_rel 0.222 untrained -> 0.082 trained (0.37x). On default trees,
# whose box depths are random, 200 steps (batch 4) reach only 0.469 -> 0.436 (0.93x) on held-out frames.
LEARNT_FRACTION = 0.5


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    return write_held_out_tree(tmp_path_factory.mktemp("held_out"))


@pytest.mark.parametrize("dataset", ["kitti", "nyu"])
def test_boxes_on_ground_changes_box_depths_only(dataset, tmp_path):
    trees = [write_tree(tmp_path / str(flag), dataset, 2, seed=3, size=FRAME, boxes_on_ground=flag) for flag in (0, 1)]
    samples = [BtsSamples(tree.config("test")) for tree in trees]
    for i in range(2):
        pictures = [np.asarray(Image.open(s.image_path(i))) for s in samples]
        depths = [s.ground_truth(i) for s in samples]
        np.testing.assert_array_equal(*pictures)
        assert not np.array_equal(*depths) and np.array_equal(depths[0] > 0, depths[1] > 0)   # same pixels measured


def test_stand_in_is_an_official_best_checkpoint(stand_in):
    payload = load_torch_file(stand_in.checkpoint)   # torch.load, weights_only, numpy int32 arrays allowed
    assert set(payload) == {"global_step", "model", "optimizer", "best_eval_measures_higher_better",
                            "best_eval_measures_lower_better", "best_eval_steps"}
    assert all(key.startswith("module.") for key in payload["model"])   # DataParallel keys
    lower, higher, steps = (payload[k] for k in ("best_eval_measures_lower_better", "best_eval_measures_higher_better",
                                                 "best_eval_steps"))
    assert lower.shape == (LOWER_IS_BETTER,) and higher.shape == (3,) and lower.dtype == higher.dtype == torch.float32
    assert isinstance(steps, np.ndarray) and steps.dtype == np.int32 and steps.shape == (9,)
    step, best = payload["global_step"], float(lower[METRIC_NAMES.index(KEPT_BEST)])
    assert stand_in.checkpoint.name == BEST_NAME.format(step=step, metric=KEPT_BEST, value=best)
    assert re.fullmatch(r"model-\d+-best_abs_rel_\d\.\d{5}", stand_in.checkpoint.name)
    for i, name in enumerate(METRIC_NAMES):   # official bookkeeping: best so far, and the step that first reached it
        history = [(m[name] if i < LOWER_IS_BETTER else -m[name], at) for at, m in stand_in.evaluations]
        kept = lower[i] if i < LOWER_IS_BETTER else -higher[i - LOWER_IS_BETTER]
        assert float(kept) == pytest.approx(min(history)[0], rel=1e-6) and steps[i] == min(history)[1], name
    assert steps[METRIC_NAMES.index(KEPT_BEST)] == step
    assert [g["weight_decay"] for g in payload["optimizer"]["param_groups"]] == [1e-2, 0.0]
    assert payload["optimizer"]["state"] and all(g["eps"] == 1e-3 for g in payload["optimizer"]["param_groups"])
    assert list(stand_in.checkpoint.parent.glob("model-*")) == [stand_in.checkpoint]   # older bests removed
    checkpoint = torch_ref.read_checkpoint(str(stand_in.checkpoint))   # the project's reader takes it as is
    assert checkpoint.global_step == step and checkpoint.optimizer is not None
    # the loss falls: measured mean of the first 4 steps 3.28, of the last 4 0.98 (0.30x)
    first, last = np.mean(stand_in.losses[:4]), np.mean(stand_in.losses[-4:])
    assert last < 0.5 * first, (first, last)


def evaluation_argv(weights_flag, weights, tree, csv):
    return [weights_flag, str(weights), "--encoder", ENCODER, "--dataset", "kitti", "--data-path", str(tree.data_path),
            "--gt-path", str(tree.gt_path), "--filenames-file", str(tree.test), "--no-kb-crop", "--csv", str(csv)]


DELTA_THRESHOLDS = (1.25, 1.25 ** 2, 1.25 ** 3)


def delta_allowance(checkpoint, paddle_weights, tree):
    """The most d1-d3 may differ between the frameworks: per image, the share of scored pixels whose delta
    ratio lies within 2x the two predictions' largest relative difference of a threshold (only those can
    count differently), averaged over images as the metrics are. 0 when none is that close."""
    samples = BtsSamples(tree.config("test", do_kb_crop=False))
    torch_model = torch_ref.load_official_checkpoint(torch_ref.build_model(ENCODER, 80.0, "kitti"), str(checkpoint))
    paddle_model = paddle_bts.load_weights(paddle_bts.build_model(ENCODER, 80.0, "kitti"), str(paddle_weights))
    torch_depth = {i: d.detach().cpu().numpy() for i, d in torch_eval.predictions(torch_model.eval(), samples)}
    paddle_depth = {i: d.numpy() for i, d in paddle_eval.predictions(paddle_model.eval(), samples)}
    shares = []
    for index, (t, p) in enumerate(zip(torch_depth.values(), paddle_depth.values())):
        gt = samples.ground_truth(index)
        if gt is None:
            continue
        mask = eval_mask(gt, "kitti", "garg").numpy()
        g, t, p = (np.clip(np.asarray(a, np.float64)[mask], 1e-3, 80.0) for a in (gt, t, p))
        relative = np.max(np.abs(p - t) / t)
        ratio = np.maximum(g / t, t / g)
        shares.append(np.mean([np.any(np.abs(r - np.array(DELTA_THRESHOLDS)) <= 2 * relative * r) for r in ratio]))
    return float(np.mean(shares))


def test_converted_stand_in_agrees_and_has_learnt(stand_in, held_out, tmp_path):
    paddle_weights = tmp_path / "paddle"
    assert torch2paddle.main(["--checkpoint", str(stand_in.checkpoint), "--encoder", ENCODER,
                              "--output", str(paddle_weights), "--with-optimizer"]) == 0
    assert (paddle_weights / "adam.pdopt").is_file()
    assert torch_eval.main(evaluation_argv("--checkpoint", stand_in.checkpoint, held_out, tmp_path / "torch.csv")) == 0
    assert paddle_eval.main(evaluation_argv("--weights", paddle_weights, held_out, tmp_path / "paddle.csv")) == 0
    torch_row, paddle_row = (pd.read_csv(tmp_path / f"{name}.csv", float_precision="round_trip").iloc[0]
                             for name in ("torch", "paddle"))
    assert torch_row["count"] == paddle_row["count"] == 4
    # The eval stage's bound is for identical predictions. Here Paddle's differ from torch's by <= 1.1e-4 m
    # (<= 3e-6 relative); the means over ~4,400 pixels average that to <= 3.2e-7 relative (0.32 of the bound,
    # held-out seeds 7-11), and no scored pixel lies within 10x that of a delta threshold: d1-d3 equal.
    # d1-d3 also get the share of pixels that sit so close to a threshold that the predictions' measured
    # difference could move them across (0 here; a network trained on another CPU puts pixels elsewhere).
    tolerance = TOLERANCES["eval"]
    crossing = delta_allowance(stand_in.checkpoint, paddle_weights, held_out)
    allowed = {m: tolerance.bound(torch_row[m]) + (crossing if m in ("d1", "d2", "d3") else 0.0) for m in METRIC_NAMES}
    too_far = {m: (torch_row[m], paddle_row[m]) for m in METRIC_NAMES if abs(paddle_row[m] - torch_row[m]) > allowed[m]}
    assert not too_far, (tolerance.why, crossing, too_far)

    torch.manual_seed(0)   # the stand-in's own initial weights
    untrained = torch_ref.build_model(ENCODER, 80.0, "kitti")
    samples = BtsSamples(held_out.config("test", do_kb_crop=False))
    untrained_abs_rel = torch_eval.evaluate(untrained, samples, "kitti", "garg")["abs_rel"]
    assert torch_row["abs_rel"] < LEARNT_FRACTION * untrained_abs_rel, (torch_row["abs_rel"], untrained_abs_rel)


@pytest.mark.slow
def test_a_few_hundred_steps(tmp_path):
    """The recipe at the issue's length: 320 steps (40 epochs of 8), ~3 min on one thread. Measured: loss
    3.28 -> 0.61 (0.19x, means of 4 steps); best online abs_rel 0.060, first evaluation's 0.166 (0.36x)."""
    run = train_stand_in(tmp_path, num_epochs=40)
    first, last = np.mean(run.losses[:4]), np.mean(run.losses[-4:])
    assert last < 0.3 * first, (first, last)
    assert run.best.value("abs_rel") < 0.5 * run.evaluations[0][1]["abs_rel"]

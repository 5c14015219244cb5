"""`loss` (silog with KITTI / NYU masks, and an all-masked batch) and `metrics` stages."""
import numpy as np
import pytest

import paddle_bts
import torch_ref
from alignment import twins
from alignment.harness import environment, run_case
from alignment.tolerances import TOLERANCES

SHAPE = (2, 1, 64, 128)
# (id, depth range, mask threshold): KITTI masks gt > 1.0, NYU gt > 0.1; "all_masked" has no valid pixel.
LOSS_CASES = [("loss-kitti", (0.5, 80.0), 1.0), ("loss-nyu", (0.05, 10.0), 0.1), ("loss-all_masked", (0.5, 1.0), 1.0)]


@pytest.mark.parametrize("case,depth_range,threshold", LOSS_CASES, ids=[c[0] for c in LOSS_CASES])
def test_loss_stage(case, depth_range, threshold):
    est = twins.seeded(SHAPE, 1, *depth_range)
    gt = twins.seeded(SHAPE, 2, *depth_range)
    mask = gt > threshold
    loss_t = torch_ref.silog_loss()(twins.to_torch(est), twins.to_torch(gt), twins.to_torch(mask))
    loss_p = paddle_bts.silog_loss()(twins.to_paddle(est), twins.to_paddle(gt), twins.to_paddle(mask))
    result = run_case("loss", case, {"silog": twins.numpy_of(loss_t)}, {"silog": twins.numpy_of(loss_p)},
                      TOLERANCES["loss"], meta={**environment(*twins.devices()), "valid pixels": int(mask.sum())})
    if not mask.any():
        # Defined behaviour: both frameworks give NaN (mean of nothing), never a number on one side only.
        assert np.isnan(twins.numpy_of(loss_t)) and np.isnan(twins.numpy_of(loss_p))
    assert result.passed, result.failure_message()


def _kitti_like(seed):
    """A 375x1242 sparse ground truth (uint16/256 quantised, ~30 % valid) and a 352x1216 KB-crop prediction
    with inf / NaN / out-of-range values the protocol must clip."""
    rng = np.random.default_rng(seed)
    gt = np.round(rng.uniform(0.5, 90.0, (375, 1242)) * 256) / 256
    gt[rng.random(gt.shape) > 0.3] = 0.0
    pred = rng.uniform(0.0, 95.0, (352, 1216))
    pred[0, :3] = [np.inf, np.nan, -1.0]
    return pred.astype(np.float32), gt.astype(np.float32)


def _nyu_like(seed):
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0.0, 11.0, (480, 640)).astype(np.float32)
    return (gt * rng.uniform(0.8, 1.25, gt.shape)).astype(np.float32), gt


METRIC_CASES = [("metrics-kitti-garg", "kitti", "garg"), ("metrics-kitti-eigen", "kitti", "eigen"),
                ("metrics-nyu-eigen", "nyu", "eigen"), ("metrics-nyu-nocrop", "nyu", None)]


@pytest.mark.parametrize("case,dataset,crop", METRIC_CASES, ids=[c[0] for c in METRIC_CASES])
def test_metrics_stage(case, dataset, crop):
    from paddle_bts import metrics as pm
    from torch_ref import metrics as tm
    make = _kitti_like if dataset == "kitti" else _nyu_like
    per_image = {"torch": [], "paddle": []}
    for seed in (0, 1):   # metrics are averaged over images, as the official evaluation does
        pred, gt = make(seed)
        per_image["torch"].append(tm.evaluate_image(twins.to_torch(pred), twins.to_torch(gt), dataset, crop))
        per_image["paddle"].append(pm.evaluate_image(twins.to_paddle(pred), twins.to_paddle(gt), dataset, crop))
    torch_out = {k: twins.numpy_of(v) for k, v in tm.average(per_image["torch"]).items()}
    paddle_out = {k: twins.numpy_of(v) for k, v in pm.average(per_image["paddle"]).items()}
    assert list(torch_out) == list(tm.METRIC_NAMES)
    result = run_case("metrics", case, torch_out, paddle_out, TOLERANCES["metrics"],
                      meta=environment(*twins.devices()))
    assert result.passed, result.failure_message()

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

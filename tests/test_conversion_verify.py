"""The verification criterion: scale-aware (a multiple of torch's own float32 noise), strict on NaN."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from bts_core.spec import ENCODERS
from conversion.convert import torch_to_paddle
from conversion.paddle_files import write_parts
from conversion.verify import FLOOR_ULPS, NOISE_FACTOR, check_output, verify
from torch_ref import seeded_reference_model


def outputs(noise, paddle_offset, size=1000, scale=80.0):
    """(paddle, torch fp32, torch fp64): fp32 sits `noise` from fp64, Paddle `paddle_offset` from fp32."""
    exact = np.linspace(0.5, scale, size)
    torch32 = (exact + noise).astype(np.float32)
    torch64 = exact.copy()
    torch64[1:] = torch32[1:]                        # the noise shows at one element, as a maximum does
    paddle_out = torch32.copy()
    paddle_out[-1] += np.float32(paddle_offset)
    return paddle_out, torch32, torch64


def test_differences_within_a_multiple_of_the_fp32_noise_pass():
    check = check_output("x", "final_depth", *outputs(noise=1e-3, paddle_offset=3e-3))
    assert check.passed and check.fp32_noise == pytest.approx(1e-3, rel=1e-3)
    assert check.tolerance == pytest.approx(NOISE_FACTOR * check.fp32_noise + FLOOR_ULPS * np.spacing(np.float32(80)))


def test_differences_beyond_it_fail():
    assert not check_output("x", "final_depth", *outputs(noise=1e-3, paddle_offset=6e-3)).passed


def test_exact_outputs_allow_a_few_ulps_and_no_more():
    one_ulp = float(np.spacing(np.float32(80.0)))
    assert check_output("x", "d", *outputs(noise=0.0, paddle_offset=one_ulp)).passed
    assert not check_output("x", "d", *outputs(noise=0.0, paddle_offset=100 * one_ulp)).passed


def test_one_noisy_pixel_does_not_loosen_the_bar_for_the_others():
    paddle_out, torch32, torch64 = outputs(noise=1.0, paddle_offset=0.0)   # like a near-zero LPG denominator
    torch64[1:] = torch32[1:] - 1e-6                                        # everywhere else: tiny noise
    paddle_out[: paddle_out.size // 2] += np.float32(1e-3)                  # half the pixels off by 1e-3
    check = check_output("x", "d", paddle_out, torch32, torch64)
    assert check.max_abs_diff < check.tolerance and not check.passed
    assert check.levels["median"][0] > check.levels["median"][2]


def test_nan_only_on_one_side_fails_and_on_both_sides_passes():
    paddle_out, torch32, torch64 = outputs(noise=0.0, paddle_offset=0.0)
    paddle_out[3] = np.nan
    assert not check_output("x", "d", paddle_out, torch32, torch64).passed
    torch32[3] = torch64[3] = np.nan
    assert check_output("x", "d", paddle_out, torch32, torch64).passed


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ENCODERS)
def test_noise_ratio_all_encoders(encoder, tmp_path):
    """The tolerance's measured basis: max |paddle - torch32| / fp32 noise per output, seeded models."""
    state = seeded_reference_model(encoder).state_dict()
    parts, report = torch_to_paddle(state, encoder)
    report.raise_if_bad()
    with ThreadPoolExecutor(1) as hasher:
        write_parts(parts, tmp_path, hasher)
    checks = verify(state, tmp_path, encoder, 80.0, "kitti")
    for c in checks:   # |paddle - torch32| / fp32 noise at each quantile
        print(encoder, c.input, c.output, {q: round(d / n, 2) if n else None for q, (d, n, _) in c.levels.items()})
    assert all(c.passed for c in checks), checks


"""Do the converted files compute what the source checkpoint computes? Two models, two inputs, five outputs.

torch_ref is built from the source state dict, paddle_bts from the files on disk (through
paddle_bts.load_weights: what was written is what is tested), both in eval mode on CPU in float32.
"""
import time
from dataclasses import asdict, dataclass

import numpy as np
import paddle
import torch
from skimage import data, transform

import paddle_bts
import torch_ref
from bts_core.cli import progress
from bts_core.spec import IMAGENET_MEAN, IMAGENET_STD, KITTI_FOCAL, NYU_FOCAL, OUTPUT_NAMES
from conversion.rules import normalise_torch_key


# Tolerance, scale-aware by construction: Paddle's float32 output may differ from torch's float32 output
# by NOISE_FACTOR times torch's own "fp32 noise", plus FLOOR_ULPS float32 spacings at the output's
# magnitude (for outputs float32 computes exactly: saturated sigmoids), at the median, p90, p99 and max.
# fp32 noise, per element: the largest |torch fp32 - torch fp64| over three fp32 runs, the input as is and
# JITTERED_RUNS times scaled by 1 + INPUT_JITTER * N(0, 1) (about one ulp); a single run undersamples
# ill-conditioned pixels (a near-zero LPG denominator, densenet121 on the photo: torch fp32 1.3e-3 from
# fp64 as run, 1.8e-2 with the jitter, Paddle 2.5e-2). Quantiles keep such a pixel (the photo's depth_8x8
# reaches 777 with densenet161) from setting the bar for every other pixel.
# Why not a fixed atol: float32 rounding alone moves torch's final_depth by 2e-5 m (mobilenetv2) up to
# 1.7e-2 m (resnet101, default BN statistics: layer4 activations 8e4, get_depth's logits median |.| 54, so
# the few pixels near 0 carry their rounding times 80 m * sigmoid'(0) = 20 m: saturation and cancellation)
# and 0.6 m with random BN statistics. An atol loose enough for resnet101 would pass a broken mobilenetv2.
# Basis (CPU): |paddle - torch32| / fp32 noise at the same quantile, 140 outputs (7 encoders x 5 outputs x
# both inputs x seeded_reference_model / default-initialised weights): median <= 1.37, p90 <= 1.45,
# p99 <= 1.81, max <= 2.71 (single-run noise: max up to 9.2); 4 leaves a margin of 1.5 at the max
# (tests/test_conversion_verify.py::test_noise_ratio_all_encoders, -m slow -s prints them). A conversion
# error moves far more: one decoder conv scaled by 1.001 puts mobilenetv2's final_depth at 16x the
# tolerance at the median, 8x at the max (tests/test_conversion_cli.py).
NOISE_FACTOR = 4.0
FLOOR_ULPS = 8
QUANTILES = {"median": 0.5, "p90": 0.9, "p99": 0.99, "max": 1.0}
JITTERED_RUNS = 2
INPUT_JITTER = 1e-7
CRITERION = (f"|paddle - torch fp32| <= {NOISE_FACTOR:g} x fp32 noise + {FLOOR_ULPS} float32 ulps of the output's "
             f"magnitude at the median, p90, p99 and max, where fp32 noise = max |torch fp32 - torch fp64| over the "
             f"input as is and {JITTERED_RUNS} copies jittered by {INPUT_JITTER:g} (measured ratio at most 2.71 "
             f"over 140 outputs: 7 encoders x 5 outputs x 2 inputs x 2 weight sets)")
GOLDEN_POINTS = 32        # Paddle output values kept in the manifest, to re-check without the source
PHOTO_SIZE = (128, 128)   # a multiple of 32 (BTS downsamples by 32), small enough for 2 CPU cores
SECOND_FOCAL = NYU_FOCAL   # the seeded batch's two samples are scaled differently


@dataclass(frozen=True)
class Input:
    name: str
    description: str
    image: np.ndarray     # N x 3 x H x W float32
    focal: np.ndarray     # N float32


def photographs(height, width, names=("astronaut",)):
    """Real photographs shipped with scikit-image, resized and ImageNet-normalised: N x 3 x H x W float32."""
    images = [transform.resize(getattr(data, name)(), (height, width), anti_aliasing=True) for name in names]
    batch = (np.stack(images) - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2)).astype(np.float32)


def verification_inputs():
    seeded = np.random.default_rng(0).standard_normal((2, 3, 64, 128), dtype=np.float32)
    photo = photographs(*PHOTO_SIZE)
    return [
        Input("seeded", f"np.random.default_rng(0) standard normal 2x3x64x128, focal {KITTI_FOCAL} and "
              f"{SECOND_FOCAL}", seeded, np.array([KITTI_FOCAL, SECOND_FOCAL], np.float32)),
        Input("photo", f"skimage.data.astronaut() resized to {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]}, ImageNet-"
              f"normalised, focal {KITTI_FOCAL}", photo, np.array([KITTI_FOCAL], np.float32)),
    ]


def torch_outputs(state, encoder, max_depth, dataset, inputs):
    """{(input name, run): five outputs} of torch_ref holding `state` (runs: see reference_runs)."""
    with torch.device("meta"):   # no random init for weights that are replaced at once
        model = torch_ref.BtsModel(encoder, max_depth, dataset)
    weights = {normalise_torch_key(k): v.float() if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(weights, strict=True, assign=True)
    return reference_runs(model, inputs, lambda image, focal: model(image, focal))


def reference_runs(model, inputs, forward):
    """{(input name, run): outputs of `forward(image, focal)`} with torch `model` in eval mode. Runs: "fp32";
    "fp32~k", the input jittered by about one float32 ulp (seeded), to sample float32's rounding spread;
    "fp64" (the model is left in float64)."""
    model.eval()
    results = {}
    with torch.no_grad():
        for inp in inputs:
            image, focal = torch.from_numpy(inp.image), torch.from_numpy(inp.focal)
            results[inp.name, "fp32"] = [o.numpy() for o in forward(image, focal)]
            for k in range(JITTERED_RUNS):
                jitter = 1 + INPUT_JITTER * torch.randn(image.shape, generator=torch.Generator().manual_seed(k))
                results[inp.name, f"fp32~{k}"] = [o.numpy() for o in forward(image * jitter, focal)]
        model.double()
        for inp in inputs:
            image, focal = torch.from_numpy(inp.image).double(), torch.from_numpy(inp.focal).double()
            results[inp.name, "fp64"] = [o.numpy() for o in forward(image, focal)]
    return results


def paddle_outputs(folder, encoder, max_depth, dataset, inputs):
    """{input name: five outputs} of paddle_bts loaded strictly from the files in `folder`."""
    with paddle.LazyGuard():     # no random init for weights that load_weights replaces
        model = paddle_bts.BtsModel(encoder, max_depth, dataset)
    paddle_bts.load_weights(model, str(folder))
    model.eval()
    with paddle.no_grad():
        return {inp.name: [o.numpy() for o in model(paddle.to_tensor(inp.image), paddle.to_tensor(inp.focal))]
                for inp in inputs}


@dataclass
class OutputCheck:
    input: str
    output: str
    shape: list
    max_abs_diff: float     # max |paddle - torch fp32|
    max_rel: float          # max_abs_diff / max |torch fp64|: the difference relative to the output's scale
    fp32_noise: float       # max |torch fp32 - torch fp64| over the plain and jittered fp32 runs
    tolerance: float        # at the maximum; `levels` has every quantile
    worst: float            # the largest difference / tolerance over the quantiles: pass when <= 1
    passed: bool
    levels: dict            # quantile name -> [|paddle - torch32|, fp32 noise, tolerance] at that quantile
    golden: list            # Paddle's values at GOLDEN_POINTS fixed positions


def golden_positions(size):
    return np.linspace(0, size - 1, GOLDEN_POINTS).round().astype(np.int64)


def max_abs_diff(a, b):
    """max |a - b| over finite elements; inf when a and b are non-finite at different places."""
    finite = np.isfinite(a)
    if not np.array_equal(finite, np.isfinite(b)):
        return float("inf")
    return float(np.abs(a[finite].astype(np.float64) - b[finite]).max(initial=0.0))


def _quantiles(values):
    return np.quantile(values, list(QUANTILES.values())) if values.size else np.zeros(len(QUANTILES))


def check_output(input_name, output_name, paddle_out, torch32, torch64, jittered=()):
    """Compares the quantiles of |paddle - torch32| with those of torch's own fp32 noise (module comment)."""
    same_pattern = np.array_equal(np.isfinite(paddle_out), np.isfinite(torch32))
    finite = np.isfinite(torch64) & np.logical_and.reduce([np.isfinite(t) for t in (torch32, *jittered)])
    reference = torch32[finite].astype(np.float64)
    diff = _quantiles(np.abs(paddle_out[finite] - reference)) if same_pattern else np.full(len(QUANTILES), np.inf)
    noise = _quantiles(np.max([np.abs(t[finite] - torch64[finite]) for t in (torch32, *jittered)], axis=0))
    scale = _quantiles(np.abs(torch64[finite]))
    tolerance = NOISE_FACTOR * noise + FLOOR_ULPS * np.spacing(scale.astype(np.float32))
    worst = float(np.max(np.where(diff > 0, diff / tolerance, 0.0)))
    return OutputCheck(
        input_name, output_name, list(paddle_out.shape), float(diff[-1]),
        float(diff[-1] / scale[-1]) if scale[-1] else float(diff[-1]), float(noise[-1]), float(tolerance[-1]),
        worst, bool(worst <= 1.0),
        {name: [float(d), float(n), float(t)] for name, d, n, t in zip(QUANTILES, diff, noise, tolerance)},
        [float(v) for v in paddle_out.ravel()[golden_positions(paddle_out.size)]])


def verify(state, folder, encoder, max_depth, dataset):
    """[OutputCheck] for every input and output: torch_ref(state) against paddle_bts(files in folder)."""
    inputs = verification_inputs()
    reference = torch_outputs(state, encoder, max_depth, dataset, inputs)
    converted = paddle_outputs(folder, encoder, max_depth, dataset, inputs)
    return check_outputs(inputs, OUTPUT_NAMES, converted, reference)


def verification_entry(desc, run_checks):
    """The manifest's "verification" entry: `run_checks()` -> [OutputCheck], timed under a one-step progress line."""
    start = time.perf_counter()
    with progress(total=1, desc=desc, bar_format="{desc} {elapsed}"):
        checks = run_checks()
    return {"criterion": CRITERION, "inputs": {i.name: i.description for i in verification_inputs()},
            "seconds": round(time.perf_counter() - start, 2), "passed": all(c.passed for c in checks),
            "checks": [asdict(c) for c in checks]}


def check_outputs(inputs, names, converted, reference):
    """[OutputCheck] per input and named output: `converted` {input name: outputs} against `reference`
    (reference_runs)."""
    return [check_output(inp.name, name, converted[inp.name][i], reference[inp.name, "fp32"][i],
                         reference[inp.name, "fp64"][i],
                         [reference[inp.name, f"fp32~{k}"][i] for k in range(JITTERED_RUNS)])
            for inp in inputs for i, name in enumerate(names)]


def recheck_golden(folder, encoder, max_depth, dataset, recorded):
    """Re-runs paddle_bts from `folder`; [(input, output, worst |now - recorded|, tolerance)] per recorded check."""
    inputs = verification_inputs()
    now = paddle_outputs(folder, encoder, max_depth, dataset, inputs)
    rows = []
    for check in recorded:
        values = now[check["input"]][OUTPUT_NAMES.index(check["output"])].ravel()
        worst = max_abs_diff(values[golden_positions(values.size)], np.asarray(check["golden"], np.float64))
        rows.append((check["input"], check["output"], worst, check["tolerance"]))
    return rows

"""The deploy path and the benchmark as a user meets them: --export-inference, the Paddle Inference runner,
the static-graph nearest resize, paddle_bts.runtime and `python -m bench` end to end on a tiny size.

mobilenetv2_bts at 64x128 throughout: the smallest encoder at the smallest size BTS accepts.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import paddle.inference
import paddle.nn as nn
import paddle.nn.functional as F
import pytest
from paddle.static import InputSpec

import paddle_bts
import paddle_bts.runtime
from alignment.harness import compare
from as_user import one_error_line
from alignment.tolerances import TOLERANCES
from bench import cli as bench_cli
from bench import report as bench_report
from bts_core import malloc
from bts_core.spec import KITTI_FOCAL, NYU_FOCAL, OUTPUT_NAMES
from conversion import torch2paddle
from conversion.export import export_inference
from conversion.manifest import sha256_file
from conversion.seeded import save_seeded_checkpoint
from paddle_bts.bts import (UPSAMPLE_KERNEL, local_planar_guidance, resize_nearest, upconv, upconvs_transposed,
                            upsample2_conv3x3, upsample_kernel)
from paddle_bts.inference import InferenceModel, bf16_unsupported_reason, make_config

ENCODER = "mobilenetv2_bts"
SIZE = (64, 128)
REPO = Path(__file__).resolve().parents[1]


def test_export_inference_writes_program_and_manifest_entry(tmp_path, capsys):
    checkpoint = save_seeded_checkpoint(ENCODER, tmp_path / "model")
    output = tmp_path / "paddle"
    argv = ["--checkpoint", str(checkpoint), "--encoder", ENCODER, "--output", str(output), "--no-verify",
            "--export-inference", "64x128"]
    assert torch2paddle.main(argv) == 0
    manifest = json.loads((output / "manifest.json").read_text())
    inference = manifest["inference"]
    assert inference["files"] == ["inference.json", "inference.pdiparams"]   # Paddle 3.3.1 writes a PIR program
    for name in inference["files"]:
        assert inference["sha256"][name] == sha256_file(output / name) == manifest["files"][name]["sha256"]
        assert inference["bytes"][name] == (output / name).stat().st_size
    assert inference["input_spec"] == [{"name": "image", "shape": [None, 3, 64, 128], "dtype": "float32"},
                                       {"name": "focal", "shape": [None], "dtype": "float32"}]
    assert inference["outputs"] == list(OUTPUT_NAMES)
    assert "## Paddle Inference" in (output / "README.md").read_text()
    # what was exported runs, from the weights that were written
    outputs = InferenceModel(output)(np.zeros((1, 3, *SIZE), np.float32), np.array([KITTI_FOCAL], np.float32))
    assert [o.shape for o in outputs.values()] == [(1, 1, *SIZE)] * 5
    assert all(np.isfinite(o).all() for o in outputs.values())


@pytest.mark.parametrize("value", ["65x128", "64x100", "0x128", "big", "64x", "64*128"])
def test_bad_export_size_is_one_line_exit_2_before_any_work(value, tmp_path, capsys):
    output = tmp_path / "out"
    argv = ["--checkpoint", str(tmp_path / "missing"), "--encoder", ENCODER, "--output", str(output),
            "--export-inference", value]
    assert torch2paddle.main(argv) == 2
    one_error_line(capsys, "--export-inference")   # reported before the missing checkpoint: checked first
    assert not output.exists()


@pytest.fixture(scope="module")
def eager_model():
    paddle.seed(0)
    return paddle_bts.build_model(ENCODER).eval()


@pytest.fixture(scope="module")
def exported(eager_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("exported")
    export_inference(eager_model, folder, *SIZE)
    return folder


def images(batch, seed=1):
    return np.random.default_rng(seed).standard_normal((batch, 3, *SIZE), dtype=np.float32)


@pytest.mark.parametrize("onednn", [True, False], ids=["onednn", "native"])
def test_inference_runner_equals_paddle_eager(eager_model, exported, onednn):
    assert type(eager_model.forward).__name__ == "method"     # exporting (the fixture) leaves the model eager
    runner = InferenceModel(exported, onednn=onednn)
    x, focal = images(3), np.array([KITTI_FOCAL, NYU_FOCAL, 300.0], np.float32)   # batch 3: the batch is dynamic
    got = runner(x, focal)
    with paddle.no_grad():
        want = dict(zip(OUTPUT_NAMES, (o.numpy() for o in eager_model(paddle.to_tensor(x), paddle.to_tensor(focal)))))
    for name in OUTPUT_NAMES:
        row = compare(want[name], got[name], TOLERANCES["model"])
        assert row["passed"], (name, row)
    assert not np.allclose(got["final_depth"][0], got["final_depth"][1])   # focal scaling per sample


BF16_MISSING = bf16_unsupported_reason()


@pytest.mark.parametrize("kwargs, message", [
    ({"precision": "fp16"}, "choose fp32 or bf16"),
    ({"precision": "bf16", "onednn": False}, "oneDNN only"),
])
def test_precision_errors_are_one_line(exported, kwargs, message):
    with pytest.raises(ValueError, match=message) as error:
        InferenceModel(exported, **kwargs)
    assert "\n" not in str(error.value)


@pytest.mark.skipif(BF16_MISSING is None, reason="this CPU runs bf16: nothing to refuse")
def test_bf16_is_refused_where_the_cpu_lacks_it(exported):
    """Paddle itself would log 'CPU does not support BFLOAT16 calculations' and run fp32 under a bf16 label."""
    with pytest.raises(ValueError, match="no bf16 support") as error:
        InferenceModel(exported, precision="bf16")
    assert "\n" not in str(error.value)


@pytest.mark.skipif(BF16_MISSING is not None, reason=f"bf16: {BF16_MISSING}")
def test_bf16_runs_and_differs_from_fp32(exported):
    x, focal = images(2), np.array([KITTI_FOCAL, NYU_FOCAL], np.float32)
    fp32 = InferenceModel(exported)(x, focal)["final_depth"]
    bf16_model = InferenceModel(exported, precision="bf16")
    assert "bf16" in bf16_model.describe()
    bf16 = bf16_model(x, focal)["final_depth"]
    assert np.isfinite(bf16).all() and bf16.shape == fp32.shape
    assert not np.array_equal(bf16, fp32)   # bf16 rounding ran: not fp32 under another name


def test_nyu_program_takes_the_image_only(tmp_path):
    model = paddle_bts.build_model(ENCODER, dataset="nyu").eval()
    info = export_inference(model, tmp_path, *SIZE)
    assert [s["name"] for s in info["input_spec"]] == ["image"]
    runner = InferenceModel(tmp_path)
    assert runner.input_names == ["image"]
    assert runner(images(2), np.array([1.0, 2.0], np.float32))["final_depth"].shape == (2, 1, *SIZE)


class Resizes(nn.Layer):
    def forward(self, x):
        return [resize_nearest(x, r) for r in (2, 8, 0.25, 0.5)]


@pytest.mark.parametrize("onednn", [True, False], ids=["onednn", "native"])
def test_resize_nearest_static_form_is_bit_identical_and_has_no_nearest_interp(tmp_path, onednn):
    """The export's resize (repeat_pixels, a strided slice) equals eager's F.interpolate bit for bit, as
    traced and as Paddle Inference runs it."""
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 64), dtype=np.float32)
    spec = [InputSpec([None, 3, 32, 64], "float32", "x")]
    static = paddle.jit.to_static(Resizes(), input_spec=spec, full_graph=True)
    want = [F.interpolate(paddle.to_tensor(x), scale_factor=r, mode="nearest").numpy() for r in (2, 8, 0.25, 0.5)]
    for r, got, expected in zip((2, 8, 0.25, 0.5), static(paddle.to_tensor(x)), want):
        assert np.array_equal(got.numpy(), expected), r
    assert "nearest_interp" not in str(static.forward.concrete_program.main_program)
    paddle.jit.save(static, str(tmp_path / "inference"), input_spec=spec)
    for got, expected in zip(run_predictor(tmp_path, [x], onednn), want):
        assert np.array_equal(got, expected)


def run_predictor(folder, inputs, onednn):
    # explicit paths, not program_files: a program without parameters (Resizes) has no .pdiparams file
    predictor = paddle.inference.create_predictor(make_config(folder / "inference.json",
                                                              folder / "inference.pdiparams", onednn=onednn))
    for name, array in zip(predictor.get_input_names(), inputs):
        handle = predictor.get_input_handle(name)
        handle.reshape(list(array.shape))
        handle.copy_from_cpu(array)
    predictor.run()
    return [predictor.get_output_handle(name).copy_to_cpu() for name in predictor.get_output_names()]


def official_upconv(x, weight):
    """The official upconv without its ELU, written out: nearest x2 upsampling, then the 3 x 3 convolution."""
    return F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), weight, padding=1)


@pytest.mark.parametrize("onednn", [True, False], ids=["onednn", "native"])
def test_upconv_static_form_is_the_upsampled_conv_within_its_rounding(tmp_path, onednn):
    """An export's upconv is one transposed convolution (stride 2) with the 3 x 3 kernel's taps folded to 4 x 4
    (upsample2_conv3x3): the same function as eager's nearest x2 + 3 x 3 convolution, rounded otherwise.
    In float64 the fold is exact (1e-12 of max |output|: the identity, not a tolerance for fp32). Bound in fp32:
    its distance from float64 at most twice eager's own fp32 distance, measured here on the same input: summing
    taps first adds one rounding to some products and removes products from others. Measured 0.27-0.63x over
    10 seeds (AMD EPYC, oneDNN and native kernels); the phase form it replaced measured 1.05-1.1x."""
    layer = upconv(8, 5)
    x = np.random.default_rng(3).standard_normal((2, 8, 12, 20), dtype=np.float32)
    with paddle.no_grad():
        eager = layer(paddle.to_tensor(x)).numpy()
        weight = layer.conv.weight.astype("float64")
        exact = F.elu(official_upconv(paddle.to_tensor(x, dtype="float64"), weight)).numpy()
        folded = upsample2_conv3x3(paddle.to_tensor(x, dtype="float64"), upsample_kernel(weight))
    assert np.abs(F.elu(folded).numpy() - exact).max() <= 1e-12 * np.abs(exact).max()
    spec = [InputSpec([None, 8, 12, 20], "float32", "x")]
    with upconvs_transposed(layer):
        static = paddle.jit.to_static(layer.forward, input_spec=spec, full_graph=True)
        program = str(static.concrete_program.main_program)
        paddle.jit.save(static, str(tmp_path / "inference"), input_spec=spec)
    # no upsampled input, the folded kernel a parameter (not folded in the graph: bf16's passes broke that),
    # one transposed convolution; the layer is as it was
    assert "nearest_interp" not in program and "matmul" not in program and program.count("conv2d_transpose") == 1
    assert not hasattr(layer, UPSAMPLE_KERNEL) and [n for n, _ in layer.named_parameters()] == ["conv.weight"]
    [got] = run_predictor(tmp_path, [x], onednn)
    assert got.shape == eager.shape == (2, 5, 24, 40)
    eager_error = np.abs(eager - exact).max()
    assert 0 < eager_error and np.abs(got - exact).max() <= 2 * eager_error


def test_upconv_fold_rounds_to_bf16_no_worse_than_the_official_form():
    """bf16 exports run the folded 4 x 4 kernel with inputs and weights rounded to bf16 (oneDNN accumulates in
    fp32). Simulated on any CPU (Paddle's round-to-nearest-even cast, float64 sums): rounding each folded tap once
    must not cost more than rounding the nine official ones, since the bf16 deploy case (a CPU with bf16 only)
    bounds the whole network. Bound: the folded form's max distance from float64 at most twice the official form's
    on the same input, as for fp32 above; measured 0.91-1.27x (mean |error| 0.99-1.02x) over 10 seeds, 64 -> 32
    channels."""
    def bf16(tensor):
        return paddle.cast(paddle.cast(paddle.cast(tensor, "float32"), "bfloat16"), "float64")
    paddle.seed(5)
    layer = upconv(64, 32)
    x = paddle.to_tensor(np.random.default_rng(5).standard_normal((2, 64, 12, 20)), dtype="float64")
    weight = layer.conv.weight.astype("float64")
    with paddle.no_grad():
        exact = official_upconv(x, weight)
        official = official_upconv(bf16(x), bf16(weight))
        folded = upsample2_conv3x3(bf16(x), bf16(upsample_kernel(weight)))
    official_error = float((official - exact).abs().max())
    assert 0 < official_error and float((folded - exact).abs().max()) <= 2 * official_error


@pytest.mark.parametrize("ratio", [8, 4, 2])
def test_lpg_static_form_is_bit_identical_to_eager(ratio):
    """An export's LPG repeats the plane coefficients with repeat_pixels, eager with repeat_interleave."""
    lpg = local_planar_guidance(ratio)
    plane = paddle.to_tensor(np.random.default_rng(ratio).uniform(0.1, 1.0, (2, 4, 6, 10)).astype(np.float32))
    static = paddle.jit.to_static(lpg, input_spec=[InputSpec([None, 4, 6, 10], "float32", "plane"), None],
                                  full_graph=True)
    program = str(static.forward.concrete_program.main_program)
    assert "repeat_interleave" not in program and "conv2d_transpose" in program
    assert np.array_equal(static(plane, None).numpy(), local_planar_guidance(ratio)(plane, None).numpy())


def test_runtime_configure_reports_what_it_set():
    """In a fresh process: what configure() set, and that it turns the oneDNN convolutions on and off."""
    code = ("import json, paddle_bts.runtime as r, paddle_bts.onednn_conv as c; on = r.configure(threads=1); "
            "a = c.enabled(); off = r.configure(threads=1, onednn=False); print(json.dumps([on, a, off, c.enabled()]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    settings, enabled_after_on, off, enabled_after_off = json.loads(out.stdout.strip().splitlines()[-1])
    assert settings["threads"] == 1 and settings["onednn_conv"] is True and enabled_after_on
    assert off["onednn_conv"] is False and not enabled_after_off
    assert ("MKL_DEBUG_CPU_TYPE" in settings) == (paddle_bts.runtime.cpu_vendor() == "AuthenticAMD")
    assert settings["malloc"] == malloc.keep_freed_memory()     # KEPT, or the line saying why not


def test_bench_runs_end_to_end_on_a_tiny_size(tmp_path):
    argv = ["--sizes", "64x128", "--train-size", "64x128", "--repeats", "1", "--warmup", "0",
            "--encoder", ENCODER, "--torch-device", "cpu", "--paddle-device", "cpu", "--out", str(tmp_path),
            "--backends", "torch-cpu,paddle-cpu,paddle-inference-cpu"]   # three workers: the test stays short
    assert bench_cli.main(argv) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.csv", "bench.md", "bench.png"]
    import pandas as pd
    table = pd.read_csv(tmp_path / "bench.csv")
    assert set(table["key"]) == {"torch-cpu", "paddle-cpu", "paddle-inference-cpu"}
    assert set(table["task"]) == {"forward 1x3x64x128", "train step 2x3x64x128"}
    assert (table["median_s"] > 0).all() and (table["repeats"] == 1).all()
    assert "train step" not in set(table[table["key"] == "paddle-inference-cpu"]["task"])
    report = (tmp_path / "bench.md").read_text()
    assert "x torch eager cpu" in report and "## Compute floor" in report
    # every CPU row has its ratio to the floor: its median over the task's FLOPs at this CPU's peak
    assert table["x floor"].notna().all() and (table["x floor"] > 0).all()
    ratio = table["median_s"] / table["x floor"]   # the floor each row was divided by
    spread = ratio.groupby(table["task"]).agg(lambda v: v.max() / v.min() - 1)
    assert (spread < 1e-9).all()   # one floor per task, whichever backend
    # the peak: the faster of two GEMM measurements, before and after the backends
    measured = re.search(r"best of 3, ([\d.]+) before the backends and ([\d.]+) after the backends: the faster "
                         r"= \*\*([\d.]+) GFLOP/s", report)
    assert measured and float(measured[3]) == max(float(measured[1]), float(measured[2]))
    # a Paddle Inference export ran: the note that it does fewer FLOPs is there; without one it would not be
    assert "export does fewer" in report
    if malloc.unsupported_reason() is None:     # every worker kept freed memory (bench --malloc keep)
        assert set(table["settings"].map(lambda text: json.loads(text)["malloc"])) == {malloc.KEPT}
    floor = {"peak": {k: 1.0 for k in ("isa peak GFLOP/s", "measured GEMM GFLOP/s", "floor peak GFLOP/s")}
             | {"cores": 2, "FMA units per core": 2, "fp32 lanes": 8, "isa": "AVX2+FMA", "FLOPs per lane": 2,
                "clock GHz": 2.0, "measured by": "gemm", "bf16 hardware": []}, "tasks": {}}
    assert not any("export does fewer" in line for line in bench_report.floor_lines(floor, exported=False))


def test_isa_peak_counts_cores_fma_units_lanes_and_clock():
    from bench.floor import isa_peak
    intel = isa_peak(2, {"avx2", "fma", "avx512f", "amx_bf16"}, 2.6)   # the Intel machine of issue 14
    assert intel["isa peak GFLOP/s"] == pytest.approx(2 * 2 * 16 * 2 * 2.6)   # 332.8
    assert intel["bf16 hardware"] == ["amx_bf16"]
    amd = isa_peak(2, {"avx", "avx2", "fma"}, 2.445)
    assert amd["isa peak GFLOP/s"] == pytest.approx(2 * 2 * 8 * 2 * 2.445) and amd["isa"] == "AVX2+FMA"


@pytest.mark.parametrize("argv,message", [(["--sizes", "65x128"], "multiples of 32"),
                                          (["--backends", "tpu"], "unknown 'tpu'")])
def test_bench_bad_arguments_are_one_line_exit_2(argv, message, tmp_path, capsys):
    assert bench_cli.main([*argv, "--out", str(tmp_path)]) == 2
    one_error_line(capsys, message)

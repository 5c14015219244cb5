"""bench.profile: oneDNN's per-primitive log of one Paddle Inference call, parsed and summed."""
import re

import pandas as pd
import pytest

from bench import profile

# Lines as oneDNN 3.6 writes them (ONEDNN_VERBOSE=1), and one it writes at creation
CONV = ("onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx2,forward_inference,src:f32:a:blocked:"
        "acdb::f0 wei:f32:a:blocked:Acdb16a::f0 bia:undef::undef::: dst:f32:a:blocked:acdb::f0,,alg:convolution_"
        "direct,mb1_ic64oc128_ih176oh177kh2sh1dh0ph1_iw352ow353kw2sw1dw0pw1,30.35")
INTERLEAVE = ("onednn_verbose,v1,primitive,exec,cpu,deconvolution,conv:any+x64:gemm:jit,forward_inference,src:f32:a:"
              "blocked:abcd::f0 wei:f32:a:blocked:acbde::f0 bia:undef::undef::: dst:f32:a:blocked:abcd::f0,,alg:"
              "deconvolution_direct,g32mb1_ic128oc32_ih177oh352kh2sh2dh0ph1_iw353ow704kw2sw2dw0pw1,12.33")
UPCONV = ("onednn_verbose,v1,primitive,exec,cpu,deconvolution,brg_deconv:avx2+brgconv_strided:avx2,forward_inference,"
          "src:f32:a:blocked:acdb::f0 wei:f32:a:blocked:Acdb16a::f0 bia:undef::undef::: dst:f32:a:blocked:acdb::f0,,"
          "alg:deconvolution_direct,mb1_ic64oc32_ih176oh352kh4sh2dh0ph1_iw352ow704kw4sw2dw0pw1,22.35")
REPEAT = ("onednn_verbose,v1,primitive,exec,cpu,deconvolution,brg_deconv:avx2+brgconv_strided:avx2,forward_inference,"
          "src:f32:a:blocked:acdb::f0 wei:f32:ap:blocked:Acdb8a::f0 bia:undef::undef::: dst:f32:a:blocked:acdb::f0,,"
          "alg:deconvolution_direct,mb1_ic1oc1_ih44oh352kh8sh8dh0ph0_iw88ow704kw8sw8dw0pw0,0.81")
CREATED = "onednn_verbose,v1,primitive,create:cache_miss,cpu,eltwise,jit:avx2,forward_training,data:f32::blocked:abcd::f0,,alg:eltwise_elu,1x32x352x704,0.02"


def test_lines_become_rows_with_their_work():
    table = profile.primitives([CONV, "unrelated output", CREATED, INTERLEAVE, UPCONV])
    assert list(table["kind"]) == ["convolution", "deconvolution", "deconvolution"]
    assert list(table["ms"]) == [30.35, 12.33, 22.35]
    # per output pixel (177 x 353) 64 x 128 x 2 x 2; a deconvolution's kernel visits its input pixels:
    # the interleave 128 x (32 / 32) x 2 x 2 per 177 x 353, the upconv 64 x 32 x 4 x 4 per 176 x 352
    macs = [64 * 128 * 4 * 177 * 353, 128 * 4 * 177 * 353, 64 * 32 * 16 * 176 * 352]
    assert table["multiply_adds"].tolist() == macs
    assert table["GFLOP"].tolist() == pytest.approx([2 * m / 1e9 for m in macs])
    assert table["outputs"].tolist() == [128 * 177 * 353, 32 * 352 * 704, 32 * 352 * 704]


def test_a_transposed_convolution_is_arithmetic_and_a_pixel_repeat_is_not():
    # repeat_pixels (LPG 8 x 8): one product by 1.0 per output value, a copy. The old phase interleave did
    # four per value (three by zero) and counted as arithmetic.
    table = profile.primitives([CONV, INTERLEAVE, UPCONV, REPEAT])
    assert table["multiply_adds"][3] == table["outputs"][3] == 352 * 704
    assert profile.arithmetic(table).tolist() == [True, True, True, False]


def test_the_report_splits_the_call_into_primitives_and_the_rest():
    table = profile.primitives([CONV, UPCONV, REPEAT])
    meta = {"encoder": "e", "size": "352x704", "threads": 2, "cpu": "c", "paddle": "p", "timed": 3, "median_ms": 60.0,
            "malloc": "m"}
    # Paddle's operators for the same call: the two convolutions' ops (54.0 ms around 53.5 ms of primitives) and
    # two native ops (2.5 ms); the rest of the 60 ms wall (3.5 ms) is the executor's
    ops = pd.DataFrame({"op": ["onednn_op.conv2d", "pd_op.divide", "onednn_op.conv2d_transpose", "pd_op.divide"],
                        "ms": [31.0, 1.0, 23.0, 1.5]})
    text = profile.report(table, ops, 60.0, meta)
    assert ("in oneDNN primitives 53.5 ms (89.2%); outside them 6.5 ms: native ops 2.5 ms; around the primitives "
            "0.5 ms; executor, feed and fetch 3.5 ms") in text
    by_op = text.split("## Paddle's operators by type")[1]
    assert re.search(r"onednn_op.conv2d\s+\|\s+1 \|\s+31.00", by_op)
    assert re.search(r"pd_op.divide\s+\|\s+2 \|\s+2.50", by_op)
    arithmetic = table["GFLOP"][0] + table["GFLOP"][1]
    assert f"{arithmetic:.1f} GFLOP in 52.7 ms, {arithmetic / 52.7 * 1e3:.1f} GFLOP/s" in text
    others = text.split("## The ten costliest primitives other than convolutions")[1]
    assert "mb1_ic1oc1_ih44oh352" in others and "mb1_ic64oc32" not in others


def test_a_real_call_is_logged_and_the_log_is_off_afterwards(tmp_path, capfd):
    assert profile.main(["--encoder", "mobilenetv2_bts", "--size", "64x160", "--threads", "1", "--warmup", "1",
                         "--timed", "1", "--out", str(tmp_path / "p.md")]) == 0
    text = (tmp_path / "p.md").read_text()
    assert "| convolution " in text and "GFLOP/s" in text
    # Paddle's profiler saw the same call: its three parts add up to the time outside the primitives
    split = re.search(r"outside them ([\d.]+) ms: native ops ([\d.-]+) ms; around the primitives ([\d.-]+) ms; "
                      r"executor, feed and fetch ([\d.-]+) ms", text)
    outside, *parts = map(float, split.groups())
    assert parts[0] > 0 and parts[2] > 0 and sum(parts) == pytest.approx(outside, abs=0.2)   # each rounded to 0.1
    assert "onednn_op.conv2d" in text.split("## Paddle's operators by type")[1]
    assert "onednn_verbose" not in capfd.readouterr().out    # the log went to the report, not to the terminal


def test_bad_size_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        profile.parse_args(["--size", "350x700"])
    assert exit_.value.code == 2 and "--size 350x700: height and width must be positive multiples" in capsys.readouterr().err

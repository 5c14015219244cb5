"""bench.profile: oneDNN's per-primitive log of one Paddle Inference call, parsed and summed."""
import pytest

from bench import profile

# Two lines as oneDNN 3.6 writes them (ONEDNN_VERBOSE=1), and one it writes at creation
CONV = ("onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx2,forward_inference,src:f32:a:blocked:"
        "acdb::f0 wei:f32:a:blocked:Acdb16a::f0 bia:undef::undef::: dst:f32:a:blocked:acdb::f0,,alg:convolution_"
        "direct,mb1_ic64oc128_ih176oh177kh2sh1dh0ph1_iw352ow353kw2sw1dw0pw1,30.35")
INTERLEAVE = ("onednn_verbose,v1,primitive,exec,cpu,deconvolution,conv:any+x64:gemm:jit,forward_inference,src:f32:a:"
              "blocked:abcd::f0 wei:f32:a:blocked:acbde::f0 bia:undef::undef::: dst:f32:a:blocked:abcd::f0,,alg:"
              "deconvolution_direct,g32mb1_ic128oc32_ih177oh352kh2sh2dh0ph1_iw353ow704kw2sw2dw0pw1,12.33")
CREATED = "onednn_verbose,v1,primitive,create:cache_miss,cpu,eltwise,jit:avx2,forward_training,data:f32::blocked:abcd::f0,,alg:eltwise_elu,1x32x352x704,0.02"


def test_lines_become_rows_with_their_work():
    table = profile.primitives([CONV, "unrelated output", CREATED, INTERLEAVE])
    assert list(table["kind"]) == ["convolution", "deconvolution"]
    assert list(table["ms"]) == [30.35, 12.33]
    # 2 x 64 x 128 x 2 x 2 per output pixel (177 x 353); the deconvolution: 2 x 128 x (32 / 32) x 2 x 2 per input pixel
    assert table["GFLOP"].tolist() == pytest.approx([2 * 64 * 128 * 4 * 177 * 353 / 1e9, 2 * 128 * 4 * 177 * 353 / 1e9])


def test_the_report_splits_the_call_into_primitives_and_the_rest():
    table = profile.primitives([CONV, INTERLEAVE])
    meta = {"encoder": "e", "size": "352x704", "threads": 2, "cpu": "c", "paddle": "p", "timed": 3, "median_ms": 50.0,
            "malloc": "m"}
    text = profile.report(table, 50.0, meta)
    assert "in oneDNN primitives 42.7 ms (85.4%); outside them (Paddle's native ops, its executor) 7.3 ms" in text
    assert f"{table['GFLOP'][0] / 30.35 * 1e3:.1f} GFLOP/s" in text


def test_a_real_call_is_logged_and_the_log_is_off_afterwards(tmp_path, capfd):
    assert profile.main(["--encoder", "mobilenetv2_bts", "--size", "64x160", "--threads", "1", "--warmup", "1",
                         "--timed", "1", "--out", str(tmp_path / "p.md")]) == 0
    text = (tmp_path / "p.md").read_text()
    assert "| convolution " in text and "GFLOP/s" in text
    assert "onednn_verbose" not in capfd.readouterr().out    # the log went to the report, not to the terminal


def test_bad_size_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        profile.parse_args(["--size", "350x700"])
    assert exit_.value.code == 2 and "--size 350x700: height and width must be positive multiples" in capsys.readouterr().err

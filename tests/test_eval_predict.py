"""Evaluation (torch_ref.evaluate, paddle_bts.evaluate) and prediction (paddle_bts.predict, torch_ref.predict).

Reference: shared/reference/official_bts_spec.md ("Evaluation"): KB paste-back, clipping, valid mask,
Garg / Eigen crops, metrics per image then averaged, images without ground truth skipped; the official
test script writes uint16 PNGs (metres x 256 KITTI, x 1000 NYU). `official_eval` re-states the
per-image protocol in numpy (float64 metrics) independently of the metric mirrors.
mobilenetv2_bts and images of at most 64x160 throughout: CPU time is shared.
"""
import numpy as np
import paddle
import pytest
import torch
from PIL import Image

import torch_ref
from as_user import run_cli
from bts_data import BtsSamples, DataError, write_tree
from bts_commands.arguments import DEFAULT_FOCAL
from bts_commands.predict import prediction_input
from bts_core.depth_files import depth_png
from bts_core.spec import METRIC_NAMES
from conversion.convert import torch_to_paddle
from paddle_bts import evaluate as paddle_eval
from paddle_bts import predict as paddle_predict
from paddle_bts.checkpoint import PART_FILES
from torch_ref import evaluate as torch_eval
from torch_ref import predict as torch_predict

ENCODER = "mobilenetv2_bts"
SMALL_KITTI = (64, 160)   # multiples of 32: whole frames go through the network with --no-kb-crop
OFFICIAL_RTOL = 1e-5      # float32 pipeline vs the float64 re-statement (as tests/test_metrics.py)


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A seeded torch_ref model (BN calibrated on a small seeded batch) as an official checkpoint, and the
    same weights converted to a PaddleDepth folder."""
    folder = tmp_path_factory.mktemp("weights")
    calibration = np.random.default_rng(3).standard_normal((2, 3, 64, 96)).astype(np.float32)
    model = torch_ref.seeded_reference_model(ENCODER, seed=0, dataset="kitti", calibration=calibration)
    torch_ref.save_official_checkpoint(model, str(folder / "model"))
    parts, report = torch_to_paddle(model.state_dict(), ENCODER)
    report.raise_if_bad()
    (folder / "paddle").mkdir()
    for part, name in PART_FILES.items():
        paddle.save(parts[part], str(folder / "paddle" / name))
    return {"model": model, "checkpoint": folder / "model", "paddle": folder / "paddle"}


@pytest.fixture(scope="module")
def small_kitti(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("small_kitti"), "kitti", 3, seed=4, size=SMALL_KITTI, without_gt=1)


@pytest.fixture(scope="module")
def kitti(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("kitti"), "kitti", 2, seed=5, without_gt=1)


@pytest.fixture(scope="module")
def nyu(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("nyu"), "nyu", 2, seed=6)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Two photographs-to-be: one needing padding to 64x96, one a JPEG already a multiple of 32."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(7)
    Image.fromarray((rng.random((50, 70, 3)) * 255).astype(np.uint8)).save(folder / "a.png")
    Image.fromarray((rng.random((64, 96, 3)) * 255).astype(np.uint8)).save(folder / "b.jpg")
    return folder


def eval_args(tree, *extra):
    return ["--encoder", ENCODER, "--dataset", tree.dataset, "--data-path", str(tree.data_path),
            "--gt-path", str(tree.gt_path), "--filenames-file", str(tree.test), *map(str, extra)]


def one_error_line(capsys, *fragments):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# --------------------------------------------------------------------------------- official protocol
def official_eval(pred, gt, dataset, crop, kb_crop, min_depth=1e-3, max_depth=80.0):
    """One image's metrics as official bts_eval.py computes them (float64 metrics)."""
    height, width = gt.shape
    if kb_crop:
        frame = np.zeros(gt.shape, np.float32)
        top, left = height - 352, int((width - 1216) / 2)
        frame[top:top + 352, left:left + 1216] = pred
        pred = frame
    pred = pred.astype(np.float32).copy()
    pred[pred < min_depth] = min_depth
    pred[pred > max_depth] = max_depth
    pred[np.isinf(pred)] = max_depth
    pred[np.isnan(pred)] = min_depth
    valid = (gt > min_depth) & (gt < max_depth)
    window = np.zeros(gt.shape, bool)
    if crop == "garg":
        window[int(0.40810811 * height):int(0.99189189 * height), int(0.03594771 * width):int(0.96405229 * width)] = 1
    elif dataset == "kitti":
        window[int(0.3324324 * height):int(0.91351351 * height), int(0.0359477 * width):int(0.96405229 * width)] = 1
    else:
        window[45:471, 41:601] = 1
    valid &= window
    g, p = gt[valid].astype(np.float64), pred[valid].astype(np.float64)
    thresh = np.maximum(g / p, p / g)
    err = np.log(p) - np.log(g)
    return {"silog": np.sqrt(np.mean(err ** 2) - np.mean(err) ** 2) * 100, "abs_rel": np.mean(np.abs(g - p) / g),
            "log10": np.mean(np.abs(np.log10(p) - np.log10(g))), "rms": np.sqrt(np.mean((g - p) ** 2)),
            "sq_rel": np.mean((g - p) ** 2 / g), "log_rms": np.sqrt(np.mean((np.log(g) - np.log(p)) ** 2)),
            "d1": np.mean(thresh < 1.25), "d2": np.mean(thresh < 1.25 ** 2), "d3": np.mean(thresh < 1.25 ** 3)}


def official_mean(per_image):
    return {k: float(np.mean([m[k] for m in per_image])) for k in per_image[0]}


def assert_metrics_close(got, expected, rtol):
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=rtol), (name, got[name], value)


class TorchRamp(torch.nn.Module):
    """A stand-in depth network, elementwise: depth = gain(x) x (1 + 0.05 x red channel), where the gain
    rises from left to right, so a mirrored prediction differs from the plain one."""

    def __init__(self, height, width):
        super().__init__()
        gain = np.linspace(2.0, 70.0, width, dtype=np.float32)[None, :] * np.ones((height, 1), np.float32)
        self.register_buffer("gain", torch.from_numpy(gain))

    def forward(self, image, focal):
        return (None, None, None, None, self.gain * (1.0 + 0.05 * image[:, :1]))


class PaddleRamp(paddle.nn.Layer):
    def __init__(self, height, width):
        super().__init__()
        self.gain = paddle.to_tensor(np.linspace(2.0, 70.0, width, dtype=np.float32)[None, :]
                                     * np.ones((height, 1), np.float32))

    def forward(self, image, focal):
        return (None, None, None, None, self.gain * (1.0 + 0.05 * image[:, :1]))


def ramp_prediction(image, flip_average):
    """What a Ramp model predicts for one 3 x H x W image, in numpy."""
    gain = np.linspace(2.0, 70.0, image.shape[2], dtype=np.float32)[None, :]
    pred = gain * (np.float32(1.0) + np.float32(0.05) * image[0])
    if flip_average:
        mirrored = gain * (np.float32(1.0) + np.float32(0.05) * image[0][:, ::-1])
        pred = np.float32(0.5) * (pred + mirrored[:, ::-1])
    return pred


# ------------------------------------------------------------------------------------------ evaluate
@pytest.mark.parametrize("flip_average", [False, True], ids=["plain", "flip"])
@pytest.mark.parametrize("dataset,crop", [("kitti", "garg"), ("nyu", "eigen")])
def test_evaluate_follows_official_protocol(kitti, nyu, dataset, crop, flip_average):
    """KB paste-back (KITTI), crops, skipped images without ground truth, flip averaging: both frameworks'
    evaluate() against the numpy protocol, on a stand-in model whose prediction is known exactly."""
    tree = kitti if dataset == "kitti" else nyu
    samples = BtsSamples(tree.config("test"))
    height, width = (352, 1216) if dataset == "kitti" else (480, 640)
    expected = [official_eval(ramp_prediction(samples.sample(i)["image"], flip_average), samples.ground_truth(i),
                              dataset, crop, kb_crop=dataset == "kitti", max_depth=80.0 if dataset == "kitti" else 10.0)
                for i in range(len(samples)) if samples.ground_truth(i) is not None]
    for module, model in ((torch_eval, TorchRamp(height, width)), (paddle_eval, PaddleRamp(height, width))):
        got = module.evaluate(model, samples, dataset, crop, flip_average=flip_average)
        assert got["count"] == len(expected) == (1 if dataset == "kitti" else 2)
        assert_metrics_close(got, official_mean(expected), OFFICIAL_RTOL)


def test_evaluate_keeps_training_mode_and_batches(kitti):
    samples = BtsSamples(kitti.config("online_eval"))
    model = TorchRamp(352, 1216).train()
    one = torch_eval.evaluate(model, samples, "kitti", "garg")
    assert model.training
    assert torch_eval.evaluate(model, samples, "kitti", "garg", batch_size=2) == one


def test_evaluate_cli_both_frameworks(weights, small_kitti, tmp_path, capsys):
    torch_csv, paddle_csv = tmp_path / "torch.csv", tmp_path / "paddle.csv"
    assert torch_eval.main(["--checkpoint", str(weights["checkpoint"]), *eval_args(small_kitti, "--no-kb-crop"),
                            "--csv", str(torch_csv)]) == 0
    assert paddle_eval.main(["--weights", str(weights["paddle"]), *eval_args(small_kitti, "--no-kb-crop"),
                             "--csv", str(paddle_csv)]) == 0
    out = capsys.readouterr().out
    assert out.count("2 image(s) evaluated, 1 without ground truth skipped") == 2 and "|   silog |" in out
    import pandas as pd
    torch_row, paddle_row = pd.read_csv(torch_csv).iloc[0], pd.read_csv(paddle_csv).iloc[0]
    assert list(torch_row.index) == [*METRIC_NAMES, "count"] and torch_row["count"] == 2
    # Paddle's model differs from torch's by fp32 rounding only (model stage); the metrics follow closely.
    for name in METRIC_NAMES:
        assert paddle_row[name] == pytest.approx(torch_row[name], rel=1e-4, abs=1e-6), name
    # the CLI's figures are the official protocol applied to the model's own predictions
    samples = BtsSamples(small_kitti.config("test", do_kb_crop=False))
    model = weights["model"]
    expected = []
    for i in range(len(samples)):
        sample, gt = samples.sample(i), samples.ground_truth(i)
        if gt is not None:
            with torch.no_grad():
                pred = model(torch.from_numpy(sample["image"][None]), torch.tensor([sample["focal"]]))[-1]
            expected.append(official_eval(pred[0, 0].numpy(), gt, "kitti", "garg", kb_crop=False))
    assert_metrics_close(torch_row, official_mean(expected), OFFICIAL_RTOL)


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_paddle_commands_apply_the_cpu_settings(command, weights, small_kitti, images, tmp_path, monkeypatch):
    """As imported, Paddle 3.3.1 computes on one thread (and on AMD takes MKL's slowest path): evaluate and
    predict apply paddle_bts.runtime.configure() as training does."""
    import paddle_bts.runtime
    calls = []
    monkeypatch.setattr(paddle_bts.runtime, "configure", lambda *a, **k: calls.append((a, k)) or {})
    if command == "evaluate":
        argv = ["--weights", str(weights["paddle"]), *eval_args(small_kitti, "--no-kb-crop")]
        assert paddle_eval.main(argv) == 0
    else:
        assert paddle_predict.main(predict_args(weights, images, tmp_path / "out")) == 0
    assert calls == [((), {})]


def test_evaluate_command_prints_the_image_count_as_an_integer(weights, small_kitti):
    result = run_cli("-m", "paddle_bts.evaluate", "--weights", weights["paddle"],
                     *eval_args(small_kitti, "--no-kb-crop"))
    assert result.returncode == 0 and "ccache" not in result.stderr, result.stderr
    header, rule, row = result.stdout.splitlines()[-3:]
    cells = {k.strip(): v.strip() for k, v in zip(header.strip("|").split("|"), row.strip("|").split("|"))}
    assert list(cells) == [*METRIC_NAMES, "count"] and cells.pop("count") == "2"   # not 2.0000
    assert all(len(v.split(".")[1]) == 4 for v in cells.values())


def test_evaluate_cli_flip_average_and_csv_force(weights, small_kitti, tmp_path, capsys):
    csv = tmp_path / "m.csv"
    csv.write_text("old\n")
    args = ["--weights", str(weights["paddle"]), *eval_args(small_kitti, "--no-kb-crop", "--flip-average"),
            "--csv", str(csv)]
    assert paddle_eval.main(args) == 2
    one_error_line(capsys, "exists; pass --force")
    assert csv.read_text() == "old\n"
    assert paddle_eval.main(args + ["--force"]) == 0
    assert csv.read_text().startswith("silog,abs_rel,")


@pytest.mark.parametrize("case", ["kb crop on small frames", "missing data path", "bad weights", "bad list",
                                  "no ground truth"])
def test_evaluate_cli_bad_input(case, weights, small_kitti, tmp_path, capsys):
    args = ["--weights", str(weights["paddle"]), *eval_args(small_kitti)]
    fragment = {"kb crop on small frames": "--no-kb-crop", "missing data path": "no such folder",
                "bad weights": "encoder.pdparams: no such file", "bad list": ":1: expected",
                "no ground truth": "no image with ground truth"}[case]
    if case == "missing data path":
        args[args.index("--data-path") + 1] = str(tmp_path / "absent")
    elif case == "bad weights":
        args[1] = str(tmp_path)
    elif case == "bad list":
        (tmp_path / "list.txt").write_text("just-one-field\n")
        args[args.index("--filenames-file") + 1] = str(tmp_path / "list.txt")
    elif case == "no ground truth":
        line = small_kitti.test.read_text().splitlines()[-1]          # the line whose depth is None
        (tmp_path / "list.txt").write_text(line + "\n")
        args[args.index("--filenames-file") + 1] = str(tmp_path / "list.txt")
        args.append("--no-kb-crop")
    assert paddle_eval.main(args) == 2
    one_error_line(capsys, fragment)


def test_evaluate_refuses_training_samples(small_kitti):
    with pytest.raises(DataError, match="'test' or 'online_eval'"):
        torch_eval.evaluate(TorchRamp(64, 160), BtsSamples(small_kitti.config("train")), "kitti", "garg")
    with pytest.raises(DataError, match="samples are 'kitti'"):
        paddle_eval.evaluate(PaddleRamp(64, 160), BtsSamples(small_kitti.config("test")), "nyu", "eigen")


# ------------------------------------------------------------------------------------------- predict
def paddle_model_depth(weights, image_path):
    """The Paddle model's depth for one image, computed here without the CLI (edge padding to 64x96)."""
    import paddle_bts
    model = paddle_bts.build_model(ENCODER, max_depth=80.0, dataset="kitti")
    paddle_bts.load_weights(model, str(weights["paddle"]))
    model.eval()
    image, (height, width) = prediction_input(image_path)
    assert image.shape[2] % 32 == 0 and image.shape[3] % 32 == 0
    return paddle_eval.predict_image(model, image, DEFAULT_FOCAL["kitti"])[:height, :width]


def predict_args(weights, images, out, *extra):
    return ["--weights", str(weights["paddle"]), "--encoder", ENCODER, "--dataset", "kitti",
            "--images", str(images), "--out", str(out), *extra]


def test_predict_writes_16bit_and_colour_pngs(weights, images, tmp_path):
    out = tmp_path / "out"
    assert paddle_predict.main(predict_args(weights, images, out)) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "cmap/a.png", "cmap/b.png", "raw/a.png", "raw/b.png"]
    for name, size in (("a", (50, 70)), ("b", (64, 96))):
        raw = Image.open(out / "raw" / f"{name}.png")
        assert raw.mode == "I;16" and raw.size == size[::-1]
        depth = paddle_model_depth(weights, next(images.glob(f"{name}.*")))
        written = np.asarray(raw).astype(np.float64) / 256.0
        assert np.all(written <= depth + 1e-6) and np.all(depth - written < 1.0 / 256)   # truncated, as official
        colour = Image.open(out / "cmap" / f"{name}.png")
        assert colour.mode == "RGB" and colour.size == size[::-1]
        assert len(np.unique(np.asarray(colour).reshape(-1, 3), axis=0)) > 20


def test_predict_force_and_torch_twin(weights, images, tmp_path, capsys):
    out = tmp_path / "out"
    assert paddle_predict.main(predict_args(weights, images, out)) == 0
    (out / "stale.txt").write_text("from an earlier run")
    assert paddle_predict.main(predict_args(weights, images, out)) == 2
    one_error_line(capsys, "exists; pass --force")
    assert (out / "stale.txt").exists()
    assert paddle_predict.main(predict_args(weights, images, out, "--force")) == 0
    assert not (out / "stale.txt").exists() and (out / "raw" / "a.png").exists()
    torch_out = tmp_path / "torch_out"
    assert torch_predict.main(["--checkpoint", str(weights["checkpoint"]), "--encoder", ENCODER, "--dataset", "kitti",
                               "--images", str(images), "--out", str(torch_out)]) == 0
    for name in ("a", "b"):   # same weights: at most one 1/256 m step apart where rounding straddles a step
        paddle_png = np.asarray(Image.open(out / "raw" / f"{name}.png")).astype(int)
        torch_png = np.asarray(Image.open(torch_out / "raw" / f"{name}.png")).astype(int)
        assert np.abs(paddle_png - torch_png).max() <= 1


@pytest.mark.parametrize("case", ["missing folder", "no images", "bad weights", "unreadable image",
                                  "output holds images"])
def test_predict_bad_input(case, weights, images, tmp_path, capsys):
    out = tmp_path / "out"
    source = images
    fragment = {"missing folder": "no such folder", "no images": "no images", "bad weights": "no such file",
                "unreadable image": "unreadable image", "output holds images": "holds the input images"}[case]
    if case == "missing folder":
        source = tmp_path / "absent"
    elif case == "no images":
        source = tmp_path / "empty"
        source.mkdir()
        (source / "notes.txt").write_text("no pictures here")
    elif case == "unreadable image":
        source = tmp_path / "broken"
        source.mkdir()
        (source / "x.png").write_text("not a png")
    elif case == "output holds images":
        out = images
    args = predict_args(weights, source, out, "--force" if case == "output holds images" else "--focal=721.5")
    if case == "bad weights":
        args[1] = str(tmp_path)
    assert paddle_predict.main(args) == 2
    one_error_line(capsys, fragment)
    if case != "output holds images":
        assert not out.exists() and not list(tmp_path.glob(".out.*"))   # nothing half-written left behind
    assert (images / "a.png").exists()


def test_depth_png_scaling():
    depth = np.array([[0.0, 1.0 / 256 - 1e-6, 1.5, 300.0]], np.float32)
    np.testing.assert_array_equal(depth_png(depth, "kitti"), [[0, 0, 384, 65535]])   # saturates, not wraps
    np.testing.assert_array_equal(depth_png(np.array([[0.0015, 2.5, np.nan]], np.float32), "nyu"),
                                  [[1, 2500, 0]])

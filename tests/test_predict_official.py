"""predict's test-list mode writes what the official test script writes, so the official PNG evaluation
(cleinc/bts utils/eval_with_pngs.py) of its files gives `evaluate`'s figures.

Reference (facts, restated here): eval_with_pngs.py maps <date_drive>_<frame>.png to
GT/<date_drive>/proj_depth/groundtruth/image_02/<frame>.png (KITTI) and <scene>_rgb_<n>.png to
GT/<scene>/sync_depth_<n>.png (NYU), reads both PNGs / 256 (KITTI) or / 1000 (NYU), skips a prediction
without a ground-truth file, and then scores as bts_eval.py: KB paste-back (--do_kb_crop), clipping, valid
mask and Garg / Eigen crop, compute_errors; torch_ref.metrics holds those official formulas (checked against
a numpy re-statement in tests/test_eval_predict.py and tests/test_metrics.py) and is reused here.
The PNGs hold depth truncated to 1/256 m (1 mm NYU), so their figures move from the float ones by at most
`truncation_bounds`; the pixels themselves must be `evaluate`'s own predictions, truncated.
mobilenetv2_bts with seeded weights; one full-size image per dataset (CPU time is shared).
"""
import dataclasses
import shutil

import contextlib
import io

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from as_user import leftovers, one_error_line
from bts_commands import evaluate as evaluate_loop
from bts_commands.predict import official_name
from bts_core.depth_files import depth_png
from bts_core.spec import DEFAULT_MAX_DEPTH, DEPTH_SCALE, METRIC_NAMES
from bts_data import DataError, Sample, read_filelist, write_filelist, write_tree
from bts_data.synthetic import KITTI_DATES
from conversion import torch2paddle
from conversion.seeded import save_seeded_checkpoint
from paddle_bts import predict as paddle_predict
from paddle_bts.evaluate import PADDLE
from torch_ref import metrics
from torch_ref import predict as torch_predict
from torch_ref.evaluate import TORCH

ENCODER = "mobilenetv2_bts"
FRAMEWORKS = {"torch": (TORCH, torch_predict, "checkpoint"), "paddle": (PADDLE, paddle_predict, "paddle")}
OFFICIAL_CROP = {"kitti": ("garg", True), "nyu": ("eigen", False)}   # (crop, KB paste-back): the official flags
MIN_DEPTH = 1e-3
METRIC_RTOL = 1e-5   # evaluate's float32 metrics (either mirror) against torch_ref's on the same pixels


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A seeded torch_ref checkpoint and the same weights as a PaddleDepth folder (torch2paddle.py)."""
    folder = tmp_path_factory.mktemp("weights")
    save_seeded_checkpoint(ENCODER, folder / "model")
    with contextlib.redirect_stdout(io.StringIO()):
        assert torch2paddle.main(["--checkpoint", str(folder / "model"), "--encoder", ENCODER,
                                  "--output", str(folder / "paddle"), "--no-verify"]) == 0
    return {"checkpoint": folder / "model", "paddle": folder / "paddle"}


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """One full-size image each (a KITTI forward costs ~10 s in Paddle on one thread): KITTI's has focal
    721.5377, not the default, so a prediction without the line's focal differs."""
    return {dataset: write_tree(tmp_path_factory.mktemp(dataset), dataset, 1, seed=8) for dataset in ("kitti", "nyu")}


@pytest.fixture(scope="module")
def small_kitti(tmp_path_factory):
    """Two 60x150 frames (not multiples of 32)."""
    return write_tree(tmp_path_factory.mktemp("small"), "kitti", 2, seed=9, size=(60, 150))


def list_args(framework, weights, dataset, data_path, filenames):
    """The arguments predict and evaluate share: weights, model, the test list."""
    adapter, _, weights_key = FRAMEWORKS[framework]
    return [adapter.weights_flag, str(weights[weights_key]), "--encoder", ENCODER, "--dataset", dataset,
            "--data-path", str(data_path), "--filenames-file", str(filenames)]


def predict_args(framework, weights, tree, out):
    return [*list_args(framework, weights, tree.dataset, tree.data_path, tree.test), "--out", str(out)]


def recording(framework, seen):
    """The framework, its predictions (numpy, in list order) appended to `seen` as `evaluate` makes them."""
    def predict_depth(*args, **kwargs):
        depth = framework.predict_depth(*args, **kwargs)
        seen.extend(depth.numpy())
        return depth
    return dataclasses.replace(framework, predict_depth=predict_depth)


# --------------------------------------------------------------------------- the official evaluation
def official_gt_path(gt_root, name, dataset):
    """The ground truth eval_with_pngs.py pairs with prediction file `name`."""
    if dataset == "kitti":
        date_drive, frame = name.rsplit("_", 1)
        return gt_root / date_drive / "proj_depth" / "groundtruth" / "image_02" / frame
    scene, number = name.rsplit("_rgb_", 1)
    return gt_root / scene / f"sync_depth_{number}"


def official_png_pixels(pred_folder, gt_root, dataset):
    """[(gt, prediction)] of the pixels eval_with_pngs.py --do_kb_crop --garg_crop (KITTI) or --eigen_crop
    (NYU) scores, image by image, from the files alone: float32 tensors."""
    crop, kb_crop = OFFICIAL_CROP[dataset]
    max_depth = DEFAULT_MAX_DEPTH[dataset]
    pixels = []
    for path in sorted(pred_folder.glob("*.png")):
        gt_path = official_gt_path(gt_root, path.name, dataset)
        if gt_path.is_file():
            pred, gt = (torch.from_numpy(np.asarray(Image.open(p), np.float32) / np.float32(DEPTH_SCALE[dataset]))
                        for p in (path, gt_path))
            pred = metrics.paste_kb_crop(pred, gt.shape) if kb_crop else pred
            valid = metrics.eval_mask(gt, dataset, crop, MIN_DEPTH, max_depth)
            pixels.append((gt[valid], metrics.clip_prediction(pred, MIN_DEPTH, max_depth)[valid]))
    return pixels


def truncation_bounds(g, q, step):
    """How far each metric can move when every scored prediction q (clipped; official_pixels) is the
    truncation of a float prediction p: q <= p < q + step (clipping keeps that). Triangle inequalities:
    rms by step, abs_rel by step / g, sq_rel by step (2 |g - q| + step) / g, each log by lam = log(1 + step / q)
    (silog and log_rms by rms(lam)); a delta flips only where [q, q + step] holds a threshold g / t or g t
    (widened by 1e-6 relative: the metrics compare float32 ratios)."""
    g, q = g.double().numpy(), q.double().numpy()
    lam = np.log1p(step / q)
    low, high = q * (1 - 1e-6), (q + step) * (1 + 1e-6)
    flips = {f"d{k}": np.mean(((low <= g / t) & (g / t <= high)) | ((low <= g * t) & (g * t <= high)))
             for k, t in ((1, 1.25), (2, 1.25 ** 2), (3, 1.25 ** 3))}
    return {"silog": 100 * np.sqrt(np.mean(lam ** 2)), "abs_rel": np.mean(step / g),
            "log10": np.mean(lam) / np.log(10), "rms": step, "sq_rel": np.mean(step * (2 * np.abs(g - q) + step) / g),
            "log_rms": np.sqrt(np.mean(lam ** 2)), **flips}


def mean_over_images(per_image):
    return {name: float(np.mean([float(m[name]) for m in per_image])) for name in METRIC_NAMES}


# ------------------------------------------------------------------------------------- the agreement
@pytest.mark.parametrize("dataset", ["kitti", "nyu"])
@pytest.mark.parametrize("framework", ["torch", "paddle"])
def test_official_png_evaluation_gives_evaluates_figures(framework, dataset, weights, trees, tmp_path):
    tree, (adapter, predict, _) = trees[dataset], FRAMEWORKS[framework]
    out = tmp_path / "out"
    assert predict.main(predict_args(framework, weights, tree, out)) == 0
    evaluated = []
    evaluate_args = [*list_args(framework, weights, dataset, tree.data_path, tree.test), "--gt-path", str(tree.gt_path),
                     "--csv", str(tmp_path / "metrics.csv")]
    assert evaluate_loop.main(recording(adapter, evaluated), evaluate_args) == 0
    figures = pd.read_csv(tmp_path / "metrics.csv").iloc[0]

    names = [official_name(item.image, dataset) + ".png" for item in read_filelist(tree.test)]
    assert sorted(p.name for p in (out / "raw").iterdir()) == sorted(p.name for p in (out / "cmap").iterdir()) \
        == sorted(names)
    for name, prediction in zip(names, evaluated, strict=True):   # the network saw what evaluate gave it
        raw = Image.open(out / "raw" / name)
        assert raw.mode == "I;16" and raw.size == ((1216, 352) if dataset == "kitti" else (640, 480))
        np.testing.assert_array_equal(np.asarray(raw), depth_png(prediction, dataset))

    pixels = official_png_pixels(out / "raw", tree.gt_path, dataset)
    assert len(pixels) == figures["count"] == len(names)
    official = mean_over_images([metrics.compute_errors(g, q) for g, q in pixels])
    bound = mean_over_images([truncation_bounds(g, q, 1 / DEPTH_SCALE[dataset]) for g, q in pixels])
    gaps = {name: abs(official[name] - figures[name]) for name in METRIC_NAMES}
    print(framework, dataset, "|PNG - evaluate|:", {k: f"{v:.1e} (bound {bound[k]:.1e})" for k, v in gaps.items()})
    for name in METRIC_NAMES:
        assert gaps[name] <= bound[name] + METRIC_RTOL * abs(figures[name]), (name, official[name], figures[name])


# ----------------------------------------------------------------------------------- names and focal
def test_official_names():
    assert official_name("2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png", "kitti") == \
        "2011_09_26_drive_0002_sync_0000000069"
    assert official_name("/kitchen_0004/rgb_00045.jpg", "nyu") == "kitchen_0004_rgb_00045"
    assert official_name("kitchen_0004/rgb_00045.jpg", "nyu") == "kitchen_0004_rgb_00045"
    with pytest.raises(DataError, match="<date>/<date_drive>"):
        official_name("2011_09_26/0000000069.png", "kitti")
    with pytest.raises(DataError, match="<scene>/<rgb file>"):
        official_name("/rgb_00045.jpg", "nyu")


@pytest.mark.parametrize("framework", ["torch", "paddle"])
def test_each_image_scaled_by_its_own_focal(framework, weights, small_kitti, tmp_path):
    """One 60x150 frame under two drives with two focals: its depths differ by their ratio (whole frames,
    --no-kb-crop: edges replicated to 64x160 and cropped back)."""
    frame = small_kitti.data_path / read_filelist(small_kitti.test)[0].image
    listed = [Sample(f"{date}/{date}_drive_0001_sync/image_02/data/0000000000.png", None, focal)
              for date, focal in KITTI_DATES[:2]]
    for sample in listed:
        (tmp_path / "raw" / sample.image).parent.mkdir(parents=True)
        shutil.copy(frame, tmp_path / "raw" / sample.image)
    args = [*list_args(framework, weights, "kitti", tmp_path / "raw", write_filelist(tmp_path / "focals.txt", listed)),
            "--no-kb-crop", "--out", str(tmp_path / "out")]
    assert FRAMEWORKS[framework][1].main(args) == 0
    first, second = (np.asarray(Image.open(tmp_path / "out" / "raw" / f"{official_name(s.image, 'kitti')}.png"))
                     for s in listed)
    assert first.dtype == second.dtype == np.uint16 and first.shape == second.shape == (60, 150)
    ratio = first.astype(np.float64).sum() / second.astype(np.float64).sum()
    assert ratio == pytest.approx(listed[0].focal / listed[1].focal, rel=1e-4)   # truncation: < 1/256 m a pixel


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("case", ["no data path", "both modes", "focal with a list", "missing image", "same name twice",
                                  "kb crop on small frames"])
def test_bad_test_list_input(case, weights, small_kitti, tmp_path, capsys):
    out = tmp_path / "out"
    args = predict_args("paddle", weights, small_kitti, out)
    if case == "no data path":
        args = args[:args.index("--data-path")] + args[args.index("--data-path") + 2:]
    elif case == "both modes":
        args += ["--images", str(small_kitti.data_path)]
    elif case == "focal with a list":
        args += ["--focal", "721.5"]
    elif case in ("missing image", "same name twice"):
        lines = small_kitti.test.read_text().splitlines()
        second = lines[0] if case == "same name twice" else lines[1].replace(".png", "_absent.png")
        (tmp_path / "list.txt").write_text(f"{lines[0]}\n{second}\n")
        args[args.index("--filenames-file") + 1] = str(tmp_path / "list.txt")
    if case in ("no data path", "both modes", "focal with a list"):   # argparse: usage, then one error line
        with pytest.raises(SystemExit) as exit_:
            paddle_predict.main(args)
        assert exit_.value.code == 2
        fragment = {"no data path": "--filenames-file needs --data-path", "both modes": "not allowed with",
                    "focal with a list": "--focal is for --images"}[case]
        assert fragment in capsys.readouterr().err.splitlines()[-1]
    else:
        assert paddle_predict.main(args) == 2
        fragment = {"missing image": "_absent.png: no such image file (1 of 2",
                    "same name twice": "two images would write raw/2011_09_26_drive_0001_sync_0000000000",
                    "kb crop on small frames": "--no-kb-crop"}[case]
        one_error_line(capsys, fragment)
    assert leftovers(out) == []   # nothing written, nothing left behind

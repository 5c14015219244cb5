"""Official BTS evaluation metrics, torch and Paddle mirrors (torch_ref.metrics, paddle_bts.metrics).

Reference: cleinc/bts `pytorch/bts_eval.py` (`compute_errors`, the `eval` loop: KB paste-back, clipping,
valid mask, Garg / Eigen crops) and shared/reference/official_bts_spec.md ("Evaluation").
`official_eval` below re-states that loop in numpy (float32 frame, masks and clipping as the official
script; the metrics in float64) independently of the crop constants in the two modules.
"""
import numpy as np
import paddle
import pytest
import torch

from paddle_bts import metrics as pm
from torch_ref import metrics as tm

NAMES = ("silog", "abs_rel", "log10", "rms", "sq_rel", "log_rms", "d1", "d2", "d3")
KITTI_GT = (375, 1242)          # a KITTI Eigen ground-truth size
NYU_GT = (480, 640)
# Torch vs Paddle: identical inputs, the same float32 element-wise ops in the same order, and every mean
# accumulated in float64 then rounded to float32 (Paddle's own float32 CPU mean sums sequentially and
# drifted 1.2e-5 from torch on these cases). What remains is 1-ulp differences of log/log10 kernels, which
# averaging shrinks; measured max relative difference over all cases here: 9.5e-8 (silog), i.e. <= 1 ulp.
# Printed per metric by test_torch_paddle_parity with `pytest -s`.
PARITY_RTOL = 1e-6
# float32 pipeline vs a float64 re-statement of the official formulas.
OFFICIAL_RTOL = 1e-5


# ----------------------------------------------------------------------------------------------- data
def kitti_pair(seed):
    rng = np.random.default_rng(seed)
    h, w = KITTI_GT
    gt = np.zeros((h, w), np.float32)
    hit = rng.random((h, w)) < 0.3                                   # sparse LiDAR-like ground truth
    gt[hit] = rng.uniform(0.5, 90.0, hit.sum())                      # some beyond max_depth 80
    gt[rng.random((h, w)) < 0.01] = 5e-4                             # some below min_depth
    top, left = h - 352, (w - 1216) // 2
    ref = gt[top:top + 352, left:left + 1216]
    pred = np.where(ref > 0, ref * np.exp(rng.normal(0.0, 0.2, ref.shape)), rng.uniform(1.0, 80.0, ref.shape))
    pred = pred.astype(np.float32)
    flat = pred.reshape(-1)
    idx = rng.choice(flat.size, 60, replace=False)
    flat[idx[:10]], flat[idx[10:20]], flat[idx[20:30]] = np.inf, np.nan, -np.inf
    flat[idx[30:40]], flat[idx[40:50]], flat[idx[50:]] = -3.0, 1e4, 0.0
    return pred, gt


def nyu_pair(seed):
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0.05, 11.0, NYU_GT).astype(np.float32)          # some beyond max_depth 10
    gt[rng.random(NYU_GT) < 0.05] = 0.0
    pred = (np.maximum(gt, 0.3) * np.exp(rng.normal(0.0, 0.15, NYU_GT))).astype(np.float32)
    pred.reshape(-1)[rng.choice(pred.size, 20, replace=False)] = np.nan
    return pred, gt


PAIRS = {"kitti": kitti_pair, "nyu": nyu_pair}
CASES = [(d, c) for d in ("kitti", "nyu") for c in ("garg", "eigen", None)]


def run_torch(pred, gt, **kw):
    out = tm.evaluate_image(torch.from_numpy(pred.copy()), torch.from_numpy(gt.copy()), **kw)
    return {k: float(v) for k, v in out.items()}


def run_paddle(pred, gt, **kw):
    out = pm.evaluate_image(paddle.to_tensor(pred.copy()), paddle.to_tensor(gt.copy()), **kw)
    return {k: float(v) for k, v in out.items()}


# ------------------------------------------------------------------------- the official loop, in numpy
def official_compute_errors(gt, pred):
    gt, pred = gt.astype(np.float64), pred.astype(np.float64)
    thresh = np.maximum(gt / pred, pred / gt)
    err = np.log(pred) - np.log(gt)
    return dict(
        silog=np.sqrt(np.mean(err ** 2) - np.mean(err) ** 2) * 100,
        abs_rel=np.mean(np.abs(gt - pred) / gt),
        log10=np.mean(np.abs(np.log10(pred) - np.log10(gt))),
        rms=np.sqrt(np.mean((gt - pred) ** 2)),
        sq_rel=np.mean(((gt - pred) ** 2) / gt),
        log_rms=np.sqrt(np.mean((np.log(gt) - np.log(pred)) ** 2)),
        d1=(thresh < 1.25).mean(), d2=(thresh < 1.25 ** 2).mean(), d3=(thresh < 1.25 ** 3).mean())


def official_mask(gt, dataset, crop, min_depth, max_depth):
    valid = np.logical_and(gt > min_depth, gt < max_depth)
    if crop is None:
        return valid
    h, w = gt.shape
    m = np.zeros(valid.shape)
    if crop == "garg":
        m[int(0.40810811 * h):int(0.99189189 * h), int(0.03594771 * w):int(0.96405229 * w)] = 1
    elif dataset == "kitti":
        m[int(0.3324324 * h):int(0.91351351 * h), int(0.0359477 * w):int(0.96405229 * w)] = 1
    else:
        m[45:471, 41:601] = 1
    return np.logical_and(valid, m)


def official_eval(pred, gt, dataset, crop, kb_crop=True, min_depth=1e-3, max_depth=None):
    max_depth = {"kitti": 80, "nyu": 10}[dataset] if max_depth is None else max_depth
    pred = pred.copy()
    if dataset == "kitti" and kb_crop:
        h, w = gt.shape
        top, left = int(h - 352), int((w - 1216) / 2)
        frame = np.zeros((h, w), dtype=np.float32)
        frame[top:top + 352, left:left + 1216] = pred
        pred = frame
    pred[pred < min_depth] = min_depth
    pred[pred > max_depth] = max_depth
    pred[np.isinf(pred)] = max_depth
    pred[np.isnan(pred)] = min_depth
    mask = official_mask(gt, dataset, crop, min_depth, max_depth)
    return official_compute_errors(gt[mask], pred[mask])


# ------------------------------------------------------------------------------------------- mirrors
def test_mirrors_share_api_and_constants():
    assert tm.METRIC_NAMES == pm.METRIC_NAMES == NAMES
    assert tm.__all__ == pm.__all__
    for const in ("KB_CROP_HEIGHT", "KB_CROP_WIDTH", "DEFAULT_MAX_DEPTH", "GARG_CROP", "EIGEN_CROP_KITTI",
                  "EIGEN_CROP_NYU", "CROPS"):
        assert getattr(tm, const) == getattr(pm, const), const


@pytest.mark.parametrize("dataset,crop", CASES)
def test_torch_paddle_parity(dataset, crop):
    worst = dict.fromkeys(NAMES, 0.0)
    per_image_t, per_image_p = [], []
    for seed in range(2):
        pred, gt = PAIRS[dataset](seed)
        mt = tm.eval_mask(torch.from_numpy(gt), dataset, crop).numpy()
        mp = pm.eval_mask(paddle.to_tensor(gt), dataset, crop).numpy()
        np.testing.assert_array_equal(mt, mp)
        t = tm.evaluate_image(torch.from_numpy(pred), torch.from_numpy(gt), dataset=dataset, crop=crop)
        p = pm.evaluate_image(paddle.to_tensor(pred), paddle.to_tensor(gt), dataset=dataset, crop=crop)
        assert list(t) == list(p) == list(NAMES)
        for k in NAMES:
            assert t[k].dtype == torch.float32 and t[k].dim() == 0
            assert p[k].dtype == paddle.float32 and p[k].ndim == 0
            a, b = float(t[k]), float(p[k])
            assert np.isfinite(a) and np.isfinite(b), k
            worst[k] = max(worst[k], abs(a - b) / max(abs(a), 1e-30))
        per_image_t.append(t)
        per_image_p.append(p)
    at, ap = tm.average(per_image_t), pm.average(per_image_p)
    for k in NAMES:
        assert at[k].dtype == torch.float32
        np.testing.assert_allclose(float(at[k]), np.mean([float(r[k]) for r in per_image_t]), rtol=1e-6)
        worst[k] = max(worst[k], abs(float(at[k]) - float(ap[k])) / max(abs(float(at[k])), 1e-30))
    print(f"\n{dataset}/{crop} max rel diff torch vs paddle: " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))
    bad = {k: v for k, v in worst.items() if v > PARITY_RTOL}
    assert not bad, f"torch vs paddle beyond rtol {PARITY_RTOL}: {bad}"


def test_compute_errors_parity_on_pixel_vectors():
    rng = np.random.default_rng(7)
    gt = rng.uniform(0.1, 80.0, 100_000).astype(np.float32)
    pred = (gt * np.exp(rng.normal(0.0, 0.3, gt.shape))).astype(np.float32)
    t = tm.compute_errors(torch.from_numpy(gt), torch.from_numpy(pred))
    p = pm.compute_errors(paddle.to_tensor(gt), paddle.to_tensor(pred))
    ref = official_compute_errors(gt, pred)
    for k in NAMES:
        np.testing.assert_allclose(float(p[k]), float(t[k]), rtol=PARITY_RTOL, atol=0, err_msg=k)
        np.testing.assert_allclose(float(t[k]), ref[k], rtol=OFFICIAL_RTOL, atol=0, err_msg=k)


# ------------------------------------------------------------------------------- official formulas
@pytest.mark.parametrize("dataset,crop", CASES)
def test_matches_official_numpy_float64(dataset, crop):
    pred, gt = PAIRS[dataset](5)
    ref = official_eval(pred, gt, dataset, crop)
    got = run_torch(pred, gt, dataset=dataset, crop=crop)
    for k in NAMES:
        np.testing.assert_allclose(got[k], ref[k], rtol=OFFICIAL_RTOL, atol=0, err_msg=f"{dataset}/{crop}/{k}")


def test_full_frame_kitti_prediction_without_kb_crop():
    pred, gt = kitti_pair(3)
    full = np.random.default_rng(3).uniform(1.0, 80.0, gt.shape).astype(np.float32)
    ref = official_eval(full, gt, "kitti", "garg", kb_crop=False)
    for run in (run_torch, run_paddle):
        got = run(full, gt, dataset="kitti", crop="garg", kb_crop=False)
        for k in NAMES:
            np.testing.assert_allclose(got[k], ref[k], rtol=OFFICIAL_RTOL, err_msg=k)
    with pytest.raises(ValueError, match="kb_crop=False"):
        tm.evaluate_image(torch.from_numpy(full), torch.from_numpy(gt))
    with pytest.raises(ValueError, match="kb_crop=False"):
        pm.evaluate_image(paddle.to_tensor(full), paddle.to_tensor(gt))


# ------------------------------------------------------------------------------------------ edge cases
@pytest.mark.parametrize("run", [run_torch, run_paddle], ids=["torch", "paddle"])
def test_perfect_prediction(run):
    _, gt = nyu_pair(0)
    pred = np.where((gt > 1e-3) & (gt < 10), gt, 1.0).astype(np.float32)
    got = run(pred, gt, dataset="nyu", crop="eigen")
    for k in ("silog", "abs_rel", "log10", "rms", "sq_rel", "log_rms"):
        assert got[k] == 0.0, (k, got[k])
    assert got["d1"] == got["d2"] == got["d3"] == 1.0


@pytest.mark.parametrize("mod,to", [(tm, torch.from_numpy), (pm, paddle.to_tensor)], ids=["torch", "paddle"])
def test_inf_nan_and_out_of_range_predictions(mod, to):
    pred = np.array([np.inf, -np.inf, np.nan, -1.0, 0.0, 5e-4, 1e3, 7.0], np.float32)
    clipped = mod.clip_prediction(to(pred), 1e-3, 80.0).numpy()
    expected = np.array([80, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 80, 7], np.float32)
    np.testing.assert_array_equal(clipped, expected)
    # whole image: NaN -> min_depth, inf -> max_depth, as the official loop; metrics stay finite
    gt = np.full(NYU_GT, 5.0, np.float32)
    img = np.full(NYU_GT, 5.0, np.float32)
    img[100, 100], img[200, 200] = np.inf, np.nan
    got = {k: float(v) for k, v in mod.evaluate_image(to(img), to(gt), dataset="nyu", crop="eigen").items()}
    ref = official_eval(img, gt, "nyu", "eigen")
    for k in NAMES:
        assert np.isfinite(got[k])
        np.testing.assert_allclose(got[k], ref[k], rtol=OFFICIAL_RTOL, atol=1e-9, err_msg=k)
    n = (471 - 45) * (601 - 41)
    np.testing.assert_allclose(got["d3"], (n - 2) / n, rtol=1e-6)


@pytest.mark.parametrize("mod,to", [(tm, torch.from_numpy), (pm, paddle.to_tensor)], ids=["torch", "paddle"])
def test_only_valid_pixels_inside_the_crop_count(mod, to):
    h, w = KITTI_GT
    r0, r1, c0, c1 = int(0.40810811 * h), int(0.99189189 * h), int(0.03594771 * w), int(0.96405229 * w)
    assert (r0, r1, c0, c1) == (153, 371, 44, 1197)
    gt = np.zeros(KITTI_GT, np.float32)
    gt[200, 600] = 10.0                     # the one pixel that counts
    gt[r0 - 1, 600] = gt[r1, 600] = 10.0    # just outside the crop rows
    gt[200, c0 - 1] = gt[200, c1] = 10.0    # just outside the crop columns
    gt[250, 600] = np.float32(1e-3)         # gt <= min_depth
    gt[260, 600] = 80.0                     # gt >= max_depth
    gt[270, 600] = -1.0
    mask = mod.eval_mask(to(gt), "kitti", "garg").numpy()
    assert mask.sum() == 1 and mask[200, 600]
    frame = np.full(KITTI_GT, 50.0, np.float32)      # wildly wrong everywhere else
    frame[200, 600] = 12.5
    pred = frame[h - 352:, 13:13 + 1216].copy()
    got = {k: float(v) for k, v in mod.evaluate_image(to(pred), to(gt), dataset="kitti", crop="garg").items()}
    assert got["abs_rel"] == pytest.approx(0.25, rel=1e-6)
    assert got["rms"] == pytest.approx(2.5, rel=1e-6)
    assert got["silog"] == 0.0                       # one pixel: no variance
    assert (got["d1"], got["d2"], got["d3"]) == (0.0, 1.0, 1.0)   # ratio exactly 1.25: strict <
    # crop boundaries: first row/col inclusive, last exclusive, for every crop
    windows = {("kitti", "garg"): (153, 371, 44, 1197), ("kitti", "eigen"): (124, 342, 44, 1197),
               ("nyu", "eigen"): (45, 471, 41, 601), ("nyu", "garg"): (195, 476, 23, 616)}
    for (dataset, crop), (a, b, c, d) in windows.items():
        shape = KITTI_GT if dataset == "kitti" else NYU_GT
        m = mod.eval_mask(to(np.full(shape, 5.0, np.float32)), dataset, crop).numpy()
        expected = np.zeros(shape, bool)
        expected[a:b, c:d] = True
        np.testing.assert_array_equal(m, expected, err_msg=f"{dataset}/{crop}")
        assert mod.crop_window(dataset, crop, *shape) == (a, b, c, d)
    assert mod.eval_mask(to(gt), "kitti", None).numpy().sum() == 5      # no crop: 5 in-range pixels
    with pytest.raises(ValueError, match="no valid"):
        mod.evaluate_image(to(pred), to(np.zeros(KITTI_GT, np.float32)))


@pytest.mark.parametrize("mod,to", [(tm, torch.from_numpy), (pm, paddle.to_tensor)], ids=["torch", "paddle"])
def test_kb_paste_back_position(mod, to):
    pred = np.arange(1, 352 * 1216 + 1, dtype=np.float32).reshape(352, 1216)
    frame = mod.paste_kb_crop(to(pred[None, None]), KITTI_GT).numpy()   # network output shape B=1, C=1
    assert frame.shape == KITTI_GT and frame.dtype == np.float32
    top, left = 375 - 352, (1242 - 1216) // 2
    assert (top, left) == (23, 13)
    np.testing.assert_array_equal(frame[top:, left:left + 1216], pred)
    assert frame[23, 13] == 1.0 and frame[374, 1228] == 352 * 1216
    rest = frame.copy()
    rest[top:, left:left + 1216] = 0
    assert not rest.any()
    with pytest.raises(ValueError):
        mod.paste_kb_crop(to(pred[:, :1200]), KITTI_GT)


@pytest.mark.parametrize("mod,to", [(tm, torch.from_numpy), (pm, paddle.to_tensor)], ids=["torch", "paddle"])
def test_means_are_accurate_over_many_pixels(mod, to):
    # Paddle 3.3.1's CPU float32 `mean` sums sequentially: 0.3011133 for 240k copies of 0.30103 (2.8e-4 off).
    # Both mirrors accumulate in float64, so a constant error vector gives its value to float32 rounding.
    n = 240_000
    gt = np.full(n, 1.0, np.float32)
    pred = np.full(n, 2.0, np.float32)
    got = mod.compute_errors(to(gt), to(pred))
    assert float(got["log10"]) == pytest.approx(np.log10(2.0), rel=2e-7)
    assert float(got["abs_rel"]) == 1.0 and float(got["rms"]) == 1.0


# ------------------------------------------------------------------------------------- no median scaling
@pytest.mark.parametrize("run", [run_torch, run_paddle], ids=["torch", "paddle"])
def test_no_median_scaling(run):
    pred, gt = nyu_pair(1)
    pred = np.where(np.isnan(pred), 1.0, pred).astype(np.float32)
    base = run(pred, gt, dataset="nyu", crop="eigen")
    doubled = run(2 * pred, gt, dataset="nyu", crop="eigen")
    assert doubled["abs_rel"] > base["abs_rel"] + 0.5     # median scaling would leave it unchanged
    assert doubled["rms"] > base["rms"]
    assert doubled["d1"] < base["d1"]
    # pred = 2 gt (nothing clipped: gt < 5 m): abs_rel 1, d1 0, silog 0; median scaling would give all-perfect
    gt = np.random.default_rng(2).uniform(0.1, 4.9, NYU_GT).astype(np.float32)
    exact = run(2 * gt, gt, dataset="nyu", crop="eigen")
    assert exact["abs_rel"] == pytest.approx(1.0, rel=1e-6)
    assert exact["log10"] == pytest.approx(np.log10(2.0), rel=1e-5)
    assert exact["d1"] == exact["d2"] == exact["d3"] == 0.0   # ratio 2 > 1.25 ** 3
    assert exact["silog"] < 1e-2          # scale-invariant (float32 cancellation noise only)

"""Official BTS evaluation (cleinc/bts `pytorch/bts_eval.py`: `compute_errors` and the `eval` loop), in torch.

Mirror of `paddle_bts.metrics`: same names, same arguments, same float32 operations in the same order.
Per image: paste the KB-crop prediction back into a zero frame of the ground truth's size (KITTI),
clip it to [min_depth, max_depth], inf -> max, NaN -> min, mask valid ground truth (min < gt < max)
inside the Garg or Eigen crop, compute the nine metrics; then average the per-image metrics.
No median scaling, no flip averaging (the PaddleDepth port median-scales; the official protocol does not).

Deviations from the official script (both deliberate, see `evaluate_image` / `compute_errors`):
an image with no valid pixel raises ValueError instead of giving NaN with a RuntimeWarning, and a
prediction that is not 352x1216 with `kb_crop` raises ValueError (numpy would fail on the slice assignment).
"""
import torch

from bts_core.spec import (CROPS, DATASETS, DEFAULT_MAX_DEPTH, EIGEN_CROP_KITTI, EIGEN_CROP_NYU, GARG_CROP,
                      KB_CROP_HEIGHT, KB_CROP_WIDTH, METRIC_NAMES, check_dataset_crop, crop_window)  # noqa: F401


def _max_depth(dataset, max_depth):
    return DEFAULT_MAX_DEPTH[dataset] if max_depth is None else float(max_depth)


def _as_2d_float32(x, what):
    x = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
    x = x.to(torch.float32)
    while x.dim() > 2 and x.shape[0] == 1:  # the official script squeezes the network output
        x = x.squeeze(0)
    if x.dim() != 2:
        raise ValueError(f"{what} must be 2-D (H x W) after squeezing leading singleton axes; "
                         f"got shape {tuple(x.shape)}")
    return x


def _mean(x):
    """Mean of a float32 tensor, accumulated in float64 and returned as a float32 0-d tensor.

    Same maths as numpy's float32 `mean` of the official script (pairwise summation, error ~1e-7) up to
    float32 rounding. Accumulating in float64 in both mirrors is deliberate: Paddle's CPU float32 `mean`
    sums sequentially (relative error 2.8e-4 over 240k pixels, 6e-4 over 1M, measured), torch's does not.
    """
    return x.to(torch.float64).mean().to(torch.float32)


def compute_errors(gt, pred):
    """The nine official metrics of 1-D float32 tensors of valid pixels: dict name -> 0-d tensor."""
    gt, pred = gt.to(torch.float32).reshape(-1), pred.to(torch.float32).reshape(-1)
    if gt.numel() == 0 or gt.shape != pred.shape:
        raise ValueError(f"compute_errors needs two equal-length, non-empty pixel vectors; got {tuple(gt.shape)} "
                         f"and {tuple(pred.shape)} (the official script gives NaN for an empty mask)")
    thresh = torch.maximum(gt / pred, pred / gt)
    d1 = _mean(thresh < 1.25)
    d2 = _mean(thresh < 1.25 ** 2)
    d3 = _mean(thresh < 1.25 ** 3)
    rms = torch.sqrt(_mean((gt - pred) ** 2))
    log_rms = torch.sqrt(_mean((torch.log(gt) - torch.log(pred)) ** 2))
    abs_rel = _mean(torch.abs(gt - pred) / gt)
    sq_rel = _mean(((gt - pred) ** 2) / gt)
    err = torch.log(pred) - torch.log(gt)
    silog = torch.sqrt(_mean(err ** 2) - _mean(err) ** 2) * 100
    log10 = _mean(torch.abs(torch.log10(pred) - torch.log10(gt)))
    values = dict(silog=silog, abs_rel=abs_rel, log10=log10, rms=rms, sq_rel=sq_rel, log_rms=log_rms,
                  d1=d1, d2=d2, d3=d3)
    return {name: values[name] for name in METRIC_NAMES}


def eval_mask(gt, dataset, crop, min_depth=1e-3, max_depth=None):
    """Bool H x W mask: min_depth < gt < max_depth (max default 80 KITTI, 10 NYU), inside the crop if any."""
    gt = _as_2d_float32(gt, "gt")
    max_depth = _max_depth(dataset, max_depth)
    window = crop_window(dataset, crop, gt.shape[0], gt.shape[1])
    valid = torch.logical_and(gt > min_depth, gt < max_depth)
    if window is None:
        return valid
    r0, r1, c0, c1 = window
    inside = torch.zeros(valid.shape, dtype=torch.bool, device=valid.device)
    inside[r0:r1, c0:c1] = True
    return torch.logical_and(valid, inside)


def paste_kb_crop(pred, gt_shape):
    """A 352x1216 KB-crop prediction in a zero frame of gt_shape: rows from H-352, cols from int((W-1216)/2)."""
    pred = _as_2d_float32(pred, "pred")
    height, width = int(gt_shape[-2]), int(gt_shape[-1])
    if tuple(pred.shape) != (KB_CROP_HEIGHT, KB_CROP_WIDTH) or height < KB_CROP_HEIGHT or width < KB_CROP_WIDTH:
        raise ValueError(f"KB paste-back needs a {KB_CROP_HEIGHT}x{KB_CROP_WIDTH} prediction and a ground truth at "
                         f"least that large; got prediction {tuple(pred.shape)}, ground truth {(height, width)} "
                         f"(pass kb_crop=False for full-frame predictions)")
    top = int(height - KB_CROP_HEIGHT)
    left = int((width - KB_CROP_WIDTH) / 2)
    frame = torch.zeros((height, width), dtype=torch.float32, device=pred.device)
    frame[top:top + KB_CROP_HEIGHT, left:left + KB_CROP_WIDTH] = pred
    return frame


def clip_prediction(pred, min_depth, max_depth):
    """Official order: < min -> min, > max -> max, inf -> max, NaN -> min (NaN survives both comparisons)."""
    lo = torch.full_like(pred, min_depth)
    hi = torch.full_like(pred, max_depth)
    pred = torch.where(pred < min_depth, lo, pred)
    pred = torch.where(pred > max_depth, hi, pred)
    pred = torch.where(torch.isinf(pred), hi, pred)
    return torch.where(torch.isnan(pred), lo, pred)


def evaluate_image(pred, gt, dataset="kitti", crop="garg", kb_crop=True, min_depth=1e-3, max_depth=None):
    """The nine metrics of one image, exactly as the official evaluation loop (kb_crop applies to KITTI only)."""
    check_dataset_crop(dataset, crop)
    gt = _as_2d_float32(gt, "gt")
    pred = _as_2d_float32(pred, "pred").to(gt.device)
    max_depth = _max_depth(dataset, max_depth)
    if dataset == "kitti" and kb_crop:
        pred = paste_kb_crop(pred, gt.shape)
    elif tuple(pred.shape) != tuple(gt.shape):
        raise ValueError(f"prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ in size")
    pred = clip_prediction(pred, min_depth, max_depth)
    mask = eval_mask(gt, dataset, crop, min_depth, max_depth)
    if not bool(mask.any()):
        raise ValueError("no valid ground-truth pixel inside the evaluation crop")
    return compute_errors(torch.masked_select(gt, mask), torch.masked_select(pred, mask))


def average(results):
    """Mean of each metric over images (a list of evaluate_image dicts), float32 as the official arrays."""
    results = list(results)
    if not results:
        raise ValueError("average of no images")
    return {name: _mean(torch.stack([r[name].to(torch.float32) for r in results])) for name in METRIC_NAMES}


__all__ = ["METRIC_NAMES", "compute_errors", "eval_mask", "paste_kb_crop", "clip_prediction", "evaluate_image",
           "average", "crop_window"]

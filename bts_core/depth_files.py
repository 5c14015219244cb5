"""Depth maps as files: the official uint16 PNG (metres x 256 KITTI, x 1000 NYU) and a colour view."""
from pathlib import Path

import numpy as np
from PIL import Image

from bts_core.spec import DEPTH_SCALE

COLOUR_MAP = "magma"


def depth_png(depth, dataset):
    """uint16 depth as the official test script writes it: metres x 256 (KITTI) or x 1000 (NYU), truncated;
    clipped to the uint16 range first so a large value saturates instead of wrapping."""
    scaled = np.asarray(depth, np.float32) * np.float32(DEPTH_SCALE[dataset])
    return np.clip(np.nan_to_num(scaled, nan=0.0), 0, np.iinfo(np.uint16).max).astype(np.uint16)


def colour_image(depth):
    """uint8 RGB: the colour map over inverse depth, 0 at the farthest and 1 at the 95th percentile of
    nearness (monodepth2's convention), so near is bright and a few near outliers do not wash it out."""
    import matplotlib
    inverse = 1.0 / np.maximum(np.asarray(depth, np.float64), 1e-3)
    low, high = inverse.min(), np.percentile(inverse, 95)
    scaled = np.clip((inverse - low) / max(high - low, 1e-12), 0.0, 1.0)
    return (matplotlib.colormaps[COLOUR_MAP](scaled)[..., :3] * 255).round().astype(np.uint8)


def write_prediction(folder, stem, depth, dataset):
    """folder/raw/<stem>.png (16-bit depth) and folder/cmap/<stem>.png (colour), as the official test script's
    raw/ and cmap/ folders."""
    paths = []
    for sub, array in (("raw", depth_png(depth, dataset)), ("cmap", colour_image(depth))):
        path = Path(folder) / sub / f"{stem}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(array).save(path)
        paths.append(path)
    return paths

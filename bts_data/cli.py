"""What the evaluate and predict commands of torch_ref and paddle_bts share, without a framework:
arguments, the samples to evaluate, the metric table, images in and depth PNGs out.

Framework modules keep the model, the forward pass and the atomic output (conversion.cli.staged_outputs).
"""
import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from bts_data import transforms as T
from bts_data.dataset import BtsSamples, DataConfig, open_rgb
from bts_data.filelist import DataError
from bts_spec import DATASETS, DEFAULT_MAX_DEPTH, ENCODERS, INPUT_MULTIPLE, KITTI_FOCAL, METRIC_NAMES, NYU_FOCAL

DEFAULT_CROP = {"kitti": "garg", "nyu": "eigen"}   # official arguments_eval_*.txt: --garg_crop / --eigen_crop
DEFAULT_FOCAL = {"kitti": KITTI_FOCAL, "nyu": NYU_FOCAL}   # KITTI_FOCAL: no focal scaling
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
COLOUR_MAP = "magma"


def positive(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def add_model_arguments(parser):
    parser.add_argument("--encoder", required=True, choices=ENCODERS, metavar="NAME", help=", ".join(ENCODERS))
    parser.add_argument("--dataset", required=True, choices=DATASETS,
                        help="kitti scales the final depth by focal / 715.0873; sets the defaults below")
    parser.add_argument("--max-depth", type=positive, metavar="METRES",
                        help="the model's max_depth (default 80 KITTI, 10 NYU)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or the framework's GPU name")


def add_evaluation_arguments(parser):
    parser.add_argument("--data-path", required=True, metavar="DIR", help="root of the listed images")
    parser.add_argument("--gt-path", required=True, metavar="DIR", help="root of the listed depth PNGs")
    parser.add_argument("--filenames-file", required=True, metavar="FILE",
                        help="official list: 'image_path depth_path focal' per line (depth None: skipped)")
    parser.add_argument("--crop", choices=("garg", "eigen", "none"),
                        help="evaluation crop (default: garg for KITTI, eigen for NYU, as the official scripts)")
    parser.add_argument("--flip-average", action="store_true",
                        help="average with the prediction of the mirrored image (not the official protocol)")
    parser.add_argument("--no-kb-crop", dest="kb_crop", action="store_false",
                        help="KITTI: predict on whole frames (each a multiple of 32) instead of the 352x1216 KB crop")
    parser.add_argument("--min-depth-eval", type=positive, default=1e-3, metavar="METRES", help="default 1e-3")
    parser.add_argument("--max-depth-eval", type=positive, metavar="METRES", help="default 80 KITTI, 10 NYU")
    parser.add_argument("--batch-size", type=positive_int, default=1, help="default 1")
    parser.add_argument("--csv", type=Path, metavar="FILE", help="also write the metrics as one CSV row")
    parser.add_argument("--force", action="store_true", help="replace an existing --csv file")


def resolve_defaults(args):
    """Fills the per-dataset defaults in place; returns args."""
    args.max_depth = args.max_depth or DEFAULT_MAX_DEPTH[args.dataset]
    if hasattr(args, "crop"):
        args.crop = DEFAULT_CROP[args.dataset] if args.crop is None else (None if args.crop == "none" else args.crop)
        args.max_depth_eval = args.max_depth_eval or DEFAULT_MAX_DEPTH[args.dataset]
    if hasattr(args, "focal"):
        args.focal = args.focal or DEFAULT_FOCAL[args.dataset]
    return args


def evaluation_samples(args):
    """The listed test images, KB-cropped for KITTI unless --no-kb-crop (ground truth stays full size)."""
    for flag, path in (("--data-path", args.data_path), ("--gt-path", args.gt_path)):
        if not os.path.isdir(path):
            raise DataError(f"{flag} {path}: no such folder")
    return BtsSamples(DataConfig(dataset=args.dataset, data_path=args.data_path, gt_path=args.gt_path,
                                 filenames_file=args.filenames_file, mode="test",
                                 do_kb_crop=args.dataset == "kitti" and args.kb_crop))


def check_evaluation_samples(samples, dataset):
    if samples.config.mode == "train":
        raise DataError("evaluation needs samples in 'test' or 'online_eval' mode (training mode augments randomly)")
    if samples.config.dataset != dataset:
        raise DataError(f"samples are {samples.config.dataset!r} but evaluation asks for {dataset!r}")


def metrics_frame(result):
    """One-row DataFrame: the nine metrics in the official order, then the image count."""
    return pd.DataFrame([{**{name: result[name] for name in METRIC_NAMES}, "count": result["count"]}])


def print_metrics(result, skipped, what):
    print(f"{what}: {result['count']} image(s) evaluated, {skipped} without ground truth skipped")
    # one format a column: tabulate sees the row as floats, and the image count is an integer
    print(metrics_frame(result).to_markdown(index=False, floatfmt=[".4f"] * len(METRIC_NAMES) + [".0f"]))


# ---- predict ----------------------------------------------------------------------------------------

def list_images(folder):
    """Image files (.png/.jpg/.jpeg) directly in `folder`, sorted; their stems name the outputs."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    stems = [p.stem for p in images]
    clash = next((s for s in stems if stems.count(s) > 1), None)
    if clash is not None:
        raise DataError(f"{folder}: two images named {clash!r} (different suffixes) would write the same outputs")
    return images


def pad_amount(size, multiple=INPUT_MULTIPLE):
    return -size % multiple


def prediction_input(path):
    """(1 x 3 x H' x W' float32, (H, W)): the normalised image, its bottom and right edges replicated up to
    the next multiple of 32 (BTS needs it); the prediction is cropped back to H x W."""
    image = T.normalize(T.image_to_float(open_rgb(path)))
    height, width = image.shape[1:]
    padded = np.pad(image, ((0, 0), (0, pad_amount(height)), (0, pad_amount(width))), mode="edge")
    return padded[None], (height, width)


def depth_png(depth, dataset):
    """uint16 depth as the official test script writes it: metres x 256 (KITTI) or x 1000 (NYU), truncated;
    clipped to the uint16 range first so a large value saturates instead of wrapping."""
    scaled = np.asarray(depth, np.float32) * np.float32(T.DEPTH_SCALE[dataset])
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


def add_predict_arguments(parser):
    parser.add_argument("--images", required=True, type=Path, metavar="FOLDER", help="folder of .png/.jpg images")
    parser.add_argument("--out", required=True, type=Path, metavar="FOLDER",
                        help="folder to create: raw/<name>.png (uint16 depth) and cmap/<name>.png (colour)")
    parser.add_argument("--focal", type=positive, metavar="PIXELS",
                        help="focal length (default 715.0873 KITTI: no scaling; 518.8579 NYU)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out folder (only after success)")


def check_prediction_folders(args):
    """--force replaces --out: refuse when that would delete the input images."""
    images, out = Path(args.images).absolute(), Path(args.out).absolute()
    if out == images or out in images.parents:
        raise DataError(f"--out {args.out} holds the input images; choose another folder")

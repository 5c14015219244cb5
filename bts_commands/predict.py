"""Depth maps of an official test list or of a folder of images; one loop for both frameworks (each supplies
a Framework adapter).

    python -m torch_ref.predict --checkpoint model --encoder densenet161_bts --dataset kitti \
        --data-path RAW --filenames-file eigen_test_files_with_gt.txt --out OUT [--no-kb-crop] [--force]
    python -m torch_ref.predict ... --images FOLDER --out OUT [--focal F] [--force]
    python -m paddle_bts.predict --weights out/densenet161_bts ... (the same arguments)

Test-list mode (--filenames-file, --data-path: the official test script's arguments) gives the network what
`evaluate` gives it: each listed image, KB-cropped to 352x1216 for KITTI unless --no-kb-crop, with its
line's focal. It writes what the official test script writes: OUT/raw/<name>.png, uint16 depth (metres
x 256 KITTI, x 1000 NYU, truncated as official), named <date_drive>_<frame>.png (KITTI) or
<scene>_<rgb file>.png (NYU), so the official eval_with_pngs.py on OUT/raw reproduces `evaluate`'s figures
up to that truncation; and OUT/cmap/<name>.png, a colour map of inverse depth. Folder mode (--images)
predicts each NAME.png/.jpg whole, with one focal, into OUT/raw/NAME.png and OUT/cmap/NAME.png.

A size that is not a multiple of 32 (folder images, whole KITTI frames) gets its bottom and right edges
replicated up to the next multiple, and the prediction is cropped back. OUT appears only once every image
is done (written to a temporary folder, then renamed); an existing OUT is an error unless --force.
Exit codes: 0 done, 2 bad input.
"""
import os
from collections import Counter
from functools import partial
from pathlib import Path, PurePosixPath

import numpy as np

from bts_commands.arguments import parser_for, resolve_defaults
from bts_commands.evaluate import evaluation_samples
from bts_core.cli import positive, progress, run_command, staged_outputs
from bts_core.depth_files import write_prediction
from bts_core.malloc import keep_freed_memory
from bts_core.spec import INPUT_MULTIPLE
from bts_data import DataError
from bts_data import transforms as T
from bts_data.dataset import open_rgb

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def add_predict_arguments(parser):
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--filenames-file", metavar="FILE",
                        help="test-list mode, with --data-path: official list, 'image_path depth_path focal' per "
                             "line (depth path unused), each image at its line's focal; the official test script's "
                             "output names and sizes, for its utils/eval_with_pngs.py")
    source.add_argument("--images", type=Path, metavar="FOLDER",
                        help="folder mode: every .png/.jpg in FOLDER, whole; bottom and right edges replicated "
                             "up to a multiple of 32, prediction cropped back to the image's size")
    parser.add_argument("--data-path", metavar="DIR", help="with --filenames-file: root of the listed images")
    parser.add_argument("--no-kb-crop", dest="kb_crop", action="store_false",
                        help="with --filenames-file, KITTI: whole frames (edges replicated up to a multiple of "
                             "32) instead of the 352x1216 KB crop, which the official test script predicts")
    parser.add_argument("--out", required=True, type=Path, metavar="FOLDER",
                        help="folder to create: raw/<name>.png (uint16 depth) and cmap/<name>.png (colour)")
    parser.add_argument("--focal", type=positive, metavar="PIXELS",
                        help="with --images: every image's focal (default 715.0873 KITTI: no scaling; 518.8579 NYU)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out folder (only after success)")


def check_mode(parser, args):
    """An option of the other mode is a mistake, not something to ignore."""
    if args.filenames_file is not None:
        if args.data_path is None:
            parser.error("--filenames-file needs --data-path (the root of the listed images)")
        if args.focal is not None:
            parser.error("--focal is for --images; a test list gives each image's focal")
    elif args.data_path is not None or not args.kb_crop:
        parser.error(f"{'--data-path' if args.data_path is not None else '--no-kb-crop'} is for --filenames-file")


def check_prediction_folders(args):
    """--force replaces --out: refuse when that would delete the input images."""
    flag, source = ("--images", args.images) if args.images is not None else ("--data-path", args.data_path)
    images, out = Path(source).absolute(), Path(args.out).absolute()
    if out == images or out in images.parents:
        raise DataError(f"--out {args.out} holds the input images ({flag}); choose another folder")


def list_images(folder):
    """Image files (.png/.jpg/.jpeg) directly in `folder`, sorted; their stems name the outputs."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    check_unique([p.stem for p in images], folder, "the same name with different suffixes")
    return images


def check_unique(names, where, why):
    clash = next((name for name, count in Counter(names).items() if count > 1), None)
    if clash is not None:
        raise DataError(f"{where}: two images would write raw/{clash}.png ({why})")


def official_name(image_path, dataset):
    """The official test script's output name (without .png) of a listed image: KITTI <date_drive>_<frame>
    (date_drive: the path's second folder), NYU <scene>_<rgb file> (scene: the first; NYU lists start with '/')."""
    parts = PurePosixPath(image_path.lstrip("/")).parts
    folder = 1 if dataset == "kitti" else 0
    if len(parts) < folder + 2:
        layout = "<date>/<date_drive>/.../<frame>" if dataset == "kitti" else "<scene>/<rgb file>"
        raise DataError(f"{image_path}: official output names need {dataset} paths {layout}")
    return f"{parts[folder]}_{PurePosixPath(parts[-1]).stem}"


def listed_samples(args):
    """The listed images as `evaluate` reads them (test mode, KB crop for KITTI unless --no-kb-crop), all
    checked present before any work."""
    samples = evaluation_samples(args)
    missing = [samples.image_path(i) for i in range(len(samples)) if not os.path.isfile(samples.image_path(i))]
    if missing:
        raise DataError(f"{missing[0]}: no such image file ({len(missing)} of {len(samples)} listed images missing)")
    return samples


def pad_amount(size, multiple=INPUT_MULTIPLE):
    return -size % multiple


def padded(image):
    """(1 x 3 x H' x W' float32, (H, W)): a normalised 3 x H x W image, its bottom and right edges replicated
    up to the next multiple of 32 (BTS needs it); the prediction is cropped back to H x W."""
    height, width = image.shape[1:]
    return np.pad(image, ((0, 0), (0, pad_amount(height)), (0, pad_amount(width))), mode="edge")[None], (height, width)


def prediction_input(path):
    """`padded` of an image file, normalised as in training."""
    return padded(T.normalize(T.image_to_float(open_rgb(path))))


def folder_input(path, focal):
    return (*prediction_input(path), focal)


def listed_input(samples, index):
    sample = samples.sample(index)
    return (*padded(sample["image"]), float(sample["focal"]))


def inputs(args):
    """(output name, load) per image, checked before any work; load() -> (padded image, (H, W), focal)."""
    if args.images is not None:
        return [(path.stem, partial(folder_input, path, args.focal)) for path in list_images(args.images)]
    samples = listed_samples(args)
    names = [official_name(item.image, args.dataset) for item in samples.items]
    check_unique(names, args.filenames_file, "official names: <date_drive>_<frame> KITTI, <scene>_<file> NYU")
    return [(name, partial(listed_input, samples, index)) for index, name in enumerate(names)]


def parse_args(framework, argv):
    parser = parser_for(framework, __doc__.split("\n\n")[0])
    add_predict_arguments(parser)
    args = parser.parse_args(argv)
    check_mode(parser, args)
    return resolve_defaults(args)


def command(framework, args):
    check_prediction_folders(args)
    jobs = inputs(args)
    with staged_outputs([args.out], args.force, folder=True) as (staging,):
        model = framework.load_model(args)
        for name, load in progress(jobs, desc="predict", unit="image"):
            image, (height, width), focal = load()
            depth = framework.predict_image(model, image, focal)[:height, :width]
            write_prediction(staging, name, np.ascontiguousarray(depth), args.dataset)
    print(f"wrote {len(jobs)} depth map(s) to {args.out}/raw (uint16) and {args.out}/cmap (colour)")


def main(framework, argv=None) -> int:
    """The command: bad input (DataError included) gives one line and exit 2."""
    keep_freed_memory()     # each forward's activations would be mapped afresh (bts_core.malloc)
    return run_command(lambda args: command(framework, args), parse_args(framework, argv))

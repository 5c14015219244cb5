"""Depth maps of a folder of images, one loop for both frameworks (each supplies a Framework adapter).

    python -m torch_ref.predict --checkpoint model --encoder densenet161_bts --dataset kitti \
        --images FOLDER --out FOLDER [--focal F] [--force]
    python -m paddle_bts.predict --weights out/densenet161_bts ... (the same arguments)

For each image NAME.png/.jpg: OUT/raw/NAME.png, uint16 depth (metres x 256 KITTI, x 1000 NYU, truncated as
official), and OUT/cmap/NAME.png, a colour map of inverse depth. The image is normalised as in training;
its bottom and right edges are replicated up to the next multiple of 32 and the prediction is cropped
back, so outputs have the input's size. OUT appears only once every image is done (written to a
temporary folder, then renamed); an existing OUT is an error unless --force. Exit codes: 0 done, 2 bad input.
"""
from pathlib import Path

import numpy as np

from bts_commands.arguments import parser_for, resolve_defaults
from bts_core.cli import positive, progress, run_command, staged_outputs
from bts_core.depth_files import write_prediction
from bts_core.spec import INPUT_MULTIPLE
from bts_data import DataError
from bts_data import transforms as T
from bts_data.dataset import open_rgb

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


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


def parse_args(framework, argv):
    parser = parser_for(framework, __doc__.split("\n\n")[0])
    add_predict_arguments(parser)
    return resolve_defaults(parser.parse_args(argv))


def command(framework, args):
    check_prediction_folders(args)
    images = list_images(args.images)
    with staged_outputs([args.out], args.force, folder=True) as (staging,):
        model = framework.load_model(args)
        for path in progress(images, desc="predict", unit="image"):
            image, (height, width) = prediction_input(path)
            depth = framework.predict_image(model, image, args.focal)[:height, :width]
            write_prediction(staging, path.stem, np.ascontiguousarray(depth), args.dataset)
    print(f"wrote {len(images)} depth map(s) to {args.out}/raw (uint16) and {args.out}/cmap (colour)")


def main(framework, argv=None) -> int:
    """The command: bad input (DataError included) gives one line and exit 2."""
    return run_command(lambda args: command(framework, args), parse_args(framework, argv))

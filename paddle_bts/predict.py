"""Depth maps of a folder of images with paddle_bts, written as the official test script writes them.

    python -m paddle_bts.predict --weights out/densenet161_bts --encoder densenet161_bts --dataset kitti \
        --images FOLDER --out FOLDER [--focal F] [--force]

For each image NAME.png/.jpg: OUT/raw/NAME.png, uint16 depth (metres x 256 KITTI, x 1000 NYU, truncated as
official), and OUT/cmap/NAME.png, a colour map of inverse depth. The image is normalised as in training;
its bottom and right edges are replicated up to the next multiple of 32 and the prediction is cropped
back, so outputs have the input's size. OUT appears only once every image is done (written to a
temporary folder, then renamed); an existing OUT is an error unless --force. Exit codes: 0 done, 2 bad input.
"""
import argparse
import sys

import numpy as np
import paddle

from bts_data import cli as shared


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, metavar="DIR",
                        help="PaddleDepth weight folder: encoder.pdparams and depth.pdparams")
    shared.add_model_arguments(parser)
    shared.add_predict_arguments(parser)
    return shared.resolve_defaults(parser.parse_args(argv))


def predict_image(model, image, focal):
    """H x W numpy depth of one 1 x 3 x H x W image (float32 numpy)."""
    with paddle.no_grad():
        depth = model(paddle.to_tensor(image), paddle.to_tensor([focal], dtype="float32"))[-1]
    return depth.numpy()[0, 0]


def command(args):
    from conversion.cli import progress, staged_outputs
    from paddle_bts.evaluate import load_model
    shared.check_prediction_folders(args)
    images = shared.list_images(args.images)
    with staged_outputs([args.out], args.force, folder=True) as (staging,):
        model = load_model(args)
        for path in progress(images, desc="predict", unit="image"):
            image, (height, width) = shared.prediction_input(path)
            depth = predict_image(model, image, args.focal)[:height, :width]
            shared.write_prediction(staging, path.stem, np.ascontiguousarray(depth), args.dataset)
    print(f"wrote {len(images)} depth map(s) to {args.out}/raw (uint16) and {args.out}/cmap (colour)")


def main(argv=None) -> int:
    from conversion.cli import run_command   # bad input (DataError included): one line, exit 2
    return run_command(command, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

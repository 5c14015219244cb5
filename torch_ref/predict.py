"""Depth maps of a folder of images with torch_ref, written as the official test script writes them.

    python -m torch_ref.predict --checkpoint model --encoder densenet161_bts --dataset kitti \
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
import torch

from bts_data import cli as shared


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, metavar="FILE",
                        help="official checkpoint (dict with 'model', 'module.' keys) or a bare state dict")
    shared.add_model_arguments(parser)
    shared.add_predict_arguments(parser)
    return shared.resolve_defaults(parser.parse_args(argv))


def predict_image(model, image, focal):
    """H x W numpy depth of one 1 x 3 x H x W image (float32 numpy)."""
    device = next(model.parameters()).device
    with torch.no_grad():
        depth = model(torch.from_numpy(image).to(device), torch.tensor([focal], dtype=torch.float32, device=device))[-1]
    return depth.cpu().numpy()[0, 0]


def command(args):
    from conversion.cli import progress, staged_outputs
    from torch_ref.evaluate import load_model
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

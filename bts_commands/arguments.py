"""Arguments both commands share, with the per-dataset defaults of the official argument files."""
import argparse

from bts_core.cli import positive
from bts_core.spec import DATASETS, DEFAULT_MAX_DEPTH, ENCODERS, KITTI_FOCAL, NYU_FOCAL

DEFAULT_CROP = {"kitti": "garg", "nyu": "eigen"}   # official arguments_eval_*.txt: --garg_crop / --eigen_crop
DEFAULT_FOCAL = {"kitti": KITTI_FOCAL, "nyu": NYU_FOCAL}   # KITTI_FOCAL: no focal scaling


def parser_for(framework, description):
    """A parser with the framework's weights option and the model arguments."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(framework.weights_flag, dest=framework.weights_dest, required=True,
                        metavar=framework.weights_metavar, help=framework.weights_help)
    parser.add_argument("--encoder", required=True, choices=ENCODERS, metavar="NAME", help=", ".join(ENCODERS))
    parser.add_argument("--dataset", required=True, choices=DATASETS,
                        help="kitti scales the final depth by focal / 715.0873; sets the defaults below")
    parser.add_argument("--max-depth", type=positive, metavar="METRES",
                        help="the model's max_depth (default 80 KITTI, 10 NYU)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or the framework's GPU name")
    return parser


def resolve_defaults(args):
    """Fills the per-dataset defaults in place; returns args."""
    args.max_depth = args.max_depth or DEFAULT_MAX_DEPTH[args.dataset]
    if hasattr(args, "crop"):
        args.crop = DEFAULT_CROP[args.dataset] if args.crop is None else (None if args.crop == "none" else args.crop)
        args.max_depth_eval = args.max_depth_eval or DEFAULT_MAX_DEPTH[args.dataset]
    if hasattr(args, "focal"):
        args.focal = args.focal or DEFAULT_FOCAL[args.dataset]
    return args

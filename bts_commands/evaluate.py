"""Official BTS evaluation, one loop for both frameworks (each supplies a Framework adapter).

    python -m torch_ref.evaluate --checkpoint model --encoder densenet161_bts --dataset kitti \
        --data-path RAW --gt-path GT --filenames-file eigen_test_files_with_gt.txt [--crop garg] [--csv m.csv]
    python -m paddle_bts.evaluate --weights out/densenet161_bts ... (the same arguments)

Protocol (official bts_eval.py): KITTI predicts on the 352x1216 KB crop and pastes it into a zero frame of
the ground truth's size; clip to [min, max]; valid gt inside the Garg/Eigen crop; metrics per image, then
the mean over images; images without ground truth are skipped. No median scaling (PaddleDepth's own
evaluation median-scales). `flip_average` (off by default, not official) averages with the mirrored
image's prediction mirrored back. Exit codes: 0 done, 2 bad input.
"""
import os
from pathlib import Path

import pandas as pd

from bts_commands.arguments import parser_for, resolve_defaults
from bts_core.cli import positive, positive_int, run_command, staged_outputs
from bts_core.malloc import keep_freed_memory
from bts_core.spec import METRIC_NAMES
from bts_data import DataError, batch_indices, with_ground_truth
from bts_data.dataset import BtsSamples, DataConfig


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


def evaluation_samples(args):
    """The listed test images, KB-cropped for KITTI unless --no-kb-crop (ground truth stays full size); as
    evaluate and predict's test-list mode read them (predict has no --gt-path)."""
    gt_path = getattr(args, "gt_path", None)
    for flag, path in (("--data-path", args.data_path), ("--gt-path", gt_path)):
        if path is not None and not os.path.isdir(path):
            raise DataError(f"{flag} {path}: no such folder")
    return BtsSamples(DataConfig(dataset=args.dataset, data_path=args.data_path, gt_path=gt_path,
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


def predictions(framework, model, samples, flip_average=False, batch_size=1):
    """(index, H x W prediction) for every listed image, in list order."""
    loader = framework.make_loader(samples, batch_size, shuffle=False, drop_last=False)
    for indices, batch in zip(batch_indices(len(samples), batch_size, 0, 0, shuffle=False, drop_last=False), loader):
        try:
            depth = framework.predict_depth(model, batch["image"], batch["focal"], flip_average)
        except ValueError as e:   # check_input_size: not a multiple of 32
            raise DataError(f"{samples.image_path(indices[0])}: {e}") from None
        yield from zip(indices, depth)


def score(framework, pairs, dataset, crop, kb_crop, min_depth=1e-3, max_depth=None):
    """The metric path of `evaluate`: the framework's metrics per (prediction, ground truth) pair, then the
    mean over images (float32, as the official arrays) and `count`."""
    per_image = [framework.evaluate_image(pred, gt, dataset, crop, kb_crop, min_depth, max_depth)
                 for pred, gt in pairs]
    if not per_image:
        raise DataError("no image with ground truth to evaluate")
    mean = framework.average(per_image)
    return {**{name: float(mean[name]) for name in METRIC_NAMES}, "count": len(per_image)}


def evaluate(framework, model, samples, dataset, crop, min_depth=1e-3, max_depth=None, flip_average=False,
             batch_size=1):
    """The nine official metrics (means over images with ground truth) and `count`.

    `samples`: BtsSamples in 'test' or 'online_eval' mode; KITTI predictions are pasted back into the
    full-size ground truth when the samples are KB-cropped. The model is left in the mode it came in.
    """
    check_evaluation_samples(samples, dataset)
    kb_crop = dataset == "kitti" and samples.config.do_kb_crop
    was_training = model.training
    model.eval()
    try:
        return score(framework, with_ground_truth(predictions(framework, model, samples, flip_average, batch_size),
                                                  samples), dataset, crop, kb_crop, min_depth, max_depth)
    finally:
        if was_training:   # a training loop's online evaluation continues in train mode
            model.train()


def parse_args(framework, argv):
    parser = parser_for(framework, __doc__.split("\n\n")[0])
    add_evaluation_arguments(parser)
    return resolve_defaults(parser.parse_args(argv))


def command(framework, args):
    with staged_outputs([args.csv] if args.csv else [], args.force) as staged:
        samples = evaluation_samples(args)
        model = framework.load_model(args)
        result = evaluate(framework, model, samples, args.dataset, args.crop, args.min_depth_eval,
                          args.max_depth_eval, args.flip_average, args.batch_size)
        print_metrics(result, len(samples) - result["count"], f"{framework.name} {args.encoder}")
        if staged:
            metrics_frame(result).to_csv(staged[0], index=False)
    return result


def main(framework, argv=None) -> int:
    """The command: bad input (DataError included) gives one line and exit 2."""
    keep_freed_memory()     # each forward's activations would be mapped afresh (bts_core.malloc)
    return run_command(lambda args: command(framework, args), parse_args(framework, argv))

"""Official BTS evaluation with torch_ref: predictions from the torch model, metrics from torch_ref.metrics.

    python -m torch_ref.evaluate --checkpoint model --encoder densenet161_bts --dataset kitti \
        --data-path RAW --gt-path GT --filenames-file eigen_test_files_with_gt.txt [--crop garg] [--csv m.csv]

Protocol (official bts_eval.py): KITTI predicts on the 352x1216 KB crop and pastes it into a zero frame of
the ground truth's size; clip to [min, max]; valid gt inside the Garg/Eigen crop; metrics per image, then
the mean over images; images without ground truth are skipped. No median scaling. `flip_average` (off by
default, not official) averages with the mirrored image's prediction mirrored back.
Exit codes: 0 done, 2 bad input.
"""
import argparse
import sys

import torch

from bts_data import DataError, batch_indices, with_ground_truth
from bts_data import cli as shared
from bts_spec import METRIC_NAMES
from torch_ref import metrics
from torch_ref.data import make_loader


def predict_depth(model, image, focal, flip_average=False):
    """final_depth as B x H x W; with flip_average, the mean with the mirrored image's prediction mirrored back."""
    with torch.no_grad():
        depth = model(image, focal)[-1]
        if flip_average:
            mirrored = model(torch.flip(image, [3]), focal)[-1]
            depth = 0.5 * (depth + torch.flip(mirrored, [3]))
    return depth[:, 0]


def predictions(model, samples, flip_average=False, batch_size=1):
    """(index, H x W prediction) for every listed image, in list order."""
    device = next(iter(model.parameters()), torch.empty(0)).device
    loader = make_loader(samples, batch_size, shuffle=False, drop_last=False)
    for indices, batch in zip(batch_indices(len(samples), batch_size, 0, 0, shuffle=False, drop_last=False), loader):
        try:
            depth = predict_depth(model, batch["image"].to(device), batch["focal"].to(device), flip_average)
        except ValueError as e:   # check_input_size: not a multiple of 32
            raise DataError(f"{samples.image_path(indices[0])}: {e}") from None
        yield from zip(indices, depth)


def score(pairs, dataset, crop, kb_crop, min_depth=1e-3, max_depth=None):
    """The metric path of `evaluate`: torch_ref.metrics per (prediction, ground truth) pair, then the mean
    over images (float32, as the official arrays) and `count`."""
    per_image = []
    for pred, gt in pairs:
        pred = torch.as_tensor(pred)
        per_image.append(metrics.evaluate_image(pred, torch.as_tensor(gt, device=pred.device), dataset, crop, kb_crop,
                                                min_depth, max_depth))
    if not per_image:
        raise DataError("no image with ground truth to evaluate")
    mean = metrics.average(per_image)
    return {**{name: float(mean[name]) for name in METRIC_NAMES}, "count": len(per_image)}


def evaluate(model, samples, dataset, crop, min_depth=1e-3, max_depth=None, flip_average=False, batch_size=1):
    """The nine official metrics (means over images with ground truth) and `count`, for a torch_ref model.

    `samples`: BtsSamples in 'test' or 'online_eval' mode; KITTI predictions are pasted back into the
    full-size ground truth when the samples are KB-cropped. The model is left in the mode it came in.
    """
    shared.check_evaluation_samples(samples, dataset)
    kb_crop = dataset == "kitti" and samples.config.do_kb_crop
    was_training = model.training
    model.eval()
    try:
        return score(with_ground_truth(predictions(model, samples, flip_average, batch_size), samples),
                     dataset, crop, kb_crop, min_depth, max_depth)
    finally:
        if was_training:   # a training loop's online evaluation continues in train mode
            model.train()


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, metavar="FILE",
                        help="official checkpoint (dict with 'model', 'module.' keys) or a bare state dict")
    shared.add_model_arguments(parser)
    shared.add_evaluation_arguments(parser)
    return shared.resolve_defaults(parser.parse_args(argv))


def load_model(args):
    """torch_ref model of --encoder with --checkpoint loaded strictly (weights_only), on --device, eval mode."""
    import torch_ref
    from torch_ref.checkpoint import CheckpointError
    model = torch_ref.build_model(args.encoder, max_depth=args.max_depth, dataset=args.dataset)
    try:
        torch_ref.load_official_checkpoint(model, str(args.checkpoint))
    except RuntimeError as e:   # strict load_state_dict: missing / unexpected keys, wrong shapes
        detail = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), str(e))
        raise CheckpointError(f"{args.checkpoint}: does not fit {args.encoder} ({detail[:300]})") from None
    return model.to(args.device).eval()


def command(args):
    from conversion.cli import staged_outputs
    with staged_outputs([args.csv] if args.csv else [], args.force) as staged:
        samples = shared.evaluation_samples(args)
        model = load_model(args)
        result = evaluate(model, samples, args.dataset, args.crop, args.min_depth_eval, args.max_depth_eval,
                          args.flip_average, args.batch_size)
        shared.print_metrics(result, len(samples) - result["count"], f"torch_ref {args.encoder}")
        if staged:
            shared.metrics_frame(result).to_csv(staged[0], index=False)
    return result


def main(argv=None) -> int:
    from conversion.cli import run_command   # bad input (DataError included): one line, exit 2
    return run_command(command, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

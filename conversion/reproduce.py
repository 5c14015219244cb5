"""Reproduce the published figures of an official BTS model in both frameworks, in one command.

    python -m conversion.reproduce --checkpoint bts_eigen_v2_pytorch_densenet161/model --encoder densenet161_bts \
        --data-path KITTI_RAW --gt-path KITTI_GT --filenames-file eigen_test_files_with_gt.txt --output DIR [--force]

Converts the checkpoint (conversion/torch2paddle.py, verified) into DIR/paddle, evaluates torch_ref on the
checkpoint and paddle_bts on the converted weights with the official protocol (the evaluate commands with
their defaults: KITTI KB crop, Garg crop, depth 1e-3..80 m; NYU Eigen crop, 1e-3..10 m), and prints one
table: metric | published (the authors' figure for that model, n/a where there is none) | torch_ref |
paddle_bts | |difference|, also written as DIR/reproduction.md and DIR/reproduction.csv (beside each
framework's own metrics, DIR/torch_ref.csv and DIR/paddle_bts.csv). DIR appears only once all of it has
succeeded. Exit codes: 0 done, 1 the converted weights failed verification, 2 bad input.
"""
import argparse
import sys
from pathlib import Path

import pandas as pd

from bts_commands import evaluate as loop
from bts_core.cli import positive, positive_int, refuse_replacing_source, run_command, staged_outputs
from bts_core.spec import DATASETS, ENCODERS, METRIC_NAMES
from conversion import torch2paddle
from conversion.model_zoo import PUBLISHED_SOURCE, published_metrics
from paddle_bts.evaluate import PADDLE
from torch_ref.evaluate import TORCH

# metric, published (three decimals, as published), torch_ref, paddle_bts, |difference|
TABLE_FORMAT = ("", ".3f", ".6f", ".6f", ".2e")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, metavar="FILE",
                        help="official checkpoint, e.g. the file `model` in bts_eigen_v2_pytorch_densenet161.zip")
    parser.add_argument("--encoder", required=True, choices=ENCODERS, metavar="NAME", help=", ".join(ENCODERS))
    parser.add_argument("--dataset", choices=DATASETS, default="kitti", help="default kitti (the Eigen split)")
    parser.add_argument("--max-depth", type=positive, metavar="METRES", help="the model's (default 80 KITTI, 10 NYU)")
    parser.add_argument("--data-path", type=Path, required=True, metavar="DIR", help="root of the listed images")
    parser.add_argument("--gt-path", type=Path, required=True, metavar="DIR", help="root of the listed depth PNGs")
    parser.add_argument("--filenames-file", type=Path, required=True, metavar="FILE",
                        help="official test list, e.g. eigen_test_files_with_gt.txt")
    parser.add_argument("--output", type=Path, required=True, metavar="DIR", help="folder to create")
    parser.add_argument("--torch-device", default="cpu", metavar="DEVICE", help="cpu (default) or cuda")
    parser.add_argument("--paddle-device", default="cpu", metavar="DEVICE", help="cpu (default) or gpu")
    parser.add_argument("--batch-size", type=positive_int, default=1, help="default 1")
    parser.add_argument("--force", action="store_true", help="replace DIR (only after success)")
    return parser.parse_args(argv)


def model_argv(args):
    """--encoder, --dataset and --max-depth as the converter and the evaluate commands take them."""
    max_depth = ["--max-depth", str(args.max_depth)] if args.max_depth else []
    return ["--encoder", args.encoder, "--dataset", args.dataset] + max_depth


def evaluation_argv(args, weights_flag, weights, device, csv):
    """The evaluate command's own arguments: its defaults are the official protocol."""
    argv = [weights_flag, weights, "--data-path", args.data_path, "--gt-path", args.gt_path, "--filenames-file",
            args.filenames_file, "--device", device, "--batch-size", args.batch_size, "--csv", csv]
    return [str(a) for a in argv] + model_argv(args)


def conversion_argv(args, output):
    return ["--checkpoint", str(args.checkpoint), "--output", str(output)] + model_argv(args)


def reproduction_table(results, published):
    """One row per metric (official order): published figure (NaN: none), each framework's, |difference|."""
    torch_result, paddle_result = results[TORCH.name], results[PADDLE.name]
    return pd.DataFrame({"metric": METRIC_NAMES,
                         "published": [published[m] if published else float("nan") for m in METRIC_NAMES],
                         TORCH.name: [torch_result[m] for m in METRIC_NAMES],
                         PADDLE.name: [paddle_result[m] for m in METRIC_NAMES],
                         "|difference|": [abs(torch_result[m] - paddle_result[m]) for m in METRIC_NAMES]})


def report(args, table, results, skipped):
    """The table as markdown, headed by what was evaluated how."""
    counts = ", ".join(f"{name} {result['count']}" for name, result in results.items())
    protocol = "KB crop, Garg crop, 1e-3..80 m" if args.dataset == "kitti" else "Eigen crop, 1e-3..10 m"
    shown = (table.astype(object).where(table.notna(), None)   # tabulate writes missingval for None, not NaN
             .rename(columns={"|difference|": r"\|difference\|"}))   # a bare | would split the markdown cell
    return "\n".join([
        f"# {args.encoder} on {args.dataset}: published figures, torch_ref and paddle_bts", "",
        f"- checkpoint: {args.checkpoint}; Paddle weights converted from it: {args.output}/paddle",
        f"- images: {args.filenames_file}; evaluated {counts}; {skipped} without ground truth skipped",
        f"- protocol: official bts_eval.py ({protocol}, no median scaling)",
        f"- published: {PUBLISHED_SOURCE}" + ("" if table["published"].notna().any() else "; none for this model"),
        "", shown.to_markdown(index=False, floatfmt=TABLE_FORMAT, missingval="n/a"), ""])


def reproduce(args):
    output = args.output.absolute()
    refuse_replacing_source(args.output, args.checkpoint, args.force)
    with staged_outputs([output], args.force, folder=True) as (staging,):
        frameworks = ((TORCH, args.checkpoint, args.torch_device), (PADDLE, staging / "paddle", args.paddle_device))
        evaluations = {framework.name: loop.parse_args(framework, evaluation_argv(
            args, framework.weights_flag, weights, device, staging / f"{framework.name}.csv"))
            for framework, weights, device in frameworks}
        samples = loop.evaluation_samples(evaluations[TORCH.name])   # a bad list or folder fails before any work
        torch2paddle.convert_checkpoint(torch2paddle.parse_args(conversion_argv(args, staging / "paddle")))
        results = {framework.name: loop.command(framework, evaluations[framework.name])
                   for framework, _, _ in frameworks}
        table = reproduction_table(results, published_metrics(args.dataset, args.encoder))
        text = report(args, table, results, len(samples) - results[TORCH.name]["count"])
        (staging / "reproduction.md").write_text(text, encoding="utf-8")
        table.to_csv(staging / "reproduction.csv", index=False, na_rep="n/a")
        print(text)
    print(f"wrote {args.output}/ (reproduction.md, reproduction.csv, torch_ref.csv, paddle_bts.csv, paddle/)")
    return table


def main(argv=None) -> int:
    return run_command(reproduce, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

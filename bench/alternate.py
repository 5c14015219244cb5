"""Two exported programs in one process, calls alternated: which is faster, on a machine too noisy for two runs.

    python -m bench.alternate BEFORE AFTER [--size 352x704] [--calls 20] [--threads N]

BEFORE and AFTER are folders that conversion/export.py wrote (e.g. from two commits, for the same size).
Both load into one process and run the same input in turns (A B, then B A, ...), so the drift of a shared
machine (noisy neighbours, clock changes) falls on both alike; separate `python -m bench` runs of one
export vary by about 5% here, more than most single changes to the export are worth. Prints each one's
median and minimum, AFTER's median over BEFORE's, and the largest difference between their final depths.
Exit codes: 0 done, 2 bad arguments.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

from bench.cli import size_option
from bench.worker import inputs, summary
from bts_core.malloc import keep_freed_memory


def alternate(runners, image, focal, calls):
    """{name: [seconds]} over `calls` timed rounds, each runner once a round, the order flipped every round."""
    names = list(runners)
    times = {name: [] for name in names}
    for round_ in range(calls):
        for name in names if round_ % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            runners[name](image, focal)
            times[name].append(time.perf_counter() - start)
    return times


def report(times, depths):
    before, after = times
    stats = {name: summary(t) for name, t in times.items()}
    lines = [f"{name}: median {stat['median_s']:.4f} s, min {stat['min_s']:.4f} s over {stat['repeats']} calls"
             for name, stat in stats.items()]
    lines.append(f"after / before (medians): {stats[after]['median_s'] / stats[before]['median_s']:.3f}")
    lines.append(f"max |final_depth difference|: {np.abs(depths[after] - depths[before]).max():.3g}")
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.alternate", description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--size", default="352x704", help="HEIGHTxWIDTH both were exported for (default 352x704)")
    parser.add_argument("--calls", type=int, default=20, help="timed calls of each (default 20)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    args = parser.parse_args(argv)
    args.size = size_option(parser, args.size)
    if args.calls < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--calls and --threads must be >= 1")
    if args.before.resolve() == args.after.resolve():
        parser.error(f"before and after are the same folder ({args.before})")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    keep_freed_memory()      # as the commands and the bench run (bts_core.malloc)
    from paddle_bts.inference import InferenceModel
    try:
        runners = {str(folder): InferenceModel(folder, threads=args.threads) for folder in (args.before, args.after)}
    except (FileNotFoundError, ValueError) as error:
        print(f"python -m bench.alternate: {error}", file=sys.stderr)
        return 2
    image, _, focal = inputs(1, *args.size)
    try:
        depths = {name: runner(image, focal)["final_depth"] for name, runner in runners.items()}   # warm-up
    except ValueError as error:    # Paddle's word for an input its program was not exported for
        print(f"python -m bench.alternate: --size {args.size[0]}x{args.size[1]}: not the size both were exported "
              f"for? Paddle: {' '.join(str(error).split())[:200]}", file=sys.stderr)
        return 2
    print(report(alternate(runners, image, focal, args.calls), depths))
    return 0


if __name__ == "__main__":
    sys.exit(main())

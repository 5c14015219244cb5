"""PaddleDepth weight folder -> official BTS PyTorch checkpoint (the reverse of torch2paddle.py).

    python conversion/paddle2torch.py --weights out/densenet161_bts --encoder densenet161_bts --output model

Writes torch.save({'global_step': 0, 'model': {'module.' + key: tensor}}) as the official code does.
BN counters, which Paddle does not keep, come from the folder's manifest.json when torch2paddle.py
wrote it (so torch -> paddle -> torch is bit-exact), else 0. Exit codes: 0 done, 2 bad input/output.
"""
import argparse
import sys
from pathlib import Path

import torch

import torch_ref
from paddle_bts import read_weight_files
from bts_core.spec import ENCODERS
from bts_core.cli import InputError, progress, run_command, staged_outputs
from conversion.convert import ConversionError, paddle_to_torch
from conversion.diagnose import describe_paddle_source
from conversion.manifest import MANIFEST, read_manifest


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, required=True, metavar="DIR",
                        help="folder with encoder.pdparams and depth.pdparams (PaddleDepth layout)")
    parser.add_argument("--encoder", choices=ENCODERS, required=True, metavar="NAME", help=", ".join(ENCODERS))
    parser.add_argument("--output", type=Path, required=True, metavar="FILE", help="checkpoint file to create")
    parser.add_argument("--force", action="store_true", help="replace FILE (only after success)")
    return parser.parse_args(argv)


def recorded_counters(folder, encoder):
    """BN counters torch2paddle.py recorded, or {} for a folder it did not write."""
    if not (folder / MANIFEST).is_file():
        return {}
    manifest = read_manifest(folder)
    if manifest.get("encoder") != encoder:
        raise InputError(f"{folder / MANIFEST} says encoder {manifest.get('encoder')}, not {encoder}")
    return manifest["conversion"]["bn_counters"]


def convert_folder(args):
    if not args.weights.is_dir():
        raise InputError(f"{args.weights}: no such folder")
    with staged_outputs([args.output], args.force) as (staging,):
        parts, head = read_weight_files(args.weights)
        counters = recorded_counters(args.weights, args.encoder)
        items = sum(len(state) for state in parts.values())
        state, report = paddle_to_torch(parts, args.encoder, lambda it: progress(
            it, total=items, desc="convert", unit="tensor"))
        if report.problems():
            raise ConversionError(f"{args.weights}: {describe_paddle_source(report, parts, args.encoder)}")
        unknown = sorted(set(counters) - set(report.dropped))
        if unknown:
            raise InputError(f"{args.weights / MANIFEST}: BN counter for a key {args.encoder} lacks: {unknown[0]}")
        for key, value in counters.items():
            state[key] = torch.tensor(value, dtype=torch.int64)
        torch_ref.save_official_checkpoint(state, str(staging))
    restored = f"{len(counters)} BN counters restored from {MANIFEST}" if counters else \
        f"{len(report.dropped)} BN counters set to 0 (no {MANIFEST})"
    print(f"converted {args.encoder}: {len(report.mapped)} tensors mapped, {len(head)} head tensors left out, "
          f"{len(report.transforms)} transposed, {restored}; wrote {args.output}")


def main(argv=None) -> int:
    return run_command(convert_folder, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

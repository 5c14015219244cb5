"""PaddleDepth weight folder -> official BTS PyTorch checkpoint (the reverse of torch2paddle.py).

    python conversion/paddle2torch.py --weights out/densenet161_bts --encoder densenet161_bts --output model

Writes torch.save({'global_step': 0, 'model': {'module.' + key: tensor}}) as the official code does; with
--with-optimizer also the folder's AdamW state (adam.pdopt, as paddle_bts.train saves it) as 'optimizer'
in the official layout and its global step, so torch_ref.train (checkpoint_path) or bts_main.py resumes it.
BN counters, which Paddle does not keep, come from the folder's manifest.json when torch2paddle.py
wrote it (so torch -> paddle -> torch is bit-exact), else 0. Exit codes: 0 done, 2 bad input/output.
"""
import argparse
import sys
from pathlib import Path

import torch_ref
from paddle_bts import read_weight_files
from paddle_bts.optimizer_state import OPTIMIZER_FILE, read_optimizer_file
from bts_core.spec import ENCODERS
from bts_core.cli import InputError, non_negative, positive, progress, run_command, staged_outputs
from bts_core.config import DEFAULTS
from conversion import optimizer_state
from conversion.convert import ConversionError, paddle_to_torch
from conversion.diagnose import describe_paddle_source
from conversion.manifest import MANIFEST, recorded_counters, restore_counters


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, required=True, metavar="DIR",
                        help="folder with encoder.pdparams and depth.pdparams (PaddleDepth layout)")
    parser.add_argument("--encoder", choices=ENCODERS, required=True, metavar="NAME", help=", ".join(ENCODERS))
    parser.add_argument("--output", type=Path, required=True, metavar="FILE", help="checkpoint file to create")
    parser.add_argument("--force", action="store_true", help="replace FILE (only after success)")
    parser.add_argument("--with-optimizer", action="store_true",
                        help=f"also convert DIR/{OPTIMIZER_FILE} (moments, step, LR position) into the checkpoint")
    parser.add_argument("--adam-eps", type=positive, default=DEFAULTS["adam_eps"], metavar="EPS",
                        help="AdamW eps paddle_bts.train ran with (Paddle's state does not keep it; default %(default)g)")
    parser.add_argument("--weight-decay", type=non_negative, default=DEFAULTS["weight_decay"], metavar="WD",
                        help="encoder group's weight decay it ran with (default %(default)g)")
    return parser.parse_args(argv)


def read_optimizer(args):
    """(official torch AdamW state, global step, summary) from DIR/adam.pdopt."""
    path = args.weights / OPTIMIZER_FILE
    if not path.is_file():
        raise InputError(f"{path}: no such file (--with-optimizer needs the optimizer state paddle_bts.train saves)")
    return optimizer_state.paddle_to_torch(read_optimizer_file(path), args.encoder, path,
                                           epsilon=args.adam_eps, weight_decay=args.weight_decay)


def convert_folder(args):
    if not args.weights.is_dir():
        raise InputError(f"{args.weights}: no such folder")
    with staged_outputs([args.output], args.force) as (staging,):
        optimizer, global_step, summary = read_optimizer(args) if args.with_optimizer else (None, 0, None)
        parts, head = read_weight_files(args.weights)
        counters = recorded_counters(args.weights, args.encoder)
        items = sum(len(state) for state in parts.values())
        state, report = paddle_to_torch(parts, args.encoder, lambda it: progress(
            it, total=items, desc="convert", unit="tensor"))
        if report.problems():
            raise ConversionError(f"{args.weights}: {describe_paddle_source(report, parts, args.encoder)}")
        restore_counters(state, counters, known=report.dropped, folder=args.weights, encoder=args.encoder)
        extra = {"optimizer": optimizer} if optimizer is not None else {}
        torch_ref.save_official_checkpoint(state, str(staging), global_step=global_step, **extra)
    restored = f"{len(counters)} BN counters restored from {MANIFEST}" if counters else \
        f"{len(report.dropped)} BN counters set to 0 (no {MANIFEST})"
    print(f"converted {args.encoder}: {len(report.mapped)} tensors mapped, {len(head)} head tensors left out, "
          f"{len(report.transforms)} transposed, {restored}; wrote {args.output}")
    if summary is not None:
        print(f"optimizer state: {summary['entries']} Paddle entries -> AdamW state of {summary['parameters']} "
              f"parameters (official groups), global step {global_step}, eps {args.adam_eps:g}, "
              f"weight decay {args.weight_decay:g}")


def main(argv=None) -> int:
    return run_command(convert_folder, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

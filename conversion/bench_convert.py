"""How much slower is torch2paddle.py than the least any conversion must do? Both measured in one run.

    python conversion/bench_convert.py [--encoder densenet161_bts] [--repeat 3]

Floor: torch.load(weights_only=True) + paddle.save of the same tensors (as numpy) into one file;
also shown with the sha256 of input and output added, which the manifest requires (on a machine
where hashing cannot run beside the conversion, that alone is about the floor's own time).
Conversion: torch2paddle.py's whole path without verification: read, map names, check every key,
shape and value, write both files into a staging folder, hash source and outputs, manifest, model
card, rename. The two alternate, on the same page-cached file; medians are reported (the machine
may be shared). Verification is timed once, separately. The goal is conversion <= 1.5 x floor.
"""
import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bts_core.cli import quiet_paddle_import

quiet_paddle_import()   # run as a file, paddle comes before the conversion package that does this

import paddle  # noqa: E402 (after quiet_paddle_import)
import torch

import torch_ref
from bts_core.spec import ENCODERS
from conversion import torch2paddle
from conversion.manifest import sha256_file
from conversion.seeded import save_seeded_checkpoint

GOAL = 1.5


def floor_once(checkpoint, target, hashed=False):
    """torch.load + paddle.save; `hashed` adds the sha256 of input and output that the manifest requires."""
    start = time.perf_counter()
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    paddle.save({k: v.numpy() for k, v in state.items()}, str(target))
    if hashed:
        sha256_file(checkpoint), sha256_file(target)
    return time.perf_counter() - start


def conversion_once(args):
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        torch2paddle.convert_checkpoint(args)
    return time.perf_counter() - start


def verification_once(checkpoint, folder, args):
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        passed = torch2paddle.run_verification(torch_ref.read_state_dict(str(checkpoint)), folder, args)["passed"]
    return time.perf_counter() - start, passed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder", choices=ENCODERS, default="densenet161_bts")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-verify", dest="verify", action="store_false", help="skip timing verification")
    opts = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bts-bench-") as tmp:
        tmp = Path(tmp)
        checkpoint = tmp / "model"
        save_seeded_checkpoint(opts.encoder, checkpoint)   # seeded weights: verification means something
        checkpoint.read_bytes()   # into the page cache: both sides then read from memory
        args = torch2paddle.parse_args(["--checkpoint", str(checkpoint), "--encoder", opts.encoder,
                                        "--output", str(tmp / "out"), "--force", "--no-verify"])
        runs = {"floor": [], "floor + sha256": [], "conversion": []}
        for _ in range(opts.repeat):
            runs["floor"].append(floor_once(checkpoint, tmp / "floor.pdparams"))
            runs["floor + sha256"].append(floor_once(checkpoint, tmp / "floor.pdparams", hashed=True))
            runs["conversion"].append(conversion_once(args))
        median = {name: statistics.median(times) for name, times in runs.items()}
        print(f"{opts.encoder}: {checkpoint.stat().st_size / 1e6:.0f} MB checkpoint, {opts.repeat} runs each, medians")
        for name, times in runs.items():
            print(f"{name:>15}: {median[name]:.2f} s  (runs: {', '.join(f'{t:.2f}' for t in times)})")
        ratio = median["conversion"] / median["floor"]
        print(f"ratio: {ratio:.3f} x floor ({'meets' if ratio <= GOAL else 'misses'} the goal <= {GOAL} x); "
              f"{median['conversion'] / median['floor + sha256']:.2f} x floor + sha256")
        if opts.verify:
            seconds, passed = verification_once(checkpoint, tmp / "out", args)
            print(f"verification, separately: {seconds:.1f} s ({'passed' if passed else 'FAILED'})")
    return 0   # a measurement, not a check: timings on a shared machine are noisy


if __name__ == "__main__":
    sys.exit(main())

"""Where a Paddle Inference forward spends its time on this CPU, primitive by primitive:

    python -m bench.profile [--size 352x704] [--threads N] [--encoder NAME] [--out FILE]

Exports a seeded BTS for one size (conversion.export), runs it through paddle_bts.inference.InferenceModel
with oneDNN and, after warm-up calls, logs one call with oneDNN's own timing of every primitive
(paddle_bts.dnnl.set_verbose, on the libdnnl Paddle ships). The report: time by primitive kind and
implementation, the convolutions' work and rate, the costliest other primitives with their shapes, and the
time outside any primitive, split by Paddle's own profiler (paddle.profiler, on the same call): its ops that
oneDNN does not run, its work inside its oneDNN ops around the primitives, and the rest (the executor between
ops, feeding and fetching). Logging costs time itself: read the shares here, and time with `python -m bench`.
Exit codes: 0 done, 2 bad arguments.
"""
import argparse
import ctypes
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench.cli import REPO, machine, size_option
from bench.worker import inputs, measure
from bts_core.malloc import keep_freed_memory
from bts_core.spec import ENCODERS

CONV_SHAPE = re.compile(r"mb(\d+)_ic(\d+)oc(\d+)_ih(\d+)oh(\d+)kh(\d+).*iw(\d+)ow(\d+)kw(\d+)")
COLUMNS = ["kind", "implementation", "layouts", "shape", "ms", "multiply_adds", "outputs"]


def verbose_lines(call):
    """Runs call() with oneDNN's verbose log on: (what call() returned, the log's lines; oneDNN writes them to
    file descriptor 1)."""
    from paddle_bts import dnnl
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 1)
        try:
            dnnl.set_verbose(1)
            value = call()
        finally:
            dnnl.set_verbose(0)
            libc.fflush(None)
            os.dup2(saved, 1)
            os.close(saved)
        log.seek(0)
        return value, log.read().decode(errors="replace").splitlines()


def operator_times(call):
    """Runs call() under Paddle's profiler: (one row (op, ms) per operator its executor ran, in order; the call's
    wall time in ms)."""
    import paddle.profiler as profiler
    recorder = profiler.Profiler(targets=[profiler.ProfilerTarget.CPU])
    recorder.start()
    try:
        start = time.perf_counter()
        call()
        wall_ms = (time.perf_counter() - start) * 1e3
    finally:
        recorder.stop()
    with tempfile.TemporaryDirectory(prefix="bts-profile-trace-") as folder:
        trace = Path(folder) / "trace.json"
        recorder.export(str(trace), format="json")
        events = json.loads(trace.read_text())["traceEvents"]
    # names read "onednn_op.conv2d[29.687 ms]"; durations are in microseconds
    ops = pd.DataFrame([(e["name"].split("[")[0], e["dur"] / 1e3) for e in events if e.get("cat") == "Operator"],
                       columns=["op", "ms"])
    return ops, wall_ms


def conv_work(kind, shape):
    """(multiply-adds, output values) of a (de)convolution from its verbose shape
    (g32mb1_ic128oc32_ih177oh352kh2...); zeros for other primitives."""
    if kind not in ("convolution", "deconvolution"):
        return 0, 0
    groups = int(shape[1:shape.index("mb")]) if shape.startswith("g") else 1
    mb, ic, oc, ih, oh, kh, iw, ow, kw = map(int, CONV_SHAPE.search(shape).groups())
    pixels = oh * ow if kind == "convolution" else ih * iw   # a deconvolution's kernel visits its input
    return mb * ic * (oc // groups) * kh * kw * pixels, mb * oc * oh * ow


def primitives(lines):
    """One row per executed primitive: kind, implementation, layouts, shape, ms, and a (de)convolution's work
    (multiply-adds, output values, GFLOP)."""
    rows = []
    for line in lines:
        fields = line.split(",")
        if fields[0] != "onednn_verbose" or "exec" not in fields[2:4]:
            continue
        kind, impl, layouts, shape, ms = fields[5], fields[6], fields[8], fields[-2], float(fields[-1])
        rows.append(dict(zip(COLUMNS, (kind, impl, layouts, shape, ms, *conv_work(kind, shape)))))
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.assign(GFLOP=2 * table["multiply_adds"] / 1e9)


def arithmetic(table):
    """Rows of (de)convolutions that do more than one multiply-add per output value: the network's arithmetic.
    A transposed convolution with a 0/1 kernel that repeats pixels (nearest upsampling) is a copy, one
    product per output value, and counts with the memory-bound rest."""
    return table["multiply_adds"] > table["outputs"]


def outside_primitives(ops, primitive_ms, wall_ms):
    """The call's time outside oneDNN's primitives, split three ways (ms): Paddle's ops that oneDNN does not run
    (pd_op.*, builtin.*), Paddle's work inside its oneDNN ops around the primitives (descriptors, primitive
    lookup, layouts), and the rest (the executor between ops, feeding and fetching)."""
    onednn = ops["op"].str.startswith("onednn_op.")
    return {"native ops": ops.loc[~onednn, "ms"].sum(),
            "around the primitives": ops.loc[onednn, "ms"].sum() - primitive_ms,
            "executor, feed and fetch": wall_ms - ops["ms"].sum()}


def report(table, ops, wall_ms, meta):
    """The markdown report of one logged call: oneDNN's primitives (table) and Paddle's operators (ops)."""
    total = table["ms"].sum()
    by_kind = (table.groupby(["kind", "implementation"], as_index=False)
               .agg(calls=("ms", "size"), ms=("ms", "sum"), GFLOP=("GFLOP", "sum"))
               .sort_values("ms", ascending=False))
    by_kind["share of call"] = (by_kind["ms"] / wall_ms).map("{:.1%}".format)
    by_kind["GFLOP/s"] = (by_kind["GFLOP"] / by_kind["ms"] * 1e3).where(by_kind["GFLOP"] > 0)
    by_op = (ops.groupby("op", as_index=False).agg(calls=("ms", "size"), ms=("ms", "sum"))
             .sort_values("ms", ascending=False))
    is_conv = arithmetic(table)
    others, convs = table[~is_conv].nlargest(10, "ms"), table[is_conv]
    lines = [f"# Paddle Inference, primitive by primitive: {meta['encoder']} {meta['size']}, {meta['threads']} "
             f"threads", "", f"- CPU: {meta['cpu']}; paddle {meta['paddle']}; {meta['malloc']}",
             f"- the logged call: {wall_ms:.1f} ms wall; in oneDNN primitives {total:.1f} ms "
             f"({total / wall_ms:.1%}); outside them {wall_ms - total:.1f} ms: " + "; ".join(
                 f"{part} {ms:.1f} ms" for part, ms in outside_primitives(ops, total, wall_ms).items()),
             f"- unlogged calls (median of {meta['timed']}): {meta['median_ms']:.1f} ms: the log's own cost is the "
             f"difference", f"- convolutions (transposed ones included, pixel repeats not): {convs['GFLOP'].sum():.1f} "
             f"GFLOP in {convs['ms'].sum():.1f} ms, {convs['GFLOP'].sum() / convs['ms'].sum() * 1e3:.1f} GFLOP/s", "",
             "## By primitive kind and implementation", "",
             by_kind.to_markdown(index=False, floatfmt=".2f"), "",
             "## The ten costliest primitives other than convolutions (the memory-bound rest)", "",
             others[["ms", "kind", "implementation", "shape", "layouts"]].to_markdown(index=False, floatfmt=".2f"), "",
             "## Paddle's operators by type (its profiler; an op's time includes its primitives)", "",
             by_op.head(15).to_markdown(index=False, floatfmt=".2f"), ""]
    return "\n".join(lines)


def profile(args):
    malloc = keep_freed_memory()     # as the commands and the bench run (bts_core.malloc)
    import paddle

    import paddle_bts
    from conversion.export import export_inference
    from paddle_bts.inference import InferenceModel
    paddle.seed(0)
    model = paddle_bts.build_model(args.encoder)
    with tempfile.TemporaryDirectory(prefix="bts-profile-") as folder:
        export_inference(model, folder, *args.size)
        runner = InferenceModel(folder, threads=args.threads)
        image, _, focal = inputs(1, *args.size)
        times, _, _ = measure(lambda: runner(image, focal), args.warmup, args.timed, max_seconds=float("inf"))
        (ops, wall_ms), lines = verbose_lines(lambda: operator_times(lambda: runner(image, focal)))
    meta = {"encoder": args.encoder, "size": "x".join(map(str, args.size)), "threads": runner.threads,
            "cpu": machine()["cpu"], "paddle": paddle.__version__, "timed": args.timed,
            "median_ms": statistics.median(times) * 1e3, "malloc": malloc}
    return report(primitives(lines), ops, wall_ms, meta)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="352x704", help="HEIGHTxWIDTH (default 352x704)")
    parser.add_argument("--encoder", choices=ENCODERS, default="densenet161_bts", metavar="NAME")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first (default 2)")
    parser.add_argument("--timed", type=int, default=3, help="unlogged timed calls (default 3)")
    parser.add_argument("--out", type=Path, default=None,
                        help="report file (default reports/bench/onednn_profile_HxW.md)")
    args = parser.parse_args(argv)
    args.size = size_option(parser, args.size)
    if args.warmup < 1 or args.timed < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--warmup, --timed and --threads must be >= 1")
    args.out = args.out or REPO / "reports" / "bench" / f"onednn_profile_{args.size[0]}x{args.size[1]}.md"
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    text = profile(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    staged = args.out.with_name(args.out.name + ".part")
    staged.write_text(text)
    staged.replace(args.out)
    print(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

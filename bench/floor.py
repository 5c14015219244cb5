"""The compute floor of a task on this CPU: its FLOPs over the CPU's fp32 peak.

    python -m bench.floor SPEC.json OUT.json     (run by bench.cli in a process of its own)

FLOPs: torch's own counter (torch.utils.flop_counter, 2 per multiply-add of convolutions and matrix
products; elementwise work is not counted) over torch_ref's forward, or forward + loss + backward for a
train step. Peak, two ways, both reported:
- from the ISA: cores x FMA units x fp32 lanes x 2 x clock. Lanes from /proc/cpuinfo's flags (16 with
  AVX-512, 8 with AVX2, 4 otherwise), 2 FMA units per core (Zen 2-4 and Xeon Gold/Platinum; Xeon
  Silver/Bronze have one AVX-512 unit), the clock /proc/cpuinfo reports (a VM shows the nominal one);
- measured: torch's fp32 matrix product 4096 x 4096 x 4096 with the same threads, the best of 3 before the
  backends run and 3 after (`bench.cli`): on a shared VM one measurement moved by 8% between runs (164.9
  against 179.1 GFLOP/s, AMD EPYC), and a dip would lower the floor's peak and flatter every ratio.
A CPU that boosts above its reported clock beats the ISA figure; the floor uses the larger of the two, so
no backend can look faster than it.
"""
import json
import os
import sys
import time
from pathlib import Path

from bts_core.cpuinfo import cpu_flags, cpuinfo_field

FMA_UNITS = 2
GEMM_SIZE = 4096
GEMM_REPEATS = 3


def cpu_clock_ghz():
    mhz = cpuinfo_field("cpu MHz")
    return float(mhz) / 1000 if mhz else None


def isa_peak(cores, flags=None, clock_ghz=None):
    """{'isa': name, 'fp32 lanes': n, 'clock GHz': f, 'peak GFLOP/s': p} from the ISA (None peak: no clock)."""
    flags = cpu_flags() if flags is None else flags
    clock_ghz = cpu_clock_ghz() if clock_ghz is None else clock_ghz
    isa, lanes = ("AVX-512", 16) if "avx512f" in flags else ("AVX2", 8) if "avx2" in flags else ("SSE", 4)
    flops_per_lane = 2 if "fma" in flags else 1
    peak = cores * FMA_UNITS * lanes * flops_per_lane * clock_ghz if clock_ghz else None
    return {"isa": isa + ("+FMA" if "fma" in flags else ""), "fp32 lanes": lanes, "FMA units per core": FMA_UNITS,
            "FLOPs per lane": flops_per_lane,
            "clock GHz": clock_ghz, "cores": cores, "isa peak GFLOP/s": peak,
            "bf16 hardware": sorted(flags & {"avx512_bf16", "amx_bf16"})}


def measured_gemm_rate(threads):
    import torch
    torch.set_num_threads(threads)
    a, b = torch.randn(GEMM_SIZE, GEMM_SIZE), torch.randn(GEMM_SIZE, GEMM_SIZE)
    a @ b
    best = float("inf")
    for _ in range(GEMM_REPEATS):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * GEMM_SIZE ** 3 / best / 1e9


def task_flops(encoder, tasks):
    """{task name: FLOPs} for ("forward" | "train step", batch, height, width) tuples."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import torch_ref
    from torch_ref.loss import silog_loss
    torch.manual_seed(0)
    model = torch_ref.build_model(encoder)
    out = {}
    for kind, batch, height, width in tasks:
        image, focal = torch.randn(batch, 3, height, width), torch.full((batch,), 715.0873)
        counter = FlopCounterMode(display=False)
        if kind == "forward":
            model.eval()
            with counter, torch.no_grad():
                model(image, focal)
        else:
            model.train()
            depth = torch.rand(batch, 1, height, width) * 79 + 1
            with counter:
                silog_loss()(model(image, focal)[4], depth, depth > 1.0).backward()
            model.zero_grad(set_to_none=True)
        out[f"{kind} {batch}x3x{height}x{width}"] = counter.get_total_flops()
    return out


def floor(spec):
    """{"peak": ..., "tasks": {name: {"GFLOP", "floor_s"}}}; spec["earlier GEMM GFLOP/s"]: a rate measured
    before the backends ran (main with no tasks), or None."""
    threads = spec["threads"]
    peak = isa_peak(threads)
    rates = {"before": spec.get("earlier GEMM GFLOP/s"), "after": measured_gemm_rate(threads)}
    rates = {when: rate for when, rate in rates.items() if rate}
    peak["measured GEMM GFLOP/s"] = max(rates.values())
    peak["measured by"] = (f"torch fp32 matrix product {GEMM_SIZE}^3, {threads} threads, best of {GEMM_REPEATS}, "
                           + " and ".join(f"{r:.1f} {when} the backends" for when, r in rates.items())
                           + ": the faster")
    peak["floor peak GFLOP/s"] = max(peak["measured GEMM GFLOP/s"], peak["isa peak GFLOP/s"] or 0)
    flops = task_flops(spec["encoder"], [tuple(t) for t in spec["tasks"]])
    return {"peak": peak, "tasks": {task: {"GFLOP": f / 1e9, "floor_s": f / 1e9 / peak["floor peak GFLOP/s"]}
                                    for task, f in flops.items()}}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(argv[0]).read_text())
    os.environ.setdefault("OMP_NUM_THREADS", str(spec["threads"]))
    # no tasks: the GEMM rate alone, measured before the backends run (bench.cli)
    result = floor(spec) if spec.get("tasks") else {"measured GEMM GFLOP/s": measured_gemm_rate(spec["threads"])}
    Path(argv[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One backend's measurements, in a process of its own: python -m bench.worker SPEC.json OUT.json

The parent (bench.cli) starts one worker per backend, one after the other, with the environment the
backend needs (e.g. MKL_DEBUG_CPU_TYPE must be set before MKL's first call). A process of its own keeps
the figures apart: torch's OpenMP and Paddle's Intel OpenMP runtimes spin-wait after their work, and in
one process each slowed the other (torch's 1.6 s forward took 12-14 s in one of five calls right after
Paddle Inference ran); peak memory is the worker's own.
"""
import atexit
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bts_core.malloc import keep_freed_memory

KITTI_FOCAL = 715.0873


# ---- memory: the process's peak resident set, resettable (Linux) -----------------------------------

def _status_kb(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss():
    """Resets VmHWM to the current RSS (writing 5 to clear_refs); False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def mb(kb):
    return None if kb is None else round(kb / 1024, 1)


# ---- timing ----------------------------------------------------------------------------------------

def measure(fn, warmup, repeats, max_seconds, sync=lambda: None):
    """Calls fn warmup times, then up to `repeats` timed times (at least min(3, repeats) even past
    max_seconds); returns (seconds list, memory dict, load averages)."""
    load_before = os.getloadavg()
    reset = reset_peak_rss()
    rss_before = _status_kb("VmRSS")
    for _ in range(warmup):
        fn()
        sync()
    times, start = [], time.perf_counter()
    while len(times) < repeats:
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > max_seconds and len(times) >= min(3, repeats):
            break
    peak = _status_kb("VmHWM") if reset else None
    memory = {"peak_rss_mb": mb(peak), "peak_above_start_mb": mb(peak - rss_before) if peak else None}
    return times, memory, {"load_before": load_before[0], "load_after": os.getloadavg()[0]}


def summary(times):
    q = np.quantile(times, [0.25, 0.75])
    return {"repeats": len(times), "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "p25_s": float(q[0]), "p75_s": float(q[1]), "runs_s": [round(t, 4) for t in times]}


def inputs(batch, height, width, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((batch, 3, height, width), dtype=np.float32)
    depth = rng.uniform(0.5, 80.0, (batch, 1, height, width)).astype(np.float32)
    return image, depth, np.full((batch,), KITTI_FOCAL, np.float32)


# ---- backends: one set of tasks, two thin framework adapters ---------------------------------------

def eager_tasks(model, to_tensor, no_grad, build_optimizer, train_step, trace=lambda model: model):
    """forward(height, width) and train(batch, height, width): each builds its inputs and returns the call
    to time; the framework comes in through the arguments (tensor conversion, no-grad context, the
    framework's own optimizer and train step, and an optional tracer for the train step's model)."""
    def forward(height, width):
        image, _, focal = inputs(1, height, width)
        x, f = to_tensor(image), to_tensor(focal)
        model.eval()

        def call():
            with no_grad():
                model(x, f)
        return call

    def train(batch, height, width):
        image, depth, focal = inputs(batch, height, width)
        model.train()
        optimizer = build_optimizer(model)
        data = {"image": to_tensor(image), "depth": to_tensor(depth), "focal": to_tensor(focal)}
        runnable = trace(model)
        return lambda: train_step(runnable, optimizer, data)
    return forward, train


def device_peak(on_device, reset, peak_bytes):
    """device_memory(begin): resets the device's peak at the start of a task, reports it at its end ({} off
    the device)."""
    def device_memory(begin):
        if not on_device:
            return {}
        if begin:
            reset()
            return {}
        return {"device_peak_mb": round(peak_bytes() / 2**20, 1)}
    return device_memory


def torch_tasks(spec):
    import torch

    import torch_ref
    from torch_ref.train import build_optimizer, train_step
    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = spec["tf32"]
        torch.backends.cudnn.allow_tf32 = spec["tf32"]
        torch.backends.cudnn.benchmark = True    # official BTS training sets it
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    model = torch_ref.build_model(spec["encoder"]).to(device)
    forward, train = eager_tasks(model, lambda array: torch.from_numpy(array).to(device), torch.no_grad,
                                 build_optimizer, train_step)
    memory = device_peak(device.type == "cuda", lambda: torch.cuda.reset_peak_memory_stats(device),
                         lambda: torch.cuda.max_memory_allocated(device))
    return forward, train, sync, memory


def paddle_tasks(spec):
    settings = {}
    if spec.get("runtime") is not None:
        import paddle_bts.runtime
        # run() has set malloc for every backend alike (--malloc): configure leaves it as it is
        settings = paddle_bts.runtime.configure(keep_memory=False, **spec["runtime"])
    import paddle

    import paddle_bts
    from paddle_bts.train import build_optimizer, train_step
    gpu = spec["device"].startswith("gpu")
    paddle.set_device(spec["device"])
    sync = paddle.device.synchronize if gpu else (lambda: None)
    paddle.seed(0)
    model = paddle_bts.build_model(spec["encoder"], torch_running_var=spec.get("torch_running_var", True))
    trace = (lambda m: paddle.jit.to_static(m, full_graph=True)) if spec["mode"] == "to_static" else (lambda m: m)
    eager_forward, train = eager_tasks(model, paddle.to_tensor, paddle.no_grad, build_optimizer, train_step, trace)

    def forward(height, width):
        if spec["mode"] != "inference":
            return eager_forward(height, width)
        from conversion.export import export_inference
        from paddle_bts.inference import InferenceModel
        image, _, focal = inputs(1, height, width)
        folder = tempfile.mkdtemp(prefix="bts-bench-")
        atexit.register(shutil.rmtree, folder, True)   # the exported program: ~190 MB for densenet161
        export_inference(model, folder, height, width)
        runner = InferenceModel(folder, device="gpu" if gpu else "cpu", onednn=True, threads=spec["threads"],
                                precision=spec.get("precision", "fp32"))
        return lambda: runner(image, focal)

    memory = device_peak(gpu, paddle.device.cuda.reset_max_memory_allocated, paddle.device.cuda.max_memory_allocated)
    return forward, train, sync, memory, settings


def run(spec):
    malloc = keep_freed_memory() if spec["keep_memory"] else "glibc default"   # every backend alike
    if spec["framework"] == "torch":
        forward, train, sync, device_memory = torch_tasks(spec)
        settings = {}
    else:
        forward, train, sync, device_memory, settings = paddle_tasks(spec)
    rows = []
    tasks = [("forward", 1, h, w) for h, w in spec["sizes"]]
    if spec.get("train"):
        tasks.append(("train step", spec["train"]["batch"], *spec["train"]["size"]))
    for kind, batch, height, width in tasks:
        fn = forward(height, width) if kind == "forward" else train(batch, height, width)
        device_memory(True)
        times, memory, load = measure(fn, spec["warmup"], spec["repeats"], spec["max_seconds"], sync)
        rows.append({"backend": spec["label"], "task": f"{kind} {batch}x3x{height}x{width}", "kind": kind,
                     **summary(times), **memory, **device_memory(False), **load,
                     "settings": json.dumps({**(settings or spec.get("env") or {}), "malloc": malloc},
                                            sort_keys=True)})
        print(f"  {spec['label']:<34} {rows[-1]['task']:<24} median {rows[-1]['median_s']:.3f} s "
              f"({len(times)} runs, load {load['load_before']:.2f})", flush=True)
    return rows


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(argv[0]).read_text())
    Path(argv[1]).write_text(json.dumps(run(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Side-by-side speed of BTS in torch and Paddle: python -m bench [options]

Default: BTS-densenet161 forward latency (batch 1) at 352x704 and 352x1216 and the train step (batch 2,
352x704) for torch eager, Paddle eager as imported, Paddle eager with paddle_bts.runtime.configure()
(the training default), Paddle Inference (oneDNN; forward only), and where a CUDA device exists torch
on CUDA with TF32 off and on, Paddle on GPU eager and through Paddle Inference. `--paddle-study` instead
times the Paddle train step under each runtime setting (threads, MKL's CPU dispatch, oneDNN convolutions
(paddle_bts.onednn_conv, eager only: a static graph keeps Paddle's own), to_static training).

Every backend runs in a worker process of its own (bench/worker.py), one after the other, in this one
command run; warm-up calls are not timed; the median of the timed calls is reported with its spread
(min-max and interquartile). The machine's load average is recorded before each task: on a shared
machine, compare ratios from one run, never figures from different runs.
Writes OUT/bench.md, bench.csv, bench.png (or paddle_study.*). Exit codes: 0 done, 2 bad arguments.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import TORCH_CPU
from bts_core.cpuinfo import cpuinfo_field
from bts_core.spec import ENCODERS, INPUT_MULTIPLE

REPO = Path(__file__).resolve().parents[1]


class BenchError(ValueError):
    """Bad arguments; the message is one line meant for the user."""


@dataclass(frozen=True)
class Backend:
    key: str
    label: str
    framework: str              # torch | paddle
    device: str                 # cpu | cuda | gpu
    mode: str = "eager"         # eager | inference | to_static
    trains: bool = True         # inference backends have no train step
    tf32: bool = False
    runtime: dict = None        # paddle_bts.runtime.configure(**runtime); None: Paddle as imported
    torch_running_var: bool = True   # False: Paddle's own BN variance update (to_static cannot trace the hook)
    env: dict = field(default_factory=dict)
    precision: str = "fp32"          # Paddle Inference: "bf16" for oneDNN bf16 (where the CPU has it)


def main_backends():
    return [
        Backend("torch-cpu", TORCH_CPU, "torch", "cpu"),
        Backend("paddle-cpu-default", "paddle eager cpu (as imported)", "paddle", "cpu"),
        Backend("paddle-cpu", "paddle eager cpu (runtime.configure)", "paddle", "cpu", runtime={}),
        Backend("paddle-inference-cpu", "paddle inference cpu (oneDNN)", "paddle", "cpu", mode="inference",
                trains=False),
        Backend("paddle-inference-cpu-bf16", "paddle inference cpu (oneDNN bf16)", "paddle", "cpu", mode="inference",
                trains=False, precision="bf16"),
        Backend("torch-cuda", "torch eager cuda (TF32 off)", "torch", "cuda"),
        Backend("torch-cuda-tf32", "torch eager cuda (TF32 on)", "torch", "cuda", tf32=True),
        Backend("paddle-gpu", "paddle eager gpu", "paddle", "gpu", env={"NVIDIA_TF32_OVERRIDE": "0"}),
        Backend("paddle-inference-gpu", "paddle inference gpu", "paddle", "gpu", mode="inference", trains=False,
                env={"NVIDIA_TF32_OVERRIDE": "0"}),
    ]


def study_backends():
    """Part 4: each Paddle CPU setting alone and combined, for the train step (torch as the yardstick)."""
    off = {"threads": 1, "mkl_cpu_type": None, "onednn": False}
    return [
        Backend("torch-cpu", TORCH_CPU, "torch", "cpu"),
        Backend("default", "paddle: as imported", "paddle", "cpu"),
        Backend("threads", "paddle: threads = cores", "paddle", "cpu", runtime={**off, "threads": None}),
        Backend("mkl", "paddle: MKL_DEBUG_CPU_TYPE=5", "paddle", "cpu", runtime={**off, "mkl_cpu_type": "5"}),
        Backend("onednn", "paddle: oneDNN convolutions", "paddle", "cpu", runtime={**off, "onednn": True}),
        # paddle_bts's torch-like BN variance update is a hook calling set_value, which a static graph cannot
        # trace ('pir.Value' object has no attribute 'set_value'); to_static is timed with Paddle's own update.
        Backend("to_static", "paddle: to_static training (Paddle BN var)", "paddle", "cpu", mode="to_static",
                torch_running_var=False),
        Backend("threads+mkl", "paddle: threads + MKL type", "paddle", "cpu",
                runtime={"threads": None, "mkl_cpu_type": "5", "onednn": False}),
        Backend("threads+mkl+onednn", "paddle: threads + MKL type + oneDNN", "paddle", "cpu",
                runtime={"threads": None, "mkl_cpu_type": "5", "onednn": True}),
        # What paddle_bts's torch-like BN variance hook costs (it re-reads every BN input: paddle.var).
        Backend("threads+mkl-bnhook", "paddle: threads + MKL type, Paddle BN var (no hook)", "paddle", "cpu",
                runtime={"threads": None, "mkl_cpu_type": "5", "onednn": False}, torch_running_var=False),
        Backend("threads+mkl+to_static", "paddle: threads + MKL type + to_static (Paddle BN var)", "paddle", "cpu",
                mode="to_static", runtime={"threads": None, "mkl_cpu_type": "5", "onednn": False},
                torch_running_var=False),
        Backend("threads+mkl+onednn+to_static", "paddle: threads + MKL type + oneDNN + to_static (Paddle BN var)",
                "paddle", "cpu", mode="to_static", runtime={"threads": None, "mkl_cpu_type": "5", "onednn": True},
                torch_running_var=False),
    ]


def parse_size(text):
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise BenchError(f"size {text!r}: expected HEIGHTxWIDTH, e.g. 352x704") from None
    if h <= 0 or w <= 0 or h % INPUT_MULTIPLE or w % INPUT_MULTIPLE:
        raise BenchError(f"size {text}: height and width must be positive multiples of {INPUT_MULTIPLE}")
    return h, w


def size_option(parser, text):
    """parse_size for a tool's --size option: a bad size is the parser's one-line error, exit 2."""
    try:
        return parse_size(text)
    except BenchError as error:
        parser.error(f"--{error}")      # "size 350x700: ..." names the flag


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="352x704,352x1216", help="forward sizes HxW, comma-separated "
                        "(batch 1; default 352x704,352x1216; 'none' for none)")
    parser.add_argument("--train-size", default="352x704", help="train-step size HxW (default 352x704; 'none' skips)")
    parser.add_argument("--train-batch", type=int, default=2, help="train-step batch (default 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per task (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first (default 1)")
    parser.add_argument("--max-seconds", type=float, default=300.0,
                        help="stop repeating a task after this long, with at least 3 timed calls (default 300)")
    parser.add_argument("--encoder", choices=ENCODERS, default="densenet161_bts", metavar="NAME")
    parser.add_argument("--torch-device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="cpu: CPU only; cuda: also CUDA (must exist); auto: CUDA where available (default)")
    parser.add_argument("--paddle-device", choices=("auto", "cpu", "gpu"), default="auto",
                        help="cpu: CPU only; gpu: also GPU (must exist); auto: GPU where available (default)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for every backend (default: all cores)")
    parser.add_argument("--malloc", choices=("keep", "default"), default="keep",
                        help="every backend's glibc malloc: keep freed memory for reuse (bts_core.malloc, as the "
                             "commands and paddle_bts.runtime set it; default) or glibc's default")
    parser.add_argument("--backends", default=None,
                        help="comma-separated subset of backend keys (see bench.md's key column)")
    parser.add_argument("--paddle-study", action="store_true",
                        help="time the Paddle train step under each runtime setting instead")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "bench", help="report folder (default reports/bench)")
    return parser.parse_args(argv)


def device_support():
    """(torch sees CUDA, Paddle has a GPU, why Paddle cannot run bf16 here or None), asked in a child so this
    process never loads CUDA itself."""
    code = ("import json, torch, paddle; from paddle_bts.inference import bf16_unsupported_reason; "
            "print(json.dumps([torch.cuda.is_available(), "
            "paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0, "
            "bf16_unsupported_reason()]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    if out.returncode != 0:
        return False, False, "could not ask Paddle: " + (out.stderr.strip().splitlines() or ["?"])[-1]
    return tuple(json.loads(out.stdout.strip().splitlines()[-1]))


def choose_backends(args):
    backends = study_backends() if args.paddle_study else main_backends()
    torch_cuda, paddle_gpu, bf16_missing = device_support()
    if args.torch_device == "cuda" and not torch_cuda:
        raise BenchError("--torch-device cuda: torch sees no CUDA device (torch.cuda.is_available() is False)")
    if args.paddle_device == "gpu" and not paddle_gpu:
        raise BenchError("--paddle-device gpu: this Paddle has no GPU (paddle.device.is_compiled_with_cuda())")
    skipped = {}
    chosen = []
    for b in backends:
        if b.device == "cuda" and (args.torch_device == "cpu" or not torch_cuda):
            skipped[b.key] = "--torch-device cpu" if args.torch_device == "cpu" else "no CUDA device for torch"
        elif b.device == "gpu" and (args.paddle_device == "cpu" or not paddle_gpu):
            skipped[b.key] = "--paddle-device cpu" if args.paddle_device == "cpu" else "Paddle has no GPU"
        elif b.precision == "bf16" and bf16_missing:
            skipped[b.key] = bf16_missing
        else:
            chosen.append(b)
    if args.backends:
        wanted = [k.strip() for k in args.backends.split(",") if k.strip()]
        unknown = [k for k in wanted if k not in {b.key for b in backends}]
        if unknown:
            raise BenchError(f"--backends: unknown {unknown[0]!r}; choose from {', '.join(b.key for b in backends)}")
        chosen = [b for b in chosen if b.key in wanted]
    return chosen, skipped


def run_child(module, spec, extra_env=None):
    """Runs `python -m module SPEC.json OUT.json` in a process of its own; (its JSON, None) or (None, error line)."""
    env = {**os.environ, **(extra_env or {}),
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryDirectory(prefix="bts-bench-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        done = subprocess.run([sys.executable, "-m", module, str(spec_path), str(out_path)],
                              cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            lines = [l for l in done.stderr.splitlines() if l.strip()]
            return None, lines[-1] if lines else f"exit {done.returncode}"
        return json.loads(out_path.read_text()), None


def run_worker(backend, args, sizes, train):
    spec = {"label": backend.label, "key": backend.key, "framework": backend.framework,
            "device": backend.device, "mode": backend.mode, "tf32": backend.tf32, "runtime": backend.runtime,
            "env": backend.env, "torch_running_var": backend.torch_running_var, "precision": backend.precision, "encoder": args.encoder, "sizes": sizes if backend.mode != "to_static" else [],
            "train": train if backend.trains else None, "warmup": args.warmup, "repeats": args.repeats,
            "max_seconds": args.max_seconds, "threads": args.threads, "keep_memory": args.malloc == "keep"}
    if not spec["sizes"] and not spec["train"]:
        return []
    rows, error = run_child("bench.worker", spec, backend.env)
    if error:
        return [{"backend": backend.label, "task": "(failed)", "kind": "error", "error": error}]
    return [{**r, "key": backend.key, "device": backend.device} for r in rows]


def floor_tasks(sizes, train):
    tasks = [("forward", 1, h, w) for h, w in sizes]
    if train:
        tasks.append(("train step", train["batch"], *train["size"]))
    return tasks


def run_gemm(args):
    """This CPU's measured fp32 GEMM rate before the backends run (bench.floor with no tasks, a process of its
    own); None if it failed: the floor then rests on the measurement after them."""
    rate, error = run_child("bench.floor", {"threads": args.threads})
    return None if error else rate["measured GEMM GFLOP/s"]


def run_floor(args, tasks, gemm_before):
    """bench.floor in a process of its own: the tasks' FLOPs and this CPU's fp32 peak; None if it failed."""
    floor, error = run_child("bench.floor", {"encoder": args.encoder, "tasks": tasks, "threads": args.threads,
                                             "earlier GEMM GFLOP/s": gemm_before})
    if error:
        print(f"bench: no compute floor ({error})", file=sys.stderr)
    return floor


def machine():
    return {"cpu": cpuinfo_field("model name") or platform.processor(), "cores available": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "platform": platform.platform()}


def bench(args):
    sizes = [] if args.sizes.lower() == "none" else [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    train = None if args.train_size.lower() == "none" else {"batch": args.train_batch, "size": parse_size(args.train_size)}
    if args.paddle_study:
        sizes = []   # the study times the train step
        if train is None:
            raise BenchError("--paddle-study times the train step: give a --train-size")
    if args.repeats < 1 or args.warmup < 0 or args.train_batch < 1:
        raise BenchError("--repeats and --train-batch must be >= 1, --warmup >= 0")
    args.threads = args.threads or len(os.sched_getaffinity(0))
    backends, skipped = choose_backends(args)
    started = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "load": os.getloadavg()}
    print(f"bench: {len(backends)} backends, {args.encoder}, sizes {sizes}, train {train}; load {started['load'][0]:.2f}",
          flush=True)
    tasks = floor_tasks(sizes, train)
    gemm_before = run_gemm(args) if tasks else None
    rows = []
    for backend in backends:
        rows += run_worker(backend, args, sizes, train)
    floor = run_floor(args, tasks, gemm_before) if tasks else None
    from bench.report import write_reports
    meta = {"encoder": args.encoder, "started": started["time"], "load_start": started["load"],
            "load_end": os.getloadavg(), "warmup": args.warmup, "repeats": args.repeats,
            "max_seconds": args.max_seconds, "malloc": args.malloc, "skipped": skipped, "floor": floor,
            **machine(), **versions()}
    paths = write_reports(rows, meta, args.out, "paddle_study" if args.paddle_study else "bench")
    print("wrote " + ", ".join(str(p) for p in paths))
    return rows


def versions():
    from importlib import metadata
    out = {}
    for name in ("torch", "paddlepaddle", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        bench(args)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0

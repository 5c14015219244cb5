"""What a run ran on: commit, CPU model and ISA, thread counts, math-library settings, library versions.

A verdict depends on the CPU (summation order, oneDNN/MKL kernels, thread splits), so every report
carries this record; the environment matrix (alignment/matrix.py) varies the settings listed here.
"""
import os
import platform
import subprocess
from pathlib import Path

from bts_core.cpuinfo import cpu_flags, cpuinfo_field

ROOT = Path(__file__).resolve().parents[1]
# Variables that change which kernels run or how work is split (the matrix sets these).
SETTINGS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA",
            "MKL_ENABLE_INSTRUCTIONS", "MKL_DEBUG_CPU_TYPE", "MKL_CBWR", "ATEN_CPU_CAPABILITY",
            "FLAGS_use_mkldnn", "BTS_PADDLE_CONV", "BTS_MATRIX_CONFIG")
# As the process started: Paddle's import sets OMP_NUM_THREADS=1 where it is unset.
AT_START = {name: os.environ[name] for name in SETTINGS if name in os.environ}
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def _cpu():
    return cpuinfo_field("model name") or platform.processor() or "unknown", [f for f in ISA_FLAGS if f in cpu_flags()]


def _commit():
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + (" (with uncommitted changes)" if dirty else "")


def describe():
    """A flat dict for the report header."""
    import numpy as np
    import paddle
    import torch
    model, isa = _cpu()
    record = {"commit": _commit(), "cpu": model, "cores": os.cpu_count(), "isa flags": " ".join(isa) or "none",
              "torch cpu capability": torch.backends.cpu.get_cpu_capability(),
              "torch threads": torch.get_num_threads(), "torch": torch.__version__, "paddle": paddle.__version__,
              "numpy": np.__version__, "python": platform.python_version()}
    from paddle_bts import onednn_conv
    record["paddle eager conv"] = "oneDNN (paddle_bts.onednn_conv)" if onednn_conv.enabled() else "Paddle's own"
    record["settings at start"] = " ".join(f"{k}={v}" for k, v in AT_START.items()) or "(none)"
    record["settings now"] = " ".join(f"{k}={os.environ[k]}" for k in SETTINGS if k in os.environ) or "(none)"
    return record

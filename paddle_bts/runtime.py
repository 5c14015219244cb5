"""Paddle's CPU runtime settings for training and eager inference, in one place (measured by `python -m bench
--paddle-study`; figures in reports/bench/paddle_study.md).

    import paddle_bts.runtime
    paddle_bts.runtime.configure()      # before the first Paddle computation in the process

Why each setting (BTS-densenet161 train step, batch 2, 352x704, AMD EPYC, 2 cores; see DEFAULTS):
- threads: Paddle 3.3.1 starts its CPU math library (MKL) with FLAGS_paddle_num_threads = 1 thread,
  whatever the machine has; torch uses every core.
- MKL_DEBUG_CPU_TYPE=5 on AMD: Paddle's wheel ships MKL 2019.0.5 (mklml), whose dispatcher gives
  non-Intel CPUs its slowest code path unless told the CPU type; this MKL still reads the variable
  (removed in MKL 2020.1). It is read at MKL's first call, so configure() must run before any Paddle
  computation. torch is unaffected (its own MKL and oneDNN).
"""
import os

from paddle_bts.inference import available_threads

AMD_MKL_CPU_TYPE = "5"     # MKL 2019's AVX2 code path


def cpu_vendor():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def configure(threads=None, mkl_cpu_type="auto", onednn=False):
    """Applies Paddle's CPU settings; returns what was set (for logs and reports).

    threads: Paddle's CPU math threads (default: the cores this process may use).
    mkl_cpu_type: "auto" sets MKL_DEBUG_CPU_TYPE=5 on AMD CPUs unless already set; None leaves MKL alone.
    onednn: oneDNN kernels in dygraph (FLAGS_use_mkldnn).
    """
    import paddle
    from paddle.base import core

    applied = {}
    if mkl_cpu_type == "auto":
        mkl_cpu_type = AMD_MKL_CPU_TYPE if cpu_vendor() == "AuthenticAMD" else None
    if mkl_cpu_type is not None:
        os.environ.setdefault("MKL_DEBUG_CPU_TYPE", str(mkl_cpu_type))
        applied["MKL_DEBUG_CPU_TYPE"] = os.environ["MKL_DEBUG_CPU_TYPE"]
    threads = threads or available_threads()
    core.set_num_threads(threads)
    applied["threads"] = threads
    paddle.set_flags({"FLAGS_use_mkldnn": bool(onednn)})
    applied["FLAGS_use_mkldnn"] = bool(onednn)
    return applied

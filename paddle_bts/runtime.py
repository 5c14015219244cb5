"""Paddle's CPU runtime settings for training and eager inference, in one place.

    import paddle_bts.runtime
    paddle_bts.runtime.configure()      # before the first Paddle computation in the process

Measured with `python -m bench` (reports/bench/bench.md) and `python -m bench --paddle-study`
(reports/bench/paddle_study.md): BTS-densenet161, train step batch 2 at 352x704, AMD EPYC (Zen 4) with
2 cores, torch 2.14.1 / paddle 3.3.1, each backend in its own process, medians of 3-5 steps.
- One run, load 1.1-1.6: torch eager 9.83 s; Paddle as imported 49.5 s (5.04 x torch); with configure()
  24.4 s (2.49 x). Forward 1x3x352x704: 8.70 s -> 4.06 s (torch 1.55 s).
- Each setting alone (the study, a busier machine, load 1.2-5.7): as imported 50.0 s; threads = cores
  only 125 s (slower: MKL's generic code path with two threads); MKL_DEBUG_CPU_TYPE=5 only 33.9 s; both
  32.0 s; + oneDNN in dygraph 31.5 s (no effect: Paddle's dygraph conv2d keeps its MKL im2col+GEMM kernel
  under FLAGS_use_mkldnn); to_static training 46.7 s alone, 24.4 s with both settings, but it cannot trace
  paddle_bts's torch-like BN variance hook (set_value on a pir.Value), so it was timed with Paddle's own
  BN update, and the same eager step without that hook takes 24.3 s: to_static adds nothing here and
  takes 8.8 GB instead of 5.3 GB peak; with oneDNN as well it fails in run_program.

Why each default:
- threads: Paddle 3.3.1 starts its CPU math library with FLAGS_paddle_num_threads = 1, whatever the
  machine has; torch uses every core.
- MKL_DEBUG_CPU_TYPE=5 on AMD: Paddle's wheel ships MKL 2019.0.5 (libmklml_intel.so), whose dispatcher
  gives non-Intel CPUs its slowest code path unless told the CPU type; this MKL still reads the variable
  (removed in MKL 2020.1). It is read at MKL's first call, so configure() must run before any Paddle
  computation. torch is unaffected (its own MKL 2024 and oneDNN).
- convolutions through oneDNN (paddle_bts.onednn_conv): Paddle 3.3.1's dygraph never runs oneDNN on CPU.
  FLAGS_use_mkldnn and its 3.x name FLAGS_use_onednn, set at run time or in the environment, change
  nothing: a 3x3 convolution 192 -> 48 at 2 x 88 x 176, forward + backward, takes 0.334 s either way
  (torch 0.124 s) and ONEDNN_VERBOSE shows no primitive. Its own kernels unfold the input (im2col) before
  MKL's GEMM: at upconv1 (64 -> 32 channels at 352 x 704, batch 2) the forward takes 0.745 s against
  torch's 0.190 s, the GEMM alone 0.263 s. to_static training with oneDNN ends in a segmentation fault.
  So paddle_bts calls the oneDNN its wheel ships itself (onednn_conv): that convolution 0.133 s, and the
  train step (medians of 3, one bench run each, 2 threads) 12.77 s against torch's 11.98 s on the AMD EPYC
  (Zen 3; 17.9-19.1 s before), 8.09 s against 6.67 s on an Intel Xeon with AVX-512 (15.95 s before).
- malloc keeps freed memory (bts_core.malloc; the commands set it for torch too): glibc mapped every
  activation afresh, a page fault per page on first touch. Train step 12.90 -> 10.84 s (torch 12.75 ->
  9.39 s), eager forward at 352x704 2.03 -> 1.70 s, AMD EPYC, one bench run each with --malloc default / keep.
"""
import os

from bts_core.cpuinfo import cpuinfo_field
from bts_core.malloc import keep_freed_memory
from paddle_bts.inference import available_threads

AMD_MKL_CPU_TYPE = "5"     # MKL 2019's AVX2 code path


def cpu_vendor():
    return cpuinfo_field("vendor_id")


def configure(threads=None, mkl_cpu_type="auto", onednn=True, keep_memory=True):
    """Applies Paddle's CPU settings; returns what was set (for logs and reports).

    threads: Paddle's CPU math threads (default: the cores this process may use).
    mkl_cpu_type: "auto" sets MKL_DEBUG_CPU_TYPE=5 on AMD CPUs unless already set; None leaves MKL alone.
    onednn: eager nn.Conv2D forward and backward through oneDNN (paddle_bts.onednn_conv), on the same threads;
    where Paddle has no usable oneDNN its own kernels stay, and the result says why.
    keep_memory: glibc's malloc keeps freed memory for reuse (bts_core.malloc; process-wide).
    """
    from paddle.base import core

    from paddle_bts import dnnl, onednn_conv

    applied = {}
    if keep_memory:
        applied["malloc"] = keep_freed_memory()
    if mkl_cpu_type == "auto":
        mkl_cpu_type = AMD_MKL_CPU_TYPE if cpu_vendor() == "AuthenticAMD" else None
    if mkl_cpu_type is not None:
        os.environ.setdefault("MKL_DEBUG_CPU_TYPE", str(mkl_cpu_type))
        applied["MKL_DEBUG_CPU_TYPE"] = os.environ["MKL_DEBUG_CPU_TYPE"]
    threads = threads or available_threads()
    core.set_num_threads(threads)
    applied["threads"] = threads
    applied["onednn_conv"] = onednn_conv.enable(onednn)
    if onednn and not applied["onednn_conv"]:
        applied["onednn_conv_unavailable"] = dnnl.unavailable_reason()
    onednn_conv.set_threads(threads)
    return applied

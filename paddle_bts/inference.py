"""Runs a BTS program exported by conversion/export.py through Paddle Inference (oneDNN on CPU, or a GPU).

    model = InferenceModel("out/densenet161_bts")            # CPU, oneDNN, all cores this process may use
    outputs = model(image, focal)                            # {name: numpy array}, names as bts_spec.OUTPUT_NAMES
    model = InferenceModel("out/densenet161_bts", precision="bf16")   # oneDNN bf16: an option with an error

bf16 (CPU, oneDNN) is never the default: it rounds activations and weights to 8 significant bits, and its
error is measured, not assumed, by the `deploy` stage's bf16 case (final depth in metres against fp32 torch,
and the official metrics of a trained network). It needs a CPU with bf16 support (AVX-512 BF16 or AMX);
elsewhere Paddle would log a line and quietly run fp32, so the runner refuses instead.

`image` is N x 3 x H x W float32 (H x W as exported, any N), `focal` N float32 focal lengths in pixels.

Speed: call bts_core.malloc.keep_freed_memory() once in the process (the commands, paddle_bts.runtime and
the bench do; a library leaves the process's malloc alone): a 352 x 704 call then maps no memory afresh,
1.161-1.196 s against 1.213-1.225 s on an AMD EPYC with 2 threads.
"""
import os
from pathlib import Path

import numpy as np
import paddle
import paddle.inference as paddle_infer

from bts_core.spec import OUTPUT_NAMES

PREFIX = "inference"                      # file names: inference.json (or .pdmodel) + inference.pdiparams
PROGRAM_SUFFIXES = (".json", ".pdmodel")   # Paddle 3.x writes a PIR program (.json); 2.x wrote .pdmodel
PARAMS_SUFFIX = ".pdiparams"

# Paddle Inference 3.3.1 passes that break BTS under oneDNN, found by the `deploy` stage; both are left out.
BROKEN_ONEDNN_PASSES = {
    "operator_unsqueeze_onednn_fuse_pass": (
        "fuses reduction_1x1's multiply + unsqueeze but keeps the un-squeezed result type: the predictor "
        "then refuses the program (type tensor<-1x1x8x16xf32> of outputs[0][0] must be equal to "
        "tensor<-1x8x16xf32>)"),
    "inplace_pass": (
        "with oneDNN kernels, buffers reused in place corrupt reduction_1x1's plane normals: channels 1-2 off "
        "by up to 1.05 (mobilenetv2 reduc8x8 on seeded input) where the native CPU kernels agree to 1e-6"),
}


PRECISIONS = ("fp32", "bf16")


def bf16_unsupported_reason(device="cpu", onednn=True):
    """None where Paddle Inference can run bf16 here; otherwise why not, in one line."""
    if device != "cpu" or not onednn:
        return f"bf16 runs on the CPU with oneDNN only (asked: device {device}, oneDNN {'on' if onednn else 'off'})"
    from paddle.base import core
    if not core.supports_bfloat16():
        return ("this CPU has no bf16 support for oneDNN (Paddle's core.supports_bfloat16() is False; it needs "
                "AVX-512 BF16 or AMX), so Paddle would run fp32 instead")
    return None


def available_threads():
    """CPU cores this process may run on (the affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def gpu_available():
    return paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0


def program_files(folder, prefix=PREFIX):
    """(program, parameters) paths of an exported model in `folder`; raises FileNotFoundError."""
    folder = Path(folder)
    params = folder / (prefix + PARAMS_SUFFIX)
    for suffix in PROGRAM_SUFFIXES:
        program = folder / (prefix + suffix)
        if program.is_file() and params.is_file():
            return program, params
    raise FileNotFoundError(f"{folder}: no exported model ({prefix}.json or {prefix}.pdmodel with "
                            f"{prefix}{PARAMS_SUFFIX}); export one with conversion/torch2paddle.py --export-inference")


def make_config(program, params, device="cpu", onednn=True, threads=None, precision="fp32"):
    """A paddle.inference.Config for BTS: oneDNN (minus the passes above) or native kernels on CPU, or a GPU;
    precision "bf16": oneDNN bf16 (ValueError where this CPU or device cannot)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: choose {' or '.join(PRECISIONS)}")
    if precision == "bf16" and (reason := bf16_unsupported_reason(device, onednn)):
        raise ValueError(f"precision bf16: {reason}")
    config = paddle_infer.Config(str(program), str(params))
    kind, _, index = device.partition(":")
    if kind in ("gpu", "cuda"):
        if not gpu_available():
            raise ValueError(f"device {device!r}: this Paddle has no CUDA device "
                             f"(compiled with CUDA: {paddle.device.is_compiled_with_cuda()})")
        config.enable_use_gpu(256, int(index or 0))   # initial pool in MB; it grows as needed
    elif kind == "cpu":
        config.disable_gpu()
        if onednn:
            config.enable_onednn()
            for name in BROKEN_ONEDNN_PASSES:
                config.delete_pass(name)
            if precision == "bf16":
                config.enable_onednn_bfloat16()
        else:
            config.disable_onednn()   # Paddle 3.3.1 turns oneDNN on by default for CPU
        config.set_cpu_math_library_num_threads(threads or available_threads())
    else:
        raise ValueError(f"device {device!r}: choose cpu, gpu or gpu:N")
    config.disable_glog_info()
    return config


class InferenceModel:
    """A Paddle Inference predictor over an exported BTS program; calls return {output name: numpy array}."""

    def __init__(self, folder, device="cpu", onednn=True, threads=None, prefix=PREFIX, precision="fp32"):
        self.program, self.params = program_files(folder, prefix)
        self.device = device
        self.onednn = onednn and device == "cpu"
        self.threads = (threads or available_threads()) if device == "cpu" else None
        self.precision = precision
        self.config = make_config(self.program, self.params, device, onednn, threads, precision)
        self.predictor = paddle_infer.create_predictor(self.config)
        self.input_names = self.predictor.get_input_names()
        self.output_names = self.predictor.get_output_names()
        if len(self.output_names) != len(OUTPUT_NAMES):
            raise ValueError(f"{self.program}: {len(self.output_names)} outputs, a BTS program has {len(OUTPUT_NAMES)}")

    def describe(self):
        if self.device != "cpu":
            return f"paddle.inference {self.device}"
        kernels = ("oneDNN" + (" bf16" if self.precision == "bf16" else "")) if self.onednn else "native kernels"
        return f"paddle.inference cpu {kernels}, {self.threads} threads"

    def __call__(self, image, focal):
        # `focal` is absent from an NYU program: the graph never reads it and the export prunes it.
        arrays = {"image": np.ascontiguousarray(image, np.float32), "focal": np.ascontiguousarray(focal, np.float32)}
        for name in self.input_names:
            handle = self.predictor.get_input_handle(name)
            handle.reshape(list(arrays[name].shape))
            handle.copy_from_cpu(arrays[name])
        self.predictor.run()
        return {name: self.predictor.get_output_handle(fetch).copy_to_cpu()
                for name, fetch in zip(OUTPUT_NAMES, self.output_names)}

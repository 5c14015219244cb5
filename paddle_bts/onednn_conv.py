"""Paddle's eager 2-D convolutions on CPU through oneDNN, forward and backward, as torch's are.

    import paddle_bts.onednn_conv
    paddle_bts.onednn_conv.enable()     # every nn.Conv2D eligible below, until enable(False)
    paddle_bts.onednn_conv.set_threads(n)   # runtime.configure does both

Why: Paddle 3.3.1's dygraph convolves on CPU by unfolding the input (im2col) before MKL's GEMM, and no
flag makes it use oneDNN (runtime.py). Measured, AMD EPYC (Zen 3), 2 threads, forward + backward:
3x3 192 -> 48 at 2x88x176 0.320 s -> 0.133 s (torch 0.124 s); upconv1's 3x3 64 -> 32 at 2x352x704
1.843 s -> 0.597 s. The layers, their parameters and names are Paddle's own: only the kernel changes.

Eligible: dynamic mode, CPU, float32, NCHW, zero padding given explicitly. Anything else (static export,
GPU, other dtypes or paddings) takes Paddle's own forward, unchanged. Threads: Paddle's math-library count
(set_threads; Paddle's start-up FLAGS_paddle_num_threads until then), set around each oneDNN call only.
"""
from collections import OrderedDict
import ctypes
from functools import lru_cache
import os
import weakref

import paddle
from paddle.autograd import PyLayer

from bts_core.scoped import temporarily
from paddle_bts import dnnl

PADDLE_FORWARD = paddle.nn.Conv2D.forward
MAX_PLANS = 256             # one per distinct convolution shape; evaluation at many image sizes evicts
CHOICES = {"onednn": True, "paddle": False}     # BTS_PADDLE_CONV, for the test suite
_threads = None             # set_threads(); None: Paddle's own start-up count, FLAGS_paddle_num_threads


class Operand:
    """One operand of a primitive: the caller's dense tensor and, when the primitive computes in another
    layout (oneDNN's blocked ones), a scratch buffer and the reorder between the two. Its memory objects
    are re-pointed at every call, so a plan serves one thread at a time (Paddle's eager forward and
    backward both run on the calling thread)."""

    def __init__(self, plain_desc, chosen_desc):
        self.plain = dnnl.memory(plain_desc)
        self.blocked = not dnnl.same_layout(plain_desc, chosen_desc)
        self.inner = dnnl.memory(chosen_desc) if self.blocked else self.plain
        if self.blocked:
            self.floats = -(-dnnl.size_in_bytes(chosen_desc) // 4)
            self.to_inner = dnnl.reorder(plain_desc, chosen_desc)
            self.to_plain = dnnl.reorder(chosen_desc, plain_desc)

    def bind(self, tensor, load, scratch):
        """Points the operand at `tensor` (copied in if `load`); returns the memory the primitive reads."""
        dnnl.bind(self.plain, tensor.data_ptr())
        if self.blocked:
            buffer = paddle.empty([self.floats], "float32")
            scratch.append(buffer)              # alive until the primitive has run
            dnnl.bind(self.inner, buffer.data_ptr())
            if load:
                dnnl.execute(self.to_inner, {"src": self.plain, "dst": self.inner})
        return self.inner

    def store(self):
        if self.blocked:
            dnnl.execute(self.to_plain, {"src": self.inner, "dst": self.plain})

    def handles(self):
        """(primitives, memories) this operand owns."""
        if not self.blocked:
            return [], [self.plain]
        return [self.to_inner, self.to_plain], [self.plain, self.inner]


class ConvolutionPlan:
    """Forward, backward-data and backward-weights primitives for one convolution shape."""

    def __init__(self, x_shape, w_shape, stride, padding_l, padding_r, dilation, groups, threads):
        self.threads = threads
        with omp_threads(threads):          # oneDNN splits the work at creation for this many threads
            self.build(x_shape, w_shape, stride, padding_l, padding_r, dilation, groups)
        primitives, memories = self.handles()
        # at collection, or at exit while the library is still loaded (a __del__ may run after it is not)
        weakref.finalize(self, destroy, primitives, memories)

    def build(self, x_shape, w_shape, stride, padding_l, padding_r, dilation, groups):
        n, _, h, w = x_shape
        out_channels, _, kh, kw = w_shape
        out_h = (h + padding_l[0] + padding_r[0] - (dilation[0] * (kh - 1) + 1)) // stride[0] + 1
        out_w = (w + padding_l[1] + padding_r[1] - (dilation[1] * (kw - 1) + 1)) // stride[1] + 1
        self.y_shape = [n, out_channels, out_h, out_w]
        # grouped weights are 5-D for oneDNN: (groups, out / groups, in / groups, kh, kw), same bytes
        weights = [groups, out_channels // groups, *w_shape[1:]] if groups > 1 else list(w_shape)
        shapes = {"x": list(x_shape), "w": weights, "y": self.y_shape}
        plain = {k: dnnl.plain_desc(s) for k, s in shapes.items()}
        free = {k: dnnl.any_desc(s) for k, s in shapes.items()}
        geometry = (dnnl.dims(stride), dnnl.dims([d - 1 for d in dilation]),   # oneDNN counts dilation from 0
                    dnnl.dims(padding_l), dnnl.dims(padding_r))
        engine = dnnl.engine_and_stream()[0]
        forward = dnnl.created("dnnl_convolution_forward_primitive_desc_create", engine, dnnl.FORWARD_TRAINING,
                               dnnl.CONVOLUTION_DIRECT, free["x"], free["w"], None, free["y"], *geometry, None)
        data = dnnl.created("dnnl_convolution_backward_data_primitive_desc_create", engine,
                            dnnl.CONVOLUTION_DIRECT, free["x"], free["w"], free["y"], *geometry, forward, None)
        weights_pd = dnnl.created("dnnl_convolution_backward_weights_primitive_desc_create", engine,
                                  dnnl.CONVOLUTION_DIRECT, free["x"], free["w"], None, free["y"], *geometry,
                                  forward, None)
        self.steps = {}
        for name, pd, roles in (("forward", forward, {"src": "x", "weights": "w", "dst": "y"}),
                                ("data", data, {"diff_dst": "y", "weights": "w", "diff_src": "x"}),
                                ("weights", weights_pd, {"src": "x", "diff_dst": "y", "diff_weights": "w"})):
            operands = {role: Operand(plain[tensor], dnnl.queried_desc(pd, role)) for role, tensor in roles.items()}
            self.steps[name] = (dnnl.created("dnnl_primitive_create", pd), operands)
        for pd in (forward, data, weights_pd):
            dnnl.call("dnnl_primitive_desc_destroy", pd)
        for desc in [*plain.values(), *free.values()]:
            dnnl.call("dnnl_memory_desc_destroy", desc)

    def run(self, step, inputs, output):
        """Runs one step on {role: tensor} inputs, writing the `output` role's tensor (a pair)."""
        primitive, operands = self.steps[step]
        scratch = []
        role, tensor = output
        with omp_threads(self.threads):
            arguments = {name: operands[name].bind(given, True, scratch) for name, given in inputs.items()}
            arguments[role] = operands[role].bind(tensor, False, scratch)
            dnnl.execute(primitive, arguments)
            operands[role].store()
        return tensor

    def forward(self, x, weight):
        return self.run("forward", {"src": x, "weights": weight}, ("dst", paddle.empty(self.y_shape, "float32")))

    def grad_input(self, weight, grad_y, x_shape):
        return self.run("data", {"diff_dst": grad_y, "weights": weight},
                        ("diff_src", paddle.empty(x_shape, "float32")))

    def grad_weight(self, x, grad_y, w_shape):
        return self.run("weights", {"src": x, "diff_dst": grad_y},
                        ("diff_weights", paddle.empty(w_shape, "float32")))

    def handles(self):
        """(primitives, memories) this plan owns."""
        primitives, memories = [], []
        for primitive, operands in self.steps.values():
            primitives.append(primitive)
            for operand in operands.values():
                owned_primitives, owned_memories = operand.handles()
                primitives += owned_primitives
                memories += owned_memories
        return primitives, memories


def destroy(primitives, memories):
    for handle in primitives:
        dnnl.call("dnnl_primitive_destroy", handle)
    for handle in memories:
        dnnl.call("dnnl_memory_destroy", handle)


class PlanCache:
    def __init__(self, size):
        self.size, self.plans = size, OrderedDict()

    def get(self, key):
        plan = self.plans.pop(key, None) or ConvolutionPlan(*key)
        self.plans[key] = plan
        while len(self.plans) > self.size:    # a backward still pending on an evicted plan keeps it alive
            self.plans.popitem(last=False)
        return plan


PLANS = PlanCache(MAX_PLANS)


class OneDnnConvolution(PyLayer):
    @staticmethod
    def forward(ctx, x, weight, plan):
        ctx.plan = plan
        ctx.save_for_backward(x, weight)
        return plan.forward(x, weight)

    @staticmethod
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensor()
        grad_y = grad_y.contiguous()
        grad_x = None if x.stop_gradient else ctx.plan.grad_input(weight, grad_y, x.shape)
        grad_w = None if weight.stop_gradient else ctx.plan.grad_weight(x, grad_y, weight.shape)
        return grad_x, grad_w


def paddings(layer):
    """(padding_l, padding_r) from Paddle's normalised padding, [h, w] or [top, bottom, left, right]."""
    pad = list(layer._updated_padding)
    return (pad, pad) if len(pad) == 2 else ([pad[0], pad[2]], [pad[1], pad[3]])


def eligible(layer, x):
    return (paddle.in_dynamic_mode() and x.place.is_cpu_place() and x.dtype == paddle.float32
            and layer.weight.dtype == paddle.float32 and x.ndim == 4 and layer._data_format == "NCHW"
            and layer._padding_mode == "zeros" and layer._padding_algorithm == "EXPLICIT")


@paddle.jit.not_to_static     # traced for export as it stands: not eligible there, so Paddle's own forward
def conv2d_forward(self, x):    # "self": Paddle's to_static drops the first argument by that name
    """nn.Conv2D.forward with oneDNN's kernels where eligible, Paddle's own otherwise."""
    if not eligible(self, x):
        return PADDLE_FORWARD(self, x)
    x, weight = x.contiguous(), self.weight.contiguous()
    padding_l, padding_r = paddings(self)
    plan = PLANS.get((tuple(x.shape), tuple(weight.shape), tuple(self._stride), tuple(padding_l),
                      tuple(padding_r), tuple(self._dilation), self._groups, threads()))
    y = OneDnnConvolution.apply(x, weight, plan)
    return y if self.bias is None else y + self.bias.reshape([1, -1, 1, 1])


def enable(on=True):
    """Routes every nn.Conv2D's eager CPU forward and backward through oneDNN (or back, on=False); returns
    whether it is on: not where Paddle's wheel has no usable oneDNN (dnnl.unavailable_reason())."""
    on = bool(on) and dnnl.unavailable_reason() is None
    paddle.nn.Conv2D.forward = conv2d_forward if on else PADDLE_FORWARD
    return on


def enabled():
    return paddle.nn.Conv2D.forward is conv2d_forward


def enable_from_environment():
    """The test suite's choice: BTS_PADDLE_CONV=onednn (default) or paddle (Paddle's own kernels)."""
    choice = os.environ.get("BTS_PADDLE_CONV", "onednn")
    if choice not in CHOICES:
        raise ValueError(f"BTS_PADDLE_CONV={choice!r}: expected one of {', '.join(CHOICES)}")
    enable(CHOICES[choice])


def set_threads(count):
    """The threads oneDNN's convolutions use (runtime.configure sets Paddle's count here too); None:
    Paddle's start-up count."""
    global _threads
    _threads = None if count is None else int(count)


def threads():
    if _threads is None:
        import paddle
        return int(paddle.get_flags(["FLAGS_paddle_num_threads"])["FLAGS_paddle_num_threads"])
    return _threads


@lru_cache(maxsize=None)
def openmp():
    return ctypes.CDLL("libgomp.so.1")      # the copy already loaded, whichever it is


def omp_threads(count):
    """OpenMP's thread count for oneDNN, for one block only. libdnnl runs on GNU OpenMP, and when torch
    is imported first that is torch's own libgomp.so.1 (the loader shares one copy per soname): setting it
    for good would change torch's thread count in the same process."""
    gomp = openmp()
    return temporarily(gomp.omp_get_max_threads, gomp.omp_set_num_threads, count)

"""The few oneDNN C API calls paddle_bts needs, through ctypes, on the libdnnl Paddle's wheel ships.

Paddle 3.3.1's dygraph never runs oneDNN on CPU (FLAGS_use_onednn has no effect there; see runtime.py),
yet its wheel carries oneDNN 3.6 (paddle/libs/libdnnl.so.3), the library torch's CPU convolutions use.
Enumerators and signatures are oneDNN 3.x's C API (include/oneapi/dnnl/dnnl.h, dnnl_types.h), stable
within the major version.
"""
import ctypes
import os
from functools import lru_cache

import numpy as np

F32 = 3                     # dnnl_f32
FORMAT_ANY = 1              # dnnl_format_tag_any: the primitive picks the layout
CPU_ENGINE = 1              # dnnl_cpu
IN_ORDER_STREAM = 1         # dnnl_stream_in_order
FORWARD_TRAINING, BACKWARD_DATA, BACKWARD_WEIGHTS = 64, 160, 192
CONVOLUTION_DIRECT = 1
ARG = {"src": 1, "dst": 17, "weights": 33, "diff_src": 129, "diff_dst": 145, "diff_weights": 161}
QUERY_MD = {"src": 129, "diff_src": 130, "weights": 131, "diff_weights": 132, "dst": 133, "diff_dst": 134}
MAX_NDIMS = 12

Dims = ctypes.c_int64 * MAX_NDIMS
Handle = ctypes.c_void_p
Out = ctypes.POINTER(Handle)


class ExecArg(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_int), ("memory", Handle)]


SIGNATURES = {   # name: (restype, argtypes); status-returning calls have restype c_int
    "dnnl_engine_create": (ctypes.c_int, [Out, ctypes.c_int, ctypes.c_size_t]),
    "dnnl_stream_create": (ctypes.c_int, [Out, Handle, ctypes.c_uint]),
    "dnnl_memory_desc_create_with_strides": (ctypes.c_int, [Out, ctypes.c_int, Dims, ctypes.c_int, Dims]),
    "dnnl_memory_desc_create_with_tag": (ctypes.c_int, [Out, ctypes.c_int, Dims, ctypes.c_int, ctypes.c_int]),
    "dnnl_memory_desc_get_size": (ctypes.c_size_t, [Handle]),
    "dnnl_memory_desc_equal": (ctypes.c_int, [Handle, Handle]),
    "dnnl_memory_desc_destroy": (ctypes.c_int, [Handle]),
    "dnnl_convolution_forward_primitive_desc_create": (
        ctypes.c_int, [Out, Handle, ctypes.c_int, ctypes.c_int, Handle, Handle, Handle, Handle,
                       Dims, Dims, Dims, Dims, Handle]),
    "dnnl_convolution_backward_data_primitive_desc_create": (
        ctypes.c_int, [Out, Handle, ctypes.c_int, Handle, Handle, Handle, Dims, Dims, Dims, Dims, Handle, Handle]),
    "dnnl_convolution_backward_weights_primitive_desc_create": (
        ctypes.c_int, [Out, Handle, ctypes.c_int, Handle, Handle, Handle, Handle,
                       Dims, Dims, Dims, Dims, Handle, Handle]),
    "dnnl_reorder_primitive_desc_create": (ctypes.c_int, [Out, Handle, Handle, Handle, Handle, Handle]),
    "dnnl_primitive_desc_query_md": (Handle, [Handle, ctypes.c_int, ctypes.c_int]),
    "dnnl_primitive_desc_destroy": (ctypes.c_int, [Handle]),
    "dnnl_primitive_create": (ctypes.c_int, [Out, Handle]),
    "dnnl_primitive_destroy": (ctypes.c_int, [Handle]),
    "dnnl_primitive_execute": (ctypes.c_int, [Handle, Handle, ctypes.c_int, ctypes.POINTER(ExecArg)]),
    "dnnl_memory_create": (ctypes.c_int, [Out, Handle, Handle, Handle]),
    "dnnl_memory_set_data_handle": (ctypes.c_int, [Handle, Handle]),
    "dnnl_memory_destroy": (ctypes.c_int, [Handle]),
    "dnnl_set_verbose": (ctypes.c_int, [ctypes.c_int]),
}


class DnnlError(RuntimeError):
    pass


@lru_cache(maxsize=None)
def library():
    """Paddle's own libdnnl (never a second copy: it shares Paddle's OpenMP runtime), typed."""
    import paddle
    lib = ctypes.CDLL(os.path.join(os.path.dirname(paddle.__file__), "libs", "libdnnl.so.3"))
    for name, (restype, argtypes) in SIGNATURES.items():
        function = getattr(lib, name)
        function.restype, function.argtypes = restype, argtypes
    return lib


@lru_cache(maxsize=None)
def unavailable_reason():
    """None where Paddle's libdnnl loads with every function above; else why not, in one line (a Paddle
    build without oneDNN, e.g. on ARM, ships no libdnnl.so.3)."""
    try:
        library()
    except (OSError, AttributeError) as error:
        return f"Paddle's oneDNN library cannot be used: {error}"
    return None


def call(name, *args):
    status = getattr(library(), name)(*args)
    if status != 0:
        raise DnnlError(f"oneDNN {name} returned status {status}")


def created(name, *args):
    """Calls a dnnl_*_create function and returns the handle it made."""
    handle = Handle()
    call(name, ctypes.byref(handle), *args)
    return handle


def dims(values):
    return Dims(*values)


@lru_cache(maxsize=None)
def engine_and_stream():
    engine = created("dnnl_engine_create", CPU_ENGINE, 0)
    return engine, created("dnnl_stream_create", engine, IN_ORDER_STREAM)


def plain_desc(shape):
    """A dense row-major fp32 memory descriptor (Paddle's contiguous layout)."""
    strides = [int(np.prod(shape[i + 1:], dtype=np.int64)) for i in range(len(shape))]
    return created("dnnl_memory_desc_create_with_strides", len(shape), dims(shape), F32, dims(strides))


def any_desc(shape):
    return created("dnnl_memory_desc_create_with_tag", len(shape), dims(shape), F32, FORMAT_ANY)


def queried_desc(primitive_desc, what):
    """The layout a primitive chose for one operand (owned by the primitive descriptor)."""
    return library().dnnl_primitive_desc_query_md(primitive_desc, QUERY_MD[what], 0)


def same_layout(a, b):
    return bool(library().dnnl_memory_desc_equal(a, b))


def size_in_bytes(desc):
    return library().dnnl_memory_desc_get_size(desc)


def memory(desc):
    """A memory object without data; `bind` points it at a buffer before each execution."""
    return created("dnnl_memory_create", desc, engine_and_stream()[0], Handle(0))


def bind(memory_handle, address):
    call("dnnl_memory_set_data_handle", memory_handle, Handle(address))


def reorder(source_desc, target_desc):
    engine = engine_and_stream()[0]
    descriptor = created("dnnl_reorder_primitive_desc_create", source_desc, engine, target_desc, engine, None)
    try:
        return created("dnnl_primitive_create", descriptor)
    finally:
        call("dnnl_primitive_desc_destroy", descriptor)


def execute(primitive, arguments):
    """Runs a primitive on {argument name: memory handle}; on the CPU engine it returns when done."""
    array = (ExecArg * len(arguments))(*[ExecArg(ARG[name], handle) for name, handle in arguments.items()])
    call("dnnl_primitive_execute", primitive, engine_and_stream()[1], len(arguments), array)


def set_verbose(level):
    """oneDNN's log on standard output, for every user of this library (Paddle Inference included): 0 off,
    1 a line per executed primitive with its time in ms (ONEDNN_VERBOSE=1, here settable at run time)."""
    call("dnnl_set_verbose", level)

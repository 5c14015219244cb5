"""glibc's malloc set to keep freed memory for the process's next allocation instead of returning it.

By default glibc gives every block above its mmap threshold (128 KB, raised as blocks are freed, at most
32 MB) its own mapping and unmaps it on free, and trims the heap's free top. A network's activations are
such blocks: every forward maps them afresh, and the kernel zeroes each new page on first touch (a torch
forward of BTS-densenet161 at 352 x 704 took 111-154 thousand page faults, 0-15 thousand after this).
`python -m bench --malloc default` against `--malloc keep`, AMD EPYC (Zen 3, 2 threads), forward 1 x 3 x
352 x 704, medians of 7, two runs each: torch eager 1.724 / 1.687 s -> 1.559 / 1.549 s; Paddle eager
(runtime.configure) 2.029 / 2.003 -> 1.698 / 1.809 s; Paddle Inference (which pools most of its own memory)
1.225 / 1.213 -> 1.161 / 1.196 s; peak RSS within -24 % / +5 %. Train step, batch 2 at 352 x 704, medians
of 3, one run each: torch 12.75 -> 9.39 s, Paddle 12.90 -> 10.84 s (peak RSS 5.33 -> 5.34 GB, 5.21 -> 5.66
GB). It is the trade of the jemalloc / tcmalloc that CPU inference guides preload, without a library to
install: the process keeps the high-water mark of its freed memory for reuse until it exits.
"""
import ctypes
import ctypes.util
import platform

# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_NEVER = 2**31 - 1      # mallopt takes an int: the heap's free top is trimmed only above 2 GiB


KEPT = "glibc malloc keeps freed memory (M_MMAP_MAX 0, M_TRIM_THRESHOLD 2 GiB)"


def unsupported_reason():
    """None on Linux with glibc; otherwise why keep_freed_memory() leaves malloc alone."""
    libc_name, _ = platform.libc_ver()
    if platform.system() != "Linux" or libc_name != "glibc":
        return f"needs Linux glibc; this is {platform.system()} {libc_name or 'without glibc'}"
    return None


def keep_freed_memory():
    """Sets glibc's malloc to serve every block from its heap (no per-block mappings) and not to trim the
    heap's free top, for the whole process. Returns KEPT, or "malloc unchanged (why)"."""
    if reason := unsupported_reason():
        return f"malloc unchanged ({reason})"
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if not (libc.mallopt(M_MMAP_MAX, 0) and libc.mallopt(M_TRIM_THRESHOLD, TRIM_NEVER)):
        return "malloc unchanged (glibc's mallopt refused M_MMAP_MAX / M_TRIM_THRESHOLD)"
    return KEPT

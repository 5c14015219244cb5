"""bts_core.malloc: after keep_freed_memory(), a large block freed and allocated again is served from memory
the process already touched, where glibc's default maps it afresh (a page fault per page on first touch)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bts_core import malloc

REPO = Path(__file__).resolve().parents[1]
BLOCK_MB = 64    # above glibc's largest dynamic mmap threshold (32 MB): by default always a mapping of its own

# Child: allocate, touch and free a block twice; the minor page faults of the second round.
CHILD = f"""
import ctypes, json, resource, sys
from bts_core import malloc
line = malloc.keep_freed_memory() if sys.argv[1] == "keep" else "default"
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = {BLOCK_MB} << 20
faults = []
for _ in range(2):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps([line, faults]))
"""


def second_round_faults(mode):
    out = subprocess.run([sys.executable, "-c", CHILD, mode], cwd=REPO, capture_output=True, text=True, timeout=60,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(malloc.unsupported_reason() is not None, reason="glibc malloc only")
def test_a_freed_block_is_reused_without_page_faults():
    pages = (BLOCK_MB << 20) // 4096
    line, (_, default_faults) = second_round_faults("default")
    # glibc's default maps the block afresh: at least one fault per 2 MB, even with transparent huge pages
    assert line == "default" and default_faults >= BLOCK_MB // 2
    line, (first, kept_faults) = second_round_faults("keep")
    assert line == malloc.KEPT and first >= BLOCK_MB // 2
    # Measured 0 here (AMD EPYC, Debian glibc 2.36); a few faults are Python's own allocations meanwhile.
    assert kept_faults <= pages // 100 and kept_faults < default_faults


def test_without_glibc_it_changes_nothing_and_says_why(monkeypatch):
    monkeypatch.setattr(malloc.platform, "libc_ver", lambda: ("", ""))
    line = malloc.keep_freed_memory()
    assert line.startswith("malloc unchanged (needs Linux glibc") and line != malloc.KEPT

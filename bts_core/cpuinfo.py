"""This machine's CPU as Linux's /proc/cpuinfo describes it (None where there is no such file)."""
from pathlib import Path


def cpuinfo_field(name):
    """The first value of field `name` (e.g. "model name", "flags", "vendor_id", "cpu MHz"), or None."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    except OSError:
        pass
    return None


def cpu_flags():
    return set((cpuinfo_field("flags") or "").split())

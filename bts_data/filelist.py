"""Official BTS filenames files: one sample per line, `image_path depth_path focal`.

Paths are relative to the dataset's data_path (images) and gt_path (depth); NYU lists start them with
'/', which the official loader neutralises by joining `"./" + path`, as `resolve` does here. Test lists
write `None` for images without ground truth (45 of the 697 KITTI Eigen test lines).
"""
import math
import os
from dataclasses import dataclass
from typing import Optional

from bts_core.cli import InputError

NO_DEPTH = "None"


class DataError(InputError):
    """Missing or unreadable data, or settings that cannot work; the message is one line for the user."""


class FilelistError(DataError):
    """A filenames file that cannot be used; the message names the file (and line)."""


@dataclass(frozen=True)
class Sample:
    image: str
    depth: Optional[str]     # None: no ground truth for this image
    focal: float


def parse_line(text, where):
    fields = text.split()
    if len(fields) != 3:
        raise FilelistError(f"{where}: expected 'image_path depth_path focal', got {len(fields)} field(s): "
                            f"{text.strip()[:80]!r}")
    image, depth, focal_text = fields
    try:
        focal = float(focal_text)
    except ValueError:
        raise FilelistError(f"{where}: focal {focal_text!r} is not a number") from None
    if not math.isfinite(focal) or focal <= 0:
        raise FilelistError(f"{where}: focal must be a positive number, got {focal_text}")
    return Sample(image, None if depth == NO_DEPTH else depth, focal)


def read_filelist(path):
    """Samples of a filenames file, in file order; blank lines are skipped."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError:
        raise FilelistError(f"{path}: not a text file") from None
    except OSError as e:
        raise FilelistError(f"{path}: {e.strerror or e}") from None
    samples = [parse_line(line, f"{path}:{number}") for number, line in enumerate(lines, 1) if line.strip()]
    if not samples:
        raise FilelistError(f"{path}: no samples (empty filenames file)")
    return samples


def write_filelist(path, samples):
    with open(path, "w", encoding="utf-8") as f:
        for s in samples:
            f.write(f"{s.image} {s.depth if s.depth is not None else NO_DEPTH} {s.focal}\n")
    return path


def resolve(root, relative):
    """root joined with a listed path, as the official loader does (`"./" + path`: a leading '/' stays inside)."""
    return os.path.normpath(os.path.join(root, "./" + relative))

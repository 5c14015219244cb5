"""manifest.json of a converted folder: where the weights came from, what was done to them, how they were checked."""
import hashlib
import json
import platform
from collections import Counter
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import torch

from bts_core.backbones import ENCODER_PREFIX, to_backbone_key
from bts_core.cli import InputError

MANIFEST = "manifest.json"
FORMAT = "bts-paddle-weights/1"
BACKBONE_FORMAT = "bts-paddle-backbone/1"   # an ImageNet encoder alone (conversion/backbone.py)
LIBRARIES = ("torch", "torchvision", "paddlepaddle", "numpy", "scikit-image", "reprod_log")


def sha256_file(path, chunk=1 << 22):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_entry(path):
    return {"bytes": Path(path).stat().st_size, "sha256": sha256_file(path)}


def library_versions():
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def conversion_summary(report, bn_counters):
    """The ConversionReport in numbers and names; `bn_counters` keeps what Paddle cannot (see paddle2torch)."""
    return {
        "mapped": len(report.mapped),
        "dropped": len(report.dropped),
        "dropped_why": dict(Counter(report.dropped.values())),
        "dropped_keys": report.dropped,
        "transforms": report.transforms,
        "casts": report.casts,
        "bn_counters": bn_counters,
    }


def now_utc():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_manifest(folder, manifest):
    path = Path(folder) / MANIFEST
    path.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_manifest(folder, formats=(FORMAT,)):
    path = Path(folder) / MANIFEST
    if not Path(folder).is_dir():
        raise InputError(f"{folder}: no such folder")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file (not a folder written by torch2paddle.py)") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") not in formats:
        raise InputError(f"{path}: not a {' or '.join(formats)} manifest")
    return manifest


def recorded_counters(folder, encoder, backbone=False):
    """BN counters {key: value} a converter recorded in `folder`'s manifest (Paddle keeps none), or {} without one.
    `backbone`: torchvision's keys, from conversion/backbone.py's manifest or the encoder of torch2paddle.py's."""
    if not (folder / MANIFEST).is_file():
        return {}
    manifest = read_manifest(folder, (BACKBONE_FORMAT, FORMAT) if backbone else (FORMAT,))
    if manifest.get("encoder") != encoder:
        raise InputError(f"{folder / MANIFEST} says encoder {manifest.get('encoder')}, not {encoder}")
    counters = manifest["conversion"]["bn_counters"]
    if backbone and manifest["format"] == FORMAT:   # torch_ref's names, decoder included
        counters = {to_backbone_key(k, encoder): v for k, v in counters.items() if k.startswith(ENCODER_PREFIX)}
    return counters


def restore_counters(state, counters, known, folder, encoder):
    """Puts recorded_counters(folder, encoder) into `state` as int64 tensors; each must name one of `known`."""
    unknown = sorted(set(counters) - set(known))
    if unknown:
        raise InputError(f"{folder / MANIFEST}: BN counter for a key {encoder} lacks: {unknown[0]}")
    for key, value in counters.items():
        state[key] = torch.tensor(value, dtype=torch.int64)

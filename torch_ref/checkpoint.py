"""Official checkpoint format: torch.save({'model': DataParallel state_dict ('module.' keys), ...})."""
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from bts_core.cli import InputError, staged_outputs
from bts_core.spec import DECODER_FILE, ENCODER_FILE

PREFIX = "module."


class CheckpointError(InputError):
    """A file that is not a usable BTS checkpoint; the message is one line meant for the user."""


def _step(path):
    digits = re.match(r"model-(\d+)", path.name)
    return (int(digits.group(1)) if digits else -1, path.name)


def describe_folder(path):
    """What to tell a user who gave a folder where a checkpoint file belongs."""
    folder = Path(path)
    if (folder / ENCODER_FILE).is_file() and (folder / DECODER_FILE).is_file():
        return (f"{path} is a directory of Paddle weights ({ENCODER_FILE}, {DECODER_FILE}), not a torch "
                f"checkpoint; convert it with conversion/paddle2torch.py")
    if (folder / ENCODER_FILE).is_file():
        return (f"{path} is a directory of Paddle encoder weights ({ENCODER_FILE} only: a converted backbone), "
                f"not a torch checkpoint; convert it back with conversion/backbone.py --to-torch {path}")
    checkpoints = sorted((p for p in folder.glob("model-*") if p.is_file()), key=_step)   # official names
    if len(checkpoints) == 1:
        return f"{path} is a directory, not a checkpoint file; pass --checkpoint {checkpoints[0]}"
    if checkpoints:
        return (f"{path} is a directory, not a checkpoint file; it holds {len(checkpoints)} checkpoints "
                f"({checkpoints[0].name} ... {checkpoints[-1].name}): pass one, e.g. --checkpoint {checkpoints[-1]}")
    return f"{path} is a directory, not a checkpoint file"


# Exactly what the official bts_main.py's online-evaluation checkpoints need beyond tensors:
# `best_eval_steps = np.zeros(9, dtype=np.int32)`. Files written with numpy 1.x name `numpy.core`.
NUMPY_INT32_ARRAY = [np.ndarray, np.dtype, type(np.dtype(np.int32)), np._core.multiarray._reconstruct,
                     (np._core.multiarray._reconstruct, "numpy.core.multiarray._reconstruct")]


@dataclass
class Checkpoint:
    """An official checkpoint as read: bare state dict, global step, optimizer state (or None), the rest."""
    model: dict
    global_step: int = 0
    optimizer: Optional[dict] = None
    extra: dict = field(default_factory=dict)   # e.g. the best-measure entries of online evaluation


def load_torch_file(path):
    """torch.load with weights_only=True; a CheckpointError (one line) for anything it cannot or will not read."""
    if os.path.isdir(path):
        raise CheckpointError(describe_folder(path))
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    try:
        with torch.serialization.safe_globals(NUMPY_INT32_ARRAY):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types: UnpicklingError, RuntimeError, EOFError, ...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        _, marker, reason = str(e).partition("WeightsUnpickler error:")   # what the safe unpickler says
        detail = next((line.strip() for line in reason.splitlines() if line.strip()), first) if marker else first
        if any(word in detail for word in ("global", "build", "reduce")):   # a class or function it would call
            raise CheckpointError(f"{path}: refuses to load with weights_only=True (it needs code to "
                                  f"unpickle, which this tool never runs): {detail}") from None
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {detail})") from None


def read_checkpoint(path):
    """A Checkpoint from an official file (any of bts_main.py's: periodic, best, with or without optimizer;
    zip or legacy format; 'module.' keys or not) or a bare state dict file."""
    obj = load_torch_file(path)
    official = isinstance(obj, dict) and "model" in obj
    state = obj["model"] if official else obj
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path}: not a BTS checkpoint (expected a state dict or a dict with 'model')")
    bare = {k[len(PREFIX):] if k.startswith(PREFIX) else k: v for k, v in state.items()}
    if not official:
        return Checkpoint(bare)
    step = obj.get("global_step", 0)
    if not isinstance(step, int) or step < 0:
        raise CheckpointError(f"{path}: global_step is {step!r}, not a step count")
    optimizer = obj.get("optimizer")
    if optimizer is not None and not (isinstance(optimizer, dict) and {"state", "param_groups"} <= set(optimizer)):
        raise CheckpointError(f"{path}: 'optimizer' is not a torch optimizer state dict")
    extra = {k: v for k, v in obj.items() if k not in ("model", "global_step", "optimizer")}
    return Checkpoint(bare, step, optimizer, extra)


def read_state_dict(path):
    """The bare state dict (no 'module.' prefix) from an official checkpoint or a bare state dict file."""
    return read_checkpoint(path).model


def load_official_checkpoint(model, path):
    """Strictly loads an official checkpoint (or a bare state dict) into `model`; returns the model."""
    model.load_state_dict(read_state_dict(path), strict=True)
    return model


def save_official_checkpoint(model_or_state, path, global_step=0, **extra):
    """Writes the official format atomically (bts_core.cli.staged_outputs: a temporary file in the same
    folder, given the user's usual permissions and renamed onto `path` at the end)."""
    state = model_or_state.state_dict() if hasattr(model_or_state, "state_dict") else model_or_state
    payload = {"global_step": global_step, "model": {PREFIX + k: v for k, v in state.items()}, **extra}
    with staged_outputs([path], force=True) as (staged,):
        torch.save(payload, staged)

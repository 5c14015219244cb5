"""Official checkpoint format: torch.save({'model': DataParallel state_dict ('module.' keys), ...})."""
import os
import re
from pathlib import Path

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
    checkpoints = sorted((p for p in folder.glob("model-*") if p.is_file()), key=_step)   # official names
    if len(checkpoints) == 1:
        return f"{path} is a directory, not a checkpoint file; pass --checkpoint {checkpoints[0]}"
    if checkpoints:
        return (f"{path} is a directory, not a checkpoint file; it holds {len(checkpoints)} checkpoints "
                f"({checkpoints[0].name} ... {checkpoints[-1].name}): pass one, e.g. --checkpoint {checkpoints[-1]}")
    return f"{path} is a directory, not a checkpoint file"


def read_state_dict(path):
    """The bare state dict (no 'module.' prefix) from an official checkpoint or a bare state dict file."""
    if os.path.isdir(path):
        raise CheckpointError(describe_folder(path))
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types: UnpicklingError, RuntimeError, EOFError, ...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        blocked = next((line.strip() for line in str(e).splitlines() if "Unsupported global" in line), None)
        if blocked:
            raise CheckpointError(f"{path}: refuses to load with weights_only=True (it needs code to "
                                  f"unpickle, which this tool never runs): {blocked}") from None
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {first})") from None
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path}: not a BTS checkpoint (expected a state dict or a dict with 'model')")
    return {k[len(PREFIX):] if k.startswith(PREFIX) else k: v for k, v in state.items()}


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

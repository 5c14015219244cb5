"""Official checkpoint format: torch.save({'model': DataParallel state_dict ('module.' keys), ...})."""
import os
import tempfile

import torch

PREFIX = "module."


class CheckpointError(ValueError):
    """A file that is not a usable BTS checkpoint; the message is one line meant for the user."""


def read_state_dict(path):
    """The bare state dict (no 'module.' prefix) from an official checkpoint or a bare state dict file."""
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
    """Writes the official format atomically: a temporary file in the same folder, renamed at the end."""
    state = model_or_state.state_dict() if hasattr(model_or_state, "state_dict") else model_or_state
    payload = {"global_step": global_step, "model": {PREFIX + k: v for k, v in state.items()}, **extra}
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".pth")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)

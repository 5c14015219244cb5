"""Helpers shared by several test files (and the fault catalogue); no tests here."""
import contextlib
import io

import numpy as np

import torch_ref
from conversion import paddle2torch, torch2paddle
from conversion.seeded import random_state


def convert_both_ways(encoder, folder):
    """(source state, state read back) after torch2paddle.py then paddle2torch.py, random values."""
    source = folder / "model"
    torch_ref.save_official_checkpoint(random_state(encoder, seed=1), str(source))
    with contextlib.redirect_stdout(io.StringIO()):
        assert torch2paddle.main(["--checkpoint", str(source), "--encoder", encoder,
                                  "--output", str(folder / "paddle"), "--no-verify"]) == 0
        assert paddle2torch.main(["--weights", str(folder / "paddle"), "--encoder", encoder,
                                  "--output", str(folder / "back")]) == 0
    return torch_ref.read_state_dict(str(source)), torch_ref.read_state_dict(str(folder / "back"))


def one_tensor_off(convert, key, part=None):
    """`convert` (a converter returning (arrays, report)) with tensor `key` 0.1 % off: a subtle bug that
    verification must catch. `part`: where the converter returns parts, the one holding `key`."""
    def converted(state, encoder, progress=iter):
        out, report = convert(state, encoder, progress)
        arrays = out if part is None else out[part]
        arrays[key] = arrays[key] * np.float32(1.001)
        return out, report
    return converted

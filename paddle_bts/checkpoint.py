"""PaddleDepth's weight layout: a folder with `encoder.pdparams` (encoder) and `depth.pdparams` (decoder)."""
import os

import paddle

from bts_core.cli import InputError
from bts_core.spec import DECODER_FILE, ENCODER_FILE

# PaddleDepth builds densenet161 with paddle.vision's ImageNet head; BTS never runs it and official
# torch DenseNet encoders have none, so our files omit it and loading ignores it.
IGNORED_HEAD_PREFIX = "base_model.out."


class WeightsError(InputError):
    """Weights that do not fit the model; the message is one line meant for the user."""


def check_state_dict(layer, state, what):
    """Raises unless `state` fills every tensor of `layer` with the right shape and nothing else.

    Paddle's set_state_dict only warns on missing keys or wrong shapes and keeps random values.
    """
    expected = {k: list(v.shape) for k, v in layer.state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {list(state[k].shape)} != {expected[k]}" for k in expected
             if k in state and list(state[k].shape) != expected[k]]
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong)):
        if items:
            raise WeightsError(f"{what}: {len(items)} {label} key(s), e.g. {items[0]}")


def set_strict(layer, state, what):
    check_state_dict(layer, state, what)
    missing, unexpected = layer.set_state_dict(state)
    if missing or unexpected:  # cannot happen after the check; never trust a warning-only API
        raise WeightsError(f"{what}: set_state_dict left {len(missing)} missing, {len(unexpected)} unexpected")


PART_FILES = {"encoder": ENCODER_FILE, "decoder": DECODER_FILE}


def read_weight_files(folder):
    """({encoder: {...}, decoder: {...}} of numpy arrays, {dropped key: why}) from a PaddleDepth folder.

    PaddleDepth's densenet161 encoder carries paddle.vision's unused ImageNet head (`base_model.out.*`);
    it is left out, and said so in `dropped`.
    """
    parts, dropped = {}, {}
    for part, name in PART_FILES.items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise WeightsError(f"{path}: no such file")
        try:
            state = paddle.load(path, return_numpy=True)
        except Exception as e:   # paddle raises pickle, zip, value and runtime errors alike
            raise WeightsError(f"{path}: not a readable Paddle file ({type(e).__name__}: {e})") from None
        if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
            raise WeightsError(f"{path}: not a Paddle state dict")
        for key in [k for k in state if part == "encoder" and k.startswith(IGNORED_HEAD_PREFIX)]:
            del state[key]
            dropped[f"{part}:{key}"] = "paddle.vision's unused ImageNet head (official torch encoders have none)"
        parts[part] = state
    return parts, dropped


def load_weights(model, folder):
    """Loads `folder/encoder.pdparams` and `folder/depth.pdparams` strictly; returns the model."""
    parts, _ = read_weight_files(folder)
    for part, name in PART_FILES.items():
        set_strict(getattr(model, part), parts[part], os.path.join(folder, name))
    return model


def save_weights(model, folder):
    """Writes the two PaddleDepth files into `folder` (each to a temporary name, then renamed)."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for layer, name in ((model.encoder, ENCODER_FILE), (model.decoder, DECODER_FILE)):
        path = os.path.join(folder, name)
        paddle.save(layer.state_dict(), path + ".tmp")
        os.replace(path + ".tmp", path)
        paths.append(path)
    return paths

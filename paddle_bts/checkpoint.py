"""PaddleDepth's weight layout: a folder with `encoder.pdparams` (encoder) and `depth.pdparams` (decoder)."""
import os
import zipfile

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


def is_torch_file(path):
    """True for torch.save's zip format (an `archive/data.pkl` inside), which paddle.load cannot read."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/data.pkl") for name in archive.namelist())


def read_part(path, part):
    """({key: numpy array}, {dropped key: why}) of one PaddleDepth file; `part` is "encoder" or "decoder".

    PaddleDepth's densenet161 encoder carries paddle.vision's unused ImageNet head (`base_model.out.*`);
    it is left out, and said so in `dropped`.
    """
    if not os.path.isfile(path):
        raise WeightsError(f"{path}: no such file")
    if is_torch_file(path):
        raise WeightsError(f"{path} is a torch file, not a Paddle one; convert a BTS checkpoint with "
                           f"conversion/torch2paddle.py, a torchvision backbone with conversion/backbone.py --to-paddle")
    try:
        state = paddle.load(path, return_numpy=True)
    except Exception as e:   # paddle raises pickle, zip, value and runtime errors alike
        raise WeightsError(f"{path}: not a readable Paddle file ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise WeightsError(f"{path}: not a Paddle state dict")
    dropped = {}
    for key in [k for k in state if part == "encoder" and k.startswith(IGNORED_HEAD_PREFIX)]:
        del state[key]
        dropped[f"{part}:{key}"] = "paddle.vision's unused ImageNet head (official torch encoders have none)"
    return state, dropped


def read_weight_files(folder):
    """({encoder: {...}, decoder: {...}} of numpy arrays, {dropped key: why}) from a PaddleDepth folder."""
    decoder = os.path.join(folder, DECODER_FILE)
    if os.path.isfile(os.path.join(folder, ENCODER_FILE)) and not os.path.exists(decoder):
        raise WeightsError(f"{decoder}: no such file; {folder} holds an encoder alone (e.g. a converted backbone), "
                           f"not a whole BTS model: convert a backbone back with conversion/backbone.py --to-torch, "
                           f"or start training's encoder from it with encoder_weights")
    parts, dropped = {}, {}
    for part, name in PART_FILES.items():
        parts[part], head = read_part(os.path.join(folder, name), part)
        dropped.update(head)
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

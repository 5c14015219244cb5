"""PaddleDepth's weight layout: a folder with `encoder.pdparams` (encoder) and `depth.pdparams` (decoder)."""
import os

import paddle

ENCODER_FILE, DECODER_FILE = "encoder.pdparams", "depth.pdparams"
# PaddleDepth builds densenet161 with paddle.vision's ImageNet head; BTS never runs it and official
# torch DenseNet encoders have none, so our files omit it and loading ignores it.
IGNORED_HEAD_PREFIX = "base_model.out."


class WeightsError(ValueError):
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


def load_weights(model, folder):
    """Loads `folder/encoder.pdparams` and `folder/depth.pdparams` strictly; returns the model."""
    for layer, name in ((model.encoder, ENCODER_FILE), (model.decoder, DECODER_FILE)):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise WeightsError(f"{path}: no such file")
        state = paddle.load(path)
        if not isinstance(state, dict):
            raise WeightsError(f"{path}: not a Paddle state dict")
        if layer is model.encoder:
            state = {k: v for k, v in state.items() if not k.startswith(IGNORED_HEAD_PREFIX)}
        set_strict(layer, state, path)
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

"""Starting paddle_bts's encoder from an ImageNet backbone that conversion/backbone.py --to-paddle converted
from torchvision's file: PaddleDepth's `encoder.pdparams` (the file, or the folder holding it), loaded strictly,
so that Paddle starts from the same ImageNet numbers as torch_ref (torch_ref/backbone.py).
"""
import os

from bts_core.spec import DECODER_FILE, ENCODER_FILE
from paddle_bts.checkpoint import WeightsError, read_part, set_strict


def encoder_file(path):
    """The encoder.pdparams `path` names: itself, or the one in the folder `path`; WeightsError (one line) else."""
    path = str(path)
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, DECODER_FILE)):
            raise WeightsError(f"{path} holds a whole BTS model ({ENCODER_FILE}, {DECODER_FILE}); train from it with "
                               f"load_weights_folder (retrain: true restarts at step 0), or give "
                               f"{os.path.join(path, ENCODER_FILE)} to start only the encoder from it")
        path = os.path.join(path, ENCODER_FILE)
    return path


def load_encoder_weights(model, path):
    """Loads encoder.pdparams (see encoder_file) into `model.encoder` strictly; returns a one-line account."""
    path = encoder_file(path)
    state, dropped = read_part(path, "encoder")
    set_strict(model.encoder, state, path)
    head = f"; {len(dropped)} paddle.vision head tensor(s) left out" if dropped else ""
    return f"encoder from {path}: {len(state)} tensors{head}"


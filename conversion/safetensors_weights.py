"""model.safetensors: the torch_ref state dict without pickle, loaded bit for bit by torch_ref and paddle_bts.

Unpickling can run code (torch.load's weights_only narrows that, paddle.load has no such mode); a
safetensors file is a JSON header and raw tensors, so reading it runs nothing. The file holds
torch_ref's names (official keys without 'module.', BN counters included) in float32, as the official
checkpoint holds them after the converter's float32 casting. Paddle gets them through the converter's
own rules (conversion.convert.torch_to_paddle): there is no second mapping table.
"""
import os

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from bts_core.cli import InputError, staged_outputs
from conversion.convert import torch_layout, torch_to_paddle
from conversion.rules import normalise_torch_key
from paddle_bts.checkpoint import PART_FILES, set_strict
from torch_ref.backbone import fit_problems

SAFETENSORS_FILE = "model.safetensors"
FORMAT = "bts-torch-state/1"
METADATA_KEYS = ("encoder", "max_depth", "dataset")   # what building the model needs; stored as strings


class SafetensorsError(InputError):
    """A model.safetensors that is unreadable or does not fit the model; one line meant for the user."""


def write_safetensors(state, path, metadata):
    """Writes torch_ref `state` (keys without 'module.') and `metadata` {encoder, max_depth, dataset} to `path`
    (a temporary file renamed onto it). Floating tensors become float32 as the converter casts them; legacy
    torchvision DenseNet names become torch_ref's, so torch_ref loads the file strictly."""
    tensors = {normalise_torch_key(k): (v.float() if v.is_floating_point() else v).contiguous()
               for k, v in state.items()}
    header = {"format": FORMAT, **{key: str(metadata[key]) for key in METADATA_KEYS}}
    with staged_outputs([path], force=True) as (staged,):
        save_file(tensors, str(staged), metadata=header)


def _open(path):
    if not os.path.isfile(path):
        raise SafetensorsError(f"{path}: no such file")
    try:
        return safe_open(str(path), framework="pt")
    except SafetensorError as e:
        raise SafetensorsError(f"{path}: not a readable safetensors file ({e})") from None


def read_metadata(path):
    """{format, encoder, max_depth, dataset} as stored (strings), reading no tensor: what to build the model with."""
    with _open(path) as f:
        metadata = f.metadata() or {}
    if metadata.get("format") != FORMAT or not all(key in metadata for key in METADATA_KEYS):
        raise SafetensorsError(f"{path}: not a BTS weights file (metadata format {metadata.get('format')!r}, "
                               f"expected {FORMAT!r} with {', '.join(METADATA_KEYS)})")
    return metadata


def _check_layout(state, encoder, path):
    """Every torch_ref key with its shape, nothing else, floats finite and in float32 (a strict torch load
    would cast float16 silently), as the converter demands: a file fails alike for both frameworks."""
    layout = {key: shape for key, (shape, _) in torch_layout(encoder).items()}
    found = fit_problems(state, layout, float32=True)
    if found:
        raise SafetensorsError(f"{path}: does not fit {encoder}: " + "; ".join(found))


def read_safetensors(path, encoder):
    """(torch_ref state dict, metadata) from `path`, refused unless it holds exactly `encoder`'s tensors."""
    metadata = read_metadata(path)
    if metadata["encoder"] != encoder:
        raise SafetensorsError(f"{path} holds {metadata['encoder']} weights, not {encoder}; "
                               f"build the model with {metadata['encoder']}")
    with _open(path) as f:
        state = {key: f.get_tensor(key) for key in f.keys()}
    _check_layout(state, encoder, path)
    return state, metadata


def load_torch(model, path):
    """Loads `path` strictly into a torch_ref BtsModel; returns the model."""
    state, _ = read_safetensors(path, model.encoder_name)
    model.load_state_dict(state, strict=True)
    return model


def load_paddle(model, path):
    """Loads `path` strictly into a paddle_bts BtsModel, names mapped by the converter's rules; returns the model."""
    state, _ = read_safetensors(path, model.encoder_name)
    parts, report = torch_to_paddle(state, model.encoder_name)
    if report.problems():   # cannot happen after _check_layout; never load what the converter would refuse
        raise SafetensorsError(f"{path}: " + "; ".join(report.problems()))
    for part in PART_FILES:
        set_strict(getattr(model, part), parts[part], f"{path} ({part})")
    return model

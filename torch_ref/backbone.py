"""Starting torch_ref's encoder from a torchvision ImageNet checkpoint, as official training does
(`models.densenet161(pretrained=True).features`, ...): the file torchvision publishes (a raw state dict,
DenseNet's legacy `norm.1` names included), renamed by bts_core.backbones' table, loaded strictly.
"""
import torch

from bts_core.backbones import HEAD_WHY, backbone_of, rename_backbone, to_backbone_key
from torch_ref.checkpoint import PREFIX, CheckpointError, load_torch_file

ENCODER = "encoder."
COUNTER = "num_batches_tracked"


class BackboneError(CheckpointError):
    """A file that is not a torchvision backbone of the encoder; the message is one line meant for the user."""


def _whole_model(path):
    return BackboneError(f"{path} is a whole BTS checkpoint (encoder and decoder), not a torchvision ImageNet "
                         f"backbone; convert it with conversion/torch2paddle.py, or train from it with checkpoint_path")


def read_backbone_file(path):
    """The state dict of a torchvision classification checkpoint file, as saved; a BackboneError (one line)
    for anything else, a whole BTS checkpoint included."""
    obj = load_torch_file(path)
    if isinstance(obj, dict) and "model" in obj:
        raise _whole_model(path)
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise BackboneError(f"{path}: not a torchvision state dict (expected {{name: tensor}}, as "
                            f"torch.save(model.state_dict()) writes)")
    if any(k.startswith((ENCODER, PREFIX + ENCODER)) for k in obj):
        raise _whole_model(path)
    return obj


def read_backbone(path, encoder):
    """({torch_ref encoder key: tensor}, {torchvision key: why dropped}) from a torchvision classification
    checkpoint of `encoder`'s network (read_backbone_file); a BackboneError for another network's keys."""
    obj = read_backbone_file(path)
    backbone = backbone_of(encoder)
    state, _, head, outside = rename_backbone(obj, encoder)
    dropped = dict.fromkeys(head, HEAD_WHY)
    if outside:
        raise BackboneError(f"{path}: not a torchvision {backbone.torchvision} checkpoint ({len(outside)} key(s) "
                            f"outside its `{backbone.module}` and `{backbone.head}`, e.g. {outside[0]}); "
                            f"is it another encoder's?")
    return state, dropped


def fill_missing_counters(state, expected):
    """BN counters the file lacks (torchvision's files from before torch 0.4.1 have none) start at 0: BTS never
    reads them, its BN momentum is fixed. Returns the keys filled."""
    filled = [k for k in expected if k.endswith(COUNTER) and k not in state]
    for key in filled:
        state[key] = torch.zeros_like(expected[key], device="cpu")
    return filled


def fit_problems(state, shapes, name=lambda key: key, float32=False):
    """["N missing key(s), e.g. KEY", ...]: what keeps `state` from filling `shapes` {key: shape} exactly, keys
    shown as `name(key)`; empty when it fits. `float32`: floating tensors must be float32 as well."""
    problems = {
        "missing key(s)": [name(k) for k in shapes if k not in state],
        "unexpected key(s)": [name(k) for k in state if k not in shapes],
        "shape mismatch(es)": [f"{name(k)} {list(state[k].shape)} != {list(shapes[k])}" for k in shapes
                               if k in state and tuple(state[k].shape) != shapes[k]],
        "tensor(s) not float32": [f"{name(k)} {v.dtype}" for k, v in state.items()
                                  if float32 and v.is_floating_point() and v.dtype != torch.float32],
        "tensor(s) with NaN/Inf": [name(k) for k, v in state.items() if v.is_floating_point() and not v.isfinite().all()],
    }
    return [f"{len(items)} {label}, e.g. {items[0]}" for label, items in problems.items() if items]


def check_fits(state, expected, encoder, path):
    """A BackboneError naming, by torchvision's names, what keeps `state` from filling `expected` exactly."""
    found = fit_problems(state, {k: v.shape for k, v in expected.items()},
                         lambda key: to_backbone_key(key, encoder) if key.startswith(ENCODER) else key)
    if found:
        raise BackboneError(f"{path}: does not fit {encoder} (torchvision {backbone_of(encoder).torchvision}): "
                            + "; ".join(found))


def load_backbone(model, path):
    """Loads a torchvision checkpoint into `model.encoder` (a torch_ref BtsModel's), strictly: every encoder
    tensor with its shape, nothing beyond the dropped head. Returns a one-line account."""
    encoder = model.encoder_name
    state, dropped = read_backbone(path, encoder)
    expected = {ENCODER + k: v for k, v in model.encoder.state_dict().items()}
    filled = fill_missing_counters(state, expected)
    check_fits(state, expected, encoder, path)
    model.encoder.load_state_dict({k[len(ENCODER):]: v for k, v in state.items()}, strict=True)
    counters = f"; {len(filled)} BN counters the file lacks set to 0" if filled else ""
    head = f"; {len(dropped)} head tensor(s) left out ({HEAD_WHY})" if dropped else ""
    return (f"encoder from {path}: torchvision {backbone_of(encoder).torchvision}, {len(state) - len(filled)} "
            f"tensors{head}{counters}")

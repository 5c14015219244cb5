"""torchvision ImageNet classifiers <-> BTS encoder keys: the one table torch_ref (training from ImageNet
weights) and conversion (conversion/backbone.py, conversion/rules.py) both read.

Official BTS builds every encoder from a torchvision classifier (bts.py: `models.densenet161(pretrained=True)
.features`, `models.resnet50(pretrained=True)`, `models.mobilenet_v2(pretrained=True).features`, ...):
`base_model` is the classifier's `features` (DenseNet, MobileNetV2) or the whole network (ResNet, ResNeXt,
whose unused `fc` comes along). So a torchvision key is a torch_ref key with one prefix swapped, and the
head outside `features` is the one part of the file BTS never builds. Nothing here imports a framework.
"""
import re
from dataclasses import dataclass
from typing import Optional

from bts_core.spec import check_encoder

ENCODER_PREFIX = "encoder.base_model."   # torch_ref's keys of the torchvision module


@dataclass(frozen=True)
class Backbone:
    torchvision: str          # the torchvision.models builder official BTS calls with pretrained=True
    module: str               # the classifier's submodule BTS keeps as base_model ("": the whole network)
    head: Optional[str]       # the classifier's submodule BTS never builds (its keys are dropped), or None


_FEATURES = {"module": "features", "head": "classifier"}
_WHOLE = {"module": "", "head": None}
BACKBONES = {
    "densenet121_bts": Backbone("densenet121", **_FEATURES),
    "densenet161_bts": Backbone("densenet161", **_FEATURES),
    "resnet50_bts": Backbone("resnet50", **_WHOLE),
    "resnet101_bts": Backbone("resnet101", **_WHOLE),
    "resnext50_bts": Backbone("resnext50_32x4d", **_WHOLE),
    "resnext101_bts": Backbone("resnext101_32x8d", **_WHOLE),
    "mobilenetv2_bts": Backbone("mobilenet_v2", **_FEATURES),
}
HEAD_WHY = "ImageNet classifier head: official BTS builds only the torchvision network's `features`"

# torchvision's published DenseNet files use `denselayer1.norm.1.weight`; torchvision renames them on load.
_LEGACY_DENSENET = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def normalise_torch_key(key):
    """A legacy DenseNet key as torchvision names it today; any other key unchanged."""
    m = _LEGACY_DENSENET.match(key)
    return m[1] + m[2] if m else key


def backbone_of(encoder):
    check_encoder(encoder)
    return BACKBONES[encoder]


def _kept_prefix(backbone):
    return f"{backbone.module}." if backbone.module else ""


def to_encoder_key(key, encoder):
    """torchvision key -> torch_ref key (`encoder.base_model.*`), None for the dropped head; KeyError if neither."""
    backbone = backbone_of(encoder)
    key, kept = normalise_torch_key(key), _kept_prefix(backbone)
    if backbone.head and key.startswith(f"{backbone.head}."):
        return None
    if not key.startswith(kept):
        raise KeyError(key)
    return ENCODER_PREFIX + key[len(kept):]


def to_backbone_key(key, encoder):
    """torch_ref encoder key (`encoder.base_model.*`) -> torchvision key; KeyError for a key outside it."""
    if not key.startswith(ENCODER_PREFIX):
        raise KeyError(key)
    return _kept_prefix(backbone_of(encoder)) + key[len(ENCODER_PREFIX):]


def rename_backbone(state, encoder):
    """A torchvision file's {key: value} for `encoder`: ({torch_ref key: value} kept, {torch_ref key: torchvision
    key} of those, [head keys] dropped, [keys of neither]); torchvision keys normalised (legacy DenseNet names
    as torchvision names them today)."""
    renamed, torchvision_name, head, outside = {}, {}, [], []
    for key, value in state.items():
        key = normalise_torch_key(key)
        try:
            target = to_encoder_key(key, encoder)
        except KeyError:
            outside.append(key)
            continue
        if target is None:
            head.append(key)
        else:
            renamed[target], torchvision_name[target] = value, key
    return renamed, torchvision_name, head, outside

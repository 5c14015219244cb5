"""Encoder registry: torchvision backbones (never downloaded) and the children whose outputs are BTS skips."""
from dataclasses import dataclass
from typing import Callable

import torch.nn as nn
import torchvision.models as tvm

from bts_core.backbones import BACKBONES
from bts_core.spec import check_encoder


@dataclass(frozen=True)
class EncoderSpec:
    build: Callable[[], nn.Module]   # returns `base_model` with random weights
    taps: tuple                       # names of base_model children whose outputs are the 5 skips


_DENSENET_TAPS = ("relu0", "pool0", "transition1", "transition2", "norm5")
_RESNET_TAPS = ("relu", "layer1", "layer2", "layer3", "layer4")
# Official mobilenetv2 counts children from 1 and keeps numbers 2, 4, 7, 11, 19; child names are 0-based.
_MOBILENET_TAPS = ("1", "3", "6", "10", "18")


def torchvision_module(name):
    """The part of torchvision's classifier that official BTS keeps as `base_model` (bts_core.backbones):
    DenseNet's and MobileNetV2's `features`; ResNets whole, so checkpoints carry the unused `fc` as official ones do."""
    backbone = BACKBONES[name]
    return getattr(tvm, backbone.torchvision)(weights=None).get_submodule(backbone.module)


_TAPS = {"densenet": _DENSENET_TAPS, "resnet": _RESNET_TAPS, "mobilenetv2": _MOBILENET_TAPS}
ENCODER_SPECS = {name: EncoderSpec(lambda name=name: torchvision_module(name), _TAPS[check_encoder(name).family])
                 for name in BACKBONES}


class encoder(nn.Module):  # noqa: N801 - official class name
    """Runs `base_model`'s children in order and returns the five skip features (shallow to deep)."""

    def __init__(self, name):
        super().__init__()
        self.feat_out_channels = list(check_encoder(name).channels)
        spec = ENCODER_SPECS[name]
        self.base_model = spec.build()
        self.taps = spec.taps

    def forward(self, x):
        skips = []
        for name, child in self.base_model.named_children():
            x = child(x)
            if name in self.taps:
                skips.append(x)
                if len(skips) == len(self.taps):   # avgpool / fc after the last tap are never run
                    break
        return skips

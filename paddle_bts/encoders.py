"""Encoder registry: paddle.vision backbones, named as PaddleDepth's `encoder.pdparams` expects.

The skip taps are the same network positions as torch_ref's; only DenseNet's child names differ
(paddle.vision: conv1_func = conv0+norm0+relu0, pool2d_max = pool0, tr_conv{t+1}_blk = transition{t},
batch_norm = norm5 followed by a ReLU that the decoder applies anyway).
"""
from dataclasses import dataclass
from typing import Callable

import paddle.nn as nn
import paddle.vision.models as pvm
from paddle.vision.models.resnet import BottleneckBlock, ResNet

from bts_core.spec import check_encoder


@dataclass(frozen=True)
class EncoderSpec:
    build: Callable[[], nn.Layer]
    taps: tuple


_DENSENET_TAPS = ("conv1_func", "pool2d_max", "tr_conv2_blk", "tr_conv3_blk", "batch_norm")
_RESNET_TAPS = ("relu", "layer1", "layer2", "layer3", "layer4")
_MOBILENET_TAPS = ("1", "3", "6", "10", "18")

ENCODER_SPECS = {
    # DenseNet without classifier: official encoders use torchvision's `.features` only.
    "densenet121_bts": EncoderSpec(lambda: pvm.densenet121(num_classes=0, with_pool=False), _DENSENET_TAPS),
    "densenet161_bts": EncoderSpec(lambda: pvm.densenet161(num_classes=0, with_pool=False), _DENSENET_TAPS),
    # ResNets keep `fc` (unused) because official checkpoints carry it: conversion stays lossless.
    "resnet50_bts": EncoderSpec(lambda: pvm.resnet50(), _RESNET_TAPS),
    "resnet101_bts": EncoderSpec(lambda: pvm.resnet101(), _RESNET_TAPS),
    "resnext50_bts": EncoderSpec(lambda: pvm.resnext50_32x4d(), _RESNET_TAPS),
    # paddle.vision has no resnext101_32x8d; this is the same network (torchvision's groups=32, width 8).
    "resnext101_bts": EncoderSpec(lambda: ResNet(BottleneckBlock, 101, width=8, groups=32), _RESNET_TAPS),
    "mobilenetv2_bts": EncoderSpec(lambda: pvm.mobilenet_v2(num_classes=0, with_pool=False).features,
                                   _MOBILENET_TAPS),
}


class encoder(nn.Layer):  # noqa: N801 - official class name
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

"""torch -> paddle -> torch through the files the CLIs write: bit-exact, BN counters included; and the
written files load both through paddle_bts.load_weights and through plain paddle.load + set_state_dict."""

import numpy as np
import paddle
import pytest
import torch

import paddle_bts
from bts_core.spec import ENCODERS
from conversion.convert import torch_to_paddle
from helpers import convert_both_ways

# One per family: DenseNet (renamed modules), ResNet (transposed fc), MobileNetV2. The rest: -m slow.
DEFAULT = ("densenet121_bts", "resnet50_bts", "mobilenetv2_bts")
ALL = [e if e in DEFAULT else pytest.param(e, marks=pytest.mark.slow) for e in ENCODERS]


@pytest.mark.parametrize("encoder", ALL)
def test_torch_paddle_torch_is_bit_exact(encoder, tmp_path):
    source, back = convert_both_ways(encoder, tmp_path)
    assert list(back) == list(source)
    differ = [k for k in source if back[k].dtype != source[k].dtype or not torch.equal(back[k], source[k])]
    assert differ == []


def test_written_files_load_in_paddle_bts_and_in_plain_paddle(tmp_path):
    encoder = "mobilenetv2_bts"
    source, _ = convert_both_ways(encoder, tmp_path)
    expected, _ = torch_to_paddle(source, encoder)
    folder = tmp_path / "paddle"
    strict = paddle_bts.load_weights(paddle_bts.BtsModel(encoder), str(folder))
    plain = paddle_bts.BtsModel(encoder)
    for part, name in (("encoder", "encoder.pdparams"), ("decoder", "depth.pdparams")):
        state = paddle.load(str(folder / name))    # what PaddleDepth does
        assert all(isinstance(v, paddle.Tensor) for v in state.values())
        missing, unexpected = getattr(plain, part).set_state_dict(state)
        assert not missing and not unexpected
        for model in (strict, plain):
            loaded = getattr(model, part).state_dict()
            assert loaded.keys() == expected[part].keys()
            assert all(np.array_equal(loaded[k].numpy(), expected[part][k]) for k in loaded)

"""Stage `init`: freshly built models start training as the official code does.

Weights converted from torch overwrite every initial value, so no other stage sees how a model is
initialised; yet training from a pretrained encoder keeps the decoder's initial state. The two
frameworks draw different random numbers, so what is compared is what the official recipe fixes:
every BN's gamma = 1, beta = 0, running mean 0, running variance 1 (encoder and decoder), and each
decoder conv weight's Xavier-uniform distribution (std / Xavier std, and max|w| within the bound).
Encoder conv weights are not compared: the recipe replaces them with ImageNet weights.
"""
import math

import numpy as np
import pytest

import paddle_bts
import torch_ref
from alignment import twins
from alignment.harness import Tolerance, environment, run_case
from alignment.tolerances import TOLERANCES

INIT_ENCODERS = ("densenet121_bts", "resnet50_bts")
BN_LEAVES = ("weight", "bias", "running_mean", "running_var")


def _xavier_figures(weight):
    """(std / Xavier-uniform std, max|w| / Xavier bound) of a conv weight [out, in, kh, kw] (torch layout)."""
    receptive = int(np.prod(weight.shape[2:]))
    fan_in, fan_out = weight.shape[1] * receptive, weight.shape[0] * receptive
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return np.array([weight.std() / (bound / math.sqrt(3.0)), np.abs(weight).max() / bound])


def _is_bn(torch_model, name):
    module = torch_model.get_submodule(name.rpartition(".")[0])
    return module.__class__.__name__.startswith("BatchNorm")


def run_init(encoder):
    tm = torch_ref.build_model(encoder)
    pm = paddle_bts.build_model(encoder)
    paddle_state = pm.state_dict()
    torch_out, paddle_out, tolerances = {}, {}, {}
    for name, value in tm.state_dict().items():
        leaf = name.rpartition(".")[2]
        if leaf == "num_batches_tracked":
            continue
        t = twins.numpy_of(value)
        p = twins.numpy_of(paddle_state[twins.paddle_param_name(name, encoder)])
        if _is_bn(tm, name) and leaf in BN_LEAVES:
            torch_out[name], paddle_out[name] = t, p
        elif name.startswith("decoder.") and leaf == "weight" and t.ndim == 4:
            key = f"{name} (std/xavier, max/bound)"
            torch_out[key], paddle_out[key] = _xavier_figures(t), _xavier_figures(p)
            # std of n uniform draws: relative standard error ~ sqrt(0.8 / n); 6 standard errors.
            tolerances[key] = Tolerance(rtol=0.0, atol=6 * math.sqrt(0.8 / t.size), why="sampling error of std")
    return run_case("init", f"init-{encoder}", torch_out, paddle_out, TOLERANCES["init"], tolerances=tolerances,
                    meta=environment(*twins.devices()), order=list(torch_out))


@pytest.mark.parametrize("encoder", INIT_ENCODERS, ids=[f"init-{e}" for e in INIT_ENCODERS])
def test_init_stage(encoder):
    result = run_init(encoder)
    assert result.passed, result.failure_message()

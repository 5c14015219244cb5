"""Stages that train: `backward` (gradients after a silog loss, official freezing in both) and
`train_mode` (BN running statistics after one train-mode forward)."""

import numpy as np
import pytest
import torch

import paddle_bts
import torch_ref
from alignment import noise, twins
from alignment.harness import environment, run_case
from alignment.tolerances import TOLERANCES

ENCODERS_TRAINED = ("densenet161_bts", "resnet50_bts")
INPUT = (2, 3, 64, 128)


def ground_truth(seed=3):
    """Depth in metres with ~10 % of pixels at or below KITTI's 1.0 m mask threshold."""
    return twins.seeded((INPUT[0], 1, INPUT[2], INPUT[3]), seed, 0.5, 80.0)


def _train_twins(encoder, torch_running_var=True):
    tm, pm = twins.build_twins(encoder, torch_running_var=torch_running_var)
    tm.train(), pm.train()
    return tm, pm


# The verdict comes from float64 in both frameworks: in fp32 a ReLU whose input lies within rounding of 0
# can switch on in one framework and off in the other, and that element's whole gradient then differs.
# resnet50 (2x4 positions per channel at layer4 for a 64x128 input): 47 of 130 gradients over the fp32
# bound, worst layer4.2.conv3.weight at 170x torch's fp32-vs-fp64 error -- and torch against *itself* with
# another summation order (channels_last, 1 thread) 35 of 129, worst 134x. densenet161 passed on AMD EPYC
# (<= 2.1x) but failed on an Intel Xeon (AVX-512): 3 of 229 gradients, worst denselayer21.conv1.weight
# 6.5x. Such switches cannot be bounded by a noise floor measured on one machine, so the fp32 case is
# reported (its figures against the fp64 and reordered-fp32 floors), not asserted. In fp64 nothing
# switches and every gradient of both encoders agrees to <= 7e-10 x max: the maths is the same.
BACKWARD_CASES = [("densenet161_bts", "float32"), ("densenet161_bts", "float64"), ("resnet50_bts", "float64")]


@pytest.mark.parametrize("encoder,dtype", BACKWARD_CASES, ids=[f"backward-{e}-{d}" for e, d in BACKWARD_CASES])
def test_backward_stage(encoder, dtype):
    result = run_backward(encoder, dtype)
    if dtype == "float64":   # the verdict; float32 figures are in reports/backward/ (verdict REPORT)
        assert result.passed, result.failure_message()
    else:
        assert result.meta["verdict"].startswith("REPORT") and len(result.table) > 100


def run_backward(encoder, dtype="float32"):
    """Loss, input and parameter gradients of both twins after a silog loss; returns the Result."""
    # Eval-mode BN (running statistics): gradients are then a smooth function of the weights up to ReLU
    # switches. In train mode, BN over 2x64x128 batches leaves deep channels 64 values and the gradients
    # differed up to 65x torch's own fp32-vs-fp64 error; train mode is covered by `train_mode` and `train`.
    tm, pm = twins.build_twins(encoder)
    # Frozen sets are compared through the gradients: one frozen in one framework only has a gradient
    # on one side only, which fails as a shape mismatch at that parameter.
    frozen_t = torch_ref.freeze_encoder(tm)
    paddle_bts.freeze_encoder(pm)
    x, gt = twins.photographs(INPUT[2], INPUT[3]), ground_truth()
    exact = perturbed = None
    if dtype == "float32":   # torch's own noise floors: float64, and fp32 in another summation order
        exact = torch_gradients(noise.in_float64(tm), x, gt, torch.float64)
        perturbed = torch_gradients(noise.reordered(tm), noise.jittered(x), gt, torch.float32, noise.channels_last)
    if dtype == "float64":
        tm.double()
        pm.to(dtype="float64")
    x, gt, focals = x.astype(dtype), gt.astype(dtype), twins.FOCALS.astype(dtype)
    xt = twins.to_torch(x).requires_grad_(True)
    xp = twins.to_paddle(x)
    xp.stop_gradient = False
    loss_t = torch_ref.silog_loss()(tm(xt, twins.to_torch(focals))[4], twins.to_torch(gt), twins.to_torch(gt > 1.0))
    loss_p = paddle_bts.silog_loss()(pm(xp, twins.to_paddle(focals))[4], twins.to_paddle(gt),
                                     twins.to_paddle(gt > 1.0))
    loss_t.backward()
    loss_p.backward()
    paddle_params = dict(pm.named_parameters())
    torch_out = {"loss": twins.numpy_of(loss_t), "grad/input": twins.numpy_of(xt.grad)}
    paddle_out = {"loss": twins.numpy_of(loss_p), "grad/input": twins.numpy_of(xp.grad)}
    order = []   # backward order: the reverse of the order parameters are registered (deepest first)
    for name, param in reversed(list(tm.named_parameters())):
        other = paddle_params[twins.paddle_param_name(name, encoder)]
        grad_p = other.grad
        if param.grad is None and grad_p is None:
            continue   # frozen in both, or unused (ResNet's fc)
        torch_out[f"grad/{name}"] = twins.numpy_of(param.grad) if param.grad is not None else np.array([])
        g = twins.numpy_of(grad_p) if grad_p is not None else np.array([])
        paddle_out[f"grad/{name}"] = g.T if g.ndim == 2 else g   # Linear: Paddle stores [in, out]
        order.append(f"grad/{name}")
    tol = TOLERANCES["backward" if dtype == "float32" else "backward_fp64"]
    tolerances = {"loss": TOLERANCES["loss" if dtype == "float32" else "loss_fp64"]}
    result = run_case("backward", f"backward-{encoder}-{dtype}", torch_out, paddle_out, tol, tolerances=tolerances,
                      meta={**environment(*twins.devices()), "dtype": dtype, "frozen parameters": len(frozen_t)},
                      exact=exact, perturbed=perturbed, order=order, asserted=dtype == "float64")
    return result


def torch_gradients(model, x, gt, dtype, layout=lambda t: t):
    """Loss, input and parameter gradients from torch at `dtype` (a copy of the model already in it)."""
    xt = layout(twins.to_torch(x).to(dtype)).requires_grad_(True)
    loss = torch_ref.silog_loss()(model(xt, twins.to_torch(twins.FOCALS).to(dtype))[4],
                                  twins.to_torch(gt).to(dtype), twins.to_torch(gt > 1.0))
    loss.backward()
    out = {"loss": twins.numpy_of(loss), "grad/input": twins.numpy_of(xt.grad)}
    out.update({f"grad/{n}": twins.numpy_of(p.grad) for n, p in model.named_parameters() if p.grad is not None})
    return out


def bn_running_stats(tm, pm, encoder):
    torch_out, paddle_out = {}, {}
    paddle_state = {k: v for k, v in pm.state_dict().items()}
    for name, value in tm.state_dict().items():
        if name.endswith(("running_mean", "running_var")):
            torch_out[name] = twins.numpy_of(value)
            paddle_out[name] = twins.numpy_of(paddle_state[twins.paddle_param_name(name, encoder)])
    return torch_out, paddle_out


TRAIN_MODE_CASES = [("densenet161_bts", True), ("resnet50_bts", True),
                    pytest.param("densenet161_bts", False, marks=pytest.mark.xfail(
                        strict=True, reason="Paddle's native BN updates the running variance with the biased "
                                            "batch variance: the gap this case measures"))]


@pytest.mark.parametrize("encoder,torch_running_var", TRAIN_MODE_CASES,
                         ids=["train_mode-densenet161_bts", "train_mode-resnet50_bts",
                              "train_mode-densenet161_bts-paddle_native_bn"])
def test_train_mode_stage(encoder, torch_running_var):
    result = run_train_mode(encoder, torch_running_var)
    assert result.passed, result.failure_message()


def run_train_mode(encoder, torch_running_var=True):
    """BN running statistics (in execution order) and the output after one train-mode forward."""
    tm, pm = _train_twins(encoder, torch_running_var)
    x = twins.photographs(INPUT[2], INPUT[3])
    focal = twins.to_torch(twins.FOCALS)
    # torch's own noise floors, each from a copy taken before the forward updates the statistics:
    # float64, and fp32 in another summation order (channels_last, input one ulp up).
    exact_model, perturbed_model = noise.in_float64(tm), noise.reordered(tm)
    with torch.no_grad():
        exact = exact_model(twins.to_torch(x).double(), focal.double())[4]
        perturbed = perturbed_model(noise.channels_last(twins.to_torch(noise.jittered(x))), focal)[4]
        out_t = tm(twins.to_torch(x), focal)[4]
    out_p = pm(twins.to_paddle(x), twins.to_paddle(twins.FOCALS))[4]
    torch_out, paddle_out = bn_running_stats(tm, pm, encoder)
    exact_stats, perturbed_stats = _torch_stats(exact_model), _torch_stats(perturbed_model)
    depth = "final_depth (batch statistics)"
    torch_out[depth], paddle_out[depth] = twins.numpy_of(out_t), twins.numpy_of(out_p)
    exact_stats[depth], perturbed_stats[depth] = twins.numpy_of(exact), twins.numpy_of(perturbed)
    case = f"train_mode-{encoder}" + ("" if torch_running_var else "-paddle_native_bn")
    gap = None if torch_running_var else ("Paddle's native BN updates the running variance with the biased batch "
                                          "variance: the gap this case measures")
    result = run_case("train_mode", case, torch_out, paddle_out, TOLERANCES["train_mode"],
                      tolerances={depth: TOLERANCES["model"]},
                      meta={**environment(*twins.devices()), "torch_running_var": torch_running_var},
                      exact=exact_stats, perturbed=perturbed_stats, order=list(torch_out), expected_failure=gap)
    return result


def _torch_stats(model):
    return {n: twins.numpy_of(v) for n, v in model.state_dict().items() if n.endswith(("running_mean", "running_var"))}

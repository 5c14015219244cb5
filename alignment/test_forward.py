"""Forward stages: lpg, reduction, atrous/daspp, upconv, encoder, decoder, model.

Sub-module stages use the twin models' own sub-layers (Paddle weights from the converter). Each case
is (stage, id, function giving both sides' outputs); `-k <stage>` selects a stage.
"""
import copy
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import torch

import paddle_bts.bts as pbts
import torch_ref.bts as tbts
from alignment import noise, twins
from alignment.harness import environment, run_case
from alignment.tolerances import LAYER_LOCALISATION, TOLERANCES
from alignment.localise import Recorder, first_divergence, layer_table, plot_layers
from bts_core.spec import ENCODERS, OUTPUT_NAMES

MODULE_ENCODER = "densenet121_bts"   # small, fast twin whose decoder sub-layers the module stages use
FLAGSHIP = "densenet161_bts"


@dataclass(frozen=True)
class Case:
    stage: str
    id: str
    run: Callable     # () -> (torch_out, paddle_out, scales or None, meta)


def _both(torch_fn, paddle_fn, *arrays):
    """Runs the two callables on the same numpy arrays; returns their outputs as numpy."""
    with torch.no_grad():
        t = torch_fn(*[twins.to_torch(a) for a in arrays])
    p = paddle_fn(*[twins.to_paddle(a) for a in arrays])
    return twins.numpy_of(t), twins.numpy_of(p)


def _with_noise(name, torch_layer, paddle_layer, *arrays, module=True):
    """Both sides' output of one layer plus torch's own noise references (float64, reordered fp32), as
    the four dicts a Case returns: torch, paddle, scales (None), meta with `exact` and `perturbed`."""
    t, p = _both(torch_layer, paddle_layer, *arrays)
    call = (lambda m, *x: m(*x)) if module else torch_layer
    exact, perturbed = noise.references(call, arrays, twins.to_torch, torch_layer if module else None)
    return {name: t}, {name: p}, None, {"exact": {name: exact}, "perturbed": {name: perturbed}}


def random_planes(shape, seed):
    """Plane equations as reduction_1x1 produces them: unit normals (theta <= pi/3) and distance < 80."""
    b, h, w = shape
    rng = np.random.default_rng(seed)
    theta, phi = rng.uniform(0, math.pi / 3, (b, h, w)), rng.uniform(0, 2 * math.pi, (b, h, w))
    dist = rng.uniform(0.5, 80.0, (b, h, w))
    planes = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta), dist], 1)
    return planes.astype(np.float32)


def lpg_case(ratio):
    def run():
        planes = random_planes((2, 8, 16), seed=ratio)
        t, p = _both(lambda x, f: tbts.local_planar_guidance(ratio)(x, f),
                     lambda x, f: pbts.local_planar_guidance(ratio)(x, f), planes, twins.FOCALS)
        # Condition of n4 / (n1 u + n2 v + n3): relative error grows as (|n1 u|+|n2 v|+|n3|) / |denominator|.
        up = np.repeat(np.repeat(planes.astype(np.float64), ratio, 2), ratio, 3)
        offs = (np.arange(ratio) - (ratio - 1) / 2) / ratio
        u, v = np.tile(offs, 16)[None, None, :], np.tile(offs, 8)[None, :, None]
        terms = np.abs(up[:, 0] * u) + np.abs(up[:, 1] * v) + np.abs(up[:, 2])
        den = up[:, 0] * u + up[:, 1] * v + up[:, 2]
        scale = np.abs(t) * (1 + terms / np.abs(den))
        return {"depth": t}, {"depth": p}, {"depth": scale}, {"min |denominator|": float(np.abs(den).min())}
    return Case("lpg", f"lpg-r{ratio}", run)


def submodule_case(stage, layer, in_shape, seed=0):
    def run():
        tm, pm = twins.twin_models(MODULE_ENCODER)
        x = twins.seeded(in_shape, seed)
        return _with_noise(layer, getattr(tm.decoder, layer), getattr(pm.decoder, layer), x)
    return Case(stage, f"{stage}-{layer}", run)


def plane_equation_case():
    """The L2 normalisation of plane normals, on normals of every length down to below its epsilon.

    In the network the normals already have unit length, so a wrong epsilon (or axis) there changes
    nothing measurable; here the lengths span 1e-14 .. 1e2, so both the epsilon and the axis show."""
    def run():
        rng = np.random.default_rng(5)
        reduc = twins.seeded((2, 4, 8, 16), 5)
        reduc[:, :3] *= 10.0 ** rng.uniform(-14, 2, (2, 1, 8, 16)).astype(np.float32)
        return _with_noise("plane_equation", tbts.plane_equation, pbts.plane_equation, reduc, module=False)
    return Case("reduction", "reduction-plane_equation", run)


def bn_small_variance_case():
    """Every decoder BN of the twins alone, with running variances spread over 1e-7 .. 1.

    A trained network has channels of near-zero variance, where the BN epsilon (official 1.1e-5 on
    the named BNs, 1e-5 inside aconv_sequence) sets the output scale; the seeded twins' calibrated
    variances are too large for a wrong epsilon to show anywhere else."""
    def run():
        tm, pm = twins.twin_models(MODULE_ENCODER)
        paddle_layers = dict(pm.decoder.named_sublayers())
        torch_out, paddle_out, exact, perturbed = {}, {}, {}, {}
        for name, module in tm.decoder.named_modules():
            if not isinstance(module, torch.nn.BatchNorm2d):
                continue
            rng = np.random.default_rng(len(torch_out))
            variance = (10.0 ** rng.uniform(-7, 0, module.num_features)).astype(np.float32)
            x = twins.seeded((2, module.num_features, 4, 8), len(torch_out)) * np.sqrt(variance)[:, None, None]
            t_bn, p_bn = copy.deepcopy(module), copy.deepcopy(paddle_layers[name])
            t_bn.running_var.copy_(torch.from_numpy(variance))
            p_bn._variance.set_value(variance)
            t, p, _, refs = _with_noise(f"decoder.{name}", t_bn, p_bn, x)
            torch_out.update(t), paddle_out.update(p), exact.update(refs["exact"]), perturbed.update(refs["perturbed"])
        return torch_out, paddle_out, None, {"order": list(torch_out), "exact": exact, "perturbed": perturbed}
    return Case("decoder", "decoder-bn_small_variance", run)


def encoder_case(encoder):
    def run():
        tm, pm = twins.twin_models(encoder)
        x = twins.photographs()
        with torch.no_grad():
            t = [twins.numpy_of(f) for f in tm.encoder(twins.to_torch(x))]
        p = [twins.numpy_of(f) for f in pm.encoder(twins.to_paddle(x))]
        exact, perturbed = noise.references(lambda m, image: m(image), [x], twins.to_torch, tm.encoder)
        # paddle.vision's DenseNet fuses the ReLU that BTS's decoder applies to the last feature anyway.
        if encoder.startswith("densenet"):
            t[4], exact[4] = np.maximum(t[4], 0), np.maximum(exact[4], 0)
            perturbed[4] = tuple(np.maximum(v, 0) for v in perturbed[4])
        names = [f"skip{i}" for i in range(4)] + ["dense_features"]
        return dict(zip(names, t)), dict(zip(names, p)), None, {"exact": dict(zip(names, exact)),
                                                                "perturbed": dict(zip(names, perturbed))}
    return Case("encoder", f"encoder-{encoder}", run)


def decoder_case(encoder):
    def run():
        tm, pm = twins.twin_models(encoder)
        with torch.no_grad():
            feats = [twins.numpy_of(f) for f in tm.encoder(twins.to_torch(twins.photographs()))]
            t = tm.decoder([twins.to_torch(f) for f in feats], twins.to_torch(twins.FOCALS))
        p = pm.decoder([twins.to_paddle(f) for f in feats], twins.to_paddle(twins.FOCALS))
        exact, perturbed = noise.references(lambda m, focal, *f: m(list(f), focal), [twins.FOCALS, *feats],
                                            twins.to_torch, tm.decoder)
        return _named_outputs(t), _named_outputs(p), None, {"exact": dict(zip(OUTPUT_NAMES, exact)),
                                                            "perturbed": dict(zip(OUTPUT_NAMES, perturbed))}
    return Case("decoder", f"decoder-{encoder}", run)


def _named_outputs(outputs):
    return {n: twins.numpy_of(o) for n, o in zip(OUTPUT_NAMES, outputs)}


def model_case(encoder, dataset, size=None):
    def run():
        tm, pm = twins.twin_models(encoder, dataset)
        x, f = twins.photographs(*(size or ())), twins.FOCALS
        with Recorder(tm, "torch") as rt, torch.no_grad():
            t = tm(twins.to_torch(x), twins.to_torch(f))
        with Recorder(pm, "paddle") as rp:
            p = pm(twins.to_paddle(x), twins.to_paddle(f))
        rows = layer_table(rt, rp, encoder, LAYER_LOCALISATION)
        exact, perturbed = noise.references(lambda m, *a: m(*a), [x, f], twins.to_torch, tm)   # noise floors
        return _named_outputs(t), _named_outputs(p), None, {"layers": rows, "exact": dict(zip(OUTPUT_NAMES, exact)),
                                                            "perturbed": dict(zip(OUTPUT_NAMES, perturbed)),
                                                            "first_divergence": first_divergence(rows)}
    return Case("model", f"model-{encoder}-{dataset}" + (f"-{size[0]}x{size[1]}" if size else ""), run)


CASES = ([lpg_case(r) for r in (8, 4, 2)]
         + [submodule_case("reduction", "reduc8x8", (2, 128, 8, 16)),
            submodule_case("reduction", "reduc1x1", (2, 32, 64, 128)), plane_equation_case()]
         + [submodule_case("atrous", "daspp_3", (2, 256, 8, 16)),
            submodule_case("atrous", "daspp_12", (2, 512 + 128, 8, 16))]
         + [submodule_case("upconv", "upconv5", (2, 1024, 2, 4)), submodule_case("upconv", "upconv1", (2, 64, 32, 64))]
         + [encoder_case(e) for e in ENCODERS]
         + [decoder_case(FLAGSHIP), bn_small_variance_case()]
         + [model_case(e, "kitti") for e in ENCODERS]
         + [model_case(e, "nyu") for e in (FLAGSHIP, "resnet50_bts")])
# Official training and test sizes (KITTI 352x704 crop, 352x1216 KB crop): Paddle eager needs ~10 s each.
SLOW_CASES = [model_case(FLAGSHIP, "kitti", (352, 704)), model_case(FLAGSHIP, "kitti", (352, 1216)),
              model_case("resnext101_bts", "kitti", (352, 704)), model_case(FLAGSHIP, "nyu", (416, 544))]


@pytest.mark.parametrize("case", CASES + [pytest.param(c, marks=pytest.mark.slow) for c in SLOW_CASES],
                         ids=[c.id for c in CASES + SLOW_CASES])
def test_forward_stage(case):
    result = run_forward(case)
    assert result.passed, result.failure_message()


def run_forward(case):
    """Runs one forward case and writes its report (layer table and plots for `model`); returns the Result."""
    torch_out, paddle_out, scales, meta = case.run()
    rows, exact, order = meta.pop("layers", None), meta.pop("exact", None), meta.pop("order", None)
    perturbed = meta.pop("perturbed", None)
    result = run_case(case.stage, case.id, torch_out, paddle_out, TOLERANCES[case.stage], scales=scales,
                      meta={**meta, **environment(*twins.devices())}, exact=exact, perturbed=perturbed, order=order)
    if rows is not None:
        import pandas as pd
        pd.DataFrame(rows).to_csv(result.folder / "layers.csv", index=False)
        plot_layers(rows, result.folder / "layers.png", case.id, LAYER_LOCALISATION.why.split(";")[0])
    if case.stage == "model":
        from alignment.plots import depth_maps
        depth_maps(torch_out["final_depth"], paddle_out["final_depth"], result.folder / "depth.png", case.id)
    return result

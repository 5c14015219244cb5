"""AdamW state torch_ref <-> paddle_bts, with the same name rules and strict accounting as the weights.

torch keeps per parameter `step`, `exp_avg`, `exp_avg_sq` (and hyper-parameters per group); Paddle keeps
`moment1`, `moment2` and the bias-correction powers `beta1_pow_acc`, `beta2_pow_acc` per parameter, plus
the LR scheduler's position. Paddle multiplies the powers by beta after each step from an initial beta,
so after t steps they hold beta^(t+1), the correction of step t+1 (torch computes 1 - beta^(t+1) from
step + 1: the same). In float32 beta1^(t+1) underflows to 0 after ~900 steps, where 1 - beta1^(t+1)
is 1.0 in both frameworks, so the global step (the scheduler's position) is the step count kept.
"""
import math

import numpy as np
import paddle
import torch

import paddle_bts
import torch_ref
import torch_ref.train as torch_train
from bts_core.config import DEFAULTS
from bts_core.spec import MODEL_PARTS, check_encoder
from conversion.convert import ConversionError, paddle_layout
from conversion.rules import map_torch_key
from paddle_bts.optimizer_state import POWERS, SCHEDULER_KEY, accumulator_key, check_matches, split_state
from paddle_bts.train import build_optimizer as paddle_optimizer, optimised_parameters
from torch_ref.optimizer_state import group_layouts, named_state, official_state

BETAS = (0.9, 0.999)   # Paddle's AdamW defaults, which paddle_bts.train uses; the official recipe's too
MOMENT_NAMES = {"exp_avg": "moment1", "exp_avg_sq": "moment2"}   # torch -> Paddle


def _models(encoder):
    """(torch_ref on the meta device, paddle_bts without allocation): their names and shapes only."""
    with torch.device("meta"):
        torch_model = torch_ref.BtsModel(encoder)
    with paddle.LazyGuard():
        paddle_model = paddle_bts.BtsModel(encoder)
    torch_ref.freeze_encoder(torch_model)
    return torch_model, paddle_model


def _paddle_params(torch_model, paddle_model, encoder):
    """{torch parameter name: (Paddle parameter, transposed)} over the parameters paddle_bts.train's AdamW
    optimises; transposed for Linear weights (Paddle stores them [in, out]), whose moments follow them."""
    optimised = {id(p) for p in optimised_parameters(paddle_optimizer(paddle_model))}
    family = check_encoder(encoder).family
    by_key = {(part, k): p for part in MODEL_PARTS for k, p in getattr(paddle_model, part).named_parameters()}
    linear = {key for key, (_, is_linear) in paddle_layout(encoder).items() if is_linear}
    official = group_layouts(torch_model)["official (every parameter)"]
    targets = ((name, map_torch_key(name, family).target) for group in official for name in group)
    return {name: (by_key[target], target in linear) for name, target in targets if id(by_key[target]) in optimised}


def _numpy(tensor):
    return tensor.detach().cpu().numpy()


def torch_to_paddle(checkpoint, encoder, what):
    """(Paddle AdamW state dict of numpy arrays for paddle_bts.train, summary) from a torch_ref.Checkpoint."""
    if checkpoint.optimizer is None:
        raise ConversionError(f"{what}: holds no optimizer state (only a checkpoint saved during training has one)")
    torch_model, paddle_model = _models(encoder)
    try:
        named, hyper = named_state(torch_model, checkpoint.optimizer, what)
    except torch_ref.CheckpointError as e:
        raise ConversionError(str(e)) from None
    betas = {tuple(g.get("betas", BETAS)) for g in hyper}
    if betas != {BETAS}:
        raise ConversionError(f"{what}: AdamW betas {sorted(betas)[0]}; paddle_bts.train uses {BETAS}")
    params = _paddle_params(torch_model, paddle_model, encoder)
    state, fresh = {}, []
    for name, (param, transpose) in params.items():
        entry = named.get(name)
        if entry is None:   # never had a gradient: torch starts it at its first one, Paddle as it is built
            fresh.append(name)
            entry = {"step": 0, "exp_avg": torch.zeros(param.shape), "exp_avg_sq": torch.zeros(param.shape)}
        for torch_key, paddle_acc in MOMENT_NAMES.items():
            value = _numpy(entry[torch_key])
            state[accumulator_key(param.name, paddle_acc)] = np.ascontiguousarray(value.T) if transpose else value
        dtype = state[accumulator_key(param.name, "moment1")].dtype
        for acc, beta in zip(POWERS, BETAS):
            state[accumulator_key(param.name, acc)] = np.array([beta ** (entry["step"] + 1)], dtype)
    unused = sorted(set(named) - set(params))
    if unused:
        raise ConversionError(f"{what}: optimizer state for {len(unused)} parameter(s) paddle_bts.train does not "
                              f"optimise (frozen there), e.g. {unused[0]}")
    state[SCHEDULER_KEY] = {"last_epoch": checkpoint.global_step, "last_lr": float(hyper[0]["lr"])}
    summary = {"direction": "torch -> paddle", "global_step": checkpoint.global_step, "entries": len(named),
               "parameters": len(params), "fresh (no torch state yet)": len(fresh),
               "steps": sorted({int(e["step"]) for e in named.values()}),
               "groups": [{k: g[k] for k in ("lr", "eps", "weight_decay") if k in g} for g in hyper],
               "keys": len(state)}
    return state, summary


def _step_of(entry, saved_step, name, what):
    """torch's step count for one parameter: the scheduler's position, checked against beta1's power
    where that has not underflowed."""
    power = float(np.asarray(entry["beta1_pow_acc"]).reshape(-1)[0])
    from_power = math.log(power) / math.log(BETAS[0]) - 1 if power > 1e-30 else None
    if saved_step is None:
        if from_power is None:
            raise ConversionError(f"{what}: no {SCHEDULER_KEY} step count, and {name}'s beta1 power has underflowed")
        return round(from_power)
    if from_power is not None and abs(from_power - saved_step) > 0.5:
        raise ConversionError(f"{what}: {name}'s beta1 power says step {from_power:.1f}, {SCHEDULER_KEY} {saved_step}")
    return saved_step


def paddle_to_torch(state, encoder, what, learning_rate=DEFAULTS["learning_rate"], epsilon=DEFAULTS["adam_eps"],
                    weight_decay=DEFAULTS["weight_decay"]):
    """(official torch AdamW state dict, global step, summary) from a paddle_bts.train state dict (adam.pdopt).

    Paddle keeps no hyper-parameters in its state: eps and weight decay are those paddle_bts.train was
    configured with (the official recipe's by default); torch's group LR is rewritten before every step."""
    by_param, scheduler = split_state(state, what)
    torch_model, paddle_model = _models(encoder)
    params = _paddle_params(torch_model, paddle_model, encoder)
    try:
        check_matches(by_param, [param for param, _ in params.values()], what)
    except paddle_bts.WeightsError as e:
        raise ConversionError(str(e)) from None
    saved_step = int(scheduler["last_epoch"]) if scheduler else None
    named = {}
    for name, (param, transpose) in params.items():
        entry = by_param[param.name]
        moments = {k: torch.from_numpy(np.ascontiguousarray(entry[acc].T if transpose else entry[acc]))
                   for k, acc in MOMENT_NAMES.items()}
        named[name] = {"step": _step_of(entry, saved_step, name, what), **moments}
    step = saved_step if saved_step is not None else max((e["step"] for e in named.values()), default=0)
    template = torch_train.build_optimizer(torch_model, learning_rate, epsilon, weight_decay).state_dict()
    lr = float(scheduler["last_lr"]) if scheduler and "last_lr" in scheduler else learning_rate
    hyper = [{**{k: v for k, v in g.items() if k != "params"}, "lr": lr} for g in template["param_groups"]]
    summary = {"direction": "paddle -> torch", "global_step": step, "entries": len(by_param) * 4,
               "parameters": len(named), "groups": [{k: g[k] for k in ("lr", "eps", "weight_decay")} for g in hyper]}
    return official_state(torch_model, named, hyper), step, summary

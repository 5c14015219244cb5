"""Paddle AdamW state as PaddleDepth keeps it (`adam.pdopt` = optimizer.state_dict()), read back strictly.

Paddle keys each accumulator by parameter name plus a counter: `conv2d_0.w_0_moment1_0`. BtsModel builds
its layers in a fresh name scope, so parameter names are the same in every process; the counter is not
(it counts earlier optimizers over same-named parameters), so it is ignored here and each entry is set
into the accumulator the optimizer made for that parameter. `optimizer.set_state_dict` would instead
match whole names at the first step and stop with an assertion on any other counter.
"""
import os
import re

import numpy as np
import paddle

from paddle_bts.checkpoint import WeightsError

OPTIMIZER_FILE = "adam.pdopt"     # PaddleDepth's name, inside a weight folder
MOMENTS = ("moment1", "moment2")
POWERS = ("beta1_pow_acc", "beta2_pow_acc")
ACCUMULATORS = MOMENTS + POWERS
SCHEDULER_KEY = "LR_Scheduler"    # Paddle's key: {'last_epoch': scheduler steps taken, 'last_lr': ...}
_KEY = re.compile(rf"(?P<param>.+)_(?P<acc>{'|'.join(ACCUMULATORS)})_\d+")


class OptimizerStateError(WeightsError):
    """An optimizer state that cannot be used; the message is one line."""


def accumulator_key(param_name, accumulator):
    """The key Paddle gives an accumulator in a fresh process."""
    return f"{param_name}_{accumulator}_0"


def read_optimizer_file(path):
    """The state dict in `path` (numpy arrays), checked to be a Paddle Adam(W) state."""
    if not os.path.isfile(path):
        raise OptimizerStateError(f"{path}: no such file")
    try:
        state = paddle.load(str(path), return_numpy=True)
    except Exception as e:   # paddle raises pickle, zip, value and runtime errors alike
        raise OptimizerStateError(f"{path}: not a readable Paddle file ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise OptimizerStateError(f"{path}: not a Paddle optimizer state dict")
    split_state(state, path)
    return state


def split_state(state, what):
    """({parameter name: {accumulator: array}}, scheduler state or None); every key accounted for."""
    by_param = {}
    for key, value in state.items():
        if key == SCHEDULER_KEY:
            continue
        match = _KEY.fullmatch(key)
        if match is None:
            raise OptimizerStateError(f"{what}: {key!r} is not an AdamW accumulator (moments, beta powers) "
                                      f"or {SCHEDULER_KEY}")
        entry = by_param.setdefault(match["param"], {})
        if match["acc"] in entry:
            raise OptimizerStateError(f"{what}: two {match['acc']} entries for parameter {match['param']}")
        entry[match["acc"]] = np.asarray(value)
    for name, entry in by_param.items():
        missing = [a for a in ACCUMULATORS if a not in entry]
        if missing:
            raise OptimizerStateError(f"{what}: parameter {name} has no {missing[0]}")
    scheduler = state.get(SCHEDULER_KEY)
    if scheduler is not None and not (isinstance(scheduler, dict) and isinstance(scheduler.get("last_epoch"), int)):
        raise OptimizerStateError(f"{what}: {SCHEDULER_KEY} holds no step count (last_epoch)")
    return by_param, scheduler


def check_matches(by_param, params, what):
    """Raises unless `by_param` holds exactly the accumulators of `params`, with their shapes."""
    expected = {p.name: list(p.shape) for p in params}
    unexpected = sorted(set(by_param) - set(expected))
    missing = sorted(set(expected) - set(by_param))
    for label, items in (("names parameter(s) the model lacks", unexpected), ("lacks parameter(s)", missing)):
        if items:
            raise OptimizerStateError(f"{what}: optimizer state does not match the weights: it {label}, "
                                      f"{len(items)} in all, e.g. {items[0]}")
    for name, entry in by_param.items():
        for acc in ACCUMULATORS:
            shape = expected[name] if acc in MOMENTS else [1]
            if list(entry[acc].shape) != shape:
                raise OptimizerStateError(f"{what}: optimizer state does not match the weights: {acc} of {name} "
                                          f"is {list(entry[acc].shape)}, expected {shape}")


def load_optimizer_state(optimizer, params, state, what):
    """Sets `optimizer` (AdamW over `params`, never stepped) to a saved state; returns its global step."""
    by_param, scheduler = split_state(state, what)
    check_matches(by_param, params, what)
    # Paddle makes accumulators lazily at the first step; make them now (its own routine) and fill them.
    optimizer._create_accumulators(paddle.static.default_main_program().global_block(), params)
    for param in params:
        for acc in ACCUMULATORS:
            target = optimizer._accumulators[acc][param.name]
            target.set_value(by_param[param.name][acc].astype(paddle.base.data_feeder.convert_dtype(target.dtype)))
    return int(scheduler["last_epoch"]) if scheduler else 0   # saved at the LR scheduler's position

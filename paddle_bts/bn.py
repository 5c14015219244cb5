"""Batch-norm conventions, translated once.

Paddle and torch differ in two ways that matter for BTS (shared/reference/framework_differences.md):
1. momentum: Paddle keeps `running = m * running + (1 - m) * batch`, torch `running = (1 - m) * running
   + m * batch`; so torch's 0.01 is Paddle's 0.99.
2. running variance in train mode: torch updates it with the unbiased batch variance (divides by N - 1),
   Paddle with the biased one (divides by N). `use_torch_running_var` makes every BN layer of a model
   update like torch, through a pair of forward hooks, so the parameter names (and so PaddleDepth's
   file layout) stay those of paddle.nn's own layers.
"""
import paddle
import paddle.nn as nn

BN_TYPES = (nn.BatchNorm, nn.BatchNorm2D)


def batch_norm(channels, torch_momentum, eps):
    """A Paddle BatchNorm2D that updates its running statistics as torch's `momentum=torch_momentum`."""
    return nn.BatchNorm2D(channels, momentum=1.0 - torch_momentum, epsilon=eps)


def _remember_running_var(layer, inputs):
    if layer.training and not layer._use_global_stats:
        layer._running_var_before = layer._variance.detach().clone()


def _torch_running_var(layer, inputs, output):
    """Turns Paddle's update into torch's from per-channel numbers alone (no second pass over the input).

    Paddle has just set r_new = m * r_old + (1 - m) * biased, so the torch update m * r_old + (1 - m) *
    biased * N / (N - 1) is m * r_old + (r_new - m * r_old) * N / (N - 1). The subtraction costs at most an
    ulp of r_new (measured against recomputing the batch variance: tests/test_bn.py).
    """
    before = getattr(layer, "_running_var_before", None)
    if before is None:
        return
    layer._running_var_before = None
    values_per_channel = inputs[0].size // before.shape[0]   # N = batch x height x width
    if values_per_channel < 2:
        raise ValueError(f"batch norm in train mode needs more than 1 value per channel, got input shape "
                         f"{list(inputs[0].shape)} (torch refuses it too)")
    with paddle.no_grad():
        m = layer._momentum  # Paddle convention: weight of the old value
        kept = before * m
        unbiased_share = (layer._variance - kept) * (values_per_channel / (values_per_channel - 1))
        layer._variance.set_value(kept + unbiased_share)


def use_torch_running_var(model):
    """Makes every BN layer of `model` update its running variance with the unbiased batch variance."""
    for layer in model.sublayers(include_self=True):
        if isinstance(layer, BN_TYPES):
            layer.register_forward_pre_hook(_remember_running_var)
            layer.register_forward_post_hook(_torch_running_var)
    return model


def bn_statistics(model):
    """The running-statistic tensors of every BN layer (Paddle lists them among parameters)."""
    stats = []
    for layer in model.sublayers(include_self=True):
        if isinstance(layer, BN_TYPES):
            stats += [layer._mean, layer._variance]
    return stats

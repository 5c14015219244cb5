"""Batch-norm conventions: Paddle's reversed momentum, per-layer eps, torch-like running variance.

shared/reference/framework_differences.md: torch updates running = (1 - m)·running + m·batch with the
unbiased batch variance; Paddle running = m·running + (1 - m)·batch with the biased one.
"""
import numpy as np
import paddle
import pytest
import torch

import paddle_bts
import paddle_bts.bts
import torch_ref.bts
from bts_core.spec import ENCODER_FACTS

N_UPDATES = 3
# Running means are ~0.01 here (momentum 0.01 times batch means ~0.5): float32 summation of a batch mean
# over 100 values differs by ~1e-6 between kernels, i.e. ~1e-8 after the momentum; 10x that as atol.
MEAN_ATOL = 1e-7


@pytest.mark.parametrize("torch_momentum, paddle_momentum", [(0.01, 0.99), (0.1, 0.9)])
def test_batch_norm_helper_translates_momentum(torch_momentum, paddle_momentum):
    bn = paddle_bts.bn.batch_norm(6, torch_momentum=torch_momentum, eps=1.1e-5)
    assert isinstance(bn, paddle.nn.BatchNorm2D)
    assert bn._momentum == pytest.approx(paddle_momentum, abs=1e-12)
    assert bn._epsilon == pytest.approx(1.1e-5, rel=1e-12)
    assert list(bn.state_dict()) == ["weight", "bias", "_mean", "_variance"]  # PaddleDepth's names


def official_decoder_eps():
    """Official eps by decoder BN name: 1.1e-5 for named BNs and `first_bn`, torch's default 1e-5 in
    `aconv_sequence` (its BN is child 2). daspp_3 is built with apply_bn_first=False."""
    eps = {name: 1.1e-5 for name in ("bn5", "bn4", "bn4_2", "bn3", "bn2")}
    for d in (3, 6, 12, 18, 24):
        if d != 3:
            eps[f"daspp_{d}.atrous_conv.first_bn"] = 1.1e-5
        eps[f"daspp_{d}.atrous_conv.aconv_sequence.2"] = 1e-5
    return eps


def test_decoder_bn_eps_and_momentum_per_layer():
    channels = ENCODER_FACTS["densenet121_bts"].channels
    torch_bns = {n: m for n, m in torch_ref.bts.bts(channels).named_modules()
                 if isinstance(m, torch.nn.BatchNorm2d)}
    paddle_bns = {n: m for n, m in paddle_bts.bts.bts(channels).named_sublayers()
                  if isinstance(m, paddle.nn.BatchNorm2D)}
    expected = official_decoder_eps()
    assert len(expected) == 14
    assert list(torch_bns) == list(paddle_bns)  # same layers, same order
    assert {n: m.eps for n, m in torch_bns.items()} == expected
    assert {n: m._epsilon for n, m in paddle_bns.items()} == expected
    assert {m.momentum for m in torch_bns.values()} == {0.01}
    assert all(m._momentum == pytest.approx(0.99, abs=1e-12) for m in paddle_bns.values())


# ---------------------------------------------------------------- running statistics in train mode
def batches(channels, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((4, channels, 5, 5)) * 2.0 + 0.5).astype(np.float32) for _ in range(N_UPDATES)]


def expected_running(xs, torch_momentum, unbiased):
    """Running mean and variance in float64 from the update rule, starting at 0 and 1."""
    mean, var = np.zeros(xs[0].shape[1]), np.ones(xs[0].shape[1])
    for x in xs:
        x = x.astype(np.float64)
        mean = (1 - torch_momentum) * mean + torch_momentum * x.mean(axis=(0, 2, 3))
        var = (1 - torch_momentum) * var + torch_momentum * x.var(axis=(0, 2, 3), ddof=1 if unbiased else 0)
    return mean, var


def torch_running(xs, torch_momentum):
    bn = torch.nn.BatchNorm2d(xs[0].shape[1], momentum=torch_momentum, eps=1.1e-5).train()
    outs = [bn(torch.from_numpy(x)).detach().numpy() for x in xs]
    return bn.running_mean.numpy(), bn.running_var.numpy(), outs


def paddle_running(layer, xs, bn=None):
    """Feeds the batches through `layer` in train mode; statistics read from `bn` (default `layer`)."""
    bn = layer if bn is None else bn
    layer.train()
    outs = [layer(paddle.to_tensor(x)).numpy() for x in xs]
    return bn._mean.numpy(), bn._variance.numpy(), outs


def hooked(bn):
    """A model holding `bn`, made torch-like the way build_model does it."""
    model = paddle.nn.Sequential(bn)
    assert paddle_bts.use_torch_running_var(model) is model
    return model


PADDLE_LAYERS = {
    # the decoder's own BN builder (paddle.nn.BatchNorm2D) and paddle.vision's DenseNet layer type
    "BatchNorm2D": lambda c: paddle_bts.bts.batch_norm(c),
    "BatchNorm": lambda c: paddle.nn.BatchNorm(c, momentum=0.99, epsilon=1.1e-5),
}


@pytest.mark.parametrize("kind", list(PADDLE_LAYERS))
def test_torch_running_var_hook_matches_torch(kind):
    xs = batches(3)
    t_mean, t_var, t_outs = torch_running(xs, 0.01)
    bn = PADDLE_LAYERS[kind](3)
    p_mean, p_var, p_outs = paddle_running(hooked(bn), xs, bn)
    np.testing.assert_allclose(p_mean, t_mean, rtol=1e-6, atol=MEAN_ATOL)
    np.testing.assert_allclose(p_var, t_var, rtol=1e-6)
    e_mean, e_var = expected_running(xs, 0.01, unbiased=True)
    np.testing.assert_allclose(t_var, e_var, rtol=1e-6)
    np.testing.assert_allclose(p_mean, e_mean, rtol=1e-6, atol=MEAN_ATOL)
    for p, t in zip(p_outs, t_outs):  # the hook changes the statistics only, not the train-mode output
        np.testing.assert_allclose(p, t, rtol=1e-5, atol=1e-5)


def test_per_channel_update_adds_only_arithmetic_rounding_to_paddles_own():
    """The hook derives torch's running variance from Paddle's updated one (no pass over the input), so it
    inherits the rounding of Paddle's batch variance: per channel, |hook - float64| <= |Paddle's own update -
    float64| x N/(N-1) + 3 ulp (one subtraction, one multiplication, one addition). Channels' batch spreads
    span 1e-3..1e2 around a running variance of 1, BTS-like N = 2 x 88 x 176. Measured here (AMD EPYC):
    Paddle's native update <= 13 ulp, the hook <= 14 ulp; recomputing the variance (the hook before) 44 ulp."""
    rng = np.random.default_rng(0)
    channels, shape = 64, (2, 88, 176)
    scales = np.logspace(-3, 2, channels).astype(np.float32)[None, :, None, None]
    x = (rng.standard_normal((shape[0], channels) + shape[1:]).astype(np.float32) * scales + 0.3).astype(np.float32)
    x64 = x.astype(np.float64)
    native, hooked_bn = paddle_bts.bn.batch_norm(channels, 0.01, 1.1e-5), paddle_bts.bn.batch_norm(channels, 0.01, 1.1e-5)
    paddle_running(native, [x])
    paddle_running(hooked(hooked_bn), [x], hooked_bn)
    n = x.size // channels
    native_error = np.abs(native._variance.numpy() - (0.99 + 0.01 * x64.var(axis=(0, 2, 3))))
    hook_truth = 0.99 + 0.01 * x64.var(axis=(0, 2, 3), ddof=1)
    hook_error = np.abs(hooked_bn._variance.numpy() - hook_truth)
    ulp = np.spacing(hook_truth.astype(np.float32)).astype(np.float64)
    assert np.all(hook_error <= native_error * n / (n - 1) + 3 * ulp)


def test_hook_refuses_one_value_per_channel():
    model = hooked(paddle_bts.bn.batch_norm(3, 0.01, 1.1e-5))
    model.train()
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        model(paddle.ones([1, 3, 1, 1]))


@pytest.mark.parametrize("kind", list(PADDLE_LAYERS))
def test_without_hook_paddle_running_var_is_biased(kind):
    xs = batches(3)
    t_mean, t_var, _ = torch_running(xs, 0.01)
    p_mean, p_var, _ = paddle_running(PADDLE_LAYERS[kind](3), xs)
    np.testing.assert_allclose(p_mean, t_mean, rtol=1e-6, atol=MEAN_ATOL)  # the mean agrees anyway
    _, biased = expected_running(xs, 0.01, unbiased=False)
    np.testing.assert_allclose(p_var, biased, rtol=1e-6)          # Paddle divides by N
    # The gap the hook closes: Σ m(1-m)^k·var_k·(1/(N-1)) with N = 4·5·5, ~3e-4 relative here.
    _, unbiased = expected_running(xs, 0.01, unbiased=True)
    np.testing.assert_allclose(t_var - p_var, unbiased - biased, rtol=1e-3)
    assert np.all((t_var - p_var) / t_var > 1e-4)                 # 100x the tolerance above
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(p_var, t_var, rtol=1e-6)


def test_hook_leaves_eval_mode_statistics_alone():
    bn = paddle_bts.bts.batch_norm(3)
    model = hooked(bn)
    model.eval()
    model(paddle.to_tensor(batches(3)[0]))
    np.testing.assert_array_equal(bn._mean.numpy(), np.zeros(3, np.float32))
    np.testing.assert_array_equal(bn._variance.numpy(), np.ones(3, np.float32))


@pytest.fixture(scope="module")
def paddle_densenet():
    return paddle_bts.build_model("densenet121_bts")


@pytest.mark.parametrize("path, layer_type, torch_momentum", [
    ("decoder.bn2", paddle.nn.BatchNorm2D, 0.01),                           # official decoder BN
    ("encoder.base_model.conv1_func._batch_norm", paddle.nn.BatchNorm, 0.1),  # torchvision default
], ids=["decoder-bn2", "densenet-norm0"])
def test_build_model_bns_update_like_torch(paddle_densenet, path, layer_type, torch_momentum):
    """build_model hooks every BN by default, the decoder's and paddle.vision's encoder ones alike."""
    bn = dict(paddle_densenet.named_sublayers())[path]
    assert isinstance(bn, layer_type)
    assert bn._momentum == pytest.approx(1 - torch_momentum, abs=1e-12)
    xs = batches(bn._mean.shape[0], seed=1)
    t_mean, t_var, _ = torch_running(xs, torch_momentum)
    p_mean, p_var, _ = paddle_running(bn, xs)
    np.testing.assert_allclose(p_mean, t_mean, rtol=1e-6, atol=MEAN_ATOL)
    np.testing.assert_allclose(p_var, t_var, rtol=1e-6)


def test_build_model_can_keep_paddle_variance():
    model = paddle_bts.build_model("mobilenetv2_bts", torch_running_var=False)
    bn = model.decoder.bn2
    xs = batches(bn._mean.shape[0], seed=2)
    _, biased = expected_running(xs, 0.01, unbiased=False)
    _, p_var, _ = paddle_running(bn, xs)
    np.testing.assert_allclose(p_var, biased, rtol=1e-6)

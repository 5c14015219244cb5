"""paddle_bts.onednn_conv: Paddle's eager Conv2D through oneDNN computes what Paddle's own kernel does,
within fp32 rounding, forward and backward; whatever it cannot take goes to Paddle's own forward."""
import copy

import numpy as np
import paddle
import pytest

from paddle_bts import dnnl, onednn_conv

# Each layer as BTS and its encoders build them: padded 3x3, strided, dilated depthwise (ASPP-like),
# grouped 7x7 stride 2 (stems), asymmetric padding, 1x1 without bias.
LAYERS = {
    "3x3": dict(in_channels=16, out_channels=12, kernel_size=3, padding=1),
    "3x3-stride2-nobias": dict(in_channels=16, out_channels=12, kernel_size=3, stride=2, padding=1, bias_attr=False),
    "depthwise-dilated": dict(in_channels=16, out_channels=16, kernel_size=3, padding=2, dilation=2, groups=16),
    "7x7-stride2-groups2": dict(in_channels=16, out_channels=8, kernel_size=7, stride=2, padding=3, groups=2),
    "3x1-asymmetric": dict(in_channels=16, out_channels=12, kernel_size=(3, 1), padding=[1, 2, 0, 1]),
    "1x1-nobias": dict(in_channels=16, out_channels=12, kernel_size=1, bias_attr=False),
}
# Bound on oneDNN's rms distance from float64 over Paddle's own kernel's, per output and gradient.
# Basis: both are one fp32 summation order of the same sums. Measured over these layers, 8 seeds each
# (AMD EPYC Zen 3, AVX2 kernels): 0.67-2.03, the worst the 3x3's input gradient (1.91-2.03) and weight
# gradient (1.79-1.96), oneDNN's blocked backward summing in longer runs than Paddle's GEMM; with oneDNN's
# SSE4.1 kernels (ONEDNN_MAX_CPU_ISA=SSE41) 1.65 at most; passed on an Intel Xeon (AVX-512, AMX). A wrong
# result (a tap, a padding or a gradient term missing) is orders of magnitude off, not 1.5x.
ROUNDING_RATIO = 3.0


@pytest.fixture
def kernel():
    """Switches the kernel for one test and restores the suite's choice afterwards."""
    before = onednn_conv.enabled()
    yield onednn_conv.enable
    onednn_conv.enable(before)


def outputs(layer, x, grad_y):
    """Output and every gradient of `layer` at x, weighted by grad_y, as numpy."""
    x = paddle.to_tensor(x, stop_gradient=False)
    y = layer(x)
    (y * paddle.to_tensor(grad_y)).sum().backward()
    result = {"y": y.numpy(), "grad x": x.grad.numpy(), "grad w": layer.weight.grad.numpy()}
    if layer.bias is not None:
        result["grad b"] = layer.bias.grad.numpy()
    layer.clear_gradients()
    return result


def rms_error(got, exact):
    return float(np.sqrt(np.mean((got.astype(np.float64) - exact) ** 2)))


def within_rounding(ours, paddle_own, exact):
    """oneDNN's rms error at most ROUNDING_RATIO x Paddle's own, plus one rounding at the rms size."""
    one_ulp = np.finfo(np.float32).eps * np.sqrt(np.mean(exact ** 2))
    return rms_error(ours, exact) <= ROUNDING_RATIO * rms_error(paddle_own, exact) + one_ulp


def float64_copy(layer):
    return copy.deepcopy(layer).to(dtype="float64")


def measured(name, seed=0):
    """(oneDNN, Paddle's own kernel, float64) outputs and gradients of one layer on one input."""
    rng = np.random.default_rng(seed)
    paddle.seed(seed)
    layer = paddle.nn.Conv2D(**LAYERS[name])
    x = rng.standard_normal((2, 16, 13, 17)).astype(np.float32)
    out_shape = layer(paddle.to_tensor(x)).shape
    grad_y = rng.standard_normal(out_shape).astype(np.float32)
    onednn_conv.enable(False)
    paddle_own = outputs(layer, x, grad_y)
    exact = outputs(float64_copy(layer), x.astype(np.float64), grad_y.astype(np.float64))
    onednn_conv.enable(True)
    return outputs(layer, x, grad_y), paddle_own, exact


@pytest.mark.parametrize("name", LAYERS)
def test_onednn_is_as_close_to_float64_as_paddles_own_kernel(kernel, name):
    ours, paddle_own, exact = measured(name)
    assert ours.keys() == exact.keys()
    for key in exact:
        assert ours[key].shape == exact[key].shape, key
        assert within_rounding(ours[key], paddle_own[key], exact[key]), key


def test_layers_and_inputs_without_gradients_get_none(kernel):
    kernel(True)
    paddle.seed(0)
    frozen, trained = paddle.nn.Conv2D(3, 4, 3, padding=1), paddle.nn.Conv2D(4, 2, 3, padding=1)
    for parameter in frozen.parameters():
        parameter.stop_gradient = True
    image = paddle.randn([1, 3, 8, 8])                  # stop_gradient, as a photograph is
    trained(frozen(image)).sum().backward()
    assert frozen.weight.grad is None and image.grad is None
    assert trained.weight.grad is not None and float(trained.weight.grad.abs().sum()) > 0
    with paddle.no_grad():
        assert trained(frozen(image)).stop_gradient


@pytest.mark.parametrize("settings", [dict(padding=1, padding_mode="reflect"), dict(padding="SAME"),
                                      dict(padding=1, data_format="NHWC")], ids=["reflect", "same", "nhwc"])
def test_what_onednn_does_not_take_runs_paddles_own_forward_unchanged(kernel, settings):
    paddle.seed(0)
    layer = paddle.nn.Conv2D(4, 4, 3, **settings)
    x = paddle.randn([1, 8, 8, 4] if settings.get("data_format") == "NHWC" else [1, 4, 8, 8])
    kernel(True)
    planned = len(onednn_conv.PLANS.plans)
    ours = layer(x).numpy()
    assert len(onednn_conv.PLANS.plans) == planned
    kernel(False)
    assert np.array_equal(ours, layer(x).numpy())


def test_float64_and_static_programs_keep_paddles_own_kernel(kernel):
    kernel(True)
    layer = paddle.nn.Conv2D(4, 4, 3, padding=1)
    planned = len(onednn_conv.PLANS.plans)
    layer.to(dtype="float64")(paddle.randn([1, 4, 8, 8], dtype="float64"))
    layer.to(dtype="float32")
    static = paddle.jit.to_static(layer, input_spec=[paddle.static.InputSpec([1, 4, 8, 8], "float32")],
                                  full_graph=True)
    assert "conv2d" in str(static.forward.concrete_program.main_program)
    assert len(onednn_conv.PLANS.plans) == planned
    x = paddle.randn([1, 4, 8, 8])
    np.testing.assert_allclose(static(x).numpy(), layer(x).numpy(), rtol=1e-5, atol=1e-6)


def test_plan_cache_keeps_the_most_recent_shapes():
    cache = onednn_conv.PlanCache(2)
    keys = [((1, 2, size, size), (2, 2, 3, 3), (1, 1), (1, 1), (1, 1), (1, 1), 1, 1) for size in (5, 6, 7)]
    first = cache.get(keys[0])
    cache.get(keys[1])
    assert cache.get(keys[0]) is first                  # reused, and now the most recent
    cache.get(keys[2])
    assert list(cache.plans) == [keys[0], keys[2]]
    assert first.y_shape == [1, 2, 5, 5]


def test_views_of_a_larger_tensor_are_read_where_they_start(kernel):
    paddle.seed(0)
    layer = paddle.nn.Conv2D(4, 3, 3, padding=1)
    x = paddle.randn([4, 8, 9, 9])
    views = {"batch slice": x[2:, :4], "channel slice": x[:, 2:6], "split": paddle.split(x, 2, axis=1)[1],
             "transposed": x[:, :4].transpose([0, 1, 3, 2])}
    for name, view in views.items():
        exact = float64_copy(layer)(view.astype("float64")).numpy()
        kernel(False)
        paddle_own = layer(view).numpy()
        kernel(True)
        assert within_rounding(layer(view).numpy(), paddle_own, exact), name


def test_threads_are_set_for_onednn_alone_and_restored(kernel):
    """libdnnl shares torch's libgomp.so.1 when torch came first: a lasting omp_set_num_threads would
    change torch's thread count (it did: the reproduce test's torch metrics moved)."""
    import torch
    kernel(True)
    before = torch.get_num_threads()
    onednn_conv.set_threads(before + 1)
    try:
        paddle.nn.Conv2D(2, 2, 3)(paddle.randn([1, 2, 6, 6]))
        assert torch.get_num_threads() == before
        assert onednn_conv.PLANS.plans and list(onednn_conv.PLANS.plans)[-1][-1] == before + 1
    finally:
        onednn_conv.set_threads(None)


def test_without_paddles_onednn_library_paddles_own_kernel_stays(kernel, monkeypatch):
    def missing():
        raise OSError("libdnnl.so.3: cannot open shared object file")
    monkeypatch.setattr(dnnl, "library", missing)
    dnnl.unavailable_reason.cache_clear()
    try:
        assert "libdnnl.so.3" in dnnl.unavailable_reason()
        assert kernel(True) is False and not onednn_conv.enabled()
        assert paddle.nn.Conv2D.forward is onednn_conv.PADDLE_FORWARD
    finally:
        monkeypatch.undo()
        dnnl.unavailable_reason.cache_clear()
    assert dnnl.unavailable_reason() is None and kernel(True) is True

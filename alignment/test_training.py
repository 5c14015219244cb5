"""Stages that run each framework's training code (torch_ref/train.py, paddle_bts/train.py):

- `optimizer`: build_optimizer on twin models (official freezing, two groups), then two AdamW steps on
  identical seeded gradients; every parameter after each step, and which group each parameter is in.
- `lr`: the LR of every step of a whole run (5 epochs x 10 steps, and the value after the last step),
  from each framework's training loop (`run_epochs` -> `train_step`), both as the loop logs it and as
  the optimizer holds it at the moment it steps.
- `train`: N identical training steps (train-mode BN, official freezing, poly LR) from twin weights, or
  from one ImageNet backbone file as both training commands start with encoder_weights, on identical
  batches (a synthetic KITTI tree through each framework's loader): per-step loss, final parameters and
  BN running statistics, with a loss-curve figure.

Each `run_*` function writes its report and returns the Result (fault runs call them); the tests assert.
"""

import numpy as np
import paddle
import pytest
import torch

import paddle_bts.train as ptrain
import torch_ref.train as ttrain
from alignment import twins
from alignment.harness import environment, run_case
from alignment.tolerances import ADAMW_ROUNDING, ADAMW_UPDATE_RTOL, TOLERANCES
from alignment.training_runs import (EPS, LR0, STARTS, TRAIN_BATCH, STEPS_PER_EPOCH, TRAIN_SIZE, TRAIN_STEPS, WD, curve, states,
                                     torch_float64_run, train)

# ---- optimizer --------------------------------------------------------------------------------------

def _groups(optimizer_params, named, trainable):
    """Per torch parameter (registration order): 0 encoder group, 1 decoder group, -1 never updated (torch
    lists frozen parameters in the encoder group, as bts_main.py does; they get no gradient)."""
    where = {id(p): g for g, params in enumerate(optimizer_params) for p in params}
    return np.array([where.get(id(p), -1) if trainable(p) else -1 for _, p in named], np.float64)


def _seeded_gradients(tm, seed=0):
    """One gradient per trainable torch parameter: normal x 10^U(-6, -1), so elements fall on both sides
    of eps = 1e-3 (AdamW's update is ~lr x g / eps below it and ~lr x sign(g) above it)."""
    rng = np.random.default_rng(seed)
    grads = {}
    for name, p in tm.named_parameters():
        if p.requires_grad:
            shape = tuple(p.shape)
            grads[name] = (rng.standard_normal(shape) * 10.0 ** rng.uniform(-6, -1, shape)).astype(np.float32)
    return grads


def _apply_gradients(tm, pm, grads, encoder):
    """Gives both twins exactly `grads` through each framework's own backward: d/dp sum(p * g) = g."""
    pparams = dict(pm.named_parameters())
    loss_t = sum((p * twins.to_torch(grads[n])).sum() for n, p in tm.named_parameters() if n in grads)
    loss_t.backward()
    terms = []
    for name, g in grads.items():
        p = pparams[twins.paddle_param_name(name, encoder)]
        terms.append((p * twins.to_paddle(g.T if g.ndim == 2 else g)).sum())
    paddle.add_n(terms).backward()


def adamw_scale(before, after):
    """The relative part of the optimizer bound, per element (see tolerances.py, "optimizer"): rounding of
    the parameter itself, and the relative error of the update (Paddle's float32 beta-power accumulators)."""
    before, after = np.asarray(before, np.float64), np.asarray(after, np.float64)
    return ADAMW_ROUNDING * (np.abs(before) + np.abs(after)) + ADAMW_UPDATE_RTOL * np.abs(after - before)


def run_optimizer(encoder):
    tm, pm = twins.build_twins(encoder)
    tm.train(), pm.train()
    opt_t = ttrain.build_optimizer(tm, LR0, EPS, WD)
    opt_p = ptrain.build_optimizer(pm, LR0, EPS, WD)
    named_t = list(tm.named_parameters())
    pparams = dict(pm.named_parameters())
    named_p = [(n, pparams[twins.paddle_param_name(n, encoder)]) for n, _ in named_t]
    torch_out = {"group (-1 frozen, 0 encoder, 1 decoder)": _groups([g["params"] for g in opt_t.param_groups], named_t,
                                                                       lambda p: p.requires_grad),
                 "weight_decay of group": np.array([g["weight_decay"] for g in opt_t.param_groups])}
    paddle_out = {"group (-1 frozen, 0 encoder, 1 decoder)": _groups([g["params"] for g in opt_p._param_groups], named_p,
                                                                        lambda p: not p.stop_gradient),
                  "weight_decay of group": np.array([g["weight_decay"] for g in opt_p._param_groups])}
    before, before_p = states(tm, pm, encoder)
    scales = {}
    for step in (1, 2):   # the second step uses the moments the first one left
        _apply_gradients(tm, pm, _seeded_gradients(tm, seed=step), encoder)
        opt_t.step()
        opt_p.step()
        opt_t.zero_grad(set_to_none=True)
        opt_p.clear_grad(set_to_zero=False)
        after_t, after_p = states(tm, pm, encoder)
        for name in (n for n in after_t if "running_" not in n):
            key = f"step{step}/{name}"
            torch_out[key], paddle_out[key] = after_t[name], after_p[name]
            # each side steps from its own parameters: the difference it starts from is carried in
            carried = np.abs(np.asarray(before[name], np.float64) - before_p[name])
            scales[key] = adamw_scale(before[name], after_t[name]) + carried
        before, before_p = after_t, after_p
    exact = {k: TOLERANCES["optimizer_groups"] for k in torch_out if not k.startswith("step")}
    return run_case("optimizer", f"optimizer-{encoder}", torch_out, paddle_out, TOLERANCES["optimizer"],
                    tolerances=exact, scales=scales, meta={**environment(*twins.devices()), "lr": LR0, "eps": EPS,
                                            "encoder weight decay": WD,
                                            "trainable": int((torch_out["group (-1 frozen, 0 encoder, 1 decoder)"] >= 0).sum())})


OPTIMIZER_CASES = ["densenet121_bts", pytest.param("densenet161_bts", marks=pytest.mark.slow),
                   pytest.param("resnet50_bts", marks=pytest.mark.slow)]


@pytest.mark.parametrize("encoder", OPTIMIZER_CASES,
                         ids=["optimizer-densenet121_bts", "optimizer-densenet161_bts", "optimizer-resnet50_bts"])
def test_optimizer_stage(encoder):
    result = run_optimizer(encoder)
    assert result.passed, result.failure_message()


# ---- lr ------------------------------------------------------------------------------------------

class TinyTorch(torch.nn.Module):
    """A stand-in with BTS's interface (encoder, decoder, encoder_name, forward(image, focal) -> outputs
    ending in the final depth): the lr stage exercises the scheduling, not the network."""
    encoder_name = "mobilenetv2_bts"   # official freezing matches none of its names

    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Conv2d(3, 1, 1)
        self.decoder = torch.nn.Conv2d(1, 1, 1)

    def forward(self, image, focal):
        return (torch.nn.functional.softplus(self.decoder(self.encoder(image))) + 0.5,)


class TinyPaddle(paddle.nn.Layer):
    encoder_name = "mobilenetv2_bts"

    def __init__(self):
        super().__init__()
        self.encoder = paddle.nn.Conv2D(3, 1, 1)
        self.decoder = paddle.nn.Conv2D(1, 1, 1)

    def forward(self, image, focal):
        return (paddle.nn.functional.softplus(self.decoder(self.encoder(image))) + 0.5,)


LR_EPOCHS, LR_STEPS_PER_EPOCH = 5, 10


def _tiny_batches(seed=0):
    rng = np.random.default_rng(seed)
    return [[{"image": rng.standard_normal((2, 3, 4, 4)).astype(np.float32),
              "depth": rng.uniform(0.5, 3.0, (2, 1, 4, 4)).astype(np.float32),
              "focal": np.full(2, 715.0873, np.float32)} for _ in range(LR_STEPS_PER_EPOCH)] for _ in range(LR_EPOCHS)]


def _recording_step(optimizer, read_lr, log):
    """Wraps optimizer.step to record the LR the optimizer holds when it steps."""
    step = optimizer.step

    def recorded(*args, **kwargs):
        log.append(read_lr())
        return step(*args, **kwargs)
    optimizer.step = recorded


def _run_lr(module, model, to_tensor, read_lr):
    optimizer = module.build_optimizer(model, LR0, EPS, WD)
    scheduler = module.build_scheduler(optimizer, LR_EPOCHS * LR_STEPS_PER_EPOCH)
    at_step, logged = [], []
    _recording_step(optimizer, lambda: read_lr(optimizer), at_step)
    data = _tiny_batches()
    batches = lambda epoch: ({k: to_tensor(v) for k, v in b.items()} for b in data[epoch])  # noqa: E731
    module.run_epochs(model, optimizer, scheduler, batches, LR_EPOCHS, 1.0, on_step=lambda r: logged.append(r["lr"]))
    return {"lr logged by the loop": np.array(logged), "lr at optimizer.step": np.array(at_step),
            "lr after the run": np.array([scheduler.get_lr()])}


def run_lr():
    torch.manual_seed(0)
    paddle.seed(0)
    torch_out = _run_lr(ttrain, TinyTorch(), torch.from_numpy, lambda o: o.param_groups[0]["lr"])
    paddle_out = _run_lr(ptrain, TinyPaddle(), paddle.to_tensor, lambda o: o.get_lr())
    # Each framework's loop must log the LR its optimizer used: a check within each framework.
    for side, out in (("torch", torch_out), ("paddle", paddle_out)):
        out["logged - used (within framework)"] = out["lr logged by the loop"] - out["lr at optimizer.step"]
    case = f"lr-poly-{LR_EPOCHS}x{LR_STEPS_PER_EPOCH}"
    result = run_case("lr", case, torch_out, paddle_out, TOLERANCES["lr"],
                      tolerances={"logged - used (within framework)": TOLERANCES["lr"]},
                      meta={**environment(), "lr0": LR0, "end lr": 0.1 * LR0,
                            "total steps": LR_EPOCHS * LR_STEPS_PER_EPOCH}, order=list(torch_out))
    _plot_lr(torch_out, paddle_out, result.folder / "lr.png", case)
    return result, torch_out, paddle_out


def test_lr_stage():
    result, torch_out, paddle_out = run_lr()
    assert result.passed, result.failure_message()
    for out in (torch_out, paddle_out):   # the schedule's ends, as official: lr0 at step 0, lr_end after the run
        assert out["lr at optimizer.step"][0] == LR0
        assert out["lr after the run"][0] == pytest.approx(0.1 * LR0, rel=1e-12)
        assert not out["logged - used (within framework)"].any()


def _plot_lr(torch_out, paddle_out, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(torch_out["lr at optimizer.step"], "o-", ms=3, label="torch_ref (param groups, set per iteration)")
    ax.plot(paddle_out["lr at optimizer.step"], "x--", ms=4, label="paddle_bts (PolynomialDecay, stepped per iteration)")
    for epoch in range(1, LR_EPOCHS):
        ax.axvline(epoch * LR_STEPS_PER_EPOCH - 0.5, color="0.85", lw=0.8)
    ax.set(xlabel="step", ylabel="learning rate", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---- train ---------------------------------------------------------------------------------------

def run_train(encoder, dtype="float64", start="twins", steps=TRAIN_STEPS):
    """`steps` steps of each framework's training loop from the `start` weights (training_runs.STARTS: twin
    weights, or one ImageNet backbone file as both training commands start from it); returns the Result.

    float64 (the verdict): both frameworks in float64, where AdamW's eps cannot turn rounding into update
    sign flips, so the bounds are ~1e-10 and a 1 % loss difference at any step fails by orders of
    magnitude. float32: the figures against torch's own fp32-vs-fp64 drift, reported, not asserted."""
    from paddle_bts.data import make_loader as paddle_loader
    from torch_ref.data import make_loader as torch_loader
    reference = torch_float64_run(encoder, start, steps)
    reference_records, reference_seen, reference_state = reference.records, reference.seen, reference.state
    tm, pm = STARTS[start][1](encoder)
    # Official recipe: train mode (BN batch statistics, running statistics updated), official freezing.
    exact = None
    if dtype == "float32":
        exact = {**reference_state, "loss per step": curve(reference_records, "loss")}
        t_records, t_seen = train(ttrain, tm, torch_loader, lambda t: t.float(), steps)
    else:
        tm.double()
        pm.to(dtype="float64")
        t_records, t_seen = reference_records, reference_seen
    p_records, p_seen = train(ptrain, pm, paddle_loader, lambda t: t.astype(dtype), steps)

    torch_out, paddle_out = states(tm, pm, encoder, prefix="final/")
    if dtype == "float64":
        torch_out = {n: reference_state[n] for n in torch_out}
    for out, records, seen in ((torch_out, t_records, t_seen), (paddle_out, p_records, p_seen)):
        out["loss per step"] = curve(records, "loss")
        out["lr per step"] = curve(records, "lr")
        for key in ("image", "depth", "focal"):   # the data itself: both loaders must give the same arrays
            out[f"data/{key}"] = np.stack([s[key] for s in seen]).astype(np.float32)
    tol = TOLERANCES["train" if dtype == "float32" else "train_fp64"]
    tolerances = {f"data/{k}": TOLERANCES["train_data"] for k in ("image", "depth", "focal")}
    tolerances["lr per step"] = TOLERANCES["lr"]
    bn = "train_bn" if dtype == "float32" else "train_fp64_bn"
    tolerances.update({n: TOLERANCES[bn] for n in torch_out if "running_" in n})
    if dtype == "float64":
        tolerances["loss per step"] = TOLERANCES["train_fp64_loss"]
    # execution order for `first_divergence`: data, then the losses, then the state the steps leave
    order = [f"data/{k}" for k in ("image", "depth", "focal")] + ["lr per step", "loss per step"] + \
            [n for n in torch_out if n.startswith("final/")]
    case = f"train-{encoder}-{'' if start == 'twins' else start + '-'}{dtype}-{steps}steps"
    frozen = sorted(n for n, p in tm.named_parameters() if not p.requires_grad)
    result = run_case("train", case, torch_out, paddle_out, tol, tolerances=tolerances, exact=exact, order=order,
                      meta={**environment(*twins.devices()), "dtype": dtype, "steps": steps, "start": start,
                            "batch": f"{TRAIN_BATCH}x3x{TRAIN_SIZE[0]}x{TRAIN_SIZE[1]}", "frozen parameters": len(frozen)},
                      asserted=dtype == "float64")
    _plot_losses(torch_out["loss per step"], paddle_out["loss per step"],
                 None if exact is None else exact["loss per step"], result.folder / "loss_curves.png", case)
    return result


def _plot_losses(torch_loss, paddle_loss, exact_loss, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    top.plot(torch_loss, "o-", ms=4, label="torch_ref")
    top.plot(paddle_loss, "x--", ms=5, label="paddle_bts")
    top.set(ylabel="silog loss", title=title)
    top.legend(fontsize=8)
    bottom.semilogy(np.abs(paddle_loss - torch_loss) + 1e-16, "x--", label="|paddle - torch|")
    if exact_loss is not None:
        bottom.semilogy(np.abs(torch_loss - exact_loss) + 1e-16, "o-", ms=3, label="|torch fp32 - torch fp64|")
    bottom.set(xlabel="step", ylabel="|difference|")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


TRAIN_CASES = [("densenet121_bts", "float64"), ("densenet121_bts", "float32"),
               pytest.param("densenet161_bts", "float64", marks=pytest.mark.slow),
               pytest.param("densenet161_bts", "float32", marks=pytest.mark.slow)]


@pytest.mark.parametrize("encoder,dtype", TRAIN_CASES, ids=["train-densenet121_bts-float64",
                                                            "train-densenet121_bts-float32",
                                                            "train-densenet161_bts-float64",
                                                            "train-densenet161_bts-float32"])
def test_train_stage(encoder, dtype):
    result = run_train(encoder, dtype)
    if dtype == "float64":   # the verdict; float32 figures are reported (verdict REPORT)
        assert result.passed, result.failure_message()
    else:
        assert result.meta["verdict"].startswith("REPORT") and np.isfinite(result.table["over_bound"]).all()


# One ImageNet backbone file as both training commands start from it (encoder_weights): torch's encoder from the
# torchvision file, Paddle's from its conversion, torch's Xavier decoder copied into Paddle by the converter.
# densenet121_bts for 5 steps (one epoch; 21 s here against 37 s for 10): mobilenetv2_bts and resnet50_bts
# cannot take a float64 verdict, as Paddle's BN holds eps as a float32 attribute (1e-5 -> 9.99999975e-6): their
# float64 features differ by 5.7e-9 (mobilenetv2) and 4e-11 (resnet50) relative at step 0 (1.4e-13 and 3.8e-13
# with torch's eps set to that float32 value), which training amplifies past train_fp64's bounds (mobilenetv2's
# 10-step run fails from the twin start as well, first conv weight 2.3e6x its bound).
@pytest.mark.parametrize("encoder", ["densenet121_bts"], ids=["train-densenet121_bts-backbone-float64"])
def test_train_from_one_backbone_file(encoder):
    result = run_train(encoder, "float64", start="backbone", steps=STEPS_PER_EPOCH)
    assert result.passed, result.failure_message()

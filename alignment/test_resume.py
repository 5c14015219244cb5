"""Stage `resume`: a training run continued across frameworks.

torch trains RESUME_AT steps from the twin weights and saves its official checkpoint (weights, AdamW
state, global step: torch_ref.train.save_checkpoint; the `train` stage's cached float64 run saves it).
torch resumes from that file for RESUMED_STEPS steps; Paddle resumes from the same file converted (conversion.convert for the weights,
conversion.optimizer_state for moments, beta powers and the LR position). Compared, in execution order:
the state each side resumes from (weights, moments, beta powers), the batches, the LR and loss of every
resumed step, then the parameters, BN statistics and AdamW moments the run ends with.

float64 in both frameworks, as the `train` stage and for its reason (fp32 AdamW turns rounding into
update sign flips), with its bounds; the state resumed from is a copy, so it must be exact.
"""
import numpy as np
import paddle_bts.train as ptrain
import torch_ref
import torch_ref.train as ttrain
from alignment import twins
from alignment.harness import environment, run_case
from alignment.tolerances import TOLERANCES
from alignment.training_runs import (EPS, LR0, RESUME_AT, TRAIN_BATCH, TRAIN_SIZE, TRAIN_STEPS, WD, curve, run_steps,
                                     states, torch_float64_run)
from conversion import optimizer_state
from conversion.optimizer_state import BETAS
from paddle_bts.optimizer_state import load_optimizer_state
from torch_ref.optimizer_state import load_optimizer_state as load_torch_optimizer_state

RESUMED_STEPS = 2   # from RESUME_AT (epoch 0, batch 4 of 5) across the epoch boundary
ENCODER = "densenet121_bts"   # frozen encoder parameters in the official groups; the train stage's encoder


def _torch_moments(model, optimizer):
    """{torch name: {exp_avg, exp_avg_sq, step}} of every parameter the optimizer holds state for."""
    out = {}
    for name, param in model.named_parameters():
        state = optimizer.state.get(param)
        if state:
            out[name] = {"exp_avg": twins.numpy_of(state["exp_avg"]).copy(),
                         "exp_avg_sq": twins.numpy_of(state["exp_avg_sq"]).copy(),
                         "beta1 power": np.array([BETAS[0] ** (float(state["step"]) + 1)]),
                         "beta2 power": np.array([BETAS[1] ** (float(state["step"]) + 1)])}
    return out


def _paddle_moments(model, optimizer, names, encoder):
    """The same for Paddle, read from the optimizer's accumulators (Linear moments transposed back)."""
    params = dict(model.named_parameters())
    kinds = {"exp_avg": "moment1", "exp_avg_sq": "moment2", "beta1 power": "beta1_pow_acc",
             "beta2 power": "beta2_pow_acc"}
    out = {}
    for name in names:
        param = params[twins.paddle_param_name(name, encoder)]
        values = {kind: twins.numpy_of(optimizer._accumulators[acc][param.name]).copy() for kind, acc in kinds.items()}
        if values["exp_avg"].ndim == 2:
            values["exp_avg"], values["exp_avg_sq"] = values["exp_avg"].T, values["exp_avg_sq"].T
        out[name] = values
    return out


def _resumed_from(weights, moments):
    """The state a side resumes from, as one vector per kind (a copy must be exact everywhere)."""
    out = {"resumed from: weights and BN statistics": np.concatenate([np.ravel(v) for v in weights.values()])}
    for kind in ("exp_avg", "exp_avg_sq", "beta1 power", "beta2 power"):
        out[f"resumed from: AdamW {kind}"] = np.concatenate([np.ravel(m[kind]) for m in moments.values()])
    return out


def _torch_resumed(encoder, checkpoint, path):
    """torch_ref set to the checkpoint read from `path`, as torch_ref.train resumes: (model, optimizer, scheduler)."""
    model = torch_ref.build_model(encoder).double()
    model.load_state_dict(checkpoint.model, strict=True)
    optimizer = ttrain.build_optimizer(model, LR0, EPS, WD)
    load_torch_optimizer_state(optimizer, model, checkpoint.optimizer, path)
    scheduler = ttrain.build_scheduler(optimizer, TRAIN_STEPS, global_step=checkpoint.global_step)
    return model, optimizer, scheduler


def _paddle_resumed(encoder, checkpoint, path):
    """paddle_bts set to the same checkpoint converted (as it is: float64), as paddle_bts.train resumes a
    converted folder: (model, optimizer, scheduler)."""
    model = twins.paddle_twin_of_state(checkpoint.model, encoder, float_dtype=np.float64)
    optimizer = ptrain.build_optimizer(model, LR0, EPS, WD)
    state, _ = optimizer_state.torch_to_paddle(checkpoint, encoder, path)
    step = load_optimizer_state(optimizer, ptrain.optimised_parameters(optimizer), state, path)
    scheduler = ptrain.build_scheduler(optimizer, TRAIN_STEPS, global_step=step)
    return model, optimizer, scheduler


def run_resume(encoder=ENCODER):
    from paddle_bts.data import make_loader as paddle_loader
    from torch_ref.data import make_loader as torch_loader
    path = torch_float64_run(encoder).checkpoint
    checkpoint = torch_ref.read_checkpoint(str(path))   # read once: both sides resume from it
    tm, t_opt, t_sched = _torch_resumed(encoder, checkpoint, path)
    pm, p_opt, p_sched = _paddle_resumed(encoder, checkpoint, path)
    t_start = _torch_moments(tm, t_opt)
    p_start = _paddle_moments(pm, p_opt, list(t_start), encoder)
    t_weights, p_weights = states(tm, pm, encoder)
    t_records, t_seen = run_steps(ttrain, tm, t_opt, t_sched, torch_loader, lambda t: t.double(), RESUME_AT,
                                   RESUME_AT + RESUMED_STEPS)
    p_records, p_seen = run_steps(ptrain, pm, p_opt, p_sched, paddle_loader, lambda t: t.astype("float64"),
                                   RESUME_AT, RESUME_AT + RESUMED_STEPS)

    torch_out, paddle_out = _resumed_from(t_weights, t_start), _resumed_from(p_weights, p_start)
    resumed_from = list(torch_out)
    for out, records, seen in ((torch_out, t_records, t_seen), (paddle_out, p_records, p_seen)):
        for key in ("image", "depth", "focal"):
            out[f"data/{key}"] = np.stack([s[key] for s in seen]).astype(np.float32)
        out["lr per resumed step"] = curve(records, "lr")
        out["loss per resumed step"] = curve(records, "loss")
    final_t, final_p = states(tm, pm, encoder, prefix="final/")
    torch_out.update(final_t)
    paddle_out.update(final_p)
    for out, moments in ((torch_out, _torch_moments(tm, t_opt)), (paddle_out, _paddle_moments(pm, p_opt, list(t_start), encoder))):
        for name, values in moments.items():
            for kind in ("exp_avg", "exp_avg_sq"):
                out[f"final AdamW {kind}/{name}"] = values[kind]

    tolerances = dict.fromkeys(resumed_from, TOLERANCES["resume_state"])
    tolerances.update({f"data/{k}": TOLERANCES["train_data"] for k in ("image", "depth", "focal")})
    tolerances["lr per resumed step"] = TOLERANCES["lr"]
    tolerances["loss per resumed step"] = TOLERANCES["train_fp64_loss"]
    tolerances.update({n: TOLERANCES["train_fp64_bn"] for n in torch_out if "running_" in n})
    tolerances.update({n: TOLERANCES["resume_exp_avg"] for n in torch_out if n.startswith("final AdamW exp_avg/")})
    tolerances.update({n: TOLERANCES["resume_exp_avg_sq"] for n in torch_out if n.startswith("final AdamW exp_avg_sq/")})
    order = resumed_from + [f"data/{k}" for k in ("image", "depth", "focal")] + \
        ["lr per resumed step", "loss per resumed step"] + [n for n in torch_out if n.startswith("final")]
    return run_case("resume", f"resume-{encoder}-float64-{RESUME_AT}+{RESUMED_STEPS}steps", torch_out, paddle_out,
                    TOLERANCES["train_fp64"], tolerances=tolerances, order=order,
                    meta={**environment(*twins.devices()), "dtype": "float64", "saved at step": RESUME_AT,
                          "resumed steps": RESUMED_STEPS, "batch": f"{TRAIN_BATCH}x3x{TRAIN_SIZE[0]}x{TRAIN_SIZE[1]}",
                          "parameters with AdamW state": len(t_start)})


def test_resume_stage():
    result = run_resume()
    assert result.passed, result.failure_message()

"""Every stage's tolerance in one table, each with the measurement it rests on (fp32, CPU).

Form: |paddle - torch| <= atol + rtol * |torch| + k * noise element-wise (atol as a fraction of max|torch|
where marked). `noise` is measured in the same run on the same machine (alignment/noise.py): the larger
of max|torch fp32 - torch fp64| and max|torch fp32 - torch fp32 reordered| (channels_last, input one ulp
up) of the same tensor. A CPU with other kernels moves torch's own noise and Paddle's difference alike,
so the bound moves with the machine instead of being a constant calibrated on one CPU.

k = 3 throughout: Paddle is one more summation order, measured at <= 1.5x torch's own noise (AMD EPYC,
every configuration of alignment/matrix.py), so 3x leaves the goal's 2x margin (worst |d|/bound <= 0.5).
Where fp32 cannot be bounded by a floor (ReLU switches in gradients; AdamW sign flips in training), the
verdict comes from float64 in both frameworks and the fp32 figures are reported (verdict REPORT).
The constant terms are the figures measured before the floors existed (AMD EPYC); the reports' tables
give each tensor's effective bound and both noise figures.
"""
from alignment.harness import Tolerance

FP32_EPS = 1.1920929e-07

TOLERANCES = {
    "lpg": Tolerance(rtol=4 * FP32_EPS, atol=0.0, why=(
        "same elementwise fp32 ops; bound = 4 ulp x |depth| x (1 + condition of the denominator sum)")),
    "reduction": Tolerance(rtol=1e-5, atol=1e-6, noise_factor=3.0, why=(
        "1x1 convs + sigmoid/sin/cos in fp32; + 3x torch's own noise")),
    "atrous": Tolerance(rtol=1e-5, atol=1e-5, noise_factor=3.0, why=(
        "BN + two convs, fp32 summation order; + 3x torch's own noise")),
    "upconv": Tolerance(rtol=1e-5, atol=1e-5, noise_factor=3.0, why=(
        "nearest x2 + 3x3 conv + ELU, fp32 summation order; + 3x torch's own noise")),
    # Measured: max|d| / max|feature| up to 2.3e-4 (resnet101 layer4), where torch's own fp32-vs-fp64
    # error is of the same size; shallow features and DenseNets stay below 2e-5.
    "encoder": Tolerance(rtol=0.0, atol=5e-5, atol_of_max=True, noise_factor=3.0, why=(
        "5e-5 x max|feature| + 3x torch's own noise (fp64 and reordered fp32) of the same feature")),
    "decoder": Tolerance(rtol=1e-4, atol=1e-5, noise_factor=3.0, why="decoder in fp32; + 3x torch's own noise"),
    # Measured (photographs 2x3x128x256, BN calibrated on them): Paddle-vs-torch final depth 5.1e-4 m
    # (densenet161) .. 6.0e-3 m (resnext101), each 1.35-1.6x torch's own fp32-vs-fp64 error (4.2e-4 ..
    # 4.0e-3 m); the LPG's near-zero denominators amplify rounding, so a fixed 1e-4 m cannot hold.
    "model": Tolerance(rtol=1e-5, atol=1e-4, noise_factor=3.0, why=(
        "1e-4 + 1e-5 relative + 3x torch's own noise (fp64 and reordered fp32) of the same tensor")),
}

# Per-layer bound used to name the first divergent layer (fraction of the layer's own max |output|).
LAYER_LOCALISATION = Tolerance(rtol=0.0, atol=2e-4, atol_of_max=True, why=(
    "2e-4 x max|layer output|; fp32 noise measured up to 6.2e-5 (resnet101, photographs 2x3x128x256)"))

TOLERANCES.update({
    "loss": Tolerance(rtol=1e-6, atol=0.0, why="silog of identical depths: a few fp32 reductions"),
    # fp32 figures only (verdict REPORT): a ReLU input within rounding of 0 switches in one framework only
    # (see test_gradients.py); densenet161 was <= 2.1x torch's own error on AMD EPYC, 6.5x on an Intel Xeon.
    "backward": Tolerance(rtol=0.0, atol=1e-4, atol_of_max=True, noise_factor=3.0, why=(
        "reported, not asserted: 1e-4 x max|grad| + 3x torch's own noise (fp64 and reordered fp32)")),
    # fp64 in both frameworks: no ReLU switches; measured max|d| / max|grad| <= MEASURED_FP64 below.
    "backward_fp64": Tolerance(rtol=0.0, atol=1e-8, atol_of_max=True, why=(
        "float64 in both: 1e-8 x max|grad| (measured <= 6.9e-10 resnet50, see tolerances.py)")),
    "loss_fp64": Tolerance(rtol=1e-11, atol=0.0, why=(
        "silog in float64: measured 2.3e-12 relative (resnet50), 3.7e-13 (densenet161)")),
    # Measured max|d| / max|stat|: 1.1e-6 (densenet161), 9.9e-6 (resnet50); Paddle's native (biased)
    # variance update instead gives 1.1e-2, so the bound separates the two by > 300x.
    "train_mode": Tolerance(rtol=0.0, atol=3e-5, atol_of_max=True, noise_factor=3.0, why=(
        "3e-5 x max|running statistic| after one train-mode forward + 3x torch's own noise")),
})

TOLERANCES["metrics"] = Tolerance(rtol=1e-6, atol=0.0, why=(
    "same fp32 elementwise ops, means accumulated in fp64 in both (Paddle's fp32 CPU mean drifts "
    "2.8e-4 relative on 240k values); measured <= 9.5e-8 relative"))

# Fresh models: BN gamma/beta/mean/var are exact constants in both (measured 0); decoder conv weights
# compare their Xavier figures within the sampling error stated per tensor.
TOLERANCES["init"] = Tolerance(rtol=0.0, atol=0.0, why="official initial constants (BN 1/0/0/1): exact")

# data / eval stages (alignment/test_pipeline.py).
TOLERANCES["data"] = Tolerance(rtol=0.0, atol=0.0, why=(
    "exact: both loaders hand over the same numpy arrays from bts_data; any difference is a wrapper bug"))
# Measured (CPU, synthetic KITTI 375x1242 / NYU 480x640 trees, 2 images each): the stand-in network's
# predictions are bit-identical in both pipelines (flip averaging and KB paste-back included), and the
# nine means differ by <= 1.25e-7 relative (silog, NYU no crop; 9.5e-8 KITTI Eigen; 0 KITTI Garg),
# i.e. 1 ulp from the log/sqrt kernels, as the metrics stage. Image count and predictions: exact.
# bf16 deployment (alignment/bf16.py): reported, not asserted. Its yardstick is torch's own bf16 error on the
# same network (CPU autocast), measured in the same run: on AMD EPYC the trained stand-in's final depth moved by
# median 0.105 m, p99 0.51 m, max 0.80 m (abs_rel 0.08347 -> 0.08326). Measured on one bf16 CPU (Intel Xeon,
# AMX, 2026-11-26): Paddle bf16 at 0.29 of this bound (median 0.101 m, max 0.83 m; torch bf16 0.114, 0.76 m)
# with the upconvs' direct form, at 0.33 (median 0.102 m, p99 0.48 m, max 0.90 m) with the export's phase
# kernels. One CPU kind, and the issue asks for the distribution, not a verdict: still a report.
TOLERANCES["deploy_bf16"] = Tolerance(rtol=0.0, atol=0.0, noise_factor=3.0, why=(
    "3x torch's own bf16 error (CPU autocast, same network, same run) of the same tensor"))

TOLERANCES["eval"] = Tolerance(rtol=1e-6, atol=0.0, why=(
    "same predictions, same fp32 metric ops, fp64-accumulated means: measured <= 1.25e-7 relative (1 ulp)"))

# ---- training stages (alignment/test_training.py) -----------------------------------------------
# optimizer: one AdamW step, then a second, on identical seeded gradients (|g| 1e-6..1e-1 around eps
# 1e-3). Per element |d| <= 2 lr eps + [4 eps (|p before| + |p after|) + ADAMW_UPDATE_RTOL |update|]; the
# case passes the bracket as the scale (rtol 1). Paddle keeps beta1^t, beta2^t in float32 accumulators,
# torch in double: 1 - 0.999^t is off by 1.3e-5 (t=1) and 2.0e-5 (t=2) relative, and the update with it.
# Each side takes step 2 from its own step-1 parameters, so the bracket also adds the step-1 difference
# of the same element (measured in the run; 0 at step 1). Measured: update term needed <= 2.9e-5
# |update| (densenet121); worst element 0.39 of the bound (densenet121, AMD EPYC; 0.60 before the carried
# difference was counted, at step 2 of decoder.upconv4).
ADAMW_ROUNDING = 4 * FP32_EPS
ADAMW_UPDATE_RTOL = 6e-5
TOLERANCES.update({
    "optimizer": Tolerance(rtol=1.0, atol=2 * 1e-4 * FP32_EPS, why=(
        "2 lr eps + 4 eps (|p before| + |p after|) + 6e-5 |update| + the difference carried from the step "
        "before, per element (Paddle's float32 beta powers: measured <= 2.9e-5 |update|)")),
    "optimizer_groups": Tolerance(rtol=0.0, atol=0.0, why="group of every parameter, weight decay of each group: exact"),
    # Measured: the LR of all 50 steps and after the run bit-identical (0) in double; 1e-12 is 5 orders
    # below float32 resolution, so any schedule difference a step could feel fails.
    "lr": Tolerance(rtol=1e-12, atol=0.0, why="LR per step in double: measured identical; 1e-12 relative"),
    "train_data": Tolerance(rtol=0.0, atol=0.0, why="both loaders hand out the same bts_data arrays: exact"),
    # train in fp32 (10 steps, 2x3x64x128, train-mode BN): figures only (verdict REPORT). AdamW with eps
    # 1e-3 turns gradient rounding into update sign flips, so torch fp32 itself drifts from torch fp64 by up
    # to ~2 lr per step, and this bound (measured <= 3.5x on AMD EPYC) would let a loss-curve difference of a
    # few percent pass: the verdict is `train_fp64` below.
    "train": Tolerance(rtol=2 * FP32_EPS, atol=0.0, noise_factor=5.0, why=(
        "reported, not asserted: 2 eps |torch| + 5x torch's own fp32-vs-fp64 error after the same steps")),
    # BN running statistics of layers fed only through frozen layers carry no training drift, only the
    # variance reduction's rounding, where Paddle's is the less exact (measured 1.4e-6 x max, 12.7x torch's
    # own error); the train_mode stage's bound for one forward covers it, plus the drift term.
    "train_bn": Tolerance(rtol=0.0, atol=3e-5, atol_of_max=True, noise_factor=5.0, why=(
        "3e-5 x max|statistic| (train_mode's bound) + 5x torch's own fp32-vs-fp64 error")),
    # train in float64 in both frameworks (the verdict; 10 steps): no rounding-driven sign flips.
    # Measured max|d| / max|tensor| 1.5e-11 (parameters), loss 4.6e-12 relative (densenet161); a 1 %
    # loss difference is 2e8 x the loss bound (fault loss_scaled_1pct_in_training).
    "train_fp64": Tolerance(rtol=0.0, atol=1e-10, atol_of_max=True, why=(
        "float64 in both: 1e-10 x max|tensor| (measured <= 1.5e-11)")),
    "train_fp64_loss": Tolerance(rtol=3e-11, atol=0.0, why="float64 silog per step: measured 4.6e-12 relative"),
    # Paddle's BN kernel holds momentum as a float32 attribute: 1 - 0.99f = 0.0099999905, 9.5e-7 relative
    # off torch's 0.01 on every batch contribution. Measured 3.2e-7 x max|statistic| after 10 steps from
    # calibrated statistics; 9.4e-7 from a fresh decoder's running means, which start at 0 and so consist of
    # batch contributions only: 9.5e-7 itself, 0.95 of this bound by construction (backbone train case).
    "train_fp64_bn": Tolerance(rtol=0.0, atol=1e-6, atol_of_max=True, why=(
        "float32 momentum in Paddle's BN kernel (9.5e-7 relative): 1e-6 x max|statistic| (measured 3.2e-7)")),
})
# resume (alignment/test_resume.py): float64 in both, the train stage's bounds for what the steps produce.
TOLERANCES.update({
    "resume_state": Tolerance(rtol=0.0, atol=0.0, why=(
        "the state each side resumes from is the checkpoint's float64 values copied (moments, weights; beta "
        "powers as beta^(step+1)): exact")),
    # The moments are averages of gradients and of squared gradients, and float64 gradients agree to
    # backward_fp64's 1e-8 x max|grad|: |d exp_avg| <= 1e-8 x max, |d exp_avg_sq| <= 2 x 1e-8 x max
    # (|d g^2| <= 2 |g| |d g|). Measured after 4 + 2 steps (densenet121, AMD EPYC): <= 2.9e-11 x max
    # (exp_avg) and 3.2e-11 x max (exp_avg_sq), 0.003x the bounds; a moment restarted from zero differs by
    # its whole value.
    "resume_exp_avg": Tolerance(rtol=0.0, atol=1e-8, atol_of_max=True, why=(
        "AdamW exp_avg, float64 in both: backward_fp64's gradient bound, 1e-8 x max|tensor|")),
    "resume_exp_avg_sq": Tolerance(rtol=0.0, atol=2e-8, atol_of_max=True, why=(
        "AdamW exp_avg_sq, float64 in both: 2 x backward_fp64's gradient bound (|d g^2| <= 2|g||d g|)")),
})

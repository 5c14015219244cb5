"""Every stage's tolerance in one table, each with the measurement it rests on (fp32, CPU).

Form: |paddle - torch| <= atol + rtol * |torch| element-wise (atol as a fraction of max|torch| where
marked). Measured figures are from `pytest alignment/` on the CI-sized machine (torch 2.14.1, paddle
3.3.1); the reports' tables give the current run's figures next to these bounds.
"""
from alignment.harness import Tolerance

FP32_EPS = 1.1920929e-07

TOLERANCES = {
    "lpg": Tolerance(rtol=4 * FP32_EPS, atol=0.0, why=(
        "same elementwise fp32 ops; bound = 4 ulp x |depth| x (1 + condition of the denominator sum)")),
    "reduction": Tolerance(rtol=1e-5, atol=1e-6, why="1x1 convs + sigmoid/sin/cos in fp32"),
    "atrous": Tolerance(rtol=1e-5, atol=1e-5, why="BN + two convs, fp32 summation order"),
    "upconv": Tolerance(rtol=1e-5, atol=1e-5, why="nearest x2 + 3x3 conv + ELU, fp32 summation order"),
    # Measured: max|d| / max|feature| up to 2.3e-4 (resnet101 layer4), where torch's own fp32-vs-fp64
    # error is of the same size; shallow features and DenseNets stay below 2e-5.
    "encoder": Tolerance(rtol=0.0, atol=5e-5, atol_of_max=True, noise_factor=3.0, why=(
        "5e-5 x max|feature| + 3x torch's own fp32-vs-fp64 error of the same feature")),
    "decoder": Tolerance(rtol=1e-4, atol=1e-5, why="decoder in fp32"),
    # Measured (photographs 2x3x128x256, BN calibrated on them): Paddle-vs-torch final depth 5.1e-4 m
    # (densenet161) .. 6.0e-3 m (resnext101), each 1.35-1.6x torch's own fp32-vs-fp64 error (4.2e-4 ..
    # 4.0e-3 m); the LPG's near-zero denominators amplify rounding, so a fixed 1e-4 m cannot hold.
    "model": Tolerance(rtol=1e-5, atol=1e-4, noise_factor=3.0, why=(
        "1e-4 + 1e-5 relative + 3x torch's own fp32-vs-fp64 error of the same tensor (measured <= 2.2x)")),
}

# Per-layer bound used to name the first divergent layer (fraction of the layer's own max |output|).
LAYER_LOCALISATION = Tolerance(rtol=0.0, atol=2e-4, atol_of_max=True, why=(
    "2e-4 x max|layer output|; fp32 noise measured up to 6.2e-5 (resnet101, photographs 2x3x128x256)"))

TOLERANCES.update({
    "loss": Tolerance(rtol=1e-6, atol=0.0, why="silog of identical depths: a few fp32 reductions"),
    # fp32 (densenet161): measured <= 2.1x torch's own error. Not for ReLU-heavy encoders at small
    # inputs: a ReLU input within rounding of 0 switches in one framework only (see test_gradients.py).
    "backward": Tolerance(rtol=0.0, atol=1e-4, atol_of_max=True, noise_factor=3.0, why=(
        "1e-4 x max|grad| + 3x torch's own fp32-vs-fp64 error of the same gradient")),
    # fp64 in both frameworks: no ReLU switches; measured max|d| / max|grad| <= MEASURED_FP64 below.
    "backward_fp64": Tolerance(rtol=0.0, atol=1e-8, atol_of_max=True, why=(
        "float64 in both: 1e-8 x max|grad| (measured <= 6.9e-10 resnet50, see tolerances.py)")),
    "loss_fp64": Tolerance(rtol=1e-11, atol=0.0, why=(
        "silog in float64: measured 2.3e-12 relative (resnet50), 3.7e-13 (densenet161)")),
    # Measured max|d| / max|stat|: 1.1e-6 (densenet161), 9.9e-6 (resnet50); Paddle's native (biased)
    # variance update instead gives 1.1e-2, so the bound separates the two by > 300x.
    "train_mode": Tolerance(rtol=0.0, atol=3e-5, atol_of_max=True, why=(
        "3e-5 x max|running statistic| after one train-mode forward")),
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
TOLERANCES["eval"] = Tolerance(rtol=1e-6, atol=0.0, why=(
    "same predictions, same fp32 metric ops, fp64-accumulated means: measured <= 1.25e-7 relative (1 ulp)"))

# ---- training stages (alignment/test_training.py) -----------------------------------------------
# optimizer: one AdamW step, then a second, on identical seeded gradients (|g| 1e-6..1e-1 around eps
# 1e-3). Per element |d| <= 2 lr eps + [4 eps (|p before| + |p after|) + ADAMW_UPDATE_RTOL |update|]; the
# case passes the bracket as the scale (rtol 1). Paddle keeps beta1^t, beta2^t in float32 accumulators,
# torch in double: 1 - 0.999^t is off by 1.3e-5 (t=1) and 2.0e-5 (t=2) relative, and the update with it.
# Measured: update term needed <= 2.9e-5 |update| (densenet121); worst element 0.50 / 0.54 / 0.45 of the
# bound (densenet121 / densenet161 / resnet50, the last with its Linear head transposed).
ADAMW_ROUNDING = 4 * FP32_EPS
ADAMW_UPDATE_RTOL = 6e-5
TOLERANCES.update({
    "optimizer": Tolerance(rtol=1.0, atol=2 * 1e-4 * FP32_EPS, why=(
        "2 lr eps + 4 eps (|p before| + |p after|) + 6e-5 |update| per element (Paddle's float32 beta "
        "powers: measured <= 2.9e-5 |update|)")),
    "optimizer_groups": Tolerance(rtol=0.0, atol=0.0, why="group of every parameter, weight decay of each group: exact"),
    # Measured: the LR of all 50 steps and after the run bit-identical (0) in double; 1e-12 is 5 orders
    # below float32 resolution, so any schedule difference a step could feel fails.
    "lr": Tolerance(rtol=1e-12, atol=0.0, why="LR per step in double: measured identical; 1e-12 relative"),
    "train_data": Tolerance(rtol=0.0, atol=0.0, why="both loaders hand out the same bts_data arrays: exact"),
    # train (fp32, 10 steps, 2x3x64x128, train-mode BN): AdamW with eps 1e-3 turns gradient rounding into
    # update sign flips, so torch fp32 itself drifts from torch fp64 by up to ~2 lr per step. Measured
    # |paddle - torch| / |torch fp32 - torch fp64| per tensor, max over tensors: parameters 3.49, 3.28,
    # 2.54, 2.27, 1.62 and loss curve 1.92, 1.84, 1.51, 0.85, 0.72 (densenet121/161, mobilenetv2; seeded
    # and bts_data batches). Frozen parameters: torch's error 0, Paddle's 0, so the bound is 2 eps |p|.
    "train": Tolerance(rtol=2 * FP32_EPS, atol=0.0, noise_factor=5.0, why=(
        "2 eps |torch| + 5x torch's own fp32-vs-fp64 error of the same tensor after the same steps "
        "(measured <= 3.5x)")),
    # BN running statistics of layers fed only through frozen layers carry no training drift, only the
    # variance reduction's rounding, where Paddle's is the less exact (measured 1.4e-6 x max, 12.7x torch's
    # own error); the train_mode stage's bound for one forward covers it, plus the drift term.
    "train_bn": Tolerance(rtol=0.0, atol=3e-5, atol_of_max=True, noise_factor=5.0, why=(
        "3e-5 x max|statistic| (train_mode's bound) + 5x torch's own fp32-vs-fp64 error")),
    # train in float64 in both frameworks (densenet161, 10 steps): no rounding-driven sign flips.
    # Measured max|d| / max|tensor| 1.5e-11 (parameters), loss 4.6e-12 relative.
    "train_fp64": Tolerance(rtol=0.0, atol=1e-10, atol_of_max=True, why=(
        "float64 in both: 1e-10 x max|tensor| (measured <= 1.5e-11)")),
    "train_fp64_loss": Tolerance(rtol=3e-11, atol=0.0, why="float64 silog per step: measured 4.6e-12 relative"),
    # Paddle's BN kernel holds momentum as a float32 attribute: 1 - 0.99f = 0.0099999905, 9.5e-7 relative
    # off torch's 0.01 on every batch contribution. Measured 3.2e-7 x max|statistic| after 10 steps.
    "train_fp64_bn": Tolerance(rtol=0.0, atol=1e-6, atol_of_max=True, why=(
        "float32 momentum in Paddle's BN kernel (9.5e-7 relative): 1e-6 x max|statistic| (measured 3.2e-7)")),
})

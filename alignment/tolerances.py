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
    "encoder": Tolerance(rtol=0.0, atol=1e-4, atol_of_max=True, why="deep fp32 backbones"),
    "decoder": Tolerance(rtol=1e-4, atol=1e-5, why="decoder in fp32"),
    "model": Tolerance(rtol=1e-5, atol=1e-4, noise_factor=4.0, why=(
        "1e-4 m + 1e-5 relative + 4 x torch fp32-vs-fp64 error of the same tensor (LPG amplification)")),
}

# Per-layer bound used to name the first divergent layer (fraction of the layer's own max |output|).
LAYER_LOCALISATION = Tolerance(rtol=0.0, atol=2e-4, atol_of_max=True, why=(
    "2e-4 x max|layer output|; fp32 noise measured up to 6.2e-5 (resnet101, photographs 2x3x128x256)"))

TOLERANCES.update({
    "loss": Tolerance(rtol=1e-6, atol=0.0, why="silog of identical depths: a few fp32 reductions"),
    "backward": Tolerance(rtol=0.0, atol=1e-4, atol_of_max=True, why="gradients through the whole network"),
    "train_mode": Tolerance(rtol=1e-5, atol=1e-6, why="BN running statistics after one train-mode forward"),
})

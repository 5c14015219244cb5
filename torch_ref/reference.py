"""A seeded stand-in for a trained BTS (there are no downloads here): same architecture, random
weights, and BN running statistics calibrated on seeded inputs so that every layer sees activations
of a trained network's scale (raw random ResNets reach |a| ~ 1e3 and saturate the depth sigmoid,
which would make any parity figure meaningless)."""
import numpy as np
import torch

from torch_ref.bts import build_model


def seeded_reference_model(encoder, seed=0, max_depth=80.0, dataset="kitti", calibration=None):
    """`calibration`: N x 3 x H x W float32 images for the BN statistics (default: seeded noise)."""
    torch.manual_seed(seed)
    model = build_model(encoder, max_depth=max_depth, dataset=dataset)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for bn in batch_norms(model):   # non-trivial affine parameters, so a swapped or dropped BN tensor shows
            bn.weight.uniform_(0.5, 1.5, generator=gen)
            bn.bias.normal_(0.0, 0.1, generator=gen)
        if calibration is None:
            calibration = np.random.default_rng(seed + 2).standard_normal((4, 3, 128, 256)).astype(np.float32)
        calibrate_batch_norms(model, torch.from_numpy(calibration), torch.full((len(calibration),), 715.0873))
    return model.eval()


def batch_norms(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def calibrate_batch_norms(model, *inputs):
    """BN running statistics := the batch statistics of one train-mode forward of `inputs`; counters 0, each
    layer's momentum kept. Call under torch.no_grad()."""
    bns = batch_norms(model)
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None          # cumulative average: after one batch, running = batch stats
    model.train()(*inputs)
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
        bn.num_batches_tracked.zero_()

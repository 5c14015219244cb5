"""Stand-ins for a trained checkpoint (nothing is downloaded): the default run, the benchmark and tests."""
import re

import numpy as np
import torch
import torchvision.models

import torch_ref
from bts_core.backbones import backbone_of
from conversion.convert import torch_layout
from conversion.verify import photographs
from torch_ref.reference import batch_norms, calibrate_batch_norms


def save_seeded_checkpoint(encoder, path, seed=0, max_depth=80.0, dataset="kitti"):
    """torch_ref's seeded reference model (random weights, BN statistics calibrated on seeded images, as
    the alignment stages use it) in the official checkpoint format; returns the path. `max_depth` and
    `dataset` are the model's during calibration (the file itself holds neither).

    Calibrated BN matters here: with default statistics eval-mode BN is nearly the identity, and with
    random ones ResNet activations reach ~1e7 and the outputs saturate; either way verification would
    leave much of the network unchecked.
    """
    model = torch_ref.seeded_reference_model(encoder, seed, max_depth=max_depth, dataset=dataset)
    torch_ref.save_official_checkpoint(model, str(path))
    return path


def random_state(encoder, seed=0):
    """Random values in torch_ref's exact layout, without building the model: for tests of names and bits."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, (shape, _) in torch_layout(encoder).items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.randint(0, 10**6, shape, generator=generator)
        else:
            state[key] = torch.randn(shape, generator=generator)
    return state


def seeded_backbone(encoder, seed=0, legacy=False, calibrate=True):
    """A torchvision ImageNet classifier's state dict as torchvision publishes one, seeded (nothing is
    downloaded): torchvision's network with `weights=None` under torch.manual_seed(seed), BN affine parameters
    drawn, BN counters seeded integers (a swapped one shows). BN statistics: calibrated on photographs as
    seeded_reference_model does (a trained network's activation scale, so verification sees every layer), or
    with `calibrate=False` drawn at random (seconds faster, enough where only names and bits matter).
    `legacy`: as torchvision's 2017 files: DenseNet's `norm.1` names and no BN counters."""
    torch.manual_seed(seed)
    network = getattr(torchvision.models, backbone_of(encoder).torchvision)(weights=None)
    gen = torch.Generator().manual_seed(seed + 1)
    bns = batch_norms(network)
    with torch.no_grad():
        for bn in bns:
            bn.weight.uniform_(0.5, 1.5, generator=gen)
            bn.bias.normal_(0.0, 0.1, generator=gen)
            bn.running_mean.normal_(0.0, 0.1, generator=gen)
            bn.running_var.uniform_(0.5, 1.5, generator=gen)
        if calibrate:   # on two photographs and their mirror images
            photos = photographs(64, 64, ("astronaut", "chelsea"))
            calibrate_batch_norms(network, torch.from_numpy(np.concatenate([photos, photos[..., ::-1]])))
        for bn in bns:
            bn.num_batches_tracked.copy_(torch.randint(1, 10**6, (), generator=gen))
    state = network.state_dict()
    if legacy:
        state = {_legacy_name(k): v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    return state


def _legacy_name(key):
    """`denselayer1.norm1.weight` as torchvision's 2017 DenseNet files spell it: `denselayer1.norm.1.weight`."""
    return re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", key)


def save_seeded_backbone(encoder, path, seed=0, legacy=False, calibrate=True):
    """seeded_backbone saved as torchvision saves its files: torch.save(state_dict, path); returns the path."""
    torch.save(seeded_backbone(encoder, seed, legacy, calibrate), path)
    return path

"""Stand-ins for a trained checkpoint (nothing is downloaded): the default run, the benchmark and tests."""
import torch

import torch_ref
from conversion.convert import torch_layout


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

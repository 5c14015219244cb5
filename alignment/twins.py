"""What the stages feed both frameworks: twin models (Paddle weights produced by the converter, the one
source of truth) and seeded or photographic inputs as numpy arrays."""
import functools
import os

import numpy as np
import paddle
import torch

import paddle_bts
import torch_ref
from bts_core.spec import DEFAULT_MAX_DEPTH, KITTI_FOCAL, NYU_FOCAL, check_encoder
from conversion import verify
from conversion.convert import torch_to_paddle
from conversion.rules import map_torch_key
from paddle_bts.checkpoint import set_strict

FOCALS = np.array([KITTI_FOCAL, NYU_FOCAL], np.float32)   # one per sample: focal scaling differs in a batch


def devices():
    """Each framework's device, chosen independently (pytest options set these variables)."""
    return os.environ.get("BTS_TORCH_DEVICE", "cpu"), os.environ.get("BTS_PADDLE_DEVICE", "cpu")


def to_torch(array):
    return torch.from_numpy(np.ascontiguousarray(array)).to(devices()[0])


def to_paddle(array):
    return paddle.to_tensor(np.ascontiguousarray(array), place=paddle_place())


def paddle_place():
    device = devices()[1]
    return paddle.CPUPlace() if device == "cpu" else paddle.CUDAPlace(int(device.partition(":")[2] or 0))


def numpy_of(tensor):
    return tensor.detach().cpu().numpy() if isinstance(tensor, torch.Tensor) else tensor.numpy()


def paddle_param_name(torch_name, encoder):
    """The Paddle twin's parameter name of a torch_ref one (the converter's rule table), None if it has none."""
    mapping = map_torch_key(torch_name, check_encoder(encoder).family)
    return None if mapping.target is None else ".".join(mapping.target)


def seeded(shape, seed=0, low=None, high=None):
    rng = np.random.default_rng(seed)
    if low is None:
        return rng.standard_normal(shape).astype(np.float32)
    return rng.uniform(low, high, shape).astype(np.float32)


@functools.lru_cache(maxsize=None)
def photographs(height=128, width=256):
    """Two real photographs (scikit-image's astronaut and cat), ImageNet-normalised: 2x3xHxW."""
    return verify.photographs(height, width, ("astronaut", "chelsea"))


def torch_twin(encoder, dataset="kitti", seed=0):
    """build_twins' torch model alone (on the CPU, train mode left to the caller)."""
    photos = photographs()   # BN statistics of natural images: activations at a trained network's scale
    return torch_ref.seeded_reference_model(encoder, seed=seed, max_depth=DEFAULT_MAX_DEPTH[dataset], dataset=dataset,
                                            calibration=np.concatenate([photos, photos[..., ::-1]]))


def build_twins(encoder, dataset="kitti", seed=0, torch_running_var=True):
    """(torch_ref model, paddle_bts model) in eval mode, the Paddle one converted from the torch one;
    both with the dataset's official max_depth (80 m KITTI, 10 m NYU)."""
    torch_model = torch_twin(encoder, dataset, seed)
    paddle_model = paddle_twin_of(torch_model, encoder, dataset, torch_running_var)
    torch_model.to(devices()[0])
    return torch_model.eval(), paddle_model.eval()


def paddle_twin_of(torch_model, encoder, dataset="kitti", torch_running_var=True):
    """A paddle_bts model holding `torch_model`'s weights as the converter gives them (eval mode)."""
    return paddle_twin_of_state(torch_model.state_dict(), encoder, dataset, torch_running_var)


def paddle_twin_of_state(torch_state, encoder, dataset="kitti", torch_running_var=True, float_dtype=np.float32):
    """A paddle_bts model (eval mode) holding a torch_ref state dict as the converter gives it, its floats in
    `float_dtype` (np.float64: the resume stage converts its float64 checkpoint as it is)."""
    parts, report = torch_to_paddle(torch_state, encoder, float_dtype=float_dtype)
    report.raise_if_bad()
    paddle_model = paddle_bts.build_model(encoder, max_depth=DEFAULT_MAX_DEPTH[dataset], dataset=dataset,
                                          torch_running_var=torch_running_var)
    if float_dtype != np.float32:   # cast before the weights go in: float64 ones must not round through float32
        paddle_model.to(dtype=np.dtype(float_dtype).name)
    set_strict(paddle_model.encoder, parts["encoder"], f"{encoder} encoder")
    set_strict(paddle_model.decoder, parts["decoder"], f"{encoder} decoder")
    return paddle_model.eval()



twin_models = functools.lru_cache(maxsize=4)(build_twins)   # shared, read-only use (eval forwards)

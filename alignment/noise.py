"""torch's own noise on a tensor, measured in the run that compares it (see Tolerance.noise_factor).

Two references for each torch fp32 result:
- `exact`: the same computation in float64 (torch's rounding error);
- `perturbed`: the same computation in fp32 under another summation order: the model in channels_last
  (other oneDNN kernels) and every float input moved up by one ulp. This moves ReLU and comparison
  switches near zero as another framework's kernels would, so discontinuities land inside the floor.
Measured (AMD EPYC, densenet121 photographs 2x3x128x256): final depth torch fp32 vs fp64 6.5e-4 m,
vs perturbed 7.3e-4 m, Paddle vs torch 8.2e-4 m -- Paddle is one more summation order.
"""
import copy

import numpy as np
import torch


def jittered(array):
    """Floating arrays one ulp up (towards +inf); integer and boolean arrays unchanged."""
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        return array
    return np.nextafter(array, np.array(np.inf, array.dtype)).astype(array.dtype)


def channels_last(tensor):
    return tensor.contiguous(memory_format=torch.channels_last) if tensor.dim() == 4 else tensor


def reordered(module):
    """A copy of `module` in channels_last (its convolutions then run other kernels)."""
    return copy.deepcopy(module).to(memory_format=torch.channels_last)


def in_float64(module):
    return copy.deepcopy(module).double()


def references(torch_fn, arrays, to_torch, module=None):
    """(exact, perturbed) outputs of `torch_fn(*tensors)` as numpy (lists for tuple outputs).

    `module`: the nn.Module `torch_fn` calls, given as its first argument, copied to float64 for `exact`
    and to channels_last for `perturbed`; None for parameter-free functions."""
    def run(fn, inputs, convert):
        with torch.no_grad():
            out = fn(*[convert(to_torch(a)) for a in inputs])
        return _numpy(out)
    as_double = lambda t: t.double() if t.is_floating_point() else t   # noqa: E731
    if module is None:
        exact = run(torch_fn, arrays, as_double)
        perturbed = run(torch_fn, [jittered(a) for a in arrays], channels_last)
    else:
        exact = run(lambda *t: torch_fn(in_float64(module), *t), arrays, as_double)
        perturbed = run(lambda *t: torch_fn(reordered(module), *t), [jittered(a) for a in arrays], channels_last)
    return exact, perturbed


def _numpy(out):
    if isinstance(out, (tuple, list)):
        return [_numpy(o) for o in out]
    return out.detach().cpu().numpy()

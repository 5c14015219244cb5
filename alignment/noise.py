"""torch's own noise on a tensor, measured in the run that compares it (see Tolerance.noise_factor).

References for each torch fp32 result:
- `exact`: the same computation in float64 (torch's rounding error);
- `perturbed`: the same computation in fp32 under other summation orders, twice: the model in
  channels_last (other oneDNN kernels) with every float input moved one ulp up, and once one ulp down.
  This moves ReLU and comparison switches near zero as another framework's kernels would, so
  discontinuities land inside the floor; two draws make the floor's estimate less a matter of luck.
Measured (AMD EPYC, photographs 2x3x128x256, final depth): densenet121 torch fp32 vs fp64 6.5e-4 m, vs
reordered 7.3e-4 m, Paddle vs torch 8.2e-4 m; mobilenetv2 vs fp64 2.4e-3 m, vs reordered up 2.5e-3 /
down 2.7e-3 m, Paddle 3.6e-3 m -- Paddle is one more summation order, at <= 1.6x torch's own noise.
"""
import copy

import numpy as np
import torch


def jittered(array, towards=np.inf):
    """Floating arrays one ulp towards `towards` (+inf: up); integer and boolean arrays unchanged."""
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        return array
    return np.nextafter(array, np.array(towards, array.dtype)).astype(array.dtype)


def channels_last(tensor):
    return tensor.contiguous(memory_format=torch.channels_last) if tensor.dim() == 4 else tensor


def reordered(module):
    """A copy of `module` in channels_last (its convolutions then run other kernels)."""
    return copy.deepcopy(module).to(memory_format=torch.channels_last)


def in_float64(module):
    return copy.deepcopy(module).double()


def references(torch_fn, arrays, to_torch, module=None):
    """(exact, perturbed) outputs of `torch_fn(*tensors)` as numpy (lists for tuple outputs); each
    perturbed output is a pair (input one ulp up, one ulp down), both in channels_last.

    `module`: the nn.Module `torch_fn` calls, given as its first argument, copied to float64 for `exact`
    and to channels_last for `perturbed`; None for parameter-free functions."""
    def run(fn, inputs, convert):
        with torch.no_grad():
            out = fn(*[convert(to_torch(a)) for a in inputs])
        return _numpy(out)
    as_double = lambda t: t.double() if t.is_floating_point() else t   # noqa: E731
    if module is None:
        exact = run(torch_fn, arrays, as_double)
        reorder = torch_fn
    else:
        exact = run(lambda *t: torch_fn(in_float64(module), *t), arrays, as_double)
        reorder = lambda *t: torch_fn(reordered(module), *t)   # noqa: E731
    up, down = (run(reorder, [jittered(a, towards) for a in arrays], channels_last) for towards in (np.inf, -np.inf))
    return exact, list(zip(up, down)) if isinstance(up, list) else (up, down)


def _numpy(out):
    if isinstance(out, (tuple, list)):
        return [_numpy(o) for o in out]
    return out.detach().cpu().numpy()

"""State-dict conversion torch_ref <-> paddle_bts with strict accounting (no silent drops, no guessing).

Target layouts come from the target model built without allocating weights (torch's meta device,
Paddle's LazyGuard), so the accounting is against the real network, not a key list kept by hand.
"""
from dataclasses import dataclass, field

import numpy as np
import paddle
import torch

import paddle_bts
import torch_ref
from bts_core.cli import InputError
from bts_core.spec import MODEL_PARTS, check_encoder
from conversion.rules import map_torch_key


class ConversionError(InputError):
    """Weights that cannot be converted; the message is one line meant for the user."""


@dataclass
class ConversionReport:
    mapped: dict = field(default_factory=dict)        # source key -> target key
    dropped: dict = field(default_factory=dict)       # source key -> why
    unmatched: list = field(default_factory=list)     # source keys no rule maps into the target
    missing: list = field(default_factory=list)       # target keys nothing fills
    shape_mismatches: list = field(default_factory=list)
    nonfinite: list = field(default_factory=list)     # source keys holding NaN or Inf
    transforms: dict = field(default_factory=dict)    # target key -> "transpose"
    casts: dict = field(default_factory=dict)         # source key -> original dtype (now float32)

    def problems(self):
        """One line per kind of problem, most telling first; empty when the conversion is clean."""
        out = []
        for label, items in (("unexpected (unmatched) source key", self.unmatched),
                             ("missing target key", self.missing),
                             ("shape mismatch", self.shape_mismatches),
                             ("tensor with NaN/Inf", self.nonfinite)):
            if items:
                out.append(f"{len(items)} {label}(s), e.g. {items[0]}")
        return out

    def raise_if_bad(self):
        problems = self.problems()
        if problems:
            raise ConversionError("; ".join(problems))


PARTS = MODEL_PARTS   # a whole model; ("encoder",) for an ImageNet backbone (conversion/backbone.py)


def torch_layout(encoder, parts=PARTS):
    """{key: (shape, is_linear_weight)} of torch_ref's state dict for `encoder` (the keys of `parts`), without
    allocating."""
    with torch.device("meta"):
        model = torch_ref.BtsModel(encoder)
    linear = {f"{n}.weight" for n, mod in model.named_modules() if isinstance(mod, torch.nn.Linear)}
    return {k: (tuple(v.shape), k in linear) for k, v in model.state_dict().items() if k.partition(".")[0] in parts}


def paddle_layout(encoder, parts=PARTS):
    """{(part, key): (shape, is_linear_weight)} of paddle_bts's state dicts of `parts`, without allocating."""
    with paddle.LazyGuard():
        model = paddle_bts.BtsModel(encoder)
    layout = {}
    for part in parts:
        layer = getattr(model, part)
        linear = {f"{n}.weight" for n, sub in layer.named_sublayers() if isinstance(sub, paddle.nn.Linear)}
        layout.update({(part, k): (tuple(v.shape), k in linear) for k, v in layer.state_dict().items()})
    return layout


def _as_float32(key, array, report, dtype=np.float32):
    if array.dtype != dtype and np.issubdtype(array.dtype, np.floating):
        report.casts[key] = str(array.dtype)
        array = array.astype(dtype)
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        report.nonfinite.append(key)
    return array


def _torch_to_numpy(key, tensor, report):
    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16: cast here, and record it like any cast
        report.casts[key] = "bfloat16"
        tensor = tensor.float()
    return tensor.detach().cpu().numpy()


def torch_to_paddle(state, encoder, progress=iter, float_dtype=np.float32, parts=PARTS):
    """torch_ref state dict (no 'module.') -> ({encoder: {...}, decoder: {...}} of numpy, report).

    `progress` wraps the (key, tensor) iteration, e.g. to draw a progress bar. Floating tensors become
    `float_dtype` (the files hold float32; the resume stage converts a float64 run as it is). `parts`:
    the parts `state` holds, every key of which must be filled.
    """
    family = check_encoder(encoder).family
    layout = paddle_layout(encoder, parts)
    out, report = {part: {} for part in parts}, ConversionReport()
    for key, tensor in progress(state.items()):
        try:
            mapping = map_torch_key(key, family)
        except KeyError:
            report.unmatched.append(key)
            continue
        if mapping.target is None:
            report.dropped[key] = mapping.why
            continue
        if mapping.target not in layout:
            report.unmatched.append(key)
            continue
        shape, is_linear = layout[mapping.target]
        array = _as_float32(key, _torch_to_numpy(key, tensor, report), report, float_dtype)
        if is_linear:
            array, report.transforms[mapping.target[1]] = np.ascontiguousarray(array.T), "transpose"
        if tuple(array.shape) != shape:
            report.shape_mismatches.append(f"{key} {list(tensor.shape)} -> {mapping.target[1]} {list(shape)}")
            continue
        part, target_key = mapping.target
        out[part][target_key] = array
        report.mapped[key] = f"{part}:{target_key}"
    report.missing = [f"{p}:{k}" for p, k in layout if k not in out[p]]
    return out, report


def paddle_to_torch(parts, encoder, progress=iter):
    """{encoder: state, decoder: state} of paddle_bts -> (torch_ref state dict of tensors, report).

    Names come from inverting the same rule table over torch_ref's own keys, so the two directions
    cannot disagree. BN counters, which Paddle does not keep, are restored as 0 (said in `dropped`).
    `progress` wraps the ((part, key), value) iteration. `parts` may hold the encoder alone (a backbone).
    """
    family = check_encoder(encoder).family
    layout = torch_layout(encoder, tuple(parts))
    inverse, counters = {}, []
    for key in layout:
        mapping = map_torch_key(key, family)
        if mapping.target is None:
            counters.append(key)
        else:
            inverse[mapping.target] = key
    out, report = {}, ConversionReport()
    items = [((part, key), value) for part in PARTS if part in parts for key, value in parts[part].items()]
    for (part, key), value in progress(items):
        array = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
        source = f"{part}:{key}"
        if (part, key) not in inverse:
            report.unmatched.append(source)
            continue
        target = inverse[(part, key)]
        shape, is_linear = layout[target]
        array = _as_float32(source, array, report)
        if is_linear:
            array, report.transforms[target] = np.ascontiguousarray(array.T), "transpose"
        if tuple(array.shape) != shape:
            report.shape_mismatches.append(f"{source} {list(value.shape)} -> {target} {list(shape)}")
            continue
        out[target] = torch.from_numpy(array)
        report.mapped[source] = target
    for key in counters:
        out[key] = torch.tensor(0, dtype=torch.int64)
        report.dropped[key] = "restored as 0: Paddle BN keeps no counter"
    report.missing = [k for k in layout if k not in out]
    ordered = {k: out[k] for k in layout if k in out}   # torch_ref's own key order
    return ordered, report

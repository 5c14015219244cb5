"""torch AdamW state of a BTS checkpoint, by parameter name: read from any group layout, written in the
official one.

bts_main.py builds AdamW from *every* encoder parameter (group 0, weight decay) and every decoder
parameter (group 1, none), frozen ones included: they get no gradient, so no state. A state dict names
parameters only by position, so the layout decides which parameter an entry belongs to. Earlier
torch_ref versions listed only trainable parameters; both layouts are read, the official one is written.
"""
import torch

from bts_core.spec import MODEL_PARTS, is_frozen
from torch_ref.checkpoint import CheckpointError



def group_layouts(model):
    """{layout: [[names of group 0], [names of group 1]]} for `model`; trainable means not frozen by the
    official freezing (bts_core.spec.is_frozen), whatever the model's requires_grad flags say now."""
    official = [[f"{part}.{n}" for n, _ in getattr(model, part).named_parameters()] for part in MODEL_PARTS]
    trainable = [[name for name in group if not (name.startswith("encoder.") and
                                                 is_frozen(model.encoder_name, "torch", name[len("encoder."):]))]
                 for group in official]
    return {"official (every parameter)": official, "trainable parameters only": trainable}


def named_state(model, optimizer_state, what):
    """({parameter name: {'step', 'exp_avg', 'exp_avg_sq'}}, [group hyper-parameters]) from a torch AdamW
    state dict of `model`; CheckpointError when it does not belong to `model`."""
    groups = optimizer_state["param_groups"]
    sizes = [len(g["params"]) for g in groups]
    layouts = group_layouts(model)
    names = next((layout for layout in layouts.values() if [len(g) for g in layout] == sizes), None)
    if names is None:
        expected = " or ".join(f"{[len(g) for g in v]} ({k})" for k, v in layouts.items())
        raise CheckpointError(f"{what}: optimizer state does not match the weights: its groups hold {sizes} "
                              f"parameters, {model.encoder_name} has {expected}")
    by_index = {index: name for group, group_names in zip(groups, names) for index, name in zip(group["params"], group_names)}
    shapes = dict((n, tuple(p.shape)) for n, p in model.named_parameters())
    named = {}
    for index, entry in optimizer_state["state"].items():
        if index not in by_index:
            raise CheckpointError(f"{what}: optimizer state for parameter #{index}, which no group lists")
        name = by_index[index]
        missing = {"step", "exp_avg", "exp_avg_sq"} - set(entry)
        if missing:
            raise CheckpointError(f"{what}: optimizer state of {name} lacks {sorted(missing)[0]} (not AdamW?)")
        for key in ("exp_avg", "exp_avg_sq"):
            if tuple(entry[key].shape) != shapes[name]:
                raise CheckpointError(f"{what}: optimizer state does not match the weights: {key} of {name} is "
                                      f"{list(entry[key].shape)}, the parameter {list(shapes[name])}")
        named[name] = {"step": int(entry["step"]), "exp_avg": entry["exp_avg"], "exp_avg_sq": entry["exp_avg_sq"]}
    hyper = [{k: v for k, v in g.items() if k != "params"} for g in groups]
    return named, hyper


def official_state(model, named, hyper):
    """A torch AdamW state dict in the official layout for `model` from named state and group hyper-parameters."""
    official = group_layouts(model)["official (every parameter)"]
    index = {name: i for i, name in enumerate(n for group in official for n in group)}
    state = {index[name]: {"step": torch.tensor(float(entry["step"])), "exp_avg": entry["exp_avg"],
                           "exp_avg_sq": entry["exp_avg_sq"]} for name, entry in named.items()}
    groups, start = [], 0
    for group_names, settings in zip(official, hyper):
        groups.append({**settings, "params": list(range(start, start + len(group_names)))})
        start += len(group_names)
    return {"state": state, "param_groups": groups}


def load_optimizer_state(optimizer, model, optimizer_state, what):
    """Loads a checkpoint's AdamW state (either layout) into `optimizer`, built by torch_ref.train.build_optimizer
    (official layout) for `model`."""
    named, hyper = named_state(model, optimizer_state, what)
    optimizer.load_state_dict(official_state(model, named, hyper))

"""First-divergence localisation: record every layer's output in both frameworks, matched by name.

Names match one-to-one in the decoder and in ResNet/MobileNet encoders; for DenseNet the converter's
own path rules give the Paddle name of each torch layer. Where paddle.vision fuses a ReLU into a BN
layer (`nn.BatchNorm(act="relu")`), the torch output is passed through ReLU before comparing.
"""
from collections import defaultdict

import numpy as np
import paddle
import torch

from bts_core.spec import check_encoder
from conversion.rules import PATH_RULES


def _tensors(output):
    if isinstance(output, (tuple, list)):
        return [t for t in output if isinstance(t, (torch.Tensor, paddle.Tensor))]
    return [output]


def paddle_name(torch_name, family):
    """Paddle sub-layer path of a torch module path; None where the torch module has no counterpart."""
    part, _, path = torch_name.partition(".")
    if part != "encoder" or family != "densenet":
        return torch_name
    if path == "base_model":
        return torch_name
    for rule in PATH_RULES[family]:
        mapped = rule.apply(path)
        if mapped is not None:
            return f"encoder.{mapped}"
    return None


class Recorder:
    """Collects (name, call index) -> output arrays through forward hooks; hooks are removed on exit."""

    def __init__(self, model, framework):
        self.model, self.framework = model, framework
        self.outputs, self.order, self.layers = defaultdict(list), [], {}
        self.handles = []

    def __enter__(self):
        named = self.model.named_modules() if self.framework == "torch" else self.model.named_sublayers()
        for name, layer in named:
            if not name:
                continue
            self.layers[name] = layer
            hook = self._hook(name)
            register = layer.register_forward_hook if self.framework == "torch" else layer.register_forward_post_hook
            self.handles.append(register(hook))
        return self

    def _hook(self, name):
        def record(layer, inputs, output):
            for i, t in enumerate(_tensors(output)):
                key = name if len(_tensors(output)) == 1 else f"{name}[{i}]"
                if key not in self.outputs:
                    self.order.append(key)
                # clone: torchvision ReLUs run in place and would rewrite a recorded BN output
                self.outputs[key].append(t.detach().cpu().clone().numpy() if self.framework == "torch" else t.numpy())
        return record

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def _relu_fused(layer):
    return isinstance(layer, paddle.nn.BatchNorm) and getattr(layer, "_act", None) == "relu"


def layer_table(torch_rec, paddle_rec, encoder, tol):
    """Rows in torch execution order: layer, call, shape, max_abs, ref_max, rel_to_max, passed."""
    from alignment.harness import compare
    family = check_encoder(encoder).family
    rows = []
    for key in torch_rec.order:
        base, _, index = key.partition("[")
        other = paddle_name(base, family)
        if other is None:
            continue
        other_key = other + ("[" + index if index else "")
        if other_key not in paddle_rec.outputs:
            continue
        relu = _relu_fused(paddle_rec.layers.get(other))
        for call, (a, b) in enumerate(zip(torch_rec.outputs[key], paddle_rec.outputs[other_key])):
            ref = np.maximum(a, 0) if relu else a
            row = compare(ref, b, tol)
            rows.append({"layer": key, "paddle_layer": other_key, "call": call, "shape": row["shape"],
                         "max_abs": row.get("max_abs"), "ref_max_abs": row.get("ref_max_abs"),
                         "rel_to_max": (row.get("max_abs", np.inf) / row["ref_max_abs"])
                         if row.get("ref_max_abs") else row.get("max_abs"),
                         "passed": row["passed"]})
    return rows


def first_divergence(rows):
    for row in rows:
        if not row["passed"]:
            return f"{row['layer']} (call {row['call']}, shape {row['shape']}, max|d| {row['max_abs']:.3g}, " \
                   f"ref max {row['ref_max_abs']:.3g})"
    return ""


def plot_layers(rows, path, title, tol_label):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    values = [max(r["rel_to_max"] or 0.0, 1e-12) for r in rows]
    colors = ["tab:blue" if r["passed"] else "tab:red" for r in rows]
    fig, ax = plt.subplots(figsize=(12, 4))
    ax.scatter(range(len(values)), values, s=6, c=colors)
    ax.set_yscale("log")
    ax.set_xlabel("layer (torch execution order)")
    ax.set_ylabel("max |paddle - torch| / max |torch|")
    ax.set_title(f"{title} ({tol_label}; red: over tolerance)")
    first = next((i for i, r in enumerate(rows) if not r["passed"]), None)
    if first is not None:
        ax.axvline(first, color="tab:red", linestyle="--")
        ax.annotate(rows[first]["layer"], (first, values[first]), fontsize=8, rotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

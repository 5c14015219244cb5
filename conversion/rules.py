"""Name rules torch_ref <-> paddle_bts: one table, first match wins, a key no rule matches is an error.

A key is split into a module path and a leaf (`weight`, `running_mean`, ...). Path rules rename
modules (only DenseNet's differ); leaf rules rename BN statistics and drop torch's counter. Tensor
transforms are chosen from the target layer's type (a Linear is stored [in, out] in Paddle), never
from the name. A torchvision ImageNet classifier's names are torch_ref's with one prefix swapped
(bts_core.backbones, the table torch_ref's training reads too); conversion/backbone.py applies it before these rules.
"""
import re
from dataclasses import dataclass
from typing import Callable, Optional, Union

from bts_core.backbones import normalise_torch_key   # legacy DenseNet names: one rule for both floors
from bts_core.spec import MODEL_PARTS


@dataclass(frozen=True)
class Rule:
    pattern: str                              # anchored regex on the torch module path
    target: Union[str, Callable]              # replacement template or function of the match
    why: str

    def apply(self, path):
        m = re.fullmatch(self.pattern, path)
        if m is None:
            return None
        return self.target(m) if callable(self.target) else m.expand(self.target)


# torch module path (after "encoder." / "decoder.") -> paddle module path, for the DenseNet encoders.
DENSENET_PATH_RULES = [
    Rule(r"base_model\.conv0", "base_model.conv1_func._conv", "paddle.vision fuses conv0/norm0/relu0"),
    Rule(r"base_model\.norm0", "base_model.conv1_func._batch_norm", "paddle.vision fuses conv0/norm0/relu0"),
    Rule(r"base_model\.denseblock(\d+)\.denselayer(\d+)\.(norm|conv)(\d)",
         lambda m: "base_model.db_conv_{b}.conv{b}_{l}.bn_ac_func{j}.{kind}".format(
             b=int(m[1]) + 1, l=m[2], j=m[4], kind="_batch_norm" if m[3] == "norm" else "_conv"),
         "paddle.vision numbers dense blocks from 2 and pairs each norm{j} with conv{j}"),
    Rule(r"base_model\.transition(\d+)\.(norm|conv)",
         lambda m: "base_model.tr_conv{t}_blk.conv_ac_func.{kind}".format(
             t=int(m[1]) + 1, kind="_batch_norm" if m[2] == "norm" else "_conv"),
         "paddle.vision numbers transitions from 2"),
    Rule(r"base_model\.norm5", "base_model.batch_norm", "paddle.vision's final BN (ReLU fused)"),
]
SAME_PATH = [Rule(r"(.+)", r"\1", "same module names in both frameworks")]
PATH_RULES = {"densenet": DENSENET_PATH_RULES, "resnet": SAME_PATH, "mobilenetv2": SAME_PATH}

# torch leaf -> paddle leaf; None drops the tensor.
LEAF_RULES = {
    "weight": ("weight", "same name"),
    "bias": ("bias", "same name"),
    "running_mean": ("_mean", "Paddle BN names its running mean _mean"),
    "running_var": ("_variance", "Paddle BN names its running variance _variance"),
    "num_batches_tracked": (None, "Paddle BN keeps no counter (BTS uses a fixed momentum, never the counter)"),
}


@dataclass
class Mapping:
    target: Optional[tuple]     # (part, paddle key) with part "encoder" | "decoder"; None = dropped
    why: str


def map_torch_key(key, family):
    """torch_ref state-dict key -> Mapping; raises KeyError when no rule applies."""
    key = normalise_torch_key(key)
    part, _, rest = key.partition(".")
    path, _, leaf = rest.rpartition(".")
    if part not in MODEL_PARTS or not path or leaf not in LEAF_RULES:
        raise KeyError(key)
    new_leaf, leaf_why = LEAF_RULES[leaf]
    if new_leaf is None:
        return Mapping(None, leaf_why)
    rules = PATH_RULES[family] if part == "encoder" else SAME_PATH
    for rule in rules:
        new_path = rule.apply(path)
        if new_path is not None:
            return Mapping((part, f"{new_path}.{new_leaf}"), f"{rule.why}; {leaf_why}")
    raise KeyError(key)

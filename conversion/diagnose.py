"""One line telling the user why weights do not fit an encoder, and which encoder they do fit.

Key sets are compared with every encoder's layout (built on torch's meta device / under Paddle's
LazyGuard, so this costs no weight memory); (name, shape) pairs tell resnet50 from resnext50.
"""
from bts_core.backbones import BACKBONES, to_backbone_key
from bts_core.spec import ENCODERS, check_encoder
from conversion.convert import PARTS, paddle_layout, torch_layout
from conversion.rules import map_torch_key, normalise_torch_key

# Below this share of matching (name, shape) pairs the weights fit no encoder: not a BTS checkpoint.
LOOKS_LIKE_BTS = 0.5


def torch_signature(state):
    return {(normalise_torch_key(k), tuple(v.shape)) for k, v in state.items()}


def paddle_signature(parts):
    return {(f"{part}:{k}", tuple(v.shape)) for part, state in parts.items() for k, v in state.items()}


def _torch_names(encoder):
    return {k: shape for k, (shape, _) in torch_layout(encoder).items()}


def _paddle_names(encoder, parts=PARTS):
    return {f"{part}:{k}": shape for (part, k), (shape, _) in paddle_layout(encoder, parts).items()}


def backbone_names(encoder):
    """{torchvision key: shape} of what BTS keeps of `encoder`'s ImageNet classifier (bts_core.backbones)."""
    return {to_backbone_key(k, encoder): shape for k, (shape, _) in torch_layout(encoder, ("encoder",)).items()}


def describe_backbone(signature):
    """The one line for a torchvision ImageNet classifier's state dict given where a BTS checkpoint belongs,
    or None when `signature` (torch_signature) is not one."""
    scores = encoder_scores(signature, backbone_names)
    best = max(scores, key=scores.get)
    if scores[best] < LOOKS_LIKE_BTS:
        return None
    return (f"a torchvision {BACKBONES[best].torchvision} ImageNet backbone ({scores[best]:.0%} of its names and "
            f"shapes), not a BTS checkpoint; convert it with conversion/backbone.py --to-paddle FILE --encoder {best} "
            f"--output DIR, or start training's encoder from it with encoder_weights")


def encoder_scores(signature, names_of):
    """{encoder: share of (name, shape) pairs in common} (Jaccard index of the two sets)."""
    scores = {}
    for encoder in ENCODERS:
        layout = set(names_of(encoder).items())
        scores[encoder] = len(signature & layout) / len(signature | layout)
    return scores


def _count(items, label):
    return f"{len(items)} {label}, e.g. {items[0]}" if items else None


def describe(report, signature, encoder, names_of, source_name, noun="checkpoint"):
    """The one-line reason a conversion `report` is not clean, naming keys as the user's input does."""
    scores = encoder_scores(signature, names_of)
    best = max(scores, key=scores.get)
    if scores[best] < LOOKS_LIKE_BTS:
        return (f"matches no BTS encoder (best: {best}, {scores[best]:.0%} of names and shapes); "
                f"{len(report.unmatched)} key(s) fit no rule, e.g. {(report.unmatched or ['-'])[0]}")
    if best != encoder and scores[best] > scores[encoder]:
        return (f"looks like a {best} {noun}, not {encoder} ({scores[best]:.0%} of names and shapes "
                f"match {best}, {scores[encoder]:.0%} match {encoder}); pass --encoder {best}")
    wrong_shape = {m.split(" ")[0] for m in report.shape_mismatches}   # "key [shape] -> target [shape]"
    missing = [name for name in map(source_name, report.missing) if name not in wrong_shape]
    parts = [_count(report.shape_mismatches, "shape mismatch(es)"),
             _count(missing, f"missing key(s) that {encoder} needs"),
             _count(report.unmatched, "unexpected key(s)"),
             _count(report.nonfinite, "tensor(s) with NaN/Inf")]
    return f"does not fit {encoder}: " + "; ".join(p for p in parts if p)


def describe_torch_source(report, state, encoder):
    """For torch -> paddle: missing Paddle keys are named by the torch key that should have filled them."""
    backbone = describe_backbone(torch_signature(state))
    if backbone is not None:
        return backbone
    family = check_encoder(encoder).family
    torch_key_of = {}
    for key in torch_layout(encoder):
        target = map_torch_key(key, family).target
        if target is not None:
            torch_key_of[f"{target[0]}:{target[1]}"] = key
    return describe(report, torch_signature(state), encoder, _torch_names,
                    lambda missing: torch_key_of.get(missing, missing))


def describe_paddle_source(report, parts, encoder):
    """For paddle -> torch: missing torch keys are named by the Paddle file and key that should fill them.
    `parts` may hold the encoder alone (a backbone): the encoders' layouts are compared over the parts given."""
    family = check_encoder(encoder).family

    def paddle_name(torch_key):
        target = map_torch_key(torch_key, family).target
        return f"{target[0]}:{target[1]}" if target else torch_key
    return describe(report, paddle_signature(parts), encoder, lambda e: _paddle_names(e, tuple(parts)), paddle_name)

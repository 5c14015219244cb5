"""torchvision ImageNet backbone <-> paddle_bts encoder (PaddleDepth's encoder.pdparams), so that Paddle training
starts from the same ImageNet numbers as official torch training (`models.densenet161(pretrained=True)`, ...).

    python conversion/backbone.py --to-paddle densenet161-8d451a50.pth --encoder densenet161_bts --output out/d161_imagenet
    python conversion/backbone.py --to-torch out/d161_imagenet --encoder densenet161_bts --output densenet161.pth

--to-paddle FILE: a torchvision classification checkpoint (a raw state dict, as torchvision publishes them;
DenseNet's legacy `norm.1` names too) -> DIR/encoder.pdparams (paddle_bts's encoder, PaddleDepth's names),
DIR/manifest.json and DIR/README.md, verified: paddle_bts's five skip features from the written file against
torchvision's network holding FILE, on a seeded input and a photograph. The ImageNet head BTS never builds
(DenseNet's and MobileNetV2's `classifier`) is left out, and said so; ResNets keep `fc`, as BTS does.
--to-torch DIR (or DIR/encoder.pdparams) -> FILE: torchvision's names and format (torch.save of a state dict),
BN counters from DIR/manifest.json (else 0), without the head. torch -> Paddle -> torch is bit-exact.
Training starts its encoder from either with the config key encoder_weights (torch: FILE; Paddle: DIR).
Names: bts_core.backbones (torchvision -> torch_ref: a prefix), then conversion/rules.py (torch_ref -> Paddle).
Outputs appear complete or not at all, and replace nothing without --force.
Exit codes: 0 done, 1 verification failed, 2 bad input/output.
"""
import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from bts_core.backbones import HEAD_WHY, backbone_of, normalise_torch_key, rename_backbone, to_backbone_key
from bts_core.cli import InputError, progress, refuse_replacing_source, run_command, staged_outputs
from bts_core.spec import DECODER_FILE, ENCODER_FILE, ENCODERS, check_encoder
from conversion.backbone_checks import backbone_card, run_backbone_verification
from conversion.convert import ConversionError, paddle_to_torch, torch_layout, torch_to_paddle
from conversion.diagnose import backbone_names, describe, describe_paddle_source, torch_signature
from conversion.manifest import (BACKBONE_FORMAT, MANIFEST, conversion_summary, file_entry, library_versions, now_utc,
                                 recorded_counters, restore_counters, write_manifest)
from conversion.model_card import print_verification
from conversion.rules import map_torch_key
from conversion.torch2paddle import parameter_count, raise_if_failed
from torch_ref.backbone import COUNTER, read_backbone_file

import paddle  # noqa: E402 (after conversion, which quiets paddle's import)
from paddle_bts.backbone import encoder_file  # noqa: E402
from paddle_bts.checkpoint import read_part  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    direction = parser.add_mutually_exclusive_group(required=True)
    direction.add_argument("--to-paddle", type=Path, metavar="FILE",
                           help="torchvision checkpoint (torch.save(model.state_dict()), as torchvision publishes them)")
    direction.add_argument("--to-torch", type=Path, metavar="DIR",
                           help=f"folder --to-paddle wrote (or its {ENCODER_FILE})")
    parser.add_argument("--encoder", choices=ENCODERS, required=True, metavar="NAME",
                        help=", ".join(f"{e} ({backbone_of(e).torchvision})" for e in ENCODERS))
    parser.add_argument("--output", type=Path, required=True, metavar="PATH",
                        help="--to-paddle: folder to create; --to-torch: file to create")
    parser.add_argument("--force", action="store_true", help="replace PATH (only after success)")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="--to-paddle: skip comparing the features with torchvision's network")
    args = parser.parse_args(argv)
    if args.to_torch is not None and not args.verify:
        parser.error("--no-verify applies to --to-paddle only")
    return args


# ---- the conversion, both ways -------------------------------------------------------------------

def _named(report, name):
    """`report` with its source keys given by `name` (torch_ref key -> torchvision key)."""
    def first_word(text):   # "key [shape] -> target [shape]"
        key, _, rest = text.partition(" ")
        return f"{name(key)} {rest}"
    return replace(report, mapped={name(k): v for k, v in report.mapped.items()},
                   dropped={name(k): v for k, v in report.dropped.items()},
                   unmatched=[name(k) for k in report.unmatched],
                   shape_mismatches=[first_word(s) for s in report.shape_mismatches],
                   nonfinite=[name(k) for k in report.nonfinite],
                   casts={name(k): v for k, v in report.casts.items()})


def backbone_to_paddle(state, encoder, progress=iter):
    """torchvision state dict -> ({paddle_bts encoder key: array}, report naming torchvision's keys)."""
    renamed, torchvision_name, head, outside = rename_backbone(state, encoder)
    parts, report = torch_to_paddle(renamed, encoder, progress, parts=("encoder",))
    report = _named(report, lambda key: torchvision_name.get(key, key))
    report.unmatched[:0] = outside
    report.dropped.update(dict.fromkeys(head, HEAD_WHY))
    return parts["encoder"], report


def describe_backbone_source(report, state, encoder):
    """The one-line reason torchvision `state` does not convert to `encoder`; missing keys by torchvision's names."""
    family = check_encoder(encoder).family
    torchvision_name = {}
    for key in torch_layout(encoder, ("encoder",)):
        target = map_torch_key(key, family).target
        if target is not None:
            torchvision_name[f"{target[0]}:{target[1]}"] = to_backbone_key(key, encoder)
    return describe(report, torch_signature(state), encoder, backbone_names,
                    lambda missing: torchvision_name.get(missing, missing), noun="torchvision backbone")


def paddle_to_backbone(state, encoder, counters, path, progress=iter):
    """paddle_bts encoder state (read from `path`) -> (torchvision-format state dict, report); BN counters from
    `counters` {torchvision key: value}, the rest 0 (Paddle keeps none)."""
    torch_state, report = paddle_to_torch({"encoder": state}, encoder, progress)
    if report.problems():
        raise ConversionError(f"{path}: {describe_paddle_source(report, {'encoder': state}, encoder)}")
    out = {to_backbone_key(k, encoder): v for k, v in torch_state.items()}
    restore_counters(out, counters, known=out, folder=path.parent, encoder=encoder)
    return out, report


# ---- the two commands ----------------------------------------------------------------------------

def to_paddle(args):
    output, source = args.output.absolute(), args.to_paddle.absolute()
    refuse_replacing_source(args.output, source, args.force, "source file")
    with staged_outputs([output], args.force, folder=True) as (staging,):
        start = time.perf_counter()
        state = read_backbone_file(source)
        arrays, report = backbone_to_paddle(state, args.encoder, lambda items: progress(
            items, total=len(state), desc="convert", unit="tensor"))
        if report.problems():
            raise ConversionError(f"{args.to_paddle}: {describe_backbone_source(report, state, args.encoder)}")
        paddle.save(arrays, str(staging / ENCODER_FILE))
        named = {normalise_torch_key(k): v for k, v in state.items()}
        counters = {k: named[k].tolist() for k in report.dropped if k.endswith(COUNTER)}
        manifest = {
            "format": BACKBONE_FORMAT, "created": now_utc(), "tool": "conversion/backbone.py --to-paddle",
            "source": {"path": str(source), **file_entry(source)}, "encoder": args.encoder,
            "torchvision": backbone_of(args.encoder).torchvision,
            "parameters": {"count": parameter_count({"encoder": arrays})},
            "files": {ENCODER_FILE: file_entry(staging / ENCODER_FILE)}, "versions": library_versions(),
            "conversion": {**conversion_summary(report, counters), "seconds": round(time.perf_counter() - start, 2)},
            "verification": run_backbone_verification(source, staging, args.encoder) if args.verify
            else {"skipped": "--no-verify"},
        }
        (staging / "README.md").write_text(backbone_card(manifest, manifest["files"]), encoding="utf-8")
        manifest["files"]["README.md"] = file_entry(staging / "README.md")
        write_manifest(staging, manifest)
        print_summary(manifest)
        raise_if_failed(manifest["verification"], args.output)
    print(f"wrote {args.output}/ ({', '.join(manifest['files'])}, {MANIFEST}); train from it: encoder_weights: "
          f"{args.output} (paddle_bts.train), encoder_weights: {args.to_paddle} (torch_ref.train)")


def print_summary(manifest):
    conv = manifest["conversion"]
    print(f"converted torchvision {manifest['torchvision']} -> {manifest['encoder']} encoder: {conv['mapped']} tensors "
          f"mapped, {conv['dropped']} dropped ({'; '.join(conv['dropped_why']) or 'none'}), "
          f"{len(conv['transforms'])} transposed, {manifest['parameters']['count']:,} parameters, {conv['seconds']:.1f} s")
    verification = manifest["verification"]
    print_verification(verification, "paddle_bts's encoder from the written file vs torchvision's network, skip "
                                     f"features, CPU float32; {verification.get('criterion')}")


def to_torch(args):
    source = args.to_torch
    if source.is_dir() and (source / DECODER_FILE).is_file():
        raise InputError(f"{source} holds a whole BTS model ({ENCODER_FILE}, {DECODER_FILE}); convert it with "
                         f"conversion/paddle2torch.py, or give {source / ENCODER_FILE} to convert its encoder alone")
    path = Path(encoder_file(source))
    with staged_outputs([args.output], args.force) as (staging,):
        state, head = read_part(str(path), "encoder")
        counters = recorded_counters(path.parent, args.encoder, backbone=True)
        out, report = paddle_to_backbone(state, args.encoder, counters, path, lambda items: progress(
            items, total=len(state), desc="convert", unit="tensor"))
        torch.save(out, staging)
    restored = f"{len(counters)} BN counters restored from {MANIFEST}" if counters else \
        f"{len(report.dropped)} BN counters set to 0 (no {MANIFEST} record)"
    backbone = backbone_of(args.encoder)
    left_out = f"; {len(head)} paddle.vision head tensors left out" if head else ""
    without = f", without torchvision's `{backbone.head}` (BTS never builds it)" if backbone.head else ""
    print(f"converted {args.encoder} encoder -> torchvision {backbone.torchvision}{without}: {len(out)} tensors, "
          f"{len(report.transforms)} transposed, {restored}{left_out}; wrote {args.output}")


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_command(to_paddle if args.to_paddle is not None else to_torch, args)


if __name__ == "__main__":
    sys.exit(main())

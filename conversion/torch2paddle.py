"""Official BTS PyTorch checkpoint -> verified PaddleDepth weight folder.

    python conversion/torch2paddle.py --checkpoint model --encoder densenet161_bts --output out/d161
    python conversion/torch2paddle.py          # no arguments: converts a seeded densenet161_bts (a demo)

Writes DIR/encoder.pdparams, DIR/depth.pdparams (PaddleDepth's layout), DIR/model.safetensors (the same
weights, torch_ref's names, no pickle), DIR/manifest.json and DIR/README.md; with --with-optimizer also
DIR/adam.pdopt (the checkpoint's AdamW state, for paddle_bts.train to resume from); with
--export-inference HxW also DIR/inference.json + inference.pdiparams (a Paddle Inference program for HxW
images, any batch size, exported from the written weights). All go into a
temporary folder next to DIR that becomes DIR only once everything, verification included, has succeeded.
Exit codes: 0 done, 1 verification failed, 2 bad input/output.
"""
import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

import torch_ref
from bts_core.cli import (InputError, VerificationFailed, positive, progress, refuse_existing,
                          refuse_replacing_source, run_command, staged_outputs)
from bts_core.spec import DATASETS, DEFAULT_MAX_DEPTH, ENCODERS, check_encoder
from conversion import optimizer_state
from conversion.convert import ConversionError, torch_to_paddle
from conversion.diagnose import describe_torch_source
from conversion.export import export_inference, parse_size
from conversion.manifest import (FORMAT, conversion_summary, file_entry, library_versions, now_utc,
                                 write_manifest)
from conversion.model_card import max_depth_text, model_card, print_verification
from conversion.paddle_files import write_parts
from conversion.safetensors_weights import SAFETENSORS_FILE, write_safetensors
from conversion.seeded import save_seeded_checkpoint
from conversion.verify import CRITERION, verification_entry, verify

# After `conversion`, whose __init__ hides paddle's import-time ccache warning (bts_core.cli.quiet_paddle_import).
import paddle  # noqa: E402 (after quiet_paddle_import)
import paddle_bts  # noqa: E402
from paddle_bts.optimizer_state import OPTIMIZER_FILE  # noqa: E402

DEFAULT_ENCODER = "densenet161_bts"   # the flagship (official README's best KITTI model)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Without --checkpoint: a seeded torch_ref model (default densenet161_bts) is saved in the "
               "official format to a temporary folder and converted to out/<encoder> (a demo).")
    parser.add_argument("--checkpoint", type=Path, metavar="PATH",
                        help="official checkpoint (dict with 'model', 'module.' keys) or a bare state dict")
    parser.add_argument("--encoder", choices=ENCODERS, metavar="NAME",
                        help=f"{', '.join(ENCODERS)}; required with --checkpoint (demo: {DEFAULT_ENCODER})")
    parser.add_argument("--output", type=Path, metavar="DIR", help="folder to create (demo: out/<encoder>)")
    parser.add_argument("--max-depth", type=positive, metavar="METRES",
                        help="the model's max_depth (default: the dataset's official value, "
                             + ", ".join(f"{d} {DEFAULT_MAX_DEPTH[d]:g}" for d in DATASETS) + ")")
    parser.add_argument("--dataset", choices=DATASETS, default="kitti",
                        help="kitti scales the final depth by focal / 715.0873 (default kitti)")
    parser.add_argument("--force", action="store_true", help="replace DIR (only after success)")
    parser.add_argument("--export-inference", metavar="HxW",
                        help="also export a Paddle Inference program for HxW input, any batch size, e.g. 352x704 "
                             "(default: off)")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip comparing torch_ref and paddle_bts outputs")
    parser.add_argument("--with-optimizer", action="store_true",
                        help=f"also convert the AdamW state (moments, step, LR position) into DIR/{OPTIMIZER_FILE}, "
                             "from which paddle_bts.train resumes (load_weights_folder: DIR)")
    args = parser.parse_args(argv)
    if args.checkpoint is not None and (args.encoder is None or args.output is None):
        parser.error("--checkpoint needs --encoder and --output")
    if args.with_optimizer and args.checkpoint is None:
        parser.error("--with-optimizer needs --checkpoint (the demo model has no optimizer state)")
    args.max_depth_source = "given" if args.max_depth is not None else "dataset default"
    if args.max_depth is None:
        args.max_depth = DEFAULT_MAX_DEPTH[args.dataset]
    return args


def parameter_count(parts):
    """Learnable parameters as torch counts them: Paddle's BN running statistics are not parameters."""
    return sum(a.size for state in parts.values() for k, a in state.items()
               if not k.endswith(("._mean", "._variance")))


def export_size(args):
    """(H, W) of --export-inference, or None; InputError (exit 2) for a bad value, before any work."""
    if args.export_inference is None:
        return None
    try:
        return parse_size(args.export_inference)
    except ValueError as e:
        raise InputError(str(e)) from None


def export_from_files(folder, args, size):
    """Exports paddle_bts loaded strictly from the weight files just written: what ships is what is exported."""
    with paddle.LazyGuard():     # no random init for weights that load_weights replaces
        model = paddle_bts.BtsModel(args.encoder, args.max_depth, args.dataset)
    paddle_bts.load_weights(model, str(folder))
    return export_inference(model, folder, *size)


def run_verification(state, folder, args):
    return verification_entry("verify (torch fp32/fp64, paddle)",
                              lambda: verify(state, folder, args.encoder, args.max_depth, args.dataset))


def read_and_convert(args):
    """(source checkpoint, {encoder, decoder} numpy states, report); raises ConversionError unless clean."""
    checkpoint = torch_ref.read_checkpoint(str(args.checkpoint))
    state = checkpoint.model
    parts, report = torch_to_paddle(state, args.encoder, lambda items: progress(
        items, total=len(state), desc="convert", unit="tensor"))
    if report.problems():
        raise ConversionError(f"{args.checkpoint}: {describe_torch_source(report, state, args.encoder)}")
    if report.casts:
        dtypes = ", ".join(sorted(set(report.casts.values())))
        print(f"cast {len(report.casts)} tensor(s) from {dtypes} to float32, e.g. {next(iter(report.casts))}")
    return checkpoint, parts, report


def write_optimizer_state(checkpoint, folder, args):
    """DIR/adam.pdopt from the checkpoint's AdamW state (float32, as the weights); returns its summary."""
    state, summary = optimizer_state.torch_to_paddle(checkpoint, args.encoder, args.checkpoint)
    casts = {k for k, v in state.items() if hasattr(v, "dtype") and v.dtype != np.float32}
    paddle.save({k: v.astype(np.float32) if k in casts else v for k, v in state.items()}, str(folder / OPTIMIZER_FILE))
    return {**summary, "cast to float32": len(casts)}


def convert_checkpoint(args, source_note=None):
    """The whole conversion; raises the errors cli.run_command turns into exit codes."""
    output, checkpoint = args.output.absolute(), args.checkpoint.absolute()
    size = export_size(args)
    refuse_replacing_source(args.output, checkpoint, args.force)
    with staged_outputs([output], args.force, folder=True) as (staging,), ThreadPoolExecutor(1) as hasher:
        start = time.perf_counter()
        source_entry = hasher.submit(file_entry, checkpoint)   # hashlib releases the GIL: overlaps the reading
        source_checkpoint, parts, report = read_and_convert(args)
        state = source_checkpoint.model
        entries = write_parts(parts, staging, hasher)
        if args.with_optimizer:
            optimizer_summary = write_optimizer_state(source_checkpoint, staging, args)
            entries[OPTIMIZER_FILE] = hasher.submit(file_entry, staging / OPTIMIZER_FILE)
        write_safetensors(state, staging / SAFETENSORS_FILE,   # pickle-free, torch_ref's names, float32
                          {"encoder": args.encoder, "max_depth": args.max_depth, "dataset": args.dataset})
        entries[SAFETENSORS_FILE] = hasher.submit(file_entry, staging / SAFETENSORS_FILE)
        files = {name: entry.result() for name, entry in entries.items()}
        source = {"path": str(checkpoint), **source_entry.result(), **({"note": source_note} if source_note else {})}
        manifest = {
            "format": FORMAT, "created": now_utc(), "tool": "conversion/torch2paddle.py", "source": source,
            "encoder": args.encoder, "max_depth": args.max_depth, "max_depth_source": args.max_depth_source,
            "dataset": args.dataset,
            "parameters": {"count": parameter_count(parts),
                           "official_count": check_encoder(args.encoder).official_params},
            "files": files, "versions": library_versions(),
            "conversion": {**conversion_summary(report, {k: state[k].tolist() for k in report.dropped}),
                           "seconds": round(time.perf_counter() - start, 2)},
            "verification": run_verification(state, staging, args) if args.verify else {"skipped": "--no-verify"},
        }
        if args.with_optimizer:
            manifest["optimizer"] = optimizer_summary
        if size is not None:
            manifest["inference"] = export_from_files(staging, args, size)
            files.update({name: {"bytes": manifest["inference"]["bytes"][name], "sha256": digest}
                          for name, digest in manifest["inference"]["sha256"].items()})
        (staging / "README.md").write_text(model_card(manifest, files), encoding="utf-8")
        manifest["files"]["README.md"] = file_entry(staging / "README.md")
        write_manifest(staging, manifest)
        print_summary(manifest)
        raise_if_failed(manifest["verification"], args.output)
    print(f"wrote {args.output}/ ({', '.join(manifest['files'])}, manifest.json)")
    return manifest


def raise_if_failed(verification, output):
    failed = [c for c in verification.get("checks", []) if not c["passed"]]
    if failed:
        worst = max(failed, key=lambda c: c["worst"])
        level = max(worst["levels"], key=lambda q: worst["levels"][q][0] / worst["levels"][q][2])
        diff, _, tolerance = worst["levels"][level]
        raise VerificationFailed(
            f"{len(failed)} output(s) differ beyond tolerance, e.g. {worst['output']} on the {worst['input']} "
            f"input: {level} |paddle - torch| {diff:.3g} > {tolerance:.3g}; nothing written to {output}")


def print_summary(manifest):
    conv, params = manifest["conversion"], manifest["parameters"]
    print(f"converted {manifest['encoder']}: {conv['mapped']} tensors mapped, {conv['dropped']} dropped "
          f"({'; '.join(conv['dropped_why']) or 'none'}), {len(conv['transforms'])} transposed, "
          f"{params['count']:,} parameters (official: {params['official_count']:,}), {conv['seconds']:.1f} s")
    print(f"max_depth {max_depth_text(manifest)}, dataset {manifest['dataset']}")
    if "optimizer" in manifest:
        opt = manifest["optimizer"]
        print(f"optimizer state -> {OPTIMIZER_FILE}: {opt['entries']} torch AdamW entries for {opt['parameters']} optimised "
              f"parameters ({opt['fresh (no torch state yet)']} without state yet, started fresh), global step "
              f"{opt['global_step']}; eps {opt['groups'][0].get('eps')}, weight decay "
              f"{[g.get('weight_decay') for g in opt['groups']]} (set them in paddle_bts.train's config)")
    print_verification(manifest["verification"], f"paddle_bts from the written files vs torch_ref, CPU float32; {CRITERION}")


def run_default(args):
    """No --checkpoint: a seeded torch_ref model saved in the official format, converted, verified."""
    args.encoder = args.encoder or DEFAULT_ENCODER
    args.output = args.output or Path("out") / args.encoder
    export_size(args)
    refuse_existing(args.output, args.force)   # before minutes of work; checked again at the end
    with tempfile.TemporaryDirectory(prefix="bts-seeded-") as tmp:
        args.checkpoint = Path(tmp) / "model"
        print(f"no --checkpoint given: converting a seeded {args.encoder} (random weights, batch-norm statistics "
              f"of a seeded batch) saved in the official format as {args.checkpoint}")
        save_seeded_checkpoint(args.encoder, args.checkpoint, max_depth=args.max_depth, dataset=args.dataset)
        convert_checkpoint(args, source_note="seeded demo model (torch_ref.seeded_reference_model, seed 0), "
                                             "deleted after conversion")
    print(f"re-run: python conversion/torch2paddle.py --force  (replaces {args.output}); your own weights: "
          f"--checkpoint PATH --encoder NAME --output DIR")


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_command(run_default if args.checkpoint is None else convert_checkpoint, args)


if __name__ == "__main__":
    sys.exit(main())

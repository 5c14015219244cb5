"""A deployable form of paddle_bts: paddle.jit.save for one H x W and any batch size, run by Paddle Inference.

Writes FOLDER/inference.json (Paddle 3.x's PIR program; a 2.x Paddle would write inference.pdmodel) and
FOLDER/inference.pdiparams; paddle_bts.inference.InferenceModel runs them. The `deploy` alignment stage
compares what Paddle Inference computes from these files with torch_ref.
"""
import re
from pathlib import Path

import paddle
from paddle.static import InputSpec

from bts_core.spec import INPUT_MULTIPLE, OUTPUT_NAMES
from conversion.manifest import file_entry
from paddle_bts.bts import upconvs_transposed
from paddle_bts.inference import PARAMS_SUFFIX, PREFIX, PROGRAM_SUFFIXES


def parse_size(text):
    """'352x704' -> (352, 704); ValueError with a one-line reason otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text or "")
    if not match:
        raise ValueError(f"--export-inference {text!r}: expected HEIGHTxWIDTH, e.g. 352x704")
    height, width = int(match[1]), int(match[2])
    if not (height > 0 and width > 0 and height % INPUT_MULTIPLE == 0 and width % INPUT_MULTIPLE == 0):
        raise ValueError(f"--export-inference {text}: height and width must be positive multiples of "
                         f"{INPUT_MULTIPLE} (BTS downsamples by {INPUT_MULTIPLE}), e.g. 352x704 or 352x1216")
    return height, width


def input_spec(height, width):
    """The forward's inputs: a batch of images of one size, and one focal length per image."""
    return [InputSpec([None, 3, height, width], "float32", "image"), InputSpec([None], "float32", "focal")]


def export_inference(paddle_model, folder, height, width):
    """Saves `paddle_model` (a paddle_bts.BtsModel) for Paddle Inference into `folder`.

    Returns {"files": [names], "sha256": {name: hex}, "bytes": {name: n}, "input_spec": [...],
    "outputs": [...], ...} for the manifest. The program is traced in eval mode (BN running statistics)
    by dy2static's AST mode; the model's own mode is restored afterwards. KITTI programs take `focal`
    (final depth *= focal / 715.0873); NYU programs never read it, and Paddle refuses to keep an input
    the graph does not use, so theirs take the image only.
    """
    height, width = parse_size(f"{height}x{width}")
    folder = Path(folder)
    with_focal = paddle_model.decoder.dataset == "kitti"
    spec = input_spec(height, width)
    kept = spec if with_focal else spec[:1]
    was_training = paddle_model.training
    paddle_model.eval()
    try:
        # The bound forward, not the layer: to_static(layer) would replace the caller's forward for good.
        # full_graph: dy2static's AST mode, which traces the encoder's children loop and the LPG as Python.
        with upconvs_transposed(paddle_model):
            forward = paddle.jit.to_static(paddle_model.forward, input_spec=spec, full_graph=True)
            paddle.jit.save(forward, str(folder / PREFIX), input_spec=spec,
                            input_names_after_prune=[s.name for s in kept])
    finally:
        if was_training:
            paddle_model.train()
    names = [p.name for suffix in (*PROGRAM_SUFFIXES, PARAMS_SUFFIX)
             for p in [folder / (PREFIX + suffix)] if p.is_file()]
    if not any(n.endswith(PROGRAM_SUFFIXES) for n in names) or PREFIX + PARAMS_SUFFIX not in names:
        raise RuntimeError(f"paddle.jit.save wrote {sorted(p.name for p in folder.glob(PREFIX + '*'))} "
                           f"into {folder}; expected {PREFIX}.json or .pdmodel and {PREFIX}{PARAMS_SUFFIX}")
    entries = {name: file_entry(folder / name) for name in names}
    return {
        "files": names,
        "sha256": {name: e["sha256"] for name, e in entries.items()},
        "bytes": {name: e["bytes"] for name, e in entries.items()},
        "input_spec": [{"name": s.name, "shape": [None if d == -1 else d for d in s.shape], "dtype": "float32"}
                       for s in kept],
        "outputs": list(OUTPUT_NAMES),
        "program": "PIR (json)" if any(n.endswith(".json") for n in names) else "legacy ProgramDesc (pdmodel)",
        "paddle": paddle.__version__,
        "run_with": "paddle_bts.inference.InferenceModel(folder)",
    }

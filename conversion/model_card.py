"""README.md of a converted folder: a model card whose numbers all come from the manifest."""
import pandas as pd

from bts_core.spec import IMAGENET_MEAN, IMAGENET_STD


def print_verification(verification, compared):
    """The verification headline (`compared`: what was checked against what) and its parity table, where the
    manifest's verification ran (it holds `checks`)."""
    if "checks" in verification:
        print(f"verification ({verification['seconds']:.1f} s): {compared}")
        print(markdown(parity_table(verification["checks"])))


def parity_table(checks):
    """One row per input and output; numbers as recorded (checks are dicts or OutputCheck)."""
    rows = [c if isinstance(c, dict) else vars(c) for c in checks]
    return pd.DataFrame({
        "input": [r["input"] for r in rows],
        "output": [r["output"] for r in rows],
        "shape": ["x".join(map(str, r["shape"])) for r in rows],
        "max abs diff": [f"{r['max_abs_diff']:.2e}" for r in rows],
        "max rel (to max abs ref)": [f"{r['max_rel']:.2e}" for r in rows],
        "median abs diff": [f"{r['levels']['median'][0]:.2e}" for r in rows],
        "fp32 noise (max)": [f"{r['fp32_noise']:.2e}" for r in rows],
        "tolerance (max)": [f"{r['tolerance']:.2e}" for r in rows],
        "worst diff / tolerance": [f"{r['worst']:.2f}" for r in rows],
        "verdict": ["pass" if r["passed"] else "FAIL" for r in rows],
    })


def markdown(frame):
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def files_table(files):
    return pd.DataFrame({"file": list(files), "bytes": [f"{e['bytes']:,}" for e in files.values()],
                         "sha256": [f"`{e['sha256']}`" for e in files.values()]})


def parity_section(verification, compared="torch_ref built from the source weights against paddle_bts loaded from "
                   "these files", unverified=" Run conversion/publish.py to check it."):
    if not verification.get("checks"):
        return f"Not verified ({verification.get('skipped', 'no figures')}).{unverified}\n"
    inputs = "\n".join(f"- `{name}`: {text}" for name, text in verification["inputs"].items())
    return (f"{compared}, eval mode, CPU float32. Inputs:\n{inputs}\n\nCriterion: {verification['criterion']}.\n\n"
            f"{markdown(parity_table(verification['checks']))}\n\n"
            f"Verdict: **{'pass' if verification['passed'] else 'FAIL'}** ({verification['seconds']:.1f} s).\n")


def _deploy_section(inference):
    """The exported Paddle Inference program, if torch2paddle.py was given --export-inference."""
    if not inference:
        return ""
    inputs = ", ".join(f"`{i['name']}` {' x '.join('N' if d is None else str(d) for d in i['shape'])}"
                       for i in inference["input_spec"])
    focal = "" if len(inference["input_spec"]) > 1 else " (an NYU program never reads focal: it takes the image only)"
    return f"""## Paddle Inference

{' + '.join(f'`{n}`' for n in inference['files'])}: {inference['program']} from paddle {inference['paddle']},
traced from these weights for inputs {inputs} (N: any batch size){focal}; outputs as above.

```python
from paddle_bts.inference import InferenceModel
outputs = InferenceModel("<this folder>")(image, focal)   # CPU with oneDNN; device="gpu" for a GPU
```

"""


def max_depth_text(manifest):
    """'10 m (nyu default)' or '12 m (given with --max-depth)'; just '80 m' where the manifest predates
    'max_depth_source'."""
    source = {"dataset default": f"{manifest['dataset']} default",
              "given": "given with --max-depth"}.get(manifest.get("max_depth_source"))
    return f"{manifest['max_depth']:g} m" + (f" ({source})" if source else "")


def model_card(manifest, weight_files):
    m, conv, source = manifest, manifest["conversion"], manifest["source"]
    focal = " (final depth scaled by focal / 715.0873)" if m["dataset"] == "kitti" else ""
    note = f"; {source['note']}" if source.get("note") else ""
    dropped = "; ".join(f"{n} ({why})" for why, n in conv["dropped_why"].items()) or "none"
    casts = ", ".join(sorted(set(conv["casts"].values())))
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v and k != "platform")
    return f"""# BTS {m['encoder']}: PaddlePaddle weights

BTS ("From Big to Small: Multi-scale Local Planar Guidance for Monocular Depth Estimation", Lee et al.,
arXiv 1907.10326) with the `{m['encoder']}` encoder, converted from the official PyTorch format to the
PaddleDepth layout by `conversion/torch2paddle.py` on {m['created']}.
max_depth {max_depth_text(m)}, dataset `{m['dataset']}`{focal};
{m['parameters']['count']:,} parameters (official README: {m['parameters']['official_count']:,}).

Source: `{source['path']}` ({source['bytes']:,} bytes, sha256 `{source['sha256']}`){note}.

## Files

{markdown(files_table(weight_files))}

`encoder.pdparams` holds the encoder (`base_model.*`, paddle.vision names) and `depth.pdparams` the
decoder (`bts`, official names): PaddleDepth's layout. `model.safetensors` holds the same weights under
torch_ref's (official) names in float32, without pickle, for either framework (see Use).
`manifest.json` records every hash and figure here.

## Use

```python
import paddle_bts
model = paddle_bts.BtsModel("{m['encoder']}", max_depth={m['max_depth']:g}, dataset="{m['dataset']}")
paddle_bts.load_weights(model, "<this folder>").eval()   # strict: every key, every shape
depth_8x8, depth_4x4, depth_2x2, reduc1x1, final_depth = model(image, focal)
```

`image`: N x 3 x H x W RGB in [0, 1], ImageNet-normalised (mean {IMAGENET_MEAN}, std
{IMAGENET_STD}), H and W multiples of 32; `focal`: N focal lengths in pixels. PaddleDepth:
`set_state_dict(paddle.load(...))` on its encoder and depth decoder (it only warns on missing keys).

From `model.safetensors` (nothing unpickled), into either framework, strictly and bit for bit:

```python
import torch_ref
from conversion.safetensors_weights import load_paddle, load_torch
load_paddle(model, "<this folder>/model.safetensors").eval()
torch_model = torch_ref.BtsModel("{m['encoder']}", max_depth={m['max_depth']:g}, dataset="{m['dataset']}")
load_torch(torch_model, "<this folder>/model.safetensors").eval()
```

{_deploy_section(m.get('inference'))}## Parity with the source

{parity_section(m['verification'])}
## Conversion

{conv['mapped']} tensors mapped, dropped: {dropped}; transposed: {len(conv['transforms'])};
cast to float32: {len(conv['casts'])}{' from ' + casts if casts else ''}.
BN counters (`num_batches_tracked`) are kept in manifest.json so that `conversion/paddle2torch.py`
restores the source checkpoint bit for bit.

Versions: {versions}.
"""

"""Does a converted ImageNet backbone compute what torchvision's network computes? And its model card.

torch: torch_ref's encoder (torchvision's network itself: `densenet161().features`, `resnet50()`, ...)
loaded from the source file by torch_ref.train's own loader; Paddle: paddle_bts's encoder loaded from the
written encoder.pdparams by paddle_bts.train's own loader. So a pass also says both training commands start
from the same numbers. The five skip features, eval mode, CPU float32, on verify.py's two inputs, judged by
verify.py's criterion (torch's own fp32 noise, measured in the run). Basis for features (CPU, AMD EPYC):
|paddle - torch32| / fp32 noise at the same quantile <= 1.58 over 140 features (7 encoders x 5 features x 2 inputs
x conversion.seeded's backbones with calibrated and with random BN statistics); worst difference / tolerance
0.33 (mobilenetv2), so the factor 4 leaves a margin of 3.
"""
import paddle
import torch

import paddle_bts
import torch_ref
from conversion.model_card import files_table, markdown, parity_section
from conversion.verify import check_outputs, reference_runs, verification_entry, verification_inputs
from paddle_bts.backbone import load_encoder_weights
from torch_ref.backbone import load_backbone
from torch_ref.encoders import ENCODER_SPECS


COMPARED = ("torchvision's network holding the source file (as torch_ref.train loads it) against paddle_bts's encoder "
            "from `encoder.pdparams` (as paddle_bts.train loads it): the five skip features")


def feature_names(encoder):
    """torch_ref's tap names; DenseNet's last as relu(norm5): paddle.vision fuses that ReLU into its last BN
    and BTS's decoder applies it anyway, so both sides are compared after it."""
    taps = list(ENCODER_SPECS[encoder].taps)
    if encoder.startswith("densenet"):
        taps[-1] = f"relu({taps[-1]})"
    return taps


def _relu_last(features, encoder, relu):
    return features[:-1] + [relu(features[-1])] if encoder.startswith("densenet") else features


def verify_backbone(source, folder, encoder):
    """[OutputCheck] per input and skip feature: torchvision's network holding `source` against paddle_bts's
    encoder from `folder`."""
    inputs = verification_inputs()
    model = torch_ref.BtsModel(encoder)
    load_backbone(model, source)
    reference = reference_runs(model, inputs, lambda image, _: _relu_last(model.encoder(image), encoder, torch.relu))
    with paddle.LazyGuard():     # the decoder is never run: no weights for it
        twin = paddle_bts.BtsModel(encoder)
    load_encoder_weights(twin, folder)
    twin.eval()
    with paddle.no_grad():
        converted = {inp.name: [f.numpy() for f in _relu_last(twin.encoder(paddle.to_tensor(inp.image)), encoder,
                                                               paddle.nn.functional.relu)] for inp in inputs}
    return check_outputs(inputs, feature_names(encoder), converted, reference)


def run_backbone_verification(source, folder, encoder):
    """The manifest's "verification" entry."""
    return verification_entry("verify features (torch fp32/fp64, paddle)",
                              lambda: verify_backbone(source, folder, encoder))


def backbone_card(manifest, files):
    """README.md of a converted backbone folder; every number from the manifest."""
    m, conv, source = manifest, manifest["conversion"], manifest["source"]
    dropped = "; ".join(f"{n} ({why})" for why, n in conv["dropped_why"].items()) or "none"
    return f"""# torchvision {m['torchvision']} ImageNet weights as the BTS {m['encoder']} encoder, for PaddlePaddle

torchvision's `{m['torchvision']}` classifier converted by `conversion/backbone.py --to-paddle` on {m['created']}
to paddle_bts's `{m['encoder']}` encoder in PaddleDepth's layout: the ImageNet numbers official BTS training
starts its encoder from (`models.{m['torchvision']}(pretrained=True)`); {m['parameters']['count']:,} parameters.

Source: `{source['path']}` ({source['bytes']:,} bytes, sha256 `{source['sha256']}`).

## Files

{markdown(files_table(files))}

`encoder.pdparams` holds the encoder alone (`base_model.*`, paddle.vision names); BTS trains its decoder from
the official Xavier start. `manifest.json` records every hash and figure here.

## Use

Both training commands then start from the same ImageNet numbers (config key `encoder_weights`):

```bash
python -m torch_ref.train  --config CONFIG -o encoder={m['encoder']} -o encoder_weights={source['path']}
python -m paddle_bts.train --config CONFIG -o encoder={m['encoder']} -o encoder_weights=<this folder>
```

Back to torchvision's format: `python conversion/backbone.py --to-torch <this folder> --encoder {m['encoder']}
--output FILE`.

## Parity with the source

{parity_section(m['verification'], COMPARED, "")}
## Conversion

{conv['mapped']} tensors mapped, dropped: {dropped}; transposed: {len(conv['transforms'])};
cast to float32: {len(conv['casts'])}. BN counters (`num_batches_tracked`) are kept in manifest.json so that
`--to-torch` restores them.
"""

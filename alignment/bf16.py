"""What bf16 deployment costs in accuracy, measured on a trained network (the `deploy` stage's bf16 case).

The network is torch_ref's trained stand-in (torch_ref.stand_in: mobilenetv2 trained with the official recipe
on synthetic KITTI frames, whole 64 x 160 frames), converted to Paddle, exported, and run on held-out frames:
- torch fp32: the reference;
- Paddle Inference fp32 (oneDNN): the deployment as shipped;
- Paddle Inference bf16 (oneDNN, where the CPU has bf16): the option measured here;
- torch bf16 (CPU autocast: bf16 convolutions and matrix products, fp32 elsewhere): what rounding to bf16
  costs this network in torch's own hands, the yardstick the Paddle figure is read against.
Each gets the official metrics (Garg crop, 1e-3..80 m) and its final-depth error against torch fp32 as a
distribution in metres (median, 90th, 99th percentile, max over the scored pixels).
"""
import numpy as np
import torch

import torch_ref
from bts_core.spec import METRIC_NAMES
from bts_data import BtsSamples
from conversion.export import export_inference
from paddle_bts.inference import InferenceModel
from torch_ref import evaluate as torch_eval
from torch_ref.data import make_loader
from torch_ref.metrics import eval_mask
from torch_ref.stand_in import ENCODER, FRAME, QUICK_EPOCHS, train_stand_in, write_held_out_tree

from alignment.twins import paddle_twin_of

PERCENTILES = (50, 90, 99, 100)


def error_distribution(reference, other, masks):
    """|other - reference| in metres over the scored pixels of every image: {p50, p90, p99, max}."""
    d = np.concatenate([np.abs(o - r)[m] for r, o, m in zip(reference, other, masks)])
    return {("max" if q == 100 else f"p{q}"): float(np.percentile(d, q)) for q in PERCENTILES}


def run_bf16_effect(folder, paddle_bf16=True):
    """Trains the stand-in under `folder`, runs the four variants on held-out frames; returns
    {"metrics": {variant: {metric: value}}, "errors": {variant: distribution}, "depths": {variant: N x H x W}}.
    paddle_bf16=False leaves Paddle's bf16 out (a CPU without bf16 measures the torch yardstick only)."""
    stand_in = train_stand_in(folder / "stand_in", num_epochs=QUICK_EPOCHS)
    torch_model = torch_ref.load_official_checkpoint(torch_ref.build_model(ENCODER, 80.0, "kitti"),
                                                     str(stand_in.checkpoint)).eval()
    export_inference(paddle_twin_of(torch_model, ENCODER, "kitti"), folder / "program", *FRAME)
    runners = {"paddle inference fp32": InferenceModel(folder / "program")}
    if paddle_bf16:
        runners["paddle inference bf16"] = InferenceModel(folder / "program", precision="bf16")
    samples = BtsSamples(write_held_out_tree(folder / "held_out").config("test", do_kb_crop=False))
    depths = {name: [] for name in ["torch fp32", "torch bf16 (autocast)", *runners]}
    with torch.no_grad():
        for batch in make_loader(samples, 1, shuffle=False, drop_last=False):
            image, focal = batch["image"], batch["focal"]
            depths["torch fp32"].append(torch_model(image, focal)[-1][0, 0].numpy())
            with torch.autocast("cpu", dtype=torch.bfloat16):
                depths["torch bf16 (autocast)"].append(torch_model(image, focal)[-1][0, 0].float().numpy())
            for name, runner in runners.items():
                depths[name].append(runner(image.numpy(), focal.numpy())["final_depth"][0, 0])
    truths = [samples.ground_truth(i) for i in range(len(samples))]
    masks = [eval_mask(gt, "kitti", "garg").numpy() for gt in truths]
    metrics = {name: torch_eval.score([(torch.from_numpy(d), gt) for d, gt in zip(ds, truths)], "kitti", "garg", False)
               for name, ds in depths.items()}
    errors = {name: error_distribution(depths["torch fp32"], ds, masks) for name, ds in depths.items()
              if name != "torch fp32"}
    return {"metrics": metrics, "errors": errors, "depths": {name: np.stack(ds) for name, ds in depths.items()}}


def markdown(effect):
    """The two tables of the bf16 report: official metrics per variant, final-depth error distributions."""
    names = list(effect["metrics"])
    lines = ["| variant | " + " | ".join(METRIC_NAMES) + " |", "|---" * (len(METRIC_NAMES) + 1) + "|"]
    lines += [f"| {n} | " + " | ".join(f"{effect['metrics'][n][m]:.5f}" for m in METRIC_NAMES) + " |" for n in names]
    lines += ["", "final depth |variant - torch fp32| over the scored pixels (m):", "",
              "| variant | median | p90 | p99 | max |", "|---|---|---|---|---|"]
    lines += [f"| {n} | " + " | ".join(f"{e[k]:.2e}" for k in ("p50", "p90", "p99", "max")) + " |"
              for n, e in effect["errors"].items()]
    return "\n".join(lines) + "\n"

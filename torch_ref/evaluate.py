"""`python -m torch_ref.evaluate`: the official BTS evaluation (bts_commands.evaluate) with torch_ref.

This file supplies only what is torch's: loading the model, its forward, its metric mirror.
"""
import sys
from functools import partial

import torch

from bts_commands import Framework
from bts_commands import evaluate as loop
from torch_ref import metrics
from torch_ref.data import make_loader


def load_model(args):
    """torch_ref model of --encoder with --checkpoint loaded strictly (weights_only), on --device, eval mode."""
    import torch_ref
    from torch_ref.checkpoint import CheckpointError
    model = torch_ref.build_model(args.encoder, max_depth=args.max_depth, dataset=args.dataset)
    try:
        torch_ref.load_official_checkpoint(model, str(args.checkpoint))
    except RuntimeError as e:   # strict load_state_dict: missing / unexpected keys, wrong shapes
        detail = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), str(e))
        raise CheckpointError(f"{args.checkpoint}: does not fit {args.encoder} ({detail[:300]})") from None
    return model.to(args.device).eval()


def predict_depth(model, image, focal, flip_average=False):
    """final_depth as B x H x W; with flip_average, the mean with the mirrored image's prediction mirrored back."""
    device = next(iter(model.parameters()), torch.empty(0)).device
    image, focal = image.to(device), focal.to(device)
    with torch.no_grad():
        depth = model(image, focal)[-1]
        if flip_average:
            mirrored = model(torch.flip(image, [3]), focal)[-1]
            depth = 0.5 * (depth + torch.flip(mirrored, [3]))
    return depth[:, 0]


def predict_image(model, image, focal):
    """H x W numpy depth of one 1 x 3 x H x W image (float32 numpy)."""
    depth = predict_depth(model, torch.from_numpy(image), torch.tensor([focal], dtype=torch.float32))
    return depth.cpu().numpy()[0]


def evaluate_image(pred, gt, *protocol):
    pred = torch.as_tensor(pred)
    return metrics.evaluate_image(pred, torch.as_tensor(gt, device=pred.device), *protocol)


TORCH = Framework("torch_ref", "--checkpoint", "FILE",
                  "official checkpoint (dict with 'model', 'module.' keys) or a bare state dict",
                  load_model, make_loader, predict_depth, predict_image, evaluate_image, metrics.average)
evaluate, score, predictions = (partial(f, TORCH) for f in (loop.evaluate, loop.score, loop.predictions))
main = partial(loop.main, TORCH)

if __name__ == "__main__":
    sys.exit(main())

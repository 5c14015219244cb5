"""`python -m paddle_bts.evaluate`: the official BTS evaluation (bts_commands.evaluate) with paddle_bts.

This file supplies only what is Paddle's: loading the model, its forward, its metric mirror. No median
scaling (PaddleDepth's own evaluation median-scales).
"""
import sys
from functools import partial

import paddle

from bts_commands import Framework
from bts_commands import evaluate as loop
from paddle_bts import metrics
from paddle_bts.data import make_loader


def load_model(args):
    """paddle_bts model of --encoder with the --weights folder loaded strictly, eval mode; Paddle's CPU
    settings first (paddle_bts.runtime: as imported, Paddle 3.3.1 computes on one thread, and on AMD with
    MKL's slowest path: a densenet161 forward at 352x704 took 8.70 s, configured 4.06 s)."""
    import paddle_bts
    import paddle_bts.runtime
    paddle_bts.runtime.configure()
    paddle.set_device(args.device)
    model = paddle_bts.build_model(args.encoder, max_depth=args.max_depth, dataset=args.dataset)
    paddle_bts.load_weights(model, str(args.weights))
    model.eval()
    return model


def predict_depth(model, image, focal, flip_average=False):
    """final_depth as B x H x W; with flip_average, the mean with the mirrored image's prediction mirrored back."""
    with paddle.no_grad():
        depth = model(image, focal)[-1]
        if flip_average:
            mirrored = model(paddle.flip(image, [3]), focal)[-1]
            depth = 0.5 * (depth + paddle.flip(mirrored, [3]))
    return depth[:, 0]


def predict_image(model, image, focal):
    """H x W numpy depth of one 1 x 3 x H x W image (float32 numpy)."""
    return predict_depth(model, paddle.to_tensor(image), paddle.to_tensor([focal], dtype="float32")).numpy()[0]


PADDLE = Framework("paddle_bts", "--weights", "DIR", "PaddleDepth weight folder: encoder.pdparams and depth.pdparams",
                   load_model, make_loader, predict_depth, predict_image, metrics.evaluate_image, metrics.average)
evaluate, score, predictions = (partial(f, PADDLE) for f in (loop.evaluate, loop.score, loop.predictions))
main = partial(loop.main, PADDLE)

if __name__ == "__main__":
    sys.exit(main())

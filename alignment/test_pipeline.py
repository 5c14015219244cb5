"""`data` (torch_ref.data vs paddle_bts.data batches) and `eval` (torch_ref.evaluate vs paddle_bts.evaluate)
stages, on synthetic KITTI- and NYU-format PNG trees written into tmp_path.

data: both loaders, given the same indices, seed and epoch, must hand over identical batches (one numpy
pipeline underneath; a difference is a bug in a wrapper), and those batches must equal direct
BtsSamples calls.
eval: both evaluation pipelines on the same predictions. A stand-in network made of element-wise fp32
ops (identical in both frameworks) runs through each framework's whole `evaluate` (loader, forward,
flip averaging, KB paste-back, masks, per-image metrics, mean); seeded prediction arrays run through
each metric path (`score`) from the same ground-truth files. The real BTS models' parity is the
`model` stage's; at KB-crop size their CPU forward takes ~14 s per image in Paddle.
"""
import numpy as np
import paddle
import pytest
import torch

from alignment import twins
from alignment.harness import environment, run_case
from alignment.tolerances import TOLERANCES
from bts_data import BtsSamples, batch_indices, collate, write_tree
from paddle_bts import data as paddle_data
from paddle_bts import evaluate as paddle_eval
from torch_ref import data as torch_data
from torch_ref import evaluate as torch_eval

# (id, dataset, mode, images, images listed without depth, batch size, seed, epoch, shuffle)
DATA_CASES = [
    ("data-kitti-train", "kitti", "train", 4, 0, 2, 7, 3, True),
    ("data-nyu-train", "nyu", "train", 4, 0, 2, 7, 3, True),
    ("data-kitti-online", "kitti", "online_eval", 3, 1, 2, 0, 0, False),   # one depth missing; id free of "eval"
]


def as_numpy(batch):
    return {k: twins.numpy_of(v) for k, v in batch.items()}


def flat(batches):
    """{'b0.image': array, ...}; booleans as uint8 for the logs."""
    return {f"b{i}.{k}": (v.astype(np.uint8) if v.dtype == bool else v) for i, b in enumerate(batches)
            for k, v in b.items()}


def run_data(root, case):
    """Both loaders' batches for DATA_CASES entry `case` on a tree written under `root`; returns the Result,
    the batches per framework, the direct BtsSamples batches and what the loaders were given."""
    _, dataset, mode, n, without_gt, batch_size, seed, epoch, shuffle = next(c for c in DATA_CASES if c[0] == case)
    tree = write_tree(root, dataset, n, seed=11, without_gt=without_gt)
    samples = BtsSamples(tree.config(mode))
    drop_last = mode == "train"
    loaders = {
        "torch": torch_data.make_loader(samples, batch_size, seed, epoch, shuffle=shuffle, drop_last=drop_last),
        "paddle": paddle_data.make_loader(samples, batch_size, seed, epoch, shuffle=shuffle, drop_last=drop_last),
    }
    batches = {side: [as_numpy(b) for b in loader] for side, loader in loaders.items()}
    indices = batch_indices(n, batch_size, seed, epoch, shuffle=shuffle, drop_last=drop_last)
    direct = [collate([samples.sample(i, epoch, seed) for i in batch]) for batch in indices]
    result = run_case("data", case, flat(batches["torch"]), flat(batches["paddle"]), TOLERANCES["data"],
                      meta={**environment(*twins.devices()), "indices": indices, "seed": seed, "epoch": epoch},
                      order=list(flat(batches["torch"])))
    return result, batches, direct, (samples, batch_size, seed, epoch, mode)


@pytest.mark.parametrize("case", [c[0] for c in DATA_CASES])
def test_data_stage(tmp_path, case):
    result, batches, direct, (samples, batch_size, seed, epoch, mode) = run_data(tmp_path, case)
    indices = result.meta["indices"]
    assert result.passed, result.failure_message()
    assert len(batches["torch"]) == len(indices) > 0
    for torch_batch, paddle_batch, expected in zip(batches["torch"], batches["paddle"], direct):
        assert torch_batch.keys() == paddle_batch.keys() == expected.keys()
        for key in expected:
            for got in (torch_batch[key], paddle_batch[key]):
                assert got.dtype == expected[key].dtype and np.array_equal(got, expected[key]), key
    if mode == "train":   # a new epoch draws anew: the stage would pass vacuously on constant data
        other = as_numpy(next(iter(torch_data.make_loader(samples, batch_size, seed, epoch + 1))))
        assert not np.array_equal(other["image"], batches["torch"][0]["image"])


# -------------------------------------------------------------------------------------------- eval
class TorchStandIn(torch.nn.Module):
    """depth = gain x (1 + 0.05 x red): element-wise fp32 ops only, so both frameworks predict the same
    bits; the gain rises left to right (a mirrored prediction differs) and is seeded per pixel."""

    def __init__(self, gain):
        super().__init__()
        self.register_buffer("gain", torch.from_numpy(gain))

    def forward(self, image, focal):
        return (None, None, None, None, self.gain * (1.0 + 0.05 * image[:, :1]))


class PaddleStandIn(paddle.nn.Layer):
    def __init__(self, gain):
        super().__init__()
        self.gain = paddle.to_tensor(gain)

    def forward(self, image, focal):
        return (None, None, None, None, self.gain * (1.0 + 0.05 * image[:, :1]))


def stand_in_gain(height, width, max_depth, seed):
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.02, 1.0, width, dtype=np.float32)[None, :]
    return (max_depth * ramp * rng.uniform(0.7, 1.1, (height, width))).astype(np.float32)


NETWORK_SIZE = {"kitti": (352, 1216), "nyu": (480, 640)}
MAX_DEPTH = {"kitti": 80.0, "nyu": 10.0}
# (id, dataset, crop, flip_average)
EVAL_CASES = [("eval-kitti-garg", "kitti", "garg", False), ("eval-kitti-garg-flip", "kitti", "garg", True),
              ("eval-nyu-eigen", "nyu", "eigen", False), ("eval-nyu-eigen-flip", "nyu", "eigen", True)]


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """Three images per dataset, the last listed without depth (skipped, as the official evaluation does)."""
    return {d: write_tree(tmp_path_factory.mktemp(d), d, 3, seed=12, without_gt=1) for d in ("kitti", "nyu")}


def collected_predictions(module, model, samples, flip_average):
    return {f"prediction.{i}": twins.numpy_of(p) for i, p in module.predictions(model, samples, flip_average)}


@pytest.mark.parametrize("case,dataset,crop,flip_average", EVAL_CASES, ids=[c[0] for c in EVAL_CASES])
def test_eval_stage(trees, case, dataset, crop, flip_average):
    samples = BtsSamples(trees[dataset].config("test"))
    gain = stand_in_gain(*NETWORK_SIZE[dataset], MAX_DEPTH[dataset], seed=13)
    torch_model, paddle_model = TorchStandIn(gain).to(twins.devices()[0]), PaddleStandIn(gain)
    torch_out = torch_eval.evaluate(torch_model, samples, dataset, crop, flip_average=flip_average)
    paddle_out = paddle_eval.evaluate(paddle_model, samples, dataset, crop, flip_average=flip_average)
    assert torch_out["count"] == paddle_out["count"] == 2
    # the predictions both pipelines scored, for the report: equal bits by construction of the stand-in
    torch_preds = collected_predictions(torch_eval, torch_model, samples, flip_average)
    paddle_preds = collected_predictions(paddle_eval, paddle_model, samples, flip_average)
    result = run_case("eval", case, {**torch_out, **torch_preds}, {**paddle_out, **paddle_preds}, TOLERANCES["eval"],
                      tolerances={name: TOLERANCES["data"] for name in [*torch_preds, "count"]},
                      meta={**environment(*twins.devices()), "images scored": torch_out["count"],
                            "flip_average": flip_average})
    assert result.passed, result.failure_message()


# (id, dataset, crop): seeded predictions, with inf / NaN / out-of-range values the protocol must clip
SCORE_CASES = [("eval-kitti-eigen-seeded", "kitti", "eigen"), ("eval-nyu-nocrop-seeded", "nyu", None)]


@pytest.mark.parametrize("case,dataset,crop", SCORE_CASES, ids=[c[0] for c in SCORE_CASES])
def test_eval_stage_seeded_predictions(trees, case, dataset, crop):
    samples = BtsSamples(trees[dataset].config("test"))
    kb_crop = dataset == "kitti"
    pairs = []
    for index in range(len(samples)):
        gt = samples.ground_truth(index)
        if gt is None:
            continue
        pred = twins.seeded(NETWORK_SIZE[dataset], seed=20 + index, low=-1.0, high=1.2 * MAX_DEPTH[dataset])
        pred[0, :3] = [np.inf, np.nan, -np.inf]
        pairs.append((pred, gt))
    torch_out = torch_eval.score([(twins.to_torch(p), g) for p, g in pairs], dataset, crop, kb_crop)
    paddle_out = paddle_eval.score([(twins.to_paddle(p), g) for p, g in pairs], dataset, crop, kb_crop)
    result = run_case("eval", case, torch_out, paddle_out, TOLERANCES["eval"],
                      tolerances={"count": TOLERANCES["data"]},
                      meta={**environment(*twins.devices()), "images scored": len(pairs)})
    assert result.passed, result.failure_message()

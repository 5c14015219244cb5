"""Catalogue of real porting faults, each a small patch applied to paddle_bts (or to the converter) only
for the duration of a test; nothing here is imported by the product.

Each fault names the stage that must fail and, where that stage localises, the layer (or tensor) the
fault touched, which the stage must name as its first divergence. `tests/test_faults.py` runs them and
writes reports/faults.md.
"""
import contextlib
import io
import re
from dataclasses import dataclass
from typing import Callable, Optional
from unittest import mock

import numpy as np
import paddle
import paddle.nn.functional as F

import paddle_bts
import paddle_bts.bts as pbts

MODEL_ENCODER = "densenet121_bts"     # smallest DenseNet: its model case runs in a few seconds


@dataclass(frozen=True)
class Outcome:
    """What a stage said under a fault: passed or not, the first divergence it named, how loudly."""
    passed: bool
    first: str
    figure: str
    report: str


@dataclass(frozen=True)
class Fault:
    name: str
    what: str                           # the porting bug, as it appears in a real port
    stage: str                          # the stage that must fail
    run: Callable[[], Outcome]          # runs that stage's case
    patch: Callable                     # () -> context manager applying the fault
    first: Optional[str] = None         # regex the named first divergence must match (None: not localised)
    slow: bool = False                  # a second, costlier view of a fault a default case already catches


# ---- how stages are run and read ---------------------------------------------------------------

def from_result(result):
    table = result.table
    ratios = table["over_bound"].dropna() if "over_bound" in table else table.iloc[:0, 0]
    failing = table[~table["passed"]]
    if not len(failing):
        figure = f"all {len(table)} tensors within bound (worst {ratios.max():.2g}x)"
    else:
        figure = f"{len(failing)}/{len(table)} tensors fail"
        unshaped = failing["note"].notna().sum() if "note" in failing else 0
        if unshaped:
            figure += f" ({unshaped} present on one side only or of another shape)"
        compared = failing["over_bound"].dropna() if "over_bound" in failing else ratios
        if len(compared):
            name = compared.idxmax()
            bound = "exact bound 0" if compared[name] == float("inf") else f"{compared[name]:.3g}x its bound"
            figure += f"; worst {name}: max|d| {table.loc[name, 'max_abs']:.3g} ({bound})"
    return Outcome(result.passed, result.meta.get("first_divergence", ""), figure, str(result.folder))


def forward(case_id):
    """A forward-stage case of alignment/test_forward.py, by its id."""
    def run():
        from alignment.test_forward import CASES, run_forward
        return from_result(run_forward(next(c for c in CASES if c.id == case_id)))
    return run


def model(encoder=MODEL_ENCODER, dataset="kitti"):
    return forward(f"model-{encoder}-{dataset}")


def stage(runner_name, *args):
    """A stage runner from the alignment modules, by dotted name (imported when the fault runs)."""
    def run():
        module, _, function = runner_name.rpartition(".")
        import importlib
        result = getattr(importlib.import_module(module), function)(*args)
        return from_result(result[0] if isinstance(result, tuple) else result)   # some return extras too
    return run


def data(case):
    """A `data` stage case (alignment/test_pipeline.py) on a tree written to a temporary folder."""
    def run():
        import tempfile
        from pathlib import Path
        from alignment.test_pipeline import run_data
        with tempfile.TemporaryDirectory() as tmp:
            return from_result(run_data(Path(tmp), case)[0])
    return run


def round_trip(encoder=MODEL_ENCODER):
    """The converter CLIs torch -> Paddle -> torch on a seeded checkpoint: an error exit or any tensor
    that does not come back bit-identical is a failure."""
    def run():
        import tempfile
        from pathlib import Path
        from alignment.harness import Tolerance, run_case
        from helpers import convert_both_ways
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(io.StringIO()) as err:
            try:
                source, back = convert_both_ways(encoder, Path(tmp))
            except AssertionError:   # a CLI exited non-zero: its one-line error names the key
                line = err.getvalue().strip().splitlines()[-1]
                key = re.search(r"((?:encoder|decoder)[\w.:]*\.\w+)", line)
                return Outcome(False, key[1] if key else "", line, "CLI error")
        result = run_case("convert", f"convert-{encoder}", {k: v.numpy() for k, v in source.items()},
                          {k: v.numpy() for k, v in back.items() if k in source},
                          Tolerance(0.0, 0.0, "round trip is bit-exact"), order=list(source))
        return from_result(result)
    return run


# ---- the patches -------------------------------------------------------------------------------

def after_build(change):
    """Patches paddle_bts.build_model so every model it builds is altered by `change(model)`."""
    original = paddle_bts.build_model

    def build(*args, **kwargs):
        model_ = original(*args, **kwargs)
        change(model_)
        return model_
    return mock.patch.object(paddle_bts, "build_model", build)


def decoder_bns(model_):
    return [layer for name, layer in model_.decoder.named_sublayers() if isinstance(layer, paddle.nn.BatchNorm2D)]


def set_bn(attribute, value, only_eps=None):
    def change(model_):
        for bn in decoder_bns(model_):
            if only_eps is None or abs(bn._epsilon - only_eps) < 1e-12:
                setattr(bn, attribute, value)
    return lambda: after_build(change)


@contextlib.contextmanager
def global_xavier():
    paddle.nn.initializer.set_global_initializer(paddle.nn.initializer.XavierUniform(),
                                                 paddle.nn.initializer.Constant(0.0))
    try:
        yield
    finally:
        paddle.nn.initializer.set_global_initializer(None)


def focal_not_scaled():
    def change(model_):
        model_.decoder.dataset = "kitti_supervise"   # PaddleDepth's config name: the KITTI branch never runs
    return after_build(change)


def not_frozen():
    return mock.patch.object(paddle_bts, "freeze_encoder", lambda model_: [])


def lpg_uv_swapped():
    def forward_(self, plane_eq, focal):
        r = self.upratio
        plane = paddle.repeat_interleave(paddle.repeat_interleave(plane_eq, r, 2), r, 3)
        n1, n2, n3, n4 = plane[:, 0], plane[:, 1], plane[:, 2], plane[:, 3]
        u = self.offsets(plane_eq.shape[2], plane_eq).reshape([1, -1, 1])   # u along H: swapped
        v = self.offsets(plane_eq.shape[3], plane_eq).reshape([1, 1, -1])
        return n4 / (n1 * u + n2 * v + n3)
    return mock.patch.object(pbts.local_planar_guidance, "forward", forward_)


def plane_normalised(**kwargs):
    def plane_equation(reduc):
        normal = F.normalize(reduc[:, :3, :, :], **{"p": 2, "axis": 1, "epsilon": 1e-12, **kwargs})
        return paddle.concat([normal, reduc[:, 3, :, :].unsqueeze(1)], 1)
    return lambda: mock.patch.object(pbts, "plane_equation", plane_equation)


def bilinear_upconv():
    def forward_(self, x):
        return self.elu(self.conv(F.interpolate(x, scale_factor=self.ratio, mode="bilinear")))
    return mock.patch.object(pbts.upconv, "forward", forward_)


def linear_not_transposed():
    from conversion import convert
    original = convert.paddle_layout

    def layout(encoder, *parts):
        return {k: (shape, False) for k, (shape, _) in original(encoder, *parts).items()}
    return mock.patch.object(convert, "paddle_layout", layout)


def densenet_key_dropped():
    """PaddleDepth's loader keeps `k in model_dict` only: keys it cannot name vanish without a word."""
    from conversion import torch2paddle
    original = torch2paddle.torch_to_paddle

    def convert(state, encoder, progress=iter):
        parts, report = original(state, encoder, progress)
        parts["encoder"] = {k: v for k, v in parts["encoder"].items() if not k.startswith("base_model.batch_norm.")}
        return parts, report
    return mock.patch.object(torch2paddle, "torch_to_paddle", convert)


def counters_dropped():
    """The converter forgets torch's BN counters (Paddle has none): they come back as 0."""
    from conversion import torch2paddle
    original = torch2paddle.conversion_summary
    return mock.patch.object(torch2paddle, "conversion_summary", lambda report, counters: original(report, {}))


def normalisation_skipped():
    """PaddleDepth defines a normalize transform and never applies it: images reach the model in [0, 1]."""
    from bts_data import transforms
    from paddle_bts import data as paddle_data
    original = paddle_data.BtsDataset.__getitem__

    def getitem(self, index):
        unnormalised = lambda image: np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
        with mock.patch.object(transforms, "normalize", unnormalised):
            return original(self, index)
    return mock.patch.object(paddle_data.BtsDataset, "__getitem__", getitem)


@contextlib.contextmanager
def lr_stepped_per_epoch():
    """PaddleDepth calls the PolynomialDecay's step() once per epoch instead of once per iteration."""
    from paddle_bts import train
    original_step, original_epochs = train.train_step, train.run_epochs

    def train_step(model_, optimizer, batch, scheduler=None, min_depth=1.0):
        return original_step(model_, optimizer, batch, None, min_depth)

    def run_epochs(model_, optimizer, scheduler, batches, num_epochs, min_depth, on_step=None, on_epoch=None,
                   **kwargs):
        def epoch_end(epoch, global_step):
            scheduler.step()
            if on_epoch is not None:
                on_epoch(epoch, global_step)
        return original_epochs(model_, optimizer, scheduler, batches, num_epochs, min_depth, on_step, epoch_end,
                               **kwargs)
    with mock.patch.object(train, "train_step", train_step), mock.patch.object(train, "run_epochs", run_epochs):
        yield


def loss_scaled_1pct():
    """Paddle's train step computes 1.01 x the silog loss (and steps on it): a 1 % loss difference."""
    from paddle_bts import train
    original = train.silog_loss

    def scaled(*args, **kwargs):
        loss = original(*args, **kwargs)
        return lambda *inputs: 1.01 * loss(*inputs)
    return mock.patch.object(train, "silog_loss", scaled)


def moments_not_converted():
    """The converter carries weights and the step over but not the AdamW moments: Paddle resumes with
    moments 0 and beta powers at beta, a fresh AdamW (PaDiff, X2Paddle and PaConvert convert no optimizer)."""
    from conversion import optimizer_state
    original = optimizer_state.torch_to_paddle

    def fresh(checkpoint, encoder, what):
        state, summary = original(checkpoint, encoder, what)
        for key, value in state.items():
            if "_moment" in key:
                state[key] = np.zeros_like(value)
            elif "_beta1_pow_acc" in key or "_beta2_pow_acc" in key:
                state[key] = np.full_like(value, optimizer_state.BETAS["_beta2_pow_acc" in key])
        return state, summary
    return mock.patch.object(optimizer_state, "torch_to_paddle", fresh)


CATALOGUE = [
    Fault("bn_momentum_torch_convention", "decoder BN built with momentum=0.01 (torch's number, Paddle's "
          "convention: keeps 1% of the running statistics)", "train_mode",
          stage("alignment.test_gradients.run_train_mode", "densenet161_bts"),
          set_bn("_momentum", 0.01), first=r"decoder\.bn5\."),
    Fault("global_xavier_initializer", "nn.initializer.set_global_initializer(XavierUniform(), Constant()) "
          "at import: BN gamma becomes random", "init",
          stage("alignment.test_init.run_init", MODEL_ENCODER), global_xavier, first=r"encoder\.base_model\.norm0\."),
    Fault("focal_not_scaled", "final depth not scaled by focal / 715.0873 (dataset name 'kitti_supervise')",
          "model", model(), focal_not_scaled, first=r"decoder\[4\]"),
    Fault("encoder_not_frozen", "first conv and encoder BN parameters left trainable", "backward",
          stage("alignment.test_gradients.run_backward", "densenet161_bts", "float64"), not_frozen,
          first=r"grad/encoder\..*(norm|conv0)"),
    Fault("lpg_uv_swapped", "LPG offsets u (along W) and v (along H) swapped", "lpg",
          forward("lpg-r8"), lpg_uv_swapped),
    Fault("lpg_uv_swapped_in_model", "the same fault, localised in the whole model", "model", model(),
          lpg_uv_swapped, first=r"decoder\.lpg8x8"),
    Fault("normalize_wrong_axis", "F.normalize of plane normals over axis 0 (batch) instead of 1", "model",
          model(), plane_normalised(axis=0), first=r"decoder\.lpg8x8"),
    Fault("normalize_wrong_epsilon", "F.normalize epsilon 1e-6 instead of 1e-12", "reduction",
          forward("reduction-plane_equation"),
          plane_normalised(epsilon=1e-6)),
    Fault("upsample_bilinear", "upconv's x2 upsampling bilinear instead of nearest", "model", model(),
          bilinear_upconv, first=r"decoder\.upconv5\.conv"),
    Fault("bn_epsilon_1e-5", "decoder BNs with Paddle's default epsilon 1e-5 instead of the official 1.1e-5",
          "decoder", forward("decoder-bn_small_variance"), set_bn("_epsilon", 1e-5, only_eps=1.1e-5),
          first=r"decoder\.bn5"),
    Fault("imagenet_normalisation_missing", "the ImageNet normalize transform defined but never applied "
          "(Paddle pipeline)", "data", data("data-kitti-train"), normalisation_skipped, first=r"b0\.image"),
    Fault("poly_lr_stepped_per_epoch", "PolynomialDecay.step() once per epoch instead of every iteration",
          "lr", stage("alignment.test_training.run_lr"), lr_stepped_per_epoch, first=r"lr logged"),
    Fault("poly_lr_stepped_per_epoch_in_training", "the same fault, seen by 10 training steps", "train",
          stage("alignment.test_training.run_train", "densenet121_bts"), lr_stepped_per_epoch, slow=True),
    Fault("loss_scaled_1pct_in_training", "silog loss x 1.01 inside Paddle's train step only (a 1 % loss "
          "difference)", "train", stage("alignment.test_training.run_train", "densenet121_bts"), loss_scaled_1pct,
          first=r"loss per step"),
    Fault("bn_momentum_in_training", "BN momentum 0.01 in Paddle's convention, seen by 10 training steps",
          "train", stage("alignment.test_training.run_train", "densenet121_bts"), set_bn("_momentum", 0.01),
          first=r"decoder\.bn5\.", slow=True),
    Fault("adam_moments_not_converted", "a resumed run's AdamW moments not converted: Paddle restarts Adam "
          "from zero with the converted weights and step", "resume", stage("alignment.test_resume.run_resume"),
          moments_not_converted, first=r"resumed from: AdamW exp_avg"),
    Fault("linear_not_transposed", "ResNet fc weight copied [out, in] into Paddle's [in, out] Linear",
          "convert", round_trip("resnet50_bts"), linear_not_transposed, first=r"encoder.*fc\.weight"),
    Fault("densenet_key_dropped", "converted DenseNet norm5 keys silently filtered out", "convert",
          round_trip(), densenet_key_dropped, first=r"encoder.*batch_norm"),
    Fault("num_batches_tracked_dropped", "BN counters silently dropped on the way to Paddle (restored as 0)",
          "convert", round_trip(), counters_dropped, first=r"encoder\..*num_batches_tracked"),
]

"""The twin BTS models: names, shapes, parameter counts, checkpoints, forward shapes, errors, initialisation.

References: tests/data/official_keys (official torch state dicts), tests/data/paddledepth_keys
(PaddleDepth's two-file layout), see tests/data/README.md; shared/reference/official_bts_spec.md (counts,
init, focal scaling).
Models are built once per encoder per module (`encoder_name` is a module-scoped parameter, so pytest
groups the tests by encoder and only one encoder's models are alive at a time).
"""
import math
from pathlib import Path

import numpy as np
import paddle
import pytest
import torch

import paddle_bts
import torch_ref
from bts_core.spec import ENCODER_FACTS, ENCODERS, KITTI_FOCAL

# Shipped with the tests (tests/data/README.md): a missing list fails, it never skips.
DATA = Path(__file__).resolve().parent / "data"
OFFICIAL_KEYS = DATA / "official_keys"
PADDLEDEPTH_KEYS = DATA / "paddledepth_keys"
# The encoders PaddleDepth has, in ENCODERS' order (so pytest keeps one model build per encoder).
PADDLEDEPTH_ENCODERS = ["densenet121_bts", "densenet161_bts", "resnet50_bts", "resnet101_bts", "resnext50_bts"]

INPUT_SHAPE = (1, 3, 128, 256)
# PaddleDepth's densenet161 keeps paddle.vision's ImageNet head; ours omits it on purpose
# (official torch DenseNet encoders are `.features` only, so they have no classifier).
PADDLEDEPTH_ONLY_HEAD = {"densenet161_bts": ["base_model.out.weight", "base_model.out.bias"]}


def reference_file(folder, encoder):
    path = folder / f"{encoder}.txt"
    assert path.is_file(), f"{path}: reference list missing (tests/data/README.md says what belongs there)"
    return path


def read_rows(path):
    """Tab-separated rows of a reference list, the leading '#' comment line dropped."""
    lines = path.read_text().splitlines()
    assert lines[0].startswith("#"), f"{path}: first line should be a '#' comment"
    return [tuple(line.split("\t")) for line in lines[1:] if line]


def shape_text(shape):
    return str([int(d) for d in shape])


def paddle_layout(layer):
    return [(k, shape_text(v.shape)) for k, v in layer.state_dict().items()]


def decoder_layers(model):
    """({conv name: (weight, bias)}, {BN name: (gamma, beta)}) of the decoder as numpy, either framework."""
    if isinstance(model, torch.nn.Module):
        layers, conv, bn = model.decoder.named_modules(), torch.nn.Conv2d, torch.nn.BatchNorm2d
    else:
        layers, conv, bn = model.decoder.named_sublayers(), paddle.nn.Conv2D, paddle.nn.BatchNorm2D
    layers = list(layers)

    def arr(t):
        return None if t is None else np.array(t.detach() if isinstance(t, torch.Tensor) else t)

    return ({n: (arr(m.weight), arr(m.bias)) for n, m in layers if isinstance(m, conv)},
            {n: (arr(m.weight), arr(m.bias)) for n, m in layers if isinstance(m, bn)})


# ---------------------------------------------------------------- fixtures: one build per encoder
pytestmark = pytest.mark.usefixtures("one_torch_thread")   # tests/conftest.py: one torch thread, measured faster


@pytest.fixture(scope="module", params=ENCODERS)
def encoder_name(request):
    return request.param


@pytest.fixture(scope="module")
def torch_model(encoder_name):
    model = torch_ref.build_model(encoder_name).eval()
    yield model
    del model


@pytest.fixture(scope="module")
def paddle_model(encoder_name):
    model = paddle_bts.build_model(encoder_name)
    model.eval()
    yield model
    del model


@pytest.fixture(scope="module")
def torch_d121():
    return torch_ref.build_model("densenet121_bts").eval()


@pytest.fixture(scope="module")
def paddle_d121():
    model = paddle_bts.build_model("densenet121_bts")
    model.eval()
    return model


@pytest.fixture
def image():
    return np.random.default_rng(0).standard_normal(INPUT_SHAPE).astype(np.float32)


# ---------------------------------------------------------------- 1. official torch key list
def test_reference_lists_are_shipped():
    """Every list is in tests/data, and each official list's header agrees with bts_spec's parameter count."""
    assert sorted(p.stem for p in OFFICIAL_KEYS.glob("*.txt")) == sorted(ENCODERS)
    assert sorted(p.stem for p in PADDLEDEPTH_KEYS.glob("*.txt")) == sorted(PADDLEDEPTH_ENCODERS)
    for encoder in ENCODERS:
        path = reference_file(OFFICIAL_KEYS, encoder)
        header = path.read_text().splitlines()[0]
        assert header.endswith(f": {len(read_rows(path))} state_dict entries, "
                               f"{ENCODER_FACTS[encoder].official_params} parameters"), header


def test_torch_state_dict_matches_official_keys(encoder_name, torch_model):
    expected = read_rows(reference_file(OFFICIAL_KEYS, encoder_name))
    ours = [("module." + k, shape_text(v.shape), str(v.dtype).removeprefix("torch."))
            for k, v in torch_model.state_dict().items()]
    assert len(ours) == len(expected)
    assert ours == expected  # names, order, shapes and dtypes (num_batches_tracked int64)


# ---------------------------------------------------------------- 2. parameter counts
def test_parameter_counts(encoder_name, torch_model, paddle_model):
    assert torch_ref.count_parameters(torch_model) == ENCODER_FACTS[encoder_name].official_params
    assert paddle_bts.count_parameters(paddle_model.decoder) == torch_ref.count_parameters(torch_model.decoder)
    # Exact equality of the encoders, classifier heads included: the ResNet/ResNeXt encoders keep their
    # (unused) `fc` in both frameworks, DenseNet and MobileNetV2 encoders have no classifier in either.
    assert paddle_bts.count_parameters(paddle_model.encoder) == torch_ref.count_parameters(torch_model.encoder)
    assert paddle_bts.count_parameters(paddle_model) == ENCODER_FACTS[encoder_name].official_params
    has_fc = ENCODER_FACTS[encoder_name].family == "resnet"
    assert ("encoder.base_model.fc.weight" in torch_model.state_dict()) is has_fc
    assert ("base_model.fc.weight" in paddle_model.encoder.state_dict()) is has_fc


def test_paddle_count_excludes_bn_statistics(paddle_d121):
    bn = paddle_bts.bts.batch_norm(8)
    assert paddle_bts.count_parameters(bn) == 16  # weight + bias; _mean/_variance are statistics
    all_tensors = sum(int(p.numel()) for p in paddle_d121.parameters())
    stats = sum(int(t.numel()) for t in paddle_bts.bn_statistics(paddle_d121))
    assert stats > 0
    assert paddle_bts.count_parameters(paddle_d121) == all_tensors - stats


# ---------------------------------------------------------------- 3. PaddleDepth layout
@pytest.mark.parametrize("encoder_name", PADDLEDEPTH_ENCODERS, indirect=True)   # the others: next test
def test_paddle_state_dicts_match_paddledepth_layout(encoder_name, paddle_model):
    rows = read_rows(reference_file(PADDLEDEPTH_KEYS, encoder_name))
    assert {r[0] for r in rows} == {"encoder.pdparams", "depth.pdparams"}
    ref_encoder = [(k, s) for f, k, s in rows if f == "encoder.pdparams"]
    ref_decoder = [(k, s) for f, k, s in rows if f == "depth.pdparams"]
    assert paddle_layout(paddle_model.decoder) == ref_decoder
    assert len(ref_decoder) == 96

    ours = paddle_layout(paddle_model.encoder)
    only_theirs = [k for k, _ in ref_encoder if k not in dict(ours)]
    only_ours = [k for k, _ in ours if k not in dict(ref_encoder)]
    assert only_ours == []
    # The single allowed difference: PaddleDepth's densenet161 ImageNet head, which ours omits.
    assert only_theirs == PADDLEDEPTH_ONLY_HEAD.get(encoder_name, [])
    assert ours == [(k, s) for k, s in ref_encoder if k not in only_theirs]


def test_paddle_decoder_names_mirror_torch(encoder_name, torch_model, paddle_model):
    """Covers the encoders PaddleDepth lacks: decoder names differ only in BN statistics' leaf names."""
    rename = {"running_mean": "_mean", "running_var": "_variance"}
    expected = []
    for k, v in torch_model.decoder.state_dict().items():
        path, leaf = k.rsplit(".", 1)
        if leaf != "num_batches_tracked":
            expected.append((f"{path}.{rename.get(leaf, leaf)}", shape_text(v.shape)))
    assert paddle_layout(paddle_model.decoder) == expected


# ---------------------------------------------------------------- 4. checkpoints
def randomise_bn_statistics_torch(model, seed):
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.from_numpy(rng.standard_normal(m.num_features).astype(np.float32)))
                m.running_var.copy_(torch.from_numpy(rng.uniform(0.5, 2, m.num_features).astype(np.float32)))
                m.num_batches_tracked.fill_(int(rng.integers(1, 1000)))


def assert_torch_states_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype, k
        assert torch.equal(sa[k], sb[k]), k


def test_official_checkpoint_round_trip(tmp_path):
    src = torch_ref.build_model("densenet121_bts")
    randomise_bn_statistics_torch(src, seed=1)
    path = tmp_path / "model"
    torch_ref.save_official_checkpoint(src, path, global_step=123)

    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert set(raw) == {"global_step", "model"} and raw["global_step"] == 123
    assert list(raw["model"]) == ["module." + k for k in src.state_dict()]
    assert not list(tmp_path.glob(".tmp-*")), "temporary file left behind"

    dst = torch_ref.build_model("densenet121_bts")
    assert not torch.equal(dst.decoder.conv5[0].weight, src.decoder.conv5[0].weight)  # not vacuous
    assert torch_ref.load_official_checkpoint(dst, path) is dst
    assert_torch_states_equal(src, dst)
    assert list(torch_ref.read_state_dict(path)) == list(src.state_dict())


def test_bare_state_dict_file_loads(tmp_path):
    src = torch_ref.build_model("mobilenetv2_bts")
    randomise_bn_statistics_torch(src, seed=2)
    path = tmp_path / "bare.pth"
    torch.save(src.state_dict(), path)
    dst = torch_ref.load_official_checkpoint(torch_ref.build_model("mobilenetv2_bts"), path)
    assert_torch_states_equal(src, dst)


def test_checkpoint_with_missing_key_fails(tmp_path):
    model = torch_ref.build_model("mobilenetv2_bts")
    path = tmp_path / "model"
    torch_ref.save_official_checkpoint(model, path)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    del raw["model"]["module.decoder.get_depth.0.weight"]
    torch.save(raw, path)
    with pytest.raises((RuntimeError, torch_ref.CheckpointError), match="decoder.get_depth.0.weight"):
        torch_ref.load_official_checkpoint(torch_ref.build_model("mobilenetv2_bts"), path)


def randomise_bn_statistics_paddle(model, seed):
    rng = np.random.default_rng(seed)
    for m in model.sublayers():
        if isinstance(m, paddle_bts.bn.BN_TYPES):
            n = m._mean.shape[0]
            m._mean.set_value(rng.standard_normal(n).astype(np.float32))
            m._variance.set_value(rng.uniform(0.5, 2, n).astype(np.float32))


def assert_paddle_states_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        np.testing.assert_array_equal(sa[k].numpy(), sb[k].numpy(), err_msg=k)


@pytest.fixture(scope="module")
def paddle_saved(tmp_path_factory):
    """A densenet121 Paddle model with random BN statistics and its PaddleDepth-layout folder."""
    model = paddle_bts.build_model("densenet121_bts")
    randomise_bn_statistics_paddle(model, seed=3)
    folder = tmp_path_factory.mktemp("paddle_weights")
    paths = paddle_bts.save_weights(model, str(folder))
    assert sorted(Path(p).name for p in paths) == ["depth.pdparams", "encoder.pdparams"]
    return model, folder


def test_paddle_weights_round_trip(paddle_saved):
    src, folder = paddle_saved
    assert sorted(p.name for p in folder.iterdir()) == ["depth.pdparams", "encoder.pdparams"]
    assert list(paddle.load(str(folder / "depth.pdparams"))) == list(src.decoder.state_dict())
    assert list(paddle.load(str(folder / "encoder.pdparams"))) == list(src.encoder.state_dict())
    dst = paddle_bts.build_model("densenet121_bts")
    assert not np.array_equal(dst.decoder.conv5[0].weight.numpy(), src.decoder.conv5[0].weight.numpy())
    assert paddle_bts.load_weights(dst, str(folder)) is dst
    assert_paddle_states_equal(src, dst)


def rewrite(src_folder, dst_folder, name, edit):
    """Copies both weight files, applying `edit` to the state dict of file `name`."""
    dst_folder.mkdir()
    for f in ("encoder.pdparams", "depth.pdparams"):
        state = paddle.load(str(src_folder / f))
        paddle.save(edit(state) if f == name else state, str(dst_folder / f))
    return str(dst_folder)


@pytest.mark.parametrize("edit, message", [
    (lambda s: {k: v for k, v in s.items() if k != "bn5._mean"}, "missing"),
    (lambda s: {("bn5.running_mean" if k == "bn5._mean" else k): v for k, v in s.items()}, "missing"),
], ids=["missing", "renamed"])
def test_paddle_load_rejects_bad_decoder_file(paddle_saved, tmp_path, edit, message):
    _, folder = paddle_saved
    bad = rewrite(folder, tmp_path / "bad", "depth.pdparams", edit)
    with pytest.raises(paddle_bts.WeightsError, match=message):
        paddle_bts.load_weights(paddle_bts.build_model("densenet121_bts"), bad)


def test_paddle_load_ignores_paddledepth_densenet_head(paddle_saved, tmp_path):
    src, folder = paddle_saved
    rng = np.random.default_rng(4)
    head = {"base_model.out.weight": paddle.to_tensor(rng.standard_normal((1024, 1000)).astype(np.float32)),
            "base_model.out.bias": paddle.to_tensor(np.zeros(1000, np.float32))}
    with_head = rewrite(folder, tmp_path / "head", "encoder.pdparams", lambda s: {**s, **head})
    dst = paddle_bts.load_weights(paddle_bts.build_model("densenet121_bts"), with_head)
    assert_paddle_states_equal(src, dst)
    assert "base_model.out.weight" not in dst.encoder.state_dict()

    # Only that head is ignored: any other unexpected encoder key is an error.
    other = rewrite(folder, tmp_path / "other", "encoder.pdparams",
                    lambda s: {**s, "base_model.fc.weight": head["base_model.out.weight"]})
    with pytest.raises(paddle_bts.WeightsError, match="unexpected"):
        paddle_bts.load_weights(paddle_bts.build_model("densenet121_bts"), other)


# ---------------------------------------------------------------- 5. forward shapes
def test_torch_forward_shapes(torch_model, image):
    with torch.no_grad():
        outs = torch_model(torch.from_numpy(image), torch.tensor([KITTI_FOCAL]))
    assert len(outs) == 5
    for o in outs:
        assert tuple(o.shape) == (1, 1) + INPUT_SHAPE[2:]
    final = outs[4].numpy()
    assert np.isfinite(final).all() and final.min() >= 0 and final.max() <= 80  # max_depth · sigmoid


def test_paddle_forward_shapes(paddle_model, image):
    with paddle.no_grad():
        outs = paddle_model(paddle.to_tensor(image), paddle.to_tensor([KITTI_FOCAL], dtype="float32"))
    assert len(outs) == 5
    for o in outs:
        assert tuple(o.shape) == (1, 1) + INPUT_SHAPE[2:]
    final = outs[4].numpy()
    assert np.isfinite(final).all() and final.min() >= 0 and final.max() <= 80


# ---------------------------------------------------------------- 6. clear errors
@pytest.mark.parametrize("pkg", [torch_ref, paddle_bts], ids=["torch", "paddle"])
def test_unknown_encoder_lists_valid_names(pkg):
    with pytest.raises(ValueError, match="densenet_bogus") as err:
        pkg.build_model("densenet_bogus")
    for name in ENCODERS:
        assert name in str(err.value)


@pytest.mark.parametrize("pkg", [torch_ref, paddle_bts], ids=["torch", "paddle"])
def test_unknown_dataset(pkg):
    with pytest.raises(ValueError, match="make3d") as err:
        pkg.build_model("densenet121_bts", dataset="make3d")
    assert "kitti" in str(err.value) and "nyu" in str(err.value)


def test_input_not_multiple_of_32_torch(torch_d121):
    with pytest.raises(ValueError, match="multiple of 32"):
        torch_d121(torch.zeros(1, 3, 100, 200), torch.tensor([KITTI_FOCAL]))


def test_input_not_multiple_of_32_paddle(paddle_d121):
    with pytest.raises(ValueError, match="multiple of 32"):
        paddle_d121(paddle.zeros([1, 3, 100, 200]), paddle.to_tensor([KITTI_FOCAL], dtype="float32"))


# ---------------------------------------------------------------- 7. official initialisation
def assert_xavier_uniform(convs):
    # every decoder Conv2d: 5 upconv + 5 conv_elu + 10 daspp + daspp_conv + 6+5+4+3 reduc + get_depth
    assert len(convs) == 40
    big = 0
    for name, w in convs.items():
        out_c, in_c, kh, kw = w.shape
        bound = math.sqrt(6.0 / (in_c * kh * kw + out_c * kh * kw))
        assert np.abs(w).max() <= bound * (1 + 1e-6), f"{name}: max |w| {np.abs(w).max()} > {bound}"
        if w.size >= 4096:  # P(max |w| <= 0.9·bound) = 0.9**size: negligible
            big += 1
            assert np.abs(w).max() > 0.9 * bound, name
            np.testing.assert_allclose(w.std(), bound / math.sqrt(3), rtol=0.05, err_msg=name)
    assert big == 24  # layers with at least 4096 weights (densenet121 decoder)


@pytest.mark.parametrize("fixture", ["torch_d121", "paddle_d121"])
def test_decoder_init(request, fixture):
    convs, bns = decoder_layers(request.getfixturevalue(fixture))
    assert all(b is None for _, b in convs.values())  # official decoder convs have no bias
    assert_xavier_uniform({n: w for n, (w, _) in convs.items()})
    assert len(bns) == 14
    for name, (gamma, beta) in bns.items():
        np.testing.assert_array_equal(gamma, 1.0, err_msg=name)
        np.testing.assert_array_equal(beta, 0.0, err_msg=name)


def test_paddle_build_sets_no_global_initializer():
    before = paddle.nn.BatchNorm2D(4)
    paddle_bts.build_model("mobilenetv2_bts")
    after = paddle.nn.BatchNorm2D(4)
    for bn in (before, after):  # PaddleDepth's global XavierUniform initializer would randomise γ
        np.testing.assert_array_equal(bn.weight.numpy(), np.ones(4, np.float32))
        np.testing.assert_array_equal(bn.bias.numpy(), np.zeros(4, np.float32))


# ---------------------------------------------------------------- focal scaling
FOCALS = np.array([KITTI_FOCAL, 2 * KITTI_FOCAL], np.float32)


def focal_outputs_torch(model, x):
    with torch.no_grad():
        return [o.numpy() for o in model(torch.from_numpy(x), torch.from_numpy(FOCALS))]


def focal_outputs_paddle(model, x):
    with paddle.no_grad():
        return [o.numpy() for o in model(paddle.to_tensor(x), paddle.to_tensor(FOCALS))]


def check_focal(kitti, nyu):
    """Sample 1 has twice sample 0's focal (same image): KITTI doubles final_depth, NYU ignores focal."""
    for out in (kitti, nyu):
        for o in out[:4]:  # the LPG outputs and reduc1x1 never use focal
            np.testing.assert_allclose(o[1], o[0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(kitti[4][1], 2 * kitti[4][0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(nyu[4][1], nyu[4][0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(kitti[4][0], nyu[4][0], rtol=1e-6, atol=1e-7)  # focal/715.0873 == 1
    assert kitti[4][0].min() > 0


@pytest.fixture(scope="module")
def focal_image():
    x = np.random.default_rng(5).standard_normal((1, 3, 64, 128)).astype(np.float32)
    return np.concatenate([x, x])


def test_focal_scaling_torch(torch_d121, focal_image):
    nyu = torch_ref.build_model("densenet121_bts", dataset="nyu").eval()
    nyu.load_state_dict(torch_d121.state_dict())
    check_focal(focal_outputs_torch(torch_d121, focal_image), focal_outputs_torch(nyu, focal_image))


def test_focal_scaling_paddle(paddle_d121, focal_image):
    nyu = paddle_bts.build_model("densenet121_bts", dataset="nyu")
    nyu.eval()
    missing, unexpected = nyu.set_state_dict(paddle_d121.state_dict())
    assert not missing and not unexpected
    check_focal(focal_outputs_paddle(paddle_d121, focal_image), focal_outputs_paddle(nyu, focal_image))

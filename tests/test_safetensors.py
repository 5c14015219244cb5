"""model.safetensors beside the Paddle files: pickle-free, in the manifest, loaded bit for bit by both frameworks.

mobilenetv2_bts, converted with --no-verify: the smallest encoder, and verification is not the point here
(test_conversion_cli covers it, and the whole publish run on a folder that now holds model.safetensors).
"""
import contextlib
import io
import json
import pickle

import numpy as np
import paddle
import pytest
import torch
from safetensors.torch import save_file

import paddle_bts
import torch_ref
from bts_core.cli import InputError
from conversion import publish, torch2paddle
from conversion.convert import torch_layout
from conversion.manifest import read_manifest, sha256_file
from conversion.safetensors_weights import (FORMAT, SAFETENSORS_FILE, load_paddle, load_torch, read_safetensors,
                                            write_safetensors)
from conversion.seeded import save_seeded_checkpoint

ENCODER = "mobilenetv2_bts"
METADATA = {"encoder": ENCODER, "max_depth": 80.0, "dataset": "kitti"}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(seeded official checkpoint, converted folder); calibrated BN keeps the outputs finite and varied."""
    folder = tmp_path_factory.mktemp("safetensors")
    checkpoint = save_seeded_checkpoint(ENCODER, folder / "model")
    output = folder / "paddle"
    with contextlib.redirect_stdout(io.StringIO()):
        assert torch2paddle.main(["--checkpoint", str(checkpoint), "--encoder", ENCODER, "--output", str(output),
                                  "--no-verify"]) == 0
    return checkpoint, output


def header_of(path):
    """(JSON header, bytes after it) read by hand: the format is an 8-byte length, JSON, raw tensors."""
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + size]), len(data) - 8 - size


def paddle_model():
    with paddle.LazyGuard():     # no random init for weights the load replaces
        return paddle_bts.BtsModel(ENCODER)


def refuse_unpickling(*args, **kwargs):
    raise AssertionError("loading model.safetensors unpickled something")


@pytest.fixture(scope="module")
def models(converted):
    """{framework: (model loaded the usual way, model loaded from model.safetensors)}, eval mode."""
    checkpoint, output = converted
    torch_usual = torch_ref.load_official_checkpoint(torch_ref.BtsModel(ENCODER), str(checkpoint))
    paddle_usual = paddle_bts.load_weights(paddle_model(), str(output))
    with pytest.MonkeyPatch.context() as patch:
        for module, name in ((torch, "load"), (paddle, "load"), (pickle, "load"), (pickle, "loads")):
            patch.setattr(module, name, refuse_unpickling)
        torch_safe = load_torch(torch_ref.BtsModel(ENCODER), output / SAFETENSORS_FILE)
        paddle_safe = load_paddle(paddle_model(), output / SAFETENSORS_FILE)
    return {"torch": (torch_usual.eval(), torch_safe.eval()), "paddle": (paddle_usual.eval(), paddle_safe.eval())}


def test_file_is_safetensors_listed_in_manifest_and_card(converted):
    _, output = converted
    path = output / SAFETENSORS_FILE
    header, data_bytes = header_of(path)
    assert header.pop("__metadata__") == {"format": FORMAT, "encoder": ENCODER, "max_depth": "80.0",
                                          "dataset": "kitti"}
    assert set(header) == set(torch_layout(ENCODER))            # torch_ref's names, BN counters included
    assert {t["dtype"] for t in header.values()} == {"F32", "I64"}
    assert max(t["data_offsets"][1] for t in header.values()) == data_bytes   # raw tensors, nothing else
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["files"][SAFETENSORS_FILE] == {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    assert "load_torch(torch_model, \"<this folder>/model.safetensors\")" in (output / "README.md").read_text()


def test_torch_ref_loads_it_bit_for_bit(models):
    usual, safe = (m.state_dict() for m in models["torch"])
    assert list(safe) == list(usual)
    assert all(safe[k].dtype == usual[k].dtype and torch.equal(safe[k], usual[k]) for k in usual)


def test_paddle_bts_loads_it_bit_for_bit(models):
    usual, safe = ({k: v.numpy() for k, v in m.state_dict().items()} for m in models["paddle"])
    assert list(safe) == list(usual)
    assert all(safe[k].dtype == usual[k].dtype and np.array_equal(safe[k], usual[k]) for k in usual)


def test_outputs_equal_the_usual_loads(models):
    rng = np.random.default_rng(0)
    image, focal = rng.standard_normal((1, 3, 32, 64), dtype=np.float32), np.array([518.8579], np.float32)
    with torch.no_grad():
        torch_outputs = [[t.numpy() for t in m(torch.from_numpy(image), torch.from_numpy(focal))]
                         for m in models["torch"]]
    with paddle.no_grad():
        paddle_outputs = [[t.numpy() for t in m(paddle.to_tensor(image), paddle.to_tensor(focal))]
                          for m in models["paddle"]]
    for usual, safe in (torch_outputs, paddle_outputs):
        assert len(usual) == 5 and all(np.isfinite(u).all() and np.array_equal(u, s) for u, s in zip(usual, safe))


def test_write_casts_to_float32_and_uses_torch_ref_names(tmp_path):
    legacy = "encoder.base_model.denseblock1.denselayer1.norm.1.weight"   # raw torchvision DenseNet name
    half = torch.tensor([1.5, -2.25, 65504.0], dtype=torch.float16)
    write_safetensors({legacy: half, "decoder.bn.num_batches_tracked": torch.tensor(7)}, tmp_path / "m", METADATA)
    header, _ = header_of(tmp_path / "m")
    assert {k: v["dtype"] for k, v in header.items() if k != "__metadata__"} == {
        "encoder.base_model.denseblock1.denselayer1.norm1.weight": "F32", "decoder.bn.num_batches_tracked": "I64"}
    assert [p.name for p in tmp_path.iterdir()] == ["m"]        # the temporary name is gone


def write_bad_file(kind, source, state, path):
    """One kind of bad model.safetensors at `path`, made from the good file `source` holding `state`."""
    if kind == "truncated file":
        path.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    elif kind == "text file":
        path.write_text("hello\n")
    elif kind == "torch checkpoint":
        torch_ref.save_official_checkpoint(state, str(path))
    elif kind == "no metadata":
        save_file(state, str(path))
    elif kind == "other encoder":
        write_safetensors(state, path, {**METADATA, "encoder": "resnet50_bts"})
    elif kind == "missing key":
        write_safetensors({k: v for k, v in state.items() if k != "decoder.conv1.0.weight"}, path, METADATA)
    elif kind == "float16":
        save_file({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, str(path),
                  metadata={"format": FORMAT, **{k: str(v) for k, v in METADATA.items()}})
    elif kind == "nan":
        weight = state["decoder.conv1.0.weight"].clone()
        weight[0, 0, 0, 0] = float("nan")
        write_safetensors({**state, "decoder.conv1.0.weight": weight}, path, METADATA)


BAD_FILES = {
    "missing file": "no such file",
    "truncated file": "not a readable safetensors file (Error while deserializing header",
    "text file": "not a readable safetensors file",
    "torch checkpoint": "not a readable safetensors file",
    "no metadata": f"not a BTS weights file (metadata format None, expected '{FORMAT}'",
    "other encoder": "holds resnet50_bts weights, not mobilenetv2_bts; build the model with resnet50_bts",
    "missing key": "does not fit mobilenetv2_bts: 1 missing key(s), e.g. decoder.conv1.0.weight",
    "float16": "does not fit mobilenetv2_bts: 356 tensor(s) not float32, e.g. ",
    "nan": "does not fit mobilenetv2_bts: 1 tensor(s) with NaN/Inf, e.g. decoder.conv1.0.weight",
}


@pytest.fixture(scope="module")
def good_file(converted):
    """(the converted model.safetensors, its state, a blank model per loader): refused files load nothing."""
    path = converted[1] / SAFETENSORS_FILE
    return path, read_safetensors(path, ENCODER)[0], ((load_torch, torch_ref.BtsModel(ENCODER)),
                                                      (load_paddle, paddle_model()))


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_file_is_one_line_input_error_in_both_frameworks(kind, good_file, tmp_path):
    source, state, loaders = good_file
    path = tmp_path / SAFETENSORS_FILE
    write_bad_file(kind, source, state, path)
    for load, model in loaders:
        with pytest.raises(InputError) as error:
            load(model, path)
        message = str(error.value)
        assert message.splitlines() == [message] and message.startswith(str(path)), message
        assert BAD_FILES[kind] in message, message


def test_publish_accepts_the_folder(converted):
    """publish's file check: every listed file matches, nothing unlisted. The whole publish run, archive
    listing included, is test_conversion_cli's (gzip of 130 MB and re-verification cost ~10 s here)."""
    _, output = converted
    publish.check_files(output, read_manifest(output))

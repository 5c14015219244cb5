"""ImageNet backbones as a user meets them: torchvision's files (made here, seeded, saved as torchvision saves
them; nothing is downloaded) to paddle_bts's encoder and back with conversion/backbone.py, the converters'
one-line answers when a backbone or a folder lands on the wrong side, and both training commands starting
their encoder from one (config key encoder_weights).

Verification runs for mobilenetv2_bts only (the smallest encoder; figures for all seven: reply of the issue).
"""
import contextlib
import io
import json

import numpy as np
import paddle
import pytest
import torch

import paddle_bts
import paddle_bts.train as ptrain
import torch_ref
import torch_ref.train as ttrain
from as_user import REPO, leftovers, one_error_line
from helpers import one_tensor_off
from bts_core.backbones import BACKBONES, normalise_torch_key, to_encoder_key
from bts_core.config import ConfigError, validate
from bts_core.spec import ENCODERS
from conversion import backbone, paddle2torch, torch2paddle
from conversion.convert import torch_to_paddle
from conversion.manifest import sha256_file
from conversion.seeded import save_seeded_backbone, seeded_backbone

ENCODER = "mobilenetv2_bts"
CONFIG = REPO / "configs" / "bts_synthetic.yaml"


def quietly(main, argv):
    """Runs a command's main in-process; returns (exit code, stdout)."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(argv)
    return code, buffer.getvalue()


def to_paddle(source, encoder, output, *extra):
    return quietly(backbone.main, ["--to-paddle", str(source), "--encoder", encoder, "--output", str(output), *extra])


def to_torch(source, encoder, output, *extra):
    return quietly(backbone.main, ["--to-torch", str(source), "--encoder", encoder, "--output", str(output), *extra])


def without_head(state, encoder):
    head = BACKBONES[encoder].head
    return {k: v for k, v in state.items() if not (head and k.startswith(f"{head}."))}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(torchvision file, verified --to-paddle folder, its stdout) for mobilenetv2_bts."""
    folder = tmp_path_factory.mktemp("backbone")
    source = save_seeded_backbone(ENCODER, folder / "mobilenet_v2.pth")
    code, stdout = to_paddle(source, ENCODER, folder / "paddle")
    assert code == 0
    return source, folder / "paddle", stdout


# ---- both directions, every encoder ----------------------------------------------------------------

@pytest.mark.parametrize("encoder", ENCODERS)
def test_torchvision_paddle_torchvision_is_bit_exact(encoder, tmp_path):
    source = save_seeded_backbone(encoder, tmp_path / "source.pth", seed=3, calibrate=False)
    assert to_paddle(source, encoder, tmp_path / "paddle", "--no-verify")[0] == 0
    assert to_torch(tmp_path / "paddle", encoder, tmp_path / "back.pth")[0] == 0
    expected = without_head(torch.load(source, weights_only=True), encoder)
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    assert list(back) == list(expected)
    assert [k for k in expected if back[k].dtype != expected[k].dtype or not torch.equal(back[k], expected[k])] == []
    manifest = json.loads((tmp_path / "paddle" / "manifest.json").read_text())
    head = 2 if BACKBONES[encoder].head else 0   # weight and bias; ResNets keep fc as BTS does
    assert manifest["conversion"]["dropped"] == len(manifest["conversion"]["bn_counters"]) + head
    for path in tmp_path.rglob("*.p*"):   # resnext101's files are 355 MB each
        path.unlink()


def test_legacy_densenet_names_convert_to_the_same_weights(tmp_path):
    encoder = "densenet121_bts"
    modern = save_seeded_backbone(encoder, tmp_path / "modern.pth", calibrate=False)
    legacy = save_seeded_backbone(encoder, tmp_path / "legacy.pth", calibrate=False, legacy=True)
    assert "features.denseblock1.denselayer1.norm.1.weight" in torch.load(legacy, weights_only=True)
    for name in ("modern", "legacy"):
        assert to_paddle(tmp_path / f"{name}.pth", encoder, tmp_path / name, "--no-verify")[0] == 0
    a, b = (paddle.load(str(tmp_path / name / "encoder.pdparams"), return_numpy=True) for name in ("modern", "legacy"))
    assert list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)
    code, stdout = to_torch(tmp_path / "legacy", encoder, tmp_path / "back.pth")
    assert code == 0 and "121 BN counters set to 0" in stdout   # the 2017 files have none
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    source = without_head(torch.load(modern, weights_only=True), encoder)
    assert list(back) == list(source)   # today's names
    assert all(torch.equal(back[k], source[k]) for k in source if not k.endswith("num_batches_tracked"))


# ---- the verified conversion -------------------------------------------------------------------

def test_verified_conversion_writes_manifest_and_model_card(converted):
    source, output, stdout = converted
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["format"] == "bts-paddle-backbone/1" and manifest["torchvision"] == "mobilenet_v2"
    assert manifest["source"]["sha256"] == sha256_file(source)
    assert sorted(manifest["files"]) == ["README.md", "encoder.pdparams"]
    assert all(sha256_file(output / name) == entry["sha256"] for name, entry in manifest["files"].items())
    conversion = manifest["conversion"]
    assert conversion["mapped"] == 260 and len(conversion["bn_counters"]) == 52
    assert conversion["dropped_keys"]["classifier.1.weight"].startswith("ImageNet classifier head")
    verification = manifest["verification"]
    assert verification["passed"] and len(verification["checks"]) == 10   # 2 inputs x 5 skip features
    assert all(0 < c["max_abs_diff"] <= c["tolerance"] for c in verification["checks"])
    card = (output / "README.md").read_text()
    assert "| photo | 18 |" in card and "Verdict: **pass**" in card and "encoder_weights=<this folder>" in card
    assert "| seeded | 1 |" in stdout and f"encoder_weights: {output}" in stdout


def test_a_wrong_tensor_fails_verification_exit_1_and_leaves_nothing(converted, tmp_path, capsys, monkeypatch):
    source, _, _ = converted
    monkeypatch.setattr(backbone, "backbone_to_paddle",
                        one_tensor_off(backbone.backbone_to_paddle, "base_model.6.conv.1.0.weight"))
    output = tmp_path / "converted"
    assert to_paddle(source, ENCODER, output)[0] == 1
    one_error_line(capsys, "differ beyond tolerance", "on the")
    assert leftovers(output) == []


# ---- bad input: one line, exit 2, nothing written ----------------------------------------------

def truncated(folder):
    path = save_seeded_backbone(ENCODER, folder / "truncated.pth", calibrate=False)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def whole_model(folder):
    path = folder / "model"
    torch_ref.save_official_checkpoint(torch_ref.BtsModel(ENCODER), str(path))
    return path


BAD_TO_PADDLE = {   # case -> (make the input, encoder asked for, fragments of the one error line)
    "missing file": (lambda folder: folder / "nope.pth", ENCODER, ["no such file"]),
    "truncated file": (truncated, ENCODER, ["not a readable torch checkpoint"]),
    "other encoder": (lambda folder: save_seeded_backbone("resnet50_bts", folder / "r50.pth", calibrate=False),
                      "densenet121_bts", ["looks like a resnet50_bts torchvision backbone, not densenet121_bts",
                                          "--encoder resnet50_bts"]),
    "resnext50 as resnet50": (lambda folder: save_seeded_backbone("resnext50_bts", folder / "x50.pth", calibrate=False),
                              "resnet50_bts", ["looks like a resnext50_bts torchvision backbone"]),
    "whole BTS checkpoint": (whole_model, ENCODER, ["is a whole BTS checkpoint", "conversion/torch2paddle.py"]),
}


@pytest.mark.parametrize("case", list(BAD_TO_PADDLE))
def test_bad_to_paddle_input_is_one_line_exit_2(case, tmp_path, capsys):
    make, encoder, fragments = BAD_TO_PADDLE[case]
    output = tmp_path / "out" / "converted"
    assert to_paddle(make(tmp_path), encoder, output)[0] == 2
    one_error_line(capsys, *fragments)
    assert leftovers(output) == [] and not output.parent.exists()


def test_bad_to_torch_input_is_one_line_exit_2(converted, tmp_path, capsys):
    source, output, _ = converted
    target = tmp_path / "back.pth"
    assert to_torch(source, ENCODER, target)[0] == 2
    one_error_line(capsys, "is a torch file", "conversion/backbone.py --to-paddle")
    assert to_torch(output, "densenet121_bts", target)[0] == 2
    one_error_line(capsys, "says encoder mobilenetv2_bts, not densenet121_bts")
    whole = whole_paddle_folder(tmp_path)
    assert to_torch(whole, ENCODER, target)[0] == 2
    one_error_line(capsys, "holds a whole BTS model", "conversion/paddle2torch.py", f"{whole}/encoder.pdparams")
    target.write_text("keep")
    assert to_torch(output, ENCODER, target)[0] == 2
    one_error_line(capsys, "exists; pass --force")
    assert target.read_text() == "keep" and leftovers(target) == ["back.pth"]


def test_existing_output_is_kept_without_force(converted, tmp_path, capsys):
    source, _, _ = converted
    output = tmp_path / "paddle"
    output.mkdir()
    assert to_paddle(source, ENCODER, output)[0] == 2
    one_error_line(capsys, "exists; pass --force")
    assert list(output.iterdir()) == []


# ---- a backbone or a folder on the wrong side: the whole-model converters say what to run --------

def test_torch2paddle_names_the_backbone_command_for_a_torchvision_file(tmp_path, capsys):
    source = save_seeded_backbone("densenet121_bts", tmp_path / "densenet121.pth", calibrate=False)
    argv = ["--checkpoint", str(source), "--encoder", "densenet161_bts", "--output", str(tmp_path / "out")]
    assert torch2paddle.main(argv) == 2
    line = one_error_line(capsys, "conversion/backbone.py --to-paddle FILE --encoder densenet121_bts --output DIR",
                          "encoder_weights")
    assert line.startswith(f"error: {source}: a torchvision densenet121 ImageNet backbone")
    assert not (tmp_path / "out").exists()


def test_whole_model_converters_name_the_backbone_command_for_a_backbone_folder(converted, tmp_path, capsys):
    _, output, _ = converted
    assert torch2paddle.main(["--checkpoint", str(output), "--encoder", ENCODER, "--output", str(tmp_path / "o")]) == 2
    one_error_line(capsys, "directory of Paddle encoder weights", f"conversion/backbone.py --to-torch {output}")
    assert paddle2torch.main(["--weights", str(output), "--encoder", ENCODER, "--output", str(tmp_path / "m")]) == 2
    one_error_line(capsys, "an encoder alone", "conversion/backbone.py --to-torch", "encoder_weights")
    assert list(tmp_path.iterdir()) == []


# ---- training from ImageNet weights -------------------------------------------------------------

def test_encoder_weights_with_resumed_weights_is_a_config_error():
    for key in ("checkpoint_path", "load_weights_folder"):
        with pytest.raises(ConfigError, match=f"encoder_weights .* and {key} .*: set one of them"):
            validate({"synthetic": True, "encoder_weights": "w", key: "x"})


def start_spy(module, monkeypatch):
    """Records (encoder state, decoder state) of the model as the command's training loop receives it."""
    seen, run_epochs = [], module.run_epochs

    def spy(model, *args, **kwargs):
        seen.append({name: {k: v.detach().numpy().copy() if isinstance(v, torch.Tensor) else v.numpy()
                            for k, v in getattr(model, name).state_dict().items()} for name in ("encoder", "decoder")})
        return run_epochs(model, *args, **kwargs)
    monkeypatch.setattr(module, "run_epochs", spy)
    return seen


def train_argv(tmp_path, weights, framework):
    return ["--config", str(CONFIG), "-o", f"log_directory={tmp_path / framework}", f"data_path={tmp_path / 'tree'}",
            "synthetic_images=4", "num_epochs=1", f"encoder_weights={weights}"]


def test_both_training_commands_start_the_encoder_from_the_same_imagenet_numbers(converted, tmp_path, monkeypatch):
    source, folder, _ = converted
    torch_start, paddle_start = start_spy(ttrain, monkeypatch), start_spy(ptrain, monkeypatch)
    code, said = quietly(ttrain.main, train_argv(tmp_path, source, "torch"))
    assert code == 0 and said.startswith(f"encoder from {source}: torchvision mobilenet_v2, 312 tensors; 2 head")
    code, said = quietly(ptrain.main, train_argv(tmp_path, folder, "paddle"))
    assert code == 0 and said.startswith(f"encoder from {folder / 'encoder.pdparams'}: 260 tensors")
    (t_start,), (p_start,) = torch_start, paddle_start
    # torch: exactly the torchvision file's numbers
    file = {to_encoder_key(k, ENCODER): v for k, v in torch.load(source, weights_only=True).items()}
    assert all(np.array_equal(t_start["encoder"][k.removeprefix("encoder.")], v.numpy())
               for k, v in file.items() if k is not None)
    # Paddle: exactly the converted file's, which are the torch start's under the converter's names
    converted_file = paddle.load(str(folder / "encoder.pdparams"), return_numpy=True)
    assert list(p_start["encoder"]) == list(converted_file)
    assert all(np.array_equal(p_start["encoder"][k], v) for k, v in converted_file.items())
    expected, _ = torch_to_paddle({f"encoder.{k}": torch.from_numpy(v) for k, v in t_start["encoder"].items()},
                                  ENCODER, parts=("encoder",))
    assert all(np.array_equal(p_start["encoder"][k], v) for k, v in expected["encoder"].items())
    # the decoders keep each framework's official Xavier start, as without encoder_weights
    torch.manual_seed(0)
    xavier = torch_ref.build_model(ENCODER).decoder.state_dict()
    assert all(np.array_equal(t_start["decoder"][k], v.numpy()) for k, v in xavier.items())
    paddle.seed(0)
    xavier = paddle_bts.build_model(ENCODER).decoder.state_dict()
    assert all(np.array_equal(p_start["decoder"][k], v.numpy()) for k, v in xavier.items())


def whole_paddle_folder(folder):
    (folder / "whole").mkdir()
    for name in ("encoder.pdparams", "depth.pdparams"):
        (folder / "whole" / name).write_text("never read")
    return folder / "whole"


@pytest.mark.parametrize("framework,weights,fragment", [
    ("torch", "backbone folder", "directory of Paddle encoder weights"),
    ("torch", "whole checkpoint", "is a whole BTS checkpoint"),
    ("paddle", "torchvision file", "is a torch file"),
    ("paddle", "whole folder", "holds a whole BTS model"),
])
def test_training_refuses_the_wrong_weights_with_one_line(framework, weights, fragment, converted, tmp_path, capsys):
    source, folder, _ = converted
    given = {"backbone folder": lambda: folder, "torchvision file": lambda: source,
             "whole checkpoint": lambda: whole_model(tmp_path), "whole folder": lambda: whole_paddle_folder(tmp_path)}
    given = given[weights]()
    module = ttrain if framework == "torch" else ptrain
    assert module.main(train_argv(tmp_path, given, framework)) == 2
    one_error_line(capsys, fragment)
    assert not (tmp_path / framework / "bts_synthetic").exists()


def test_backbone_keys_the_tests_rely_on():
    """The table's three shapes: DenseNet/MobileNetV2 keep `features`, drop `classifier`; ResNets keep all."""
    assert to_encoder_key("features.denseblock1.denselayer1.norm.1.weight", "densenet161_bts") == \
        "encoder.base_model.denseblock1.denselayer1.norm1.weight"
    assert to_encoder_key("classifier.weight", "densenet161_bts") is None
    assert to_encoder_key("fc.weight", "resnet50_bts") == "encoder.base_model.fc.weight"
    assert to_encoder_key("classifier.1.bias", ENCODER) is None
    with pytest.raises(KeyError):
        to_encoder_key("conv1.weight", "densenet121_bts")
    legacy = seeded_backbone("densenet121_bts", calibrate=False, legacy=True)
    modern = seeded_backbone("densenet121_bts", calibrate=False)
    assert [normalise_torch_key(k) for k in legacy] == [k for k in modern if not k.endswith("num_batches_tracked")]

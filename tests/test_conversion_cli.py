"""The conversion CLIs as a user meets them: exit codes, one-line errors, and nothing left behind on failure.

mobilenetv2_bts throughout: the smallest encoder (Paddle's eager CPU convolutions are slow on 2 cores).
"""
import argparse
import contextlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
import torch

import torch_ref
from as_user import leftovers, one_error_line, run_cli
from helpers import one_tensor_off
from conversion import paddle2torch, publish, torch2paddle
from conversion.convert import torch_layout
from conversion.manifest import sha256_file
from conversion.seeded import save_seeded_checkpoint

ENCODER = "mobilenetv2_bts"


def zeros_state(encoder):
    """An encoder's exact layout, all zeros: enough for every check that fails before verification."""
    return {k: torch.zeros(shape, dtype=torch.int64 if k.endswith("num_batches_tracked") else torch.float32)
            for k, (shape, _) in torch_layout(encoder).items()}


def with_tensor(state, key, value):
    changed = dict(state)
    changed[key] = value
    return changed


def poisoned(state, value):
    weight = state["decoder.conv1.0.weight"].clone()
    weight[0, 0, 0, 0] = value
    return with_tensor(state, "decoder.conv1.0.weight", weight)


def write_bad_checkpoint(kind, folder):
    """The file for one kind of bad input; returns (path, encoder to ask for)."""
    path, state = folder / f"{kind.replace(' ', '_')}.pth", zeros_state(ENCODER)
    if kind == "missing file":
        return path, ENCODER
    if kind == "truncated file":
        torch_ref.save_official_checkpoint(state, str(path))
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "text file":
        path.write_text("hello\n")
    elif kind == "markdown file":
        path.write_text("# notes\n")
    elif kind == "pickled list":
        torch.save([1, 2, 3], path)
    elif kind == "needs code":
        torch.save({"model": state, "args": argparse.Namespace(lr=1e-4)}, path)
    elif kind == "missing key":
        torch.save({k: v for k, v in state.items() if k != "decoder.conv1.0.weight"}, path)
    elif kind == "unexpected key":
        torch.save(with_tensor(state, "decoder.extra.weight", torch.zeros(3)), path)
    elif kind == "shape mismatch":
        torch.save(with_tensor(state, "decoder.conv1.0.weight", torch.zeros(3, 3)), path)
    elif kind == "nan weights":
        torch.save(poisoned(state, float("nan")), path)
    elif kind == "inf weights":
        torch.save(poisoned(state, float("inf")), path)
    elif kind == "other encoder":
        torch_ref.save_official_checkpoint(zeros_state("resnet50_bts"), str(path))
        return path, "densenet161_bts"
    elif kind == "not bts":
        torch.save({"features.conv0.weight": torch.zeros(64, 3, 7, 7)}, path)
    return path, ENCODER


BAD_INPUTS = {
    "missing file": ["no such file"],
    "truncated file": ["not a readable torch checkpoint"],
    "text file": ["not a readable torch checkpoint"],
    "markdown file": ["not a readable torch checkpoint"],
    "pickled list": ["not a BTS checkpoint"],
    "needs code": ["refuses to load with weights_only=True", "needs code"],
    "missing key": ["1 missing key(s) that mobilenetv2_bts needs, e.g. decoder.conv1.0.weight"],
    "unexpected key": ["1 unexpected key(s), e.g. decoder.extra.weight"],
    "shape mismatch": ["1 shape mismatch(es), e.g. decoder.conv1.0.weight [3, 3]"],
    "nan weights": ["1 tensor(s) with NaN/Inf, e.g. decoder.conv1.0.weight"],
    "inf weights": ["1 tensor(s) with NaN/Inf, e.g. decoder.conv1.0.weight"],
    "other encoder": ["looks like a resnet50_bts checkpoint, not densenet161_bts", "--encoder resnet50_bts"],
    "not bts": ["matches no BTS encoder", "features.conv0.weight"],
}


@pytest.mark.parametrize("kind", list(BAD_INPUTS))
def test_bad_checkpoint_is_one_line_exit_2_and_leaves_nothing(kind, tmp_path, capsys):
    checkpoint, encoder = write_bad_checkpoint(kind, tmp_path)
    output = tmp_path / "out" / "converted"
    assert torch2paddle.main(["--checkpoint", str(checkpoint), "--encoder", encoder, "--output", str(output)]) == 2
    one_error_line(capsys, *BAD_INPUTS[kind])
    assert leftovers(output) == [] and not output.parent.exists()   # not even the parent it created


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "model"
    torch_ref.save_official_checkpoint(zeros_state(ENCODER), str(path))
    return path


def test_existing_output_without_force_is_kept(good_checkpoint, tmp_path, capsys):
    output = tmp_path / "converted"
    output.mkdir()
    (output / "mine.txt").write_text("keep me")
    argv = ["--checkpoint", str(good_checkpoint), "--encoder", ENCODER, "--output", str(output), "--no-verify"]
    assert torch2paddle.main(argv) == 2
    one_error_line(capsys, "exists; pass --force")
    assert [p.name for p in output.iterdir()] == ["mine.txt"] and leftovers(output) == ["converted"]


def test_unwritable_output_is_one_line_exit_2(good_checkpoint, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    output = blocker / "converted"          # a file where a folder is needed: fails even for root
    argv = ["--checkpoint", str(good_checkpoint), "--encoder", ENCODER, "--output", str(output), "--no-verify"]
    assert torch2paddle.main(argv) == 2
    one_error_line(capsys, "cannot write", "Not a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_one_line_exit_2(good_checkpoint, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    argv = ["--checkpoint", str(good_checkpoint), "--encoder", ENCODER, "--output", str(locked / "out")]
    assert torch2paddle.main(argv) == 2
    one_error_line(capsys, "cannot write", "Permission denied")
    assert list(locked.iterdir()) == []


def test_force_replaces_output_only_after_success(good_checkpoint, tmp_path, capsys):
    output = tmp_path / "converted"
    output.mkdir()
    (output / "old.txt").write_text("old")
    bad, _ = write_bad_checkpoint("missing key", tmp_path)
    argv = ["--encoder", ENCODER, "--output", str(output), "--no-verify", "--force"]
    assert torch2paddle.main(["--checkpoint", str(bad), *argv]) == 2
    one_error_line(capsys, "missing key")
    assert [p.name for p in output.iterdir()] == ["old.txt"]          # a failure keeps the old folder
    assert torch2paddle.main(["--checkpoint", str(good_checkpoint), *argv]) == 0
    assert sorted(p.name for p in output.iterdir()) == ["README.md", "depth.pdparams", "encoder.pdparams",
                                                         "manifest.json", "model.safetensors"]
    assert leftovers(output) == ["converted"]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_source_is_cast_and_said(dtype, tmp_path, capsys):
    checkpoint = tmp_path / "half.pth"
    torch.save({k: v.to(dtype) if v.is_floating_point() else v for k, v in zeros_state(ENCODER).items()}, checkpoint)
    argv = ["--checkpoint", str(checkpoint), "--encoder", ENCODER, "--output", str(tmp_path / "out"), "--no-verify"]
    assert torch2paddle.main(argv) == 0
    name = str(dtype).removeprefix("torch.")
    assert f"cast 356 tensor(s) from {name} to float32" in capsys.readouterr().out
    casts = json.loads((tmp_path / "out" / "manifest.json").read_text())["conversion"]["casts"]
    assert len(casts) == 356 and set(casts.values()) == {name}


# --- max_depth: the dataset's official value unless given -------------------------------------------

MAX_DEPTH_CASES = {   # extra argv -> (dataset, max_depth, manifest's max_depth_source, how the summary says it)
    "kitti-default": ([], "kitti", 80.0, "dataset default", "80 m (kitti default)"),
    "nyu-default": (["--dataset", "nyu"], "nyu", 10.0, "dataset default", "10 m (nyu default)"),
    "nyu-given": (["--dataset", "nyu", "--max-depth", "12"], "nyu", 12.0, "given", "12 m (given with --max-depth)"),
}


@pytest.mark.parametrize("case", list(MAX_DEPTH_CASES))
def test_max_depth_defaults_per_dataset_and_is_recorded(case, good_checkpoint, tmp_path, capsys, monkeypatch):
    extra, dataset, max_depth, source, said = MAX_DEPTH_CASES[case]
    calls = []   # what verification runs with (the real one: test_verified_conversion_writes_manifest_...)

    def recording_verify(state, folder, encoder, max_depth, dataset):
        calls.append((encoder, max_depth, dataset))
        return []
    monkeypatch.setattr(torch2paddle, "verify", recording_verify)
    output = tmp_path / "converted"
    assert torch2paddle.main(["--checkpoint", str(good_checkpoint), "--encoder", ENCODER,
                              "--output", str(output), *extra]) == 0
    manifest = json.loads((output / "manifest.json").read_text())
    assert (manifest["max_depth"], manifest["max_depth_source"], manifest["dataset"]) == (max_depth, source, dataset)
    assert calls == [(ENCODER, max_depth, dataset)]
    assert f"max_depth {said}, dataset {dataset}" in capsys.readouterr().out.splitlines()
    card = (output / "README.md").read_text()
    assert f"max_depth {said}, dataset `{dataset}`" in card
    assert f'max_depth={max_depth:g}, dataset="{dataset}"' in card


# --- the verified path, once: convert with verification, back to torch, publish --------------------

@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(seeded checkpoint, verified output folder, stdout of the conversion)."""
    folder = tmp_path_factory.mktemp("verified")
    checkpoint = save_seeded_checkpoint(ENCODER, folder / "model")
    output = folder / "paddle"
    argv = ["--checkpoint", str(checkpoint), "--encoder", ENCODER, "--output", str(output)]
    stdout = run_quietly(torch2paddle.main, argv)
    return checkpoint, output, stdout


def run_quietly(main, argv):
    """Runs a CLI's main in-process, asserting success; returns what it printed."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(argv) == 0
    return buffer.getvalue()


def test_verified_conversion_writes_manifest_and_model_card(converted):
    checkpoint, output, stdout = converted
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["source"]["sha256"] == sha256_file(checkpoint)
    assert all(sha256_file(output / name) == entry["sha256"] for name, entry in manifest["files"].items())
    assert manifest["parameters"]["count"] == manifest["parameters"]["official_count"] == 16_338_992
    verification = manifest["verification"]
    assert verification["passed"] and len(verification["checks"]) == 10   # 2 inputs x 5 outputs
    assert {c["input"] for c in verification["checks"]} == {"seeded", "photo"}
    assert all(0 < c["max_abs_diff"] <= c["tolerance"] for c in verification["checks"])
    assert manifest["conversion"]["dropped"] == len(manifest["conversion"]["bn_counters"]) == 66
    card = (output / "README.md").read_text()
    assert "| photo | final_depth |" in card and "Verdict: **pass**" in card
    assert "| seeded | final_depth |" in stdout


def test_paddle2torch_restores_the_source_bit_for_bit(converted, tmp_path):
    checkpoint, output, _ = converted
    back = tmp_path / "model_back.pth"
    run_quietly(paddle2torch.main, ["--weights", str(output), "--encoder", ENCODER, "--output", str(back)])
    source, restored = torch_ref.read_state_dict(str(checkpoint)), torch_ref.read_state_dict(str(back))
    assert list(restored) == list(source)
    assert all(restored[k].dtype == source[k].dtype and torch.equal(restored[k], source[k]) for k in source)
    assert torch.load(back, weights_only=True).keys() >= {"global_step", "model"}


def test_publish_rechecks_and_packs_reproducibly(converted, tmp_path, capsys):
    _, output, _ = converted
    archive = tmp_path / "release.tar.gz"
    assert publish.main([str(output), "--output", str(archive)]) == 0
    assert "full comparison with torch_ref" in capsys.readouterr().out
    digest, name = (tmp_path / "release.tar.gz.sha256").read_text().split()
    assert digest == sha256_file(archive) and name == archive.name
    assert publish.main([str(output), "--output", str(archive)]) == 2
    one_error_line(capsys, "release.tar.gz exists; pass --force")
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == [f"paddle/{n}" for n in
                                          ("README.md", "depth.pdparams", "encoder.pdparams", "manifest.json",
                                           "model.safetensors")]
    again = tmp_path / "again.tar.gz"
    publish.pack(output, ["manifest.json", "README.md"], again, 0)
    first = sha256_file(again)
    publish.pack(output, ["README.md", "manifest.json"], again, 0)
    assert sha256_file(again) == first   # same content, same bytes, whatever the order or the clock


def test_publish_without_source_uses_recorded_golden_values(converted, tmp_path, capsys):
    checkpoint, output, _ = converted
    moved = tmp_path / "moved"
    checkpoint.rename(moved)
    try:
        assert publish.main([str(output), "--output", str(tmp_path / "r.tar.gz")]) == 0
    finally:
        moved.rename(checkpoint)
    assert "recorded positions" in capsys.readouterr().out


def test_publish_refuses_a_tampered_folder(converted, tmp_path, capsys):
    _, output, _ = converted
    copy = tmp_path / "copy"
    copy.mkdir()
    for item in output.iterdir():
        (copy / item.name).symlink_to(item)
    (copy / "README.md").unlink()
    (copy / "README.md").write_text("edited")
    (copy / "notes.txt").write_text("extra")
    assert publish.main([str(copy)]) == 1
    one_error_line(capsys, "notes.txt is not in manifest.json")
    (copy / "notes.txt").unlink()
    assert publish.main([str(copy)]) == 1
    one_error_line(capsys, "README.md: size or sha256 differs")
    assert leftovers(tmp_path / "copy.tar.gz") == [] and leftovers(tmp_path / "copy.tar.gz.sha256") == []


def test_publish_without_manifest_is_exit_2(tmp_path, capsys):
    assert publish.main([str(tmp_path)]) == 2
    one_error_line(capsys, "manifest.json: no such file")


def test_failed_verification_is_exit_1_and_leaves_nothing(converted, tmp_path, capsys, monkeypatch):
    checkpoint, _, _ = converted
    monkeypatch.setattr(torch2paddle, "torch_to_paddle",
                        one_tensor_off(torch2paddle.torch_to_paddle, "conv1.0.weight", part="decoder"))
    output = tmp_path / "converted"
    assert torch2paddle.main(["--checkpoint", str(checkpoint), "--encoder", ENCODER, "--output", str(output)]) == 1
    one_error_line(capsys, "differ beyond tolerance", "final_depth")
    assert leftovers(output) == []


# --- paddle2torch's own bad inputs ------------------------------------------------------------------

def test_paddle2torch_bad_inputs(converted, tmp_path, capsys):
    _, output, _ = converted
    assert paddle2torch.main(["--weights", str(tmp_path / "nope"), "--encoder", ENCODER,
                              "--output", str(tmp_path / "m.pth")]) == 2
    one_error_line(capsys, "no such folder")
    assert paddle2torch.main(["--weights", str(output), "--encoder", "densenet121_bts",
                              "--output", str(tmp_path / "m.pth")]) == 2
    one_error_line(capsys, "says encoder mobilenetv2_bts, not densenet121_bts")
    bare = tmp_path / "bare"       # no manifest: the key sets tell
    bare.mkdir()
    for name in ("encoder.pdparams", "depth.pdparams"):
        (bare / name).symlink_to(output / name)
    assert paddle2torch.main(["--weights", str(bare), "--encoder", "densenet121_bts",
                              "--output", str(tmp_path / "m.pth")]) == 2
    one_error_line(capsys, "looks like a mobilenetv2_bts checkpoint")
    (bare / "depth.pdparams").unlink()
    assert paddle2torch.main(["--weights", str(bare), "--encoder", ENCODER, "--output", str(tmp_path / "m.pth")]) == 2
    one_error_line(capsys, "depth.pdparams: no such file")
    existing = tmp_path / "exists.pth"
    existing.write_text("keep")
    assert paddle2torch.main(["--weights", str(output), "--encoder", ENCODER, "--output", str(existing)]) == 2
    one_error_line(capsys, "exists; pass --force")
    assert existing.read_text() == "keep" and leftovers(tmp_path / "m.pth") == []


# --- the embedded default and the scripts as files -----------------------------------------------

def test_default_run_converts_a_seeded_model_and_respects_force(tmp_path, capsys):
    output = tmp_path / "out" / ENCODER   # densenet161 by default; the mechanics are the same
    argv = ["--encoder", ENCODER, "--output", str(output), "--no-verify"]
    assert torch2paddle.main(argv) == 0
    stdout = capsys.readouterr().out
    assert "seeded mobilenetv2_bts" in stdout and "re-run: python conversion/torch2paddle.py --force" in stdout
    manifest = json.loads((output / "manifest.json").read_text())
    assert "seeded demo model" in manifest["source"]["note"] and not Path(manifest["source"]["path"]).exists()
    assert torch2paddle.main(argv) == 2
    one_error_line(capsys, "exists; pass --force")


def test_scripts_run_as_files_with_one_error_line(tmp_path):
    result = run_cli("conversion/torch2paddle.py", "--checkpoint", tmp_path / "nope", "--encoder", ENCODER,
                     "--output", tmp_path / "out")
    assert result.returncode == 2 and result.stderr.splitlines() == [f"error: {tmp_path / 'nope'}: no such file"]
    result = run_cli("-m", "conversion.publish", tmp_path)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr


FOLDERS = {   # a folder given as --checkpoint: what is in it -> what the one error line says
    "one checkpoint": (["model-1000"], "{folder} is a directory, not a checkpoint file; pass --checkpoint "
                                       "{folder}/model-1000"),
    "paddle weights": (["encoder.pdparams", "depth.pdparams"],
                       "{folder} is a directory of Paddle weights (encoder.pdparams, depth.pdparams), not a torch "
                       "checkpoint; convert it with conversion/paddle2torch.py"),
}


@pytest.mark.parametrize("case", list(FOLDERS))
def test_a_folder_as_checkpoint_says_what_to_pass(case, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    names, said = FOLDERS[case]
    for name in names:
        (folder / name).write_text("never read")
    result = run_cli("conversion/torch2paddle.py", "--checkpoint", folder, "--encoder", ENCODER,
                     "--output", tmp_path / "out")
    assert result.returncode == 2 and result.stderr.splitlines() == ["error: " + said.format(folder=folder)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_folder_of_several_checkpoints_or_none_says_so(tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    argv = ["--checkpoint", str(folder), "--encoder", ENCODER, "--output", str(tmp_path / "out")]
    assert torch2paddle.main(argv) == 2
    one_error_line(capsys, f"{folder} is a directory, not a checkpoint file")
    for step in (500, 1000, 1500):
        (folder / f"model-{step}").write_text("never read")
    assert torch2paddle.main(argv) == 2
    one_error_line(capsys, "holds 3 checkpoints (model-500 ... model-1500)", f"--checkpoint {folder}/model-1500")


def test_force_never_replaces_the_folder_that_holds_the_source(tmp_path, capsys):
    """--force replaces the output folder; where that folder holds the checkpoint being read, the command
    refuses in one line and the checkpoint stays (the same check guards reproduce and backbone)."""
    output = tmp_path / "out"
    output.mkdir()
    checkpoint = output / "model"
    checkpoint.write_bytes(b"never read")
    argv = ["--checkpoint", str(checkpoint), "--encoder", ENCODER, "--output", str(output), "--force"]
    assert torch2paddle.main(argv) == 2
    one_error_line(capsys, f"{output} holds the source checkpoint; --force would delete it")
    assert checkpoint.read_bytes() == b"never read"

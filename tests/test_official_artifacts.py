"""Official checkpoints as users hold them, through the converters and the training commands: every shape
bts_main.py writes (periodic, online-eval best with numpy arrays, legacy format, fp16, DataParallel or
bare), AdamW state torch <-> Paddle, and resuming a run in either framework from the other's files.

Checkpoints are written here the way bts_main.py writes them: a DataParallel model's state dict, AdamW
over every encoder parameter (group 0) and every decoder parameter (group 1) after the official
freezing, `torch.save` of the official dict.
"""
import io
import json
import shutil
import zipfile

import numpy as np
import paddle
import pandas as pd
import pytest
import torch
import yaml

import paddle_bts.train as ptrain
import torch_ref
import torch_ref.train as ttrain
from as_user import REPO, leftovers, one_error_line, run_cli
from bts_core.cli import EXIT_BAD_INPUT
from conversion import paddle2torch, torch2paddle
from paddle_bts.optimizer_state import OPTIMIZER_FILE, read_optimizer_file

SMALL = "mobilenetv2_bts"      # the smallest encoder; nothing of it is frozen
FROZEN = "densenet121_bts"     # frozen parameters sit in the official group 0 without state
INPUT = (64, 128)


def official_training_state(encoder, steps=1, seed=0):
    """(DataParallel model, AdamW) after `steps` official iterations on seeded data, as bts_main.py."""
    torch.manual_seed(seed)
    model = torch_ref.build_model(encoder)
    torch_ref.freeze_encoder(model)
    parallel = torch.nn.DataParallel(model)    # on CPU: the 'module.' keys of every official file
    optimizer = torch.optim.AdamW([{"params": model.encoder.parameters(), "weight_decay": 1e-2},
                                   {"params": model.decoder.parameters(), "weight_decay": 0}], lr=1e-4, eps=1e-3)
    model.train()
    for step in range(steps):
        image = torch.randn(2, 3, *INPUT)
        depth = model(image, torch.full((2,), 715.0873))[-1]
        depth.mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    return parallel, optimizer


def official_best(parallel, optimizer, global_step):
    """The dict bts_main.py saves as model-<step>-best_<metric>_<value> with online evaluation on."""
    return {"global_step": global_step, "model": parallel.state_dict(), "optimizer": optimizer.state_dict(),
            "best_eval_measures_higher_better": torch.tensor([0.91, 0.98, 0.99]),
            "best_eval_measures_lower_better": torch.tensor([0.06, 0.3, 2.9, 0.1, 9.0, 0.03]),
            "best_eval_steps": np.full(9, global_step, dtype=np.int32)}


def as_numpy1_legacy(payload):
    """`payload` saved in the legacy (pre-1.6) format, with numpy 1.x's module path for arrays
    (`numpy.core.multiarray`), as the official 2019-2020 files hold it."""
    buffer = io.BytesIO()
    torch.save(payload, buffer, _use_new_zipfile_serialization=False)
    data = buffer.getvalue()
    assert b"numpy._core.multiarray" in data   # protocol 2 GLOBAL opcodes: plain text, newline-ended
    return data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


@pytest.fixture(autouse=True)
def free_disk_after(tmp_path):
    """Checkpoints with AdamW state are ~200 MB (mobilenetv2_bts), runs write several: measured 6.5 GB for
    this file's folders if kept to the session's end, so each test removes its own when done."""
    yield
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture(scope="module")
def small_run():
    return official_training_state(SMALL)


SHAPES = ["periodic", "best", "best_legacy_numpy1", "bare", "bare_module", "fp16"]


def write_shape(shape, parallel, optimizer, path):
    state = parallel.state_dict()
    bare = {k[len("module."):]: v for k, v in state.items()}
    payloads = {"periodic": lambda: {"global_step": 500, "model": state, "optimizer": optimizer.state_dict()},
                "best": lambda: official_best(parallel, optimizer, 1000),
                "bare": lambda: bare, "bare_module": lambda: state,
                "fp16": lambda: {"global_step": 7, "model": {k: v.half() if v.is_floating_point() else v
                                                             for k, v in state.items()}}}
    if shape == "best_legacy_numpy1":
        path.write_bytes(as_numpy1_legacy(official_best(parallel, optimizer, 1000)))
    else:
        torch.save(payloads[shape](), path)
    return bare


@pytest.mark.parametrize("shape", SHAPES)
def test_every_official_checkpoint_shape_converts(shape, small_run, tmp_path, capsys):
    bare = write_shape(shape, *small_run, tmp_path / "model-1000-best_abs_rel_0.05600")
    out = tmp_path / "paddle"
    argv = ["--checkpoint", str(tmp_path / "model-1000-best_abs_rel_0.05600"), "--encoder", SMALL,
            "--output", str(out), "--no-verify"]
    assert torch2paddle.main(argv) == 0, capsys.readouterr().err
    weights = paddle.load(str(out / "depth.pdparams"))
    expected = bare["decoder.conv1.0.weight"].half().float() if shape == "fp16" else bare["decoder.conv1.0.weight"]
    np.testing.assert_array_equal(weights["conv1.0.weight"], expected.numpy())
    if shape == "fp16":
        assert "tensor(s) from float16 to float32" in capsys.readouterr().out


def test_best_checkpoint_keeps_its_best_measures_and_loads_nothing_else(small_run, tmp_path):
    path = tmp_path / "best"
    path.write_bytes(as_numpy1_legacy(official_best(*small_run, 1000)))
    assert not zipfile.is_zipfile(path)   # the pre-1.6 format
    checkpoint = torch_ref.read_checkpoint(str(path))
    assert checkpoint.global_step == 1000 and checkpoint.optimizer is not None
    assert checkpoint.extra["best_eval_steps"].dtype == np.int32
    # exactly numpy's int32 arrays are allowed: any other numpy global is still refused
    torch.save({"model": small_run[0].state_dict(), "x": np.float64(1.0)}, tmp_path / "scalar")
    with pytest.raises(torch_ref.CheckpointError, match="weights_only=True.*numpy"):
        torch_ref.read_checkpoint(str(tmp_path / "scalar"))


class Evil:
    def __reduce__(self):
        return (print, ("unpickled code ran",))


def test_code_in_a_checkpoint_is_never_run(small_run, tmp_path, capsys):
    torch.save({"model": small_run[0].state_dict(), "x": Evil()}, tmp_path / "evil")
    with pytest.raises(torch_ref.CheckpointError, match="refuses to load with weights_only=True.*print"):
        torch_ref.read_checkpoint(str(tmp_path / "evil"))
    assert "unpickled code ran" not in capsys.readouterr().out


# ---- optimizer state -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def frozen_best(tmp_path_factory):
    """An official best checkpoint of densenet121 (frozen parameters in group 0) after 2 steps."""
    path = tmp_path_factory.mktemp("official") / "model-2-best_abs_rel_0.05600"
    torch.save(official_best(*official_training_state(FROZEN, steps=2), 2), path)
    yield path
    shutil.rmtree(path.parent, ignore_errors=True)


def test_optimizer_state_round_trips_bit_exact(frozen_best, tmp_path, capsys):
    folder, back = tmp_path / "paddle", tmp_path / "model-back"
    assert torch2paddle.main(["--checkpoint", str(frozen_best), "--encoder", FROZEN, "--output", str(folder),
                              "--no-verify", "--with-optimizer"]) == 0
    out = capsys.readouterr().out
    manifest = json.loads((folder / "manifest.json").read_text())
    original = torch_ref.read_checkpoint(str(frozen_best))
    with_state = len(original.optimizer["state"])
    assert manifest["optimizer"]["entries"] == manifest["optimizer"]["parameters"] == with_state
    assert manifest["optimizer"]["global_step"] == 2 and OPTIMIZER_FILE in manifest["files"]
    assert f"optimizer state -> {OPTIMIZER_FILE}: {with_state} torch AdamW entries" in out
    paddle_state = read_optimizer_file(folder / OPTIMIZER_FILE)
    assert len(paddle_state) == 4 * with_state + 1 and paddle_state["LR_Scheduler"]["last_epoch"] == 2
    assert paddle2torch.main(["--weights", str(folder), "--encoder", FROZEN, "--output", str(back),
                              "--with-optimizer"]) == 0
    restored = torch_ref.read_checkpoint(str(back))
    assert restored.global_step == 2
    a, b = original.optimizer, restored.optimizer
    assert [g["params"] for g in a["param_groups"]] == [g["params"] for g in b["param_groups"]]
    assert [{k: v for k, v in g.items() if k != "params"} for g in a["param_groups"]] == \
        [{k: v for k, v in g.items() if k != "params"} for g in b["param_groups"]]
    assert a["state"].keys() == b["state"].keys()
    for index, entry in a["state"].items():
        assert float(entry["step"]) == float(b["state"][index]["step"]) == 2
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(entry[key], b["state"][index][key]), (index, key)
    # the restored file loads into the official code's optimizer (every parameter, frozen ones included)
    _, official_optimizer = official_training_state(FROZEN, steps=0)
    official_optimizer.load_state_dict(b)


def test_torch_ref_checkpoints_use_the_official_optimizer_groups():
    model = torch_ref.build_model(FROZEN)
    optimizer = ttrain.build_optimizer(model)
    sizes = [len(g["params"]) for g in optimizer.state_dict()["param_groups"]]
    assert sizes == [len(list(model.encoder.parameters())), len(list(model.decoder.parameters()))]
    assert any(not p.requires_grad for p in model.encoder.parameters())


def test_with_optimizer_refuses_a_checkpoint_without_one(small_run, tmp_path, capsys):
    torch.save({"global_step": 3, "model": small_run[0].state_dict()}, tmp_path / "model")
    out = tmp_path / "paddle"
    assert torch2paddle.main(["--checkpoint", str(tmp_path / "model"), "--encoder", SMALL, "--output", str(out),
                              "--no-verify", "--with-optimizer"]) == EXIT_BAD_INPUT
    one_error_line(capsys, "holds no optimizer state")
    assert leftovers(out) == []


def test_optimizer_state_of_other_weights_is_refused(small_run, tmp_path, capsys):
    parallel, optimizer = small_run
    state = optimizer.state_dict()
    state["state"][0] = {**state["state"][0], "exp_avg": torch.zeros(3, 3)}   # not the first parameter's shape
    torch.save({"global_step": 1, "model": parallel.state_dict(), "optimizer": state}, tmp_path / "model")
    out = tmp_path / "paddle"
    assert torch2paddle.main(["--checkpoint", str(tmp_path / "model"), "--encoder", SMALL, "--output", str(out),
                              "--no-verify", "--with-optimizer"]) == EXIT_BAD_INPUT
    one_error_line(capsys, "optimizer state does not match the weights", "exp_avg")
    assert leftovers(out) == []
    _, other = official_training_state(FROZEN, steps=0)   # groups of another encoder
    torch.save({"global_step": 1, "model": parallel.state_dict(), "optimizer": other.state_dict()}, tmp_path / "model")
    assert torch2paddle.main(["--checkpoint", str(tmp_path / "model"), "--encoder", SMALL, "--output", str(out),
                              "--no-verify", "--with-optimizer"]) == EXIT_BAD_INPUT
    one_error_line(capsys, "optimizer state does not match the weights: its groups hold")
    assert leftovers(out) == []


def test_truncated_pdopt_is_refused(small_run, tmp_path, capsys):
    write_shape("best", *small_run, tmp_path / "model")
    folder, back = tmp_path / "paddle", tmp_path / "back"
    assert torch2paddle.main(["--checkpoint", str(tmp_path / "model"), "--encoder", SMALL, "--output", str(folder),
                              "--no-verify", "--with-optimizer"]) == 0
    capsys.readouterr()
    data = (folder / OPTIMIZER_FILE).read_bytes()
    (folder / OPTIMIZER_FILE).write_bytes(data[: len(data) // 2])
    assert paddle2torch.main(["--weights", str(folder), "--encoder", SMALL, "--output", str(back),
                              "--with-optimizer"]) == EXIT_BAD_INPUT
    one_error_line(capsys, f"{OPTIMIZER_FILE}: not a readable Paddle file")
    assert leftovers(back) == []


# ---- resume ----------------------------------------------------------------------------------------

def train_config(tmp_path, name, **extra):
    config = {"synthetic": True, "encoder": SMALL, "synthetic_images": 4, "batch_size": 2, "num_epochs": 2,
              "input_height": INPUT[0], "input_width": INPUT[1], "data_path": str(tmp_path / "tree"),
              "num_threads": 0, "save_freq": 1, "device": "cpu", "log_directory": str(tmp_path / name), **extra}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def train(module, config, capsys):
    """The training command in this process (as `python -m module --config CONFIG`); its stdout."""
    capsys.readouterr()
    assert module.main(["--config", str(config)]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def losses(tmp_path, name, module):
    return pd.read_csv(tmp_path / name / "bts_eigen_v2" / module.LOSS_LOG)


@pytest.fixture(scope="module")
def whole_runs(tmp_path_factory):
    """{framework's train module: run folder} of one uninterrupted 4-step run each (shared by the tests)."""
    root = tmp_path_factory.mktemp("whole")
    runs = {}
    for module in (ttrain, ptrain):
        assert module.main(["--config", str(train_config(root, module.__name__))]) == 0
        runs[module] = root / module.__name__ / "bts_eigen_v2"
    yield runs
    shutil.rmtree(root, ignore_errors=True)


def test_each_framework_resumes_exactly_where_its_run_stopped(whole_runs, tmp_path, capsys):
    """2 steps an epoch, 4 in all; resumed at step 1 (within epoch 0): steps 1..3 as the uninterrupted run."""
    for module, saved in ((ttrain, "model-1"), (ptrain, "weights_1")):
        key = "checkpoint_path" if module is ttrain else "load_weights_folder"
        out = train(module, train_config(tmp_path, module.__name__, **{key: str(whole_runs[module] / saved)}), capsys)
        assert "global step 1 (epoch 0, batch 1 of 2); optimizer state restored" in out
        whole, resumed = pd.read_csv(whole_runs[module] / module.LOSS_LOG), losses(tmp_path, module.__name__, module)
        assert resumed["step"].tolist() == [1, 2, 3]
        np.testing.assert_array_equal(resumed[["epoch", "lr", "loss"]].to_numpy(),
                                      whole.iloc[1:][["epoch", "lr", "loss"]].to_numpy())


def test_paddle_resumes_a_torch_run_from_converted_files(whole_runs, tmp_path, capsys):
    folder = tmp_path / "converted"
    result = run_cli(REPO / "conversion" / "torch2paddle.py", "--checkpoint", whole_runs[ttrain] / "model-1",
                     "--encoder", SMALL, "--output", folder, "--with-optimizer", "--no-verify")
    assert result.returncode == 0, result.stderr
    out = train(ptrain, train_config(tmp_path, "paddle", load_weights_folder=str(folder)), capsys)
    assert "global step 1 (epoch 0, batch 1 of 2); optimizer state restored" in out
    log = losses(tmp_path, "paddle", ptrain)
    torch_log = pd.read_csv(whole_runs[ttrain] / ttrain.LOSS_LOG)
    assert log["step"].tolist() == [1, 2, 3]
    np.testing.assert_allclose(log["lr"], torch_log["lr"].iloc[1:], rtol=1e-12)
    # the first resumed step runs the same weights on the same batch: its loss is torch's to fp32 rounding
    assert log["loss"].iloc[0] == pytest.approx(torch_log["loss"].iloc[1], rel=1e-4)


def test_resume_without_optimizer_state_or_with_retrain_says_so(small_run, tmp_path, capsys):
    torch.save({"global_step": 3, "model": small_run[0].state_dict()}, tmp_path / "model-3")
    out = train(ttrain, train_config(tmp_path, "fresh", checkpoint_path=str(tmp_path / "model-3")), capsys)
    assert "global step 3 (epoch 1, batch 1 of 2); no optimizer state in it: a fresh AdamW" in out
    write_shape("periodic", *small_run, tmp_path / "model-500")
    out = train(ttrain, train_config(tmp_path, "retrain", checkpoint_path=str(tmp_path / "model-500"), retrain=True,
                                     num_epochs=1), capsys)
    assert "global step 0 (epoch 0, batch 0 of 2); retrain: true, so not at its step 500" in out
    assert losses(tmp_path, "retrain", ttrain)["step"].tolist() == [0, 1]


def test_resume_past_the_end_exits_2(small_run, tmp_path):
    write_shape("periodic", *small_run, tmp_path / "model-500")
    result = run_cli("-m", "torch_ref.train", "--config",
                     train_config(tmp_path, "late", checkpoint_path=str(tmp_path / "model-500")))
    assert result.returncode == 2 and result.stderr.splitlines() == [
        f"error: {tmp_path / 'model-500'} is at global step 500, and the run has 4 steps (2 epochs x 2): nothing "
        "left to train; raise num_epochs, or set retrain: true"]


def test_paddle_resume_refuses_a_truncated_pdopt(whole_runs, tmp_path):
    folder = tmp_path / "weights_1"
    shutil.copytree(whole_runs[ptrain] / "weights_1", folder)
    data = (folder / OPTIMIZER_FILE).read_bytes()
    (folder / OPTIMIZER_FILE).write_bytes(data[:100])
    result = run_cli("-m", "paddle_bts.train", "--config", train_config(tmp_path, "again", load_weights_folder=str(folder)))
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {folder / OPTIMIZER_FILE}: not a readable Paddle file")
    assert not (tmp_path / "again").exists()

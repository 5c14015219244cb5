"""Training in both frameworks as a user meets it: configs, the official recipe's pieces, a 2-step run of
each framework's command on a synthetic tree (checkpoints and loss log loadable back, one summary line,
an earlier run's checkpoints kept unless --force), and the commands' exit codes.

mobilenetv2_bts for the runs (the smallest encoder); densenet161_bts only where the official parameter
count is the point.
"""

import numpy as np
import pandas as pd
import paddle
import pytest
import torch
import yaml

from bts_core.cli import EXIT_BAD_INPUT
import paddle_bts
import paddle_bts.train as ptrain
import torch_ref
import torch_ref.train as ttrain
from as_user import REPO, mode_of, run_cli, usual_mode
from bts_core.config import ConfigError, end_learning_rate, load_config, parse_args, validate

CONFIGS = REPO / "configs"


def write_yaml(path, mapping):
    path.write_text(yaml.safe_dump(mapping))
    return path


# ---- config -------------------------------------------------------------------------------------

def test_shipped_configs_hold_the_official_values():
    kitti = load_config(CONFIGS / "bts_kitti.yaml")
    assert (kitti["encoder"], kitti["dataset"], kitti["max_depth"]) == ("densenet161_bts", "kitti", 80.0)
    assert (kitti["input_height"], kitti["input_width"], kitti["do_kb_crop"], kitti["degree"]) == (352, 704, True, 1.0)
    nyu = load_config(CONFIGS / "bts_nyu.yaml")
    assert (nyu["dataset"], nyu["max_depth"], nyu["input_height"], nyu["input_width"]) == ("nyu", 10.0, 416, 544)
    assert (nyu["do_kb_crop"], nyu["degree"]) == (False, 2.5)
    for config in (kitti, nyu):
        assert (config["batch_size"], config["num_epochs"], config["learning_rate"]) == (4, 50, 1e-4)
        assert (config["adam_eps"], config["weight_decay"], end_learning_rate(config)) == (1e-3, 1e-2, pytest.approx(1e-5))
    assert load_config(CONFIGS / "bts_synthetic.yaml")["synthetic"] is True


def test_dataset_defaults_fill_unset_keys():
    config = validate({"dataset": "nyu", "synthetic": True})
    assert (config["max_depth"], config["input_height"], config["input_width"], config["do_kb_crop"]) == (10.0, 416, 544, False)
    assert validate({"synthetic": True})["max_depth"] == 80.0


@pytest.mark.parametrize("config,fragment", [
    ({"synthetic": True, "batchsize": 2}, "unknown config key 'batchsize' (did you mean batch_size?)"),
    ({"synthetic": True, "learning_rate": "fast"}, "learning_rate: expected float"),
    ({"synthetic": True, "batch_size": 2.5}, "batch_size: expected int"),
    ({"synthetic": True, "num_epochs": True}, "num_epochs: expected int"),
    ({"synthetic": True, "batch_size": 0}, "batch_size: must be > 0"),
    ({"synthetic": True, "weight_decay": -0.1}, "weight_decay: must be >= 0"),
    ({"synthetic": True, "encoder": "vgg16"}, "encoder: 'vgg16' is not one of"),
    ({"synthetic": True, "input_width": 700}, "input_width: 700 is not a multiple of 32"),
    ({"synthetic": True, "end_learning_rate": 1.0}, "end_learning_rate: must be -1 or in [0, learning_rate]"),
    ({"synthetic": True, "checkpoint_path": "a", "load_weights_folder": "b"}, "set at most one"),
    ({"data_path": "x"}, "gt_path: not set"),
    ({"synthetic": True, "seed": None}, "seed: must not be empty"),
])
def test_bad_configs_are_one_line_errors(config, fragment):
    with pytest.raises(ConfigError) as info:
        validate(config)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_overrides_are_parsed_as_yaml_and_validated(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", {"synthetic": True})
    config = load_config(path, ["batch_size=8", "learning_rate=2e-4", "do_random_rotate=false"])
    assert (config["batch_size"], config["learning_rate"], config["do_random_rotate"]) == (8, 2e-4, False)
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(path, ["batch_size"])
    with pytest.raises(ConfigError, match="unknown config key 'bogus'"):
        load_config(path, ["bogus=1"])


def test_every_override_counts_whether_o_is_repeated_or_not():
    argv = ["--config", "c.yaml", "-o", "a=1", "-o", "b=2", "c=3", "--force", "-o", "d=4"]
    assert parse_args(argv, "").opt == ["a=1", "b=2", "c=3", "d=4"]
    assert parse_args(["--config", "c.yaml"], "").opt == []


# ---- the recipe's pieces --------------------------------------------------------------------------

def test_poly_lr_first_and_last_values():
    total, lr0 = 50, 1e-4
    assert ttrain.poly_lr(0, total, lr0, 1e-5) == lr0
    assert ttrain.poly_lr(total - 1, total, lr0, 1e-5) == pytest.approx(9e-5 * (1 / total) ** 0.9 + 1e-5, rel=1e-12)
    assert ttrain.poly_lr(total, total, lr0, 1e-5) == pytest.approx(1e-5, rel=1e-12)
    model = torch.nn.Linear(1, 1)
    torch_sched = ttrain.PolyLR(torch.optim.AdamW(model.parameters(), lr=lr0), total)
    paddle_opt = paddle.optimizer.AdamW(learning_rate=lr0, parameters=paddle.nn.Linear(1, 1).parameters())
    paddle_sched = ptrain.build_scheduler(paddle_opt, total)
    torch_lrs, paddle_lrs = [], []
    for _ in range(total):   # the order both train_steps use
        torch_lrs.append(torch_sched.apply())
        torch_sched.step()
        paddle_lrs.append(paddle_opt.get_lr())
        paddle_sched.step()
    assert torch_lrs[0] == paddle_lrs[0] == lr0
    assert torch_lrs[-1] == pytest.approx(ttrain.poly_lr(total - 1, total, lr0, 1e-5), rel=1e-12)
    np.testing.assert_allclose(paddle_lrs, torch_lrs, rtol=1e-12)
    assert torch_sched.get_lr() == pytest.approx(1e-5, rel=1e-12) and paddle_opt.get_lr() == pytest.approx(1e-5, rel=1e-12)


def test_the_shared_loop_numbers_steps_across_epochs_and_starts_where_told():
    """bts_commands.training.epochs, the loop both frameworks' run_epochs hand their step to."""
    from bts_commands.training import epochs
    records, ends = [], []

    def step(batch):        # a "batch" that is a number: (loss, LR used)
        return batch * 0.5, batch / 1e4
    reached = epochs(step, lambda epoch: [10 * epoch + 1, 10 * epoch + 2], 3, records.append,
                     lambda epoch, global_step: ends.append((epoch, global_step)), start_epoch=1, global_step=2)
    assert reached == 6 and ends == [(1, 4), (2, 6)]
    assert [(r["step"], r["epoch"], r["loss"], r["lr"]) for r in records] == [
        (2, 1, 5.5, 11e-4), (3, 1, 6.0, 12e-4), (4, 2, 10.5, 21e-4), (5, 2, 11.0, 22e-4)]
    assert all(r["time"] >= 0 for r in records)


def _torch_groups(model):
    """(trainable elements, weight decay) per group: torch's groups also list frozen parameters, as official."""
    optimizer = ttrain.build_optimizer(model)
    return [(sum(p.numel() for p in g["params"] if p.requires_grad), g["weight_decay"])
            for g in optimizer.param_groups], optimizer


def _paddle_groups(model):
    optimizer = ptrain.build_optimizer(model)
    return [(sum(int(p.numel()) for p in g["params"]), g["weight_decay"]) for g in optimizer._param_groups], optimizer


def test_param_groups_train_the_official_parameters():
    torch_model = torch_ref.build_model("densenet161_bts")
    paddle_model = paddle_bts.build_model("densenet161_bts")
    (t_enc, t_dec), optimizer = _torch_groups(torch_model)
    (p_enc, p_dec), _ = _paddle_groups(paddle_model)
    decoder = sum(p.numel() for p in torch_model.decoder.parameters())
    # official: 46,766,640 trainable of 47,000,688 (reference spec)
    assert t_enc[0] + t_dec[0] == p_enc[0] + p_dec[0] == 46_766_640
    assert t_dec[0] == p_dec[0] == decoder and t_enc == p_enc
    assert (t_enc[1], t_dec[1], p_enc[1], p_dec[1]) == (1e-2, 0.0, 1e-2, 0.0)
    assert (optimizer.defaults["lr"], optimizer.defaults["eps"]) == (1e-4, 1e-3)
    # torch's groups are bts_main.py's: every encoder parameter, frozen ones (no gradient, no state) included,
    # so its checkpoints' optimizer state loads into the official code; Paddle lists only what it trains
    encoder, frozen = list(torch_model.encoder.parameters()), [n for n, p in torch_model.named_parameters()
                                                               if not p.requires_grad]
    assert [len(g["params"]) for g in optimizer.param_groups] == [len(encoder), len(list(torch_model.decoder.parameters()))]
    assert sum(p.numel() for p in torch_model.parameters()) == 47_000_688
    assert frozen and all("conv0" in n or "norm" in n for n in frozen)


def test_nothing_frozen_for_mobilenetv2_and_bn_statistics_never_optimised():
    paddle_model = paddle_bts.build_model("mobilenetv2_bts")
    (enc, dec), optimizer = _paddle_groups(paddle_model)
    assert enc[0] + dec[0] == paddle_bts.count_parameters(paddle_model)
    stats = {id(t) for t in paddle_bts.bn_statistics(paddle_model)}
    assert not any(id(p) in stats for g in optimizer._param_groups for p in g["params"])


# ---- a whole run, through the commands -------------------------------------------------------------

def _loss_log(path, steps):
    log = pd.read_csv(path)
    assert list(log.columns) == ["step", "epoch", "lr", "loss", "time"]
    assert log["step"].tolist() == list(range(steps)) and np.isfinite(log["loss"]).all()
    assert log["lr"].iloc[0] == 1e-4 and log["lr"].is_monotonic_decreasing
    return log


def _train_twice(module, tmp_path, earlier, overrides):
    """Runs `python -m module` on the synthetic config into a folder holding an `earlier` run's checkpoint:
    refused (exit 2, one line, nothing written), then again with --force; returns the run folder."""
    run = tmp_path / "runs" / "bts_synthetic"
    run.mkdir(parents=True)
    earlier(run)
    before = sorted(p.name for p in run.iterdir())
    args = ["-m", module.__name__, "--config", CONFIGS / "bts_synthetic.yaml", *overrides]
    refused = run_cli(*args)
    assert refused.returncode == 2 and refused.stdout == "", refused.stderr
    assert refused.stderr.splitlines() == [f"error: {run} already holds checkpoints of an earlier run ({before[0]}); "
                                           "pass --force to overwrite them, or choose another log_directory or "
                                           "model_name"]
    assert sorted(p.name for p in run.iterdir()) == before and not (tmp_path / "tree").exists()
    done = run_cli(*args, "--force")
    assert done.returncode == 0, done.stderr
    assert "%|" not in done.stderr and "ccache" not in done.stderr   # no terminal: no progress bar
    (line,) = done.stdout.splitlines()   # but always the one summary line
    last = _loss_log(run / module.LOSS_LOG, 2).iloc[-1]
    assert line == (f"{module.__name__.replace('.', ' ')}: 2 steps, last loss {last['loss']:.4f} (epoch 0, "
                    f"lr {last['lr']:.2e}); wrote {run}/: {module.CHECKPOINT_NAME.format(step=2)}, {module.LOSS_LOG}")
    return run


def test_torch_command_writes_official_checkpoints_and_a_loss_log(tmp_path):
    # -o repeated, log_directory first: every one counts (`-o` once used to keep only the last)
    overrides = ["-o", f"log_directory={tmp_path / 'runs'}", "-o", f"data_path={tmp_path / 'tree'}",
                 "-o", "synthetic_images=4", "-o", "num_epochs=1"]
    run = _train_twice(ttrain, tmp_path, lambda run: (run / "model-2").write_text("an earlier run's"), overrides)
    assert mode_of(run / "model-2") == mode_of(run / ttrain.LOSS_LOG) == usual_mode()   # not mkstemp's 0600
    checkpoint = torch.load(run / "model-2", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 2 and set(checkpoint) == {"global_step", "model", "optimizer"}
    assert len(checkpoint["optimizer"]["param_groups"]) == 2
    model = torch_ref.build_model("mobilenetv2_bts")
    torch_ref.load_official_checkpoint(model, run / "model-2")
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []   # nothing half written


def test_paddle_command_writes_paddledepth_folders_and_a_loss_log(tmp_path):
    overrides = ["-o", f"log_directory={tmp_path / 'runs'}", f"data_path={tmp_path / 'tree'}",   # both forms
                 "-o", "synthetic_images=4", "num_epochs=1"]
    run = _train_twice(ptrain, tmp_path, lambda run: (run / "weights_2").mkdir(), overrides)
    folder = run / "weights_2"
    assert sorted(p.name for p in folder.iterdir()) == ["adam.pdopt", "depth.pdparams", "encoder.pdparams"]
    assert mode_of(folder) == usual_mode(folder=True)
    assert {mode_of(p) for p in folder.iterdir()} == {usual_mode()}
    paddle_bts.load_weights(paddle_bts.build_model("mobilenetv2_bts"), str(folder))
    state = paddle.load(str(folder / ptrain.OPTIMIZER_FILE))
    assert "LR_Scheduler" in state and state["LR_Scheduler"]["last_epoch"] == 2
    fresh = paddle_bts.build_model("mobilenetv2_bts")
    stats = {id(t) for t in paddle_bts.bn_statistics(fresh)}
    trainable = [p for p in fresh.parameters() if not p.stop_gradient and id(p) not in stats]
    # one first moment per optimised parameter (keys are Paddle's auto-generated parameter names)
    assert sum("moment1" in k for k in state) == len(trainable)
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("module", [ttrain, ptrain], ids=["torch", "paddle"])
@pytest.mark.parametrize("extra,fragment", [
    (["-o", "bogus=1"], "unknown config key 'bogus'"),
    (["-o", "batch_size=0"], "batch_size: must be > 0"),
    (["-o", "synthetic=false", "data_path=/nonexistent", "gt_path=/nonexistent", "filenames_file=/nonexistent/list.txt"],
     "/nonexistent/list.txt"),
])
def test_commands_exit_2_with_one_line(module, extra, fragment, tmp_path, capsys):
    argv = ["--config", str(CONFIGS / "bts_synthetic.yaml"), "-o", f"log_directory={tmp_path}", *extra]
    assert module.main(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err


def test_each_framework_refuses_the_others_weights(tmp_path, capsys):
    args = ["--config", str(CONFIGS / "bts_synthetic.yaml"), "-o", f"log_directory={tmp_path}"]
    assert ptrain.main(args + ["checkpoint_path=model-1"]) == 2
    assert ttrain.main(args + ["load_weights_folder=weights_1"]) == 2
    err = capsys.readouterr().err
    assert "conversion/torch2paddle.py" in err and "conversion/paddle2torch.py" in err


def test_missing_config_file_exits_2(tmp_path):
    result = run_cli("-m", "paddle_bts.train", "--config", tmp_path / "none.yaml")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: {tmp_path / 'none.yaml'}: no such config file"]

"""The reproduction recipe (conversion/reproduce.py) end to end on a synthetic KITTI tree with the official
protocol (KB crop: full-size 375x1242 frames): its table's torch_ref and paddle_bts columns are what
torch_ref.evaluate and paddle_bts.evaluate give, and bad input leaves one line, exit 2 and nothing written.
A seeded mobilenetv2_bts stands in for the published model (the official zip's `model` file); the trained
stand-in's parity is tests/test_stand_in.py's.
"""
import numpy as np
import pandas as pd
import pytest

import paddle_bts
import torch_ref
from bts_core.spec import METRIC_NAMES
from bts_data import BtsSamples, write_tree
from conversion import reproduce
from conversion.model_zoo import published_metrics
from conversion.seeded import save_seeded_checkpoint
from paddle_bts import evaluate as paddle_eval
from torch_ref import evaluate as torch_eval

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # tests/conftest.py: measured faster here

ENCODER = "mobilenetv2_bts"
OUTPUTS = ["paddle", "paddle_bts.csv", "reproduction.csv", "reproduction.md", "torch_ref.csv"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reproduce")
    checkpoint = save_seeded_checkpoint(ENCODER, folder / "bts_eigen_v2_pytorch_mobilenetv2" / "model")
    tree = write_tree(folder / "kitti", "kitti", 1, seed=21)   # one full-size frame: four 352x1216 forwards in all
    return {"checkpoint": checkpoint, "tree": tree}


def reproduce_argv(inputs, output, **changes):
    tree = inputs["tree"]
    args = {"--checkpoint": inputs["checkpoint"], "--encoder": ENCODER, "--data-path": tree.data_path,
            "--gt-path": tree.gt_path, "--filenames-file": tree.test, "--output": output, **changes}
    return [str(a) for pair in args.items() for a in pair]


@pytest.fixture(scope="module")
def reproduction(inputs, tmp_path_factory):
    output = tmp_path_factory.mktemp("out") / "reproduction"
    assert reproduce.main(reproduce_argv(inputs, output)) == 0
    return output


def test_table_columns_are_the_evaluate_commands_results(inputs, reproduction):
    assert sorted(p.name for p in reproduction.iterdir()) == OUTPUTS
    table = pd.read_csv(reproduction / "reproduction.csv", float_precision="round_trip")
    assert list(table.columns) == ["metric", "published", "torch_ref", "paddle_bts", "|difference|"]
    assert list(table["metric"]) == list(METRIC_NAMES) and table["published"].isna().all()   # none for mobilenetv2
    samples = BtsSamples(inputs["tree"].config("test"))   # KB crop, as the official KITTI protocol
    torch_model = torch_ref.load_official_checkpoint(torch_ref.build_model(ENCODER, 80.0, "kitti"),
                                                     str(inputs["checkpoint"])).eval()
    paddle_model = paddle_bts.build_model(ENCODER, max_depth=80.0, dataset="kitti")
    paddle_bts.load_weights(paddle_model, str(reproduction / "paddle"))
    expected = {"torch_ref": torch_eval.evaluate(torch_model, samples, "kitti", "garg", 1e-3, 80.0),
                "paddle_bts": paddle_eval.evaluate(paddle_model, samples, "kitti", "garg", 1e-3, 80.0)}
    assert expected["torch_ref"]["count"] == expected["paddle_bts"]["count"] == 1
    for framework, result in expected.items():   # the CSV keeps every digit: the same figures, exactly
        assert list(table[framework]) == [result[m] for m in METRIC_NAMES], framework
    np.testing.assert_array_equal(table["|difference|"], np.abs(table["torch_ref"] - table["paddle_bts"]))
    markdown = (reproduction / "reproduction.md").read_text()
    assert "| metric   | published" in markdown and markdown.count("n/a") >= len(METRIC_NAMES)
    assert "0 without ground truth skipped" in markdown and "KB crop, Garg crop" in markdown


def test_published_figures_are_the_official_readme_s():
    figures = published_metrics("kitti", "densenet161_bts")   # official README, Model Zoo, DenseNet161 row
    assert [figures[m] for m in ("d1", "d2", "d3", "abs_rel", "sq_rel", "rms", "log_rms", "silog", "log10")] == [
        0.955, 0.993, 0.998, 0.060, 0.249, 2.798, 0.096, 8.933, 0.027]
    result = {m: 0.0 for m in METRIC_NAMES}
    table = reproduce.reproduction_table({"torch_ref": result, "paddle_bts": result}, figures)
    assert list(table["published"]) == [figures[m] for m in METRIC_NAMES]
    assert published_metrics("kitti", ENCODER) is None and published_metrics("nyu", ENCODER) is None


@pytest.mark.parametrize("case", ["missing checkpoint", "missing filenames file", "output exists"])
def test_bad_input_one_line_exit_2_nothing_written(case, inputs, tmp_path, capsys):
    output = tmp_path / "out"
    changes, fragment = {
        "missing checkpoint": ({"--checkpoint": tmp_path / "absent" / "model"}, "model: no such file"),
        "missing filenames file": ({"--filenames-file": tmp_path / "absent.txt"}, "absent.txt: No such file"),
        "output exists": ({}, "exists; pass --force"),
    }[case]
    if case == "output exists":
        output.mkdir()
        (output / "notes.txt").write_text("kept")
    assert reproduce.main(reproduce_argv(inputs, output, **changes)) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and fragment in errors[0], errors
    assert sorted(p.name for p in tmp_path.iterdir()) == (["out"] if case == "output exists" else [])
    if case == "output exists":
        assert [p.name for p in output.iterdir()] == ["notes.txt"]

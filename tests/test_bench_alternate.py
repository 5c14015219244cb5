"""bench.alternate: two exports in one process, calls alternated."""
import shutil

import paddle
import pytest

import paddle_bts
from bench import alternate
from conversion.export import export_inference

SIZE = (64, 128)


@pytest.fixture(scope="module")
def two_exports(tmp_path_factory):
    """The same seeded mobilenetv2 export twice (a copy): same program, same outputs."""
    folder = tmp_path_factory.mktemp("alternate")
    paddle.seed(0)
    export_inference(paddle_bts.build_model("mobilenetv2_bts"), folder / "before", *SIZE)
    shutil.copytree(folder / "before", folder / "after")
    return folder / "before", folder / "after"


def test_alternated_calls_flip_their_order_every_round():
    calls = []
    runners = {name: (lambda image, focal, name=name: calls.append(name)) for name in ("a", "b")}
    times = alternate.alternate(runners, None, None, 3)
    assert calls == ["a", "b", "b", "a", "a", "b"] and [len(t) for t in times.values()] == [3, 3]


def test_two_exports_are_timed_side_by_side(two_exports, capsys):
    before, after = two_exports
    assert alternate.main([str(before), str(after), "--size", "64x128", "--calls", "2", "--threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{before}: median ") and lines[0].endswith("over 2 calls")
    assert lines[1].startswith(f"{after}: median ") and lines[2].startswith("after / before (medians): ")
    assert lines[3] == "max |final_depth difference|: 0"     # one program, one input: the same depths


def test_a_size_the_exports_were_not_made_for_is_one_line_and_exit_2(two_exports, capsys):
    assert alternate.main([*map(str, two_exports), "--size", "64x160", "--calls", "1", "--threads", "1"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and error.startswith("python -m bench.alternate: --size 64x160: not the size")


@pytest.mark.parametrize("argv, message", [
    (["same", "same"], "before and after are the same folder"),
    (["a", "b", "--calls", "0"], "--calls and --threads must be >= 1"),
    (["a", "b", "--size", "64x100"], "--size 64x100: height and width must be positive multiples"),
])
def test_bad_arguments_are_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        alternate.parse_args(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_a_folder_without_an_export_is_one_line_and_exit_2(tmp_path, capsys):
    assert alternate.main([str(tmp_path / "a"), str(tmp_path / "b"), "--calls", "1"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "no exported model" in error

"""The alignment harness itself: element-wise verdicts on non-finite values, noise floors, and reports
whose every file agrees with the case verdict."""
import json

import numpy as np
import pytest

from alignment import harness
from alignment.harness import Tolerance, compare, run_case

ABS = Tolerance(rtol=0.0, atol=1e-3, why="test: absolute")
OF_MAX = Tolerance(rtol=0.0, atol=1e-3, atol_of_max=True, why="test: fraction of max")
RELATIVE = Tolerance(rtol=1e-3, atol=0.0, why="test: relative")
NOISY = Tolerance(rtol=0.0, atol=0.0, noise_factor=2.0, why="test: noise floor only")
INF, NAN = np.inf, np.nan


@pytest.mark.parametrize("ref,got", [([INF], [1.0]), ([1.0], [INF]), ([INF], [-INF]), ([-INF], [INF]),
                                     ([NAN], [1.0]), ([1.0], [NAN]), ([NAN], [INF]), ([INF], [NAN])])
@pytest.mark.parametrize("tol", [ABS, OF_MAX, RELATIVE], ids=["abs", "of_max", "rel"])
def test_non_finite_must_agree_in_place_and_sign(ref, got, tol):
    row = compare(np.array(ref), np.array(got), tol)
    assert not row["passed"] and row["nonfinite_mismatch"] == 1 and row["over_bound"] == INF


@pytest.mark.parametrize("value", [INF, -INF, NAN])
def test_same_non_finite_in_the_same_place_agrees(value):
    row = compare(np.array([value, 1.0]), np.array([value, 1.0]), ABS)
    assert row["passed"] and row["nonfinite_mismatch"] == 0


def test_infinity_in_reference_does_not_widen_a_fraction_of_max_bound():
    # before: atol 1e-3 x max|ref| = inf, so 1.0 vs 5.0 passed
    row = compare(np.array([INF, 1.0]), np.array([INF, 5.0]), OF_MAX)
    assert not row["passed"] and row["n_over"] == 1
    assert row["atol"] == pytest.approx(1e-3)   # 1e-3 x the finite max 1.0


def test_infinite_scale_does_not_widen_a_relative_bound():
    row = compare(np.array([1.0]), np.array([2.0]), RELATIVE, scale=np.array([INF]))
    assert not row["passed"]


@pytest.mark.parametrize("reference", ["exact", "perturbed"])
def test_non_finite_noise_reference_does_not_widen_the_bound(reference):
    ref, got = np.array([1.0, 2.0]), np.array([1.0, 2.5])
    noisy = {reference: np.array([INF, 2.0])}   # torch's own reference went infinite at another element
    row = compare(ref, got, NOISY, **noisy)
    assert not row["passed"]


def test_noise_floor_is_the_larger_of_fp64_and_reordered():
    ref, got = np.array([1.0, 2.0]), np.array([1.0, 2.0 + 3e-6])
    assert not compare(ref, got, NOISY, exact=ref + 1e-6)["passed"]                       # 3e-6 > 2 x 1e-6
    row = compare(ref, got, NOISY, exact=ref + 1e-6, perturbed=ref - 2e-6)                # 3e-6 <= 2 x 2e-6
    assert row["passed"] and row["torch_fp64_noise"] == pytest.approx(1e-6)
    assert row["torch_order_noise"] == pytest.approx(2e-6) and row["over_bound"] == pytest.approx(0.75)


def test_several_reordered_references_give_the_largest_noise():
    ref, got = np.array([1.0, 2.0]), np.array([1.0, 2.0 + 3e-6])
    row = compare(ref, got, NOISY, perturbed=(ref + 1e-6, ref - 2e-6))
    assert row["passed"] and row["torch_order_noise"] == pytest.approx(2e-6)


def test_all_finite_pairs_take_the_masked_paths_figures():
    # compare() reads an all-finite pair through flat views; one agreeing NaN appended sends the same
    # elements through the masked path, which must give the same figures
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((3, 5, 7)).astype(np.float32)
    got = ref + rng.standard_normal(ref.shape).astype(np.float32) * 1e-4
    exact = ref.astype(np.float64) + rng.standard_normal(ref.shape) * 1e-7
    with_nan = lambda array: np.append(np.ravel(array), NAN)   # noqa: E731
    for tol in (Tolerance(rtol=1e-5, atol=1e-5, noise_factor=2.0, why="test: mixed"), OF_MAX):
        flat = compare(ref, got, tol, exact=exact)
        masked = compare(with_nan(ref), with_nan(got), tol, exact=with_nan(exact))
        for key in ("atol", "torch_fp64_noise", "over_bound", "bound_at_worst", "max_abs", "mean_abs", "max_rel",
                    "cosine", "ref_max_abs", "n_over", "passed"):
            assert flat[key] == masked[key], key
        assert (flat["n"], masked["n"], masked["nonfinite_mismatch"]) == (105, 106, 0)
        assert 0 < flat["over_bound"] < float("inf")


def test_shape_mismatch_fails():
    assert not compare(np.zeros((2, 3)), np.zeros((3, 2)), ABS)["passed"]


@pytest.fixture
def reports(tmp_path):
    with harness.reports_under(tmp_path) as folder:
        yield folder


def _case(name, delta, **kwargs):
    ref = {"a": np.linspace(0, 1, 50), "b": np.linspace(-3, 3, 20)}
    got = {"a": ref["a"] + delta, "b": ref["b"].copy()}
    return run_case("unit", name, ref, got, OF_MAX, order=["a", "b"], **kwargs)


@pytest.mark.parametrize("delta,verdict", [(1e-4, "PASS"), (1e-2, "FAIL")])
def test_diff_txt_and_result_agree_with_the_verdict(reports, delta, verdict):
    result = _case(f"case-{verdict}", delta)
    text = (result.folder / "diff.txt").read_text()
    info = json.loads((result.folder / "result.json").read_text())
    assert info["verdict"] == verdict and text.rstrip().endswith(verdict)
    # reprod_log's own per-tensor check, against each tensor's largest element-wise bound
    assert ("check passed: False" in text) == (verdict == "FAIL")
    assert ("first_divergence" in info) == (verdict == "FAIL")
    if verdict == "FAIL":
        assert info["first_divergence"] == "a" and info["worst_over_bound"] == pytest.approx(10.0)


def test_table_is_sorted_worst_first_with_bounds(reports):
    result = _case("sorted", 1e-2)
    lines = (result.folder / "table.csv").read_text().splitlines()
    assert lines[1].startswith("a,") and "bound_at_worst" in lines[0] and "max_bound" in lines[0]


def test_index_verdicts_and_header(reports):
    harness.write_run_header("unit")
    _case("ok", 0.0)
    _case("known-gap", 1e-2, expected_failure="a gap")
    _case("fp32-figures", 1e-2, asserted=False)
    text = harness.write_index().read_text()
    for word in ("| PASS", "| XFAIL", "REPORT (over bound)", "commit", "isa flags", "torch threads", "settings at start"):
        assert word in text, word
    assert "first divergence" in text


def test_stale_case_folders_are_removed(reports):
    _case("old", 0.0)
    harness.clean_reports()
    assert not list(reports.glob("*/*/result.json")) and not (reports / "index.md").exists()


def _big_case(name):
    """Three tensors of 8000 float64 (62.5 KiB each); "late" is the one over its bound."""
    ref = {name_: np.linspace(0, 1, 8000) for name_ in ("early", "middle", "late")}
    got = {**ref, "late": ref["late"] + 1e-2}
    return run_case("unit", name, ref, got, OF_MAX, order=["early", "middle", "late"])


def _logs(folder):
    from reprod_log import ReprodDiffHelper
    helper = ReprodDiffHelper()
    return [helper.load_info(str(folder / f"{side}.npy")) for side in ("torch", "paddle")]


def test_logs_over_the_budget_keep_the_worst_tensors_first(reports, monkeypatch):
    monkeypatch.setenv("BTS_REPORT_LOG_MB", str(0.1))     # 102.4 KiB a side: room for one of the three
    result = _big_case("over-budget")
    torch_log, paddle_log = _logs(result.folder)
    assert list(torch_log) == list(paddle_log) == ["late"]
    assert (result.folder / "torch.npy").stat().st_size < 0.1 * 2 ** 20
    line = "reprod_log logs (torch.npy, paddle.npy): 1 of 3 tensors, the worst first within 0.1 MiB a side"
    assert line in (result.folder / "diff.txt").read_text() and line in (result.folder / "table.md").read_text()
    assert json.loads((result.folder / "result.json").read_text())["logs"].startswith(line)
    assert (result.folder / "diff.txt").read_text().rstrip().endswith("FAIL")    # the verdict still closes it


@pytest.mark.parametrize("budget", ["0", "1"])    # 0: no limit; 1 MiB: all three fit
def test_logs_within_the_budget_hold_every_tensor_in_order(reports, monkeypatch, budget):
    monkeypatch.setenv("BTS_REPORT_LOG_MB", budget)
    result = _big_case(f"budget-{budget}")
    assert [list(log) for log in _logs(result.folder)] == [["early", "middle", "late"]] * 2
    assert "all 3 tensors" in (result.folder / "diff.txt").read_text()


@pytest.mark.parametrize("raw", ["lots", "-1", "nan"])
def test_a_bad_log_budget_is_one_clear_error(reports, monkeypatch, raw):
    monkeypatch.setenv("BTS_REPORT_LOG_MB", raw)
    with pytest.raises(ValueError, match=f"BTS_REPORT_LOG_MB='{raw}': give MiB a side as a number >= 0"):
        _big_case("bad")
    assert not (reports / "unit" / "bad").exists()      # nothing half-written


@pytest.mark.parametrize("free_gb,warns", [(harness.RUN_WRITES_GB + 0.5, False), (harness.RUN_WRITES_GB - 0.5, True)])
def test_the_header_warns_where_the_disk_holds_less_than_a_run_writes(tmp_path, monkeypatch, free_gb, warns):
    seen = []

    class Usage:
        free = int(free_gb * 1e9)
    monkeypatch.setattr(harness.shutil, "disk_usage", lambda path: seen.append(path) or Usage)
    folders = {"reports": tmp_path / "not" / "made", "tmp": tmp_path}
    line = harness.disk_header(folders)
    assert seen == [tmp_path, tmp_path]       # a folder not made yet: the disk of its nearest existing parent
    assert line.startswith(f"disk: reports {folders['reports']}: {free_gb:.1f} GB free; tmp {tmp_path}: ")
    assert ("WARNING: less free than that" in line) == warns

"""One harness for every alignment stage: run both frameworks, compare tensors element-wise, report.

A case gives the two sides' outputs as {name: numpy array} and a tolerance; `run_case` writes
reports/<stage>/<case>/ (reprod_log logs of each side, ReprodDiffHelper's report, a per-tensor table as
CSV and markdown, result.json) *before* the test asserts, so a failing run still leaves its evidence.
The verdict is ours (element-wise, NaN-aware): reprod_log compares only mean/max/min of |a - b|, lets
NaN pass and transposes mismatched shapes silently.
"""
import contextlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from alignment import machine   # imported before any framework: it records the settings at start

REPORTS = Path(os.environ.get("BTS_REPORTS", Path(__file__).resolve().parents[1] / "reports"))
# Each side's reprod_log log holds at most this many MiB (0: no limit). Logged whole, a default run's logs
# came to 8.2 GB (76 cases; one resume case 968 MB a side), enough to fill a CI disk; within 32 MiB they
# come to 1.1 GB (measured on the reports of one run), and the worst tensors, the ones a failure needs, stay.
LOG_MB_DEFAULT = 32


# The most a default run had written at once (reports, pytest's tmp_path, exports), above what it found:
# 4.52 GB, sampled every 5 s with df on a fresh clone (AMD EPYC, 2026-11-26). Before the reprod_log budget
# and tmp_path retention it was about 18 GB, and a CI run failed midway with its disk full.
RUN_WRITES_GB = 4.52


def disk_header(folders):
    """One line on the free space where the run writes, and a warning where it is less than a run needs."""
    lines, short = [], False
    for what, folder in folders.items():
        existing = next(p for p in [Path(folder), *Path(folder).parents] if p.exists())
        free = shutil.disk_usage(existing).free / 1e9
        lines.append(f"{what} {folder}: {free:.1f} GB free")
        short |= free < RUN_WRITES_GB
    line = f"disk: {'; '.join(lines)} (a default run writes up to {RUN_WRITES_GB} GB at once)"
    if short:
        line += " -- WARNING: less free than that: expect 'No space left on device' failures"
    return line


@contextlib.contextmanager
def reports_under(folder):
    """Writes reports under `folder` for the duration (e.g. a fault's run, kept out of the main index)."""
    global REPORTS
    before, REPORTS = REPORTS, Path(folder)
    try:
        yield REPORTS
    finally:
        REPORTS = before


@dataclass(frozen=True)
class Tolerance:
    """Element-wise bound |paddle - torch| <= atol + rtol * scale, with `scale` = |torch| by default.

    `atol_of_max`: atol is a fraction of max|torch| (for tensors whose magnitude varies by layer).
    `noise_factor`: adds k x torch's own noise on this tensor, measured in the same run: the larger of
    max|torch fp32 - torch fp64| (rounding) and max|torch fp32 - torch fp32 perturbed| (another summation
    order: channels_last, one-ulp input jitter; it moves ReLU and comparison switches too). Paddle is one
    more summation order, so it may differ from torch by a few times what torch differs from itself.
    Non-finite values never widen a bound: maxima and scales are taken over finite elements only.
    """
    rtol: float
    atol: float
    why: str
    atol_of_max: bool = False
    noise_factor: float = 0.0

    def effective_atol(self, ref, ref_max_abs=None):
        """`ref_max_abs`: finite_max_abs(ref) where the caller has it already."""
        if not self.atol_of_max:
            return self.atol
        return self.atol * (finite_max_abs(ref) if ref_max_abs is None else ref_max_abs)

    def bound(self, ref, scale=None, noise=0.0, ref_max_abs=None):
        relative = np.abs(ref) if scale is None else np.abs(np.asarray(scale, np.float64))
        if not np.isfinite(relative).all():
            relative = np.where(np.isfinite(relative), relative, 0.0)   # an infinite scale allows nothing extra
        return self.effective_atol(ref, ref_max_abs) + self.noise_factor * noise + self.rtol * relative


def _kept(array, keep):
    """`array`'s elements where `keep`, flat: a view, not a copy, where `keep` is all True (the usual case)."""
    return array.ravel() if keep.all() else array[keep]


def finite_max_abs(array):
    array = np.asarray(array, np.float64)
    return float(np.abs(_kept(array, np.isfinite(array))).max(initial=0.0))


def _noise(ref, other):
    """max|ref - other| over the elements finite in both: torch's own noise on this tensor (the largest
    over the references when `other` is a tuple of several)."""
    if other is None:
        return None
    if isinstance(other, tuple):
        return max(_noise(ref, one) for one in other)
    other = np.asarray(other, np.float64)
    if other.shape != ref.shape:
        raise ValueError(f"noise reference of shape {other.shape} for a tensor of shape {ref.shape}")
    return float(np.abs(_kept(ref - other, np.isfinite(ref) & np.isfinite(other))).max(initial=0.0))


def _nonfinite_mismatch(ref, got):
    """Elements where either side is non-finite and the two are not the same NaN, +inf or -inf."""
    same = (np.isnan(ref) & np.isnan(got)) | (np.isposinf(ref) & np.isposinf(got)) | \
           (np.isneginf(ref) & np.isneginf(got))
    return ~(np.isfinite(ref) & np.isfinite(got)) & ~same


def compare(ref, got, tol, scale=None, exact=None, perturbed=None):
    """Figures for one tensor pair; `passed` is the element-wise verdict.

    Shapes must agree; NaN, +inf and -inf must agree in place (and sign); a finite value against a
    non-finite one fails. `exact`: the same tensor from torch in float64; `perturbed`: from torch in fp32
    under another summation order. Together they give torch's own noise floor (Tolerance.noise_factor)."""
    ref64, got64 = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    ref_max_abs = finite_max_abs(ref64)
    row = {"shape": "x".join(map(str, ref64.shape)), "rtol": tol.rtol,
           "atol": tol.effective_atol(ref64, ref_max_abs)}
    if ref64.shape != got64.shape:
        return {**row, "passed": False, "over_bound": float("inf"), "note": f"shape {ref64.shape} vs {got64.shape}"}
    noise_fp64, noise_order = _noise(ref64, exact), _noise(ref64, perturbed)
    noise = max(n for n in (noise_fp64, noise_order, 0.0) if n is not None)
    if noise_fp64 is not None:
        row["torch_fp64_noise"] = noise_fp64
    if noise_order is not None:
        row["torch_order_noise"] = noise_order
    both = np.isfinite(ref64) & np.isfinite(got64)   # finite pairs only (inf - inf is no number)
    all_finite = bool(both.all())
    mismatch = np.zeros(0, bool) if all_finite else _nonfinite_mismatch(ref64, got64)
    a, b = _kept(ref64, both), _kept(got64, both)
    diff = np.abs(a - b)
    rel = diff / np.maximum(np.abs(a), np.finfo(np.float32).tiny)
    full_bound = np.broadcast_to(tol.bound(ref64, scale, noise, ref_max_abs), ref64.shape)
    row["max_bound"] = float(full_bound.max(initial=0.0))   # reprod_log's one threshold for this tensor
    bound = _kept(full_bound, both)
    over = diff > bound
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    with np.errstate(divide="ignore", invalid="ignore"):   # bound 0 (exact): any difference is inf x
        ratio = np.where(diff > 0, diff / bound, 0.0) if diff.size else np.zeros(1)
    worst = int(np.argmax(ratio)) if diff.size else 0      # the element nearest to (or furthest over) its bound
    row.update({
        "over_bound": float("inf") if mismatch.any() else float(ratio.max()),   # worst |d| / bound (< 1 passes)
        "bound_at_worst": float(bound[worst]) if diff.size else 0.0,
        "max_abs": float(diff.max(initial=0)), "mean_abs": float(diff.mean()) if diff.size else 0.0,
        "max_rel": float(rel.max(initial=0)), "cosine": float(a @ b / denom) if denom else 1.0,
        "ref_max_abs": ref_max_abs, "n_over": int(over.sum()), "n": int(ref64.size),
        "worst_index": str(np.unravel_index(worst if all_finite else np.flatnonzero(both)[worst], ref64.shape))
        if diff.size else "",
        "nonfinite_mismatch": int(mismatch.sum()),
    })
    if mismatch.any():
        row["worst_index"] = str(np.unravel_index(np.flatnonzero(mismatch)[0], ref64.shape))
    row["passed"] = bool(row["n_over"] == 0 and row["nonfinite_mismatch"] == 0)
    return row


@dataclass
class Result:
    stage: str
    case: str
    passed: bool
    table: pd.DataFrame
    folder: Path
    meta: dict

    def failure_message(self):
        bad = self.table[~self.table["passed"]]
        lines = [f"{self.stage}/{self.case}: {len(bad)} of {len(self.table)} tensors over tolerance "
                 f"(report: {self.folder})"]
        for name, r in bad.head(5).iterrows():
            lines.append(f"  {name}: max|d|={r.get('max_abs', float('nan')):.3g} max rel={r.get('max_rel', float('nan')):.3g} "
                         f"elements over={r.get('n_over', '?')}/{r.get('n', '?')} worst at {r.get('worst_index', '')} "
                         f"({r.get('over_bound', float('nan')):.3g}x its bound {r.get('bound_at_worst', float('nan')):.3g}; "
                         f"non-finite mismatches {r.get('nonfinite_mismatch', 0)}) "
                         f"{r.get('note', '') if isinstance(r.get('note'), str) else ''}")
        if self.meta.get("first_divergence"):
            lines.append(f"  first divergent layer: {self.meta['first_divergence']}")
        return "\n".join(lines)


def verdict(passed, expected_failure=None, asserted=True):
    """PASS / FAIL; XFAIL (a known gap, failing as expected) / XPASS; REPORT-... for figures not asserted."""
    if not asserted:
        return "REPORT (within bound)" if passed else "REPORT (over bound)"
    if expected_failure:
        return "XFAIL" if not passed else "XPASS"
    return "PASS" if passed else "FAIL"


def _reprod_report(torch_out, paddle_out, table, folder, case_verdict, logged):
    """reprod_log's own diff (ReprodDiffHelper's compute_diff / check_print_diff on the logs), each tensor
    against its own threshold: the largest element-wise bound the case allowed it. So every tensor that
    passes element-wise passes here; the case verdict (element-wise, ours) closes the file."""
    from reprod_log.compare import compute_diff
    from reprod_log.utils import check_print_diff
    lines = []
    for name in torch_out:
        diff = compute_diff({name: np.asarray(torch_out[name])}, {name: np.asarray(paddle_out[name])})
        check_print_diff(diff, diff_method="max", diff_threshold=float(table.loc[name, "max_bound"]),
                         print_func=lines.append)
    lines += [logged, f"case verdict (element-wise bounds, alignment/harness.compare): {case_verdict}"]
    (folder / "diff.txt").write_text("\n".join(lines) + "\n")


def log_budget_bytes():
    """BTS_REPORT_LOG_MB (default LOG_MB_DEFAULT) in bytes; a bad value is one clear error."""
    raw = os.environ.get("BTS_REPORT_LOG_MB", str(LOG_MB_DEFAULT))
    try:
        budget = float(raw)
    except ValueError:
        budget = -1.0
    if not budget >= 0:
        raise ValueError(f"BTS_REPORT_LOG_MB={raw!r}: give MiB a side as a number >= 0 (0 logs every tensor)")
    return budget * 2 ** 20


def _logged_names(torch_out, paddle_out, table, budget):
    """The tensors both reprod_log logs keep: all of them where they fit the budget, else the worst first
    (by over_bound, the order of table.csv) while they fit, the worst one always; in the cases' own order."""
    sizes = {name: max(np.asarray(out[name]).nbytes for out in (torch_out, paddle_out) if name in out)
             for name in table.index}
    if not budget or sum(sizes.values()) <= budget:
        return list(sizes)
    kept, used = set(), 0
    for name in table.sort_values("over_bound", ascending=False, kind="stable").index:
        if not kept or used + sizes[name] <= budget:
            kept.add(name)
            used += sizes[name]
    return [name for name in sizes if name in kept]


def _save_logs(torch_out, paddle_out, table, folder, budget):
    """Writes torch.npy / paddle.npy (reprod_log's format) and returns the line saying what they hold."""
    from reprod_log import ReprodLogger
    names = _logged_names(torch_out, paddle_out, table, budget)
    for side, out in (("torch", torch_out), ("paddle", paddle_out)):
        log = ReprodLogger()
        for name in names:
            if name in out:
                log.add(name, np.asarray(out[name]))
        log.save(str(folder / f"{side}.npy"))
    if len(names) == len(table):
        return f"reprod_log logs (torch.npy, paddle.npy): all {len(names)} tensors"
    return (f"reprod_log logs (torch.npy, paddle.npy): {len(names)} of {len(table)} tensors, the worst first within "
            f"{budget / 2 ** 20:g} MiB a side (BTS_REPORT_LOG_MB; 0 logs all)")


def environment(torch_device="cpu", paddle_device="cpu"):
    import paddle
    import torch
    import reprod_log
    return {"torch": torch.__version__, "paddle": paddle.__version__, "numpy": np.__version__,
            "reprod_log": getattr(reprod_log, "__version__", "1.0.1"),
            "torch_device": str(torch_device), "paddle_device": str(paddle_device),
            "tf32": bool(torch.backends.cudnn.allow_tf32 and torch.cuda.is_available())}


def run_case(stage, case, torch_out, paddle_out, tol, scales=None, tolerances=None, meta=None, exact=None,
             order=None, perturbed=None, expected_failure=None, asserted=True):
    """Compares two {name: array} dicts and writes the stage report; returns a Result (never raises on diff).

    `order`: tensor names in execution order; the first over tolerance is recorded as `first_divergence`
    (only where the case fails). `exact` / `perturbed`: torch's float64 and reordered-fp32 values of the
    same tensors (noise floors). `expected_failure`: the reason a known gap makes this case fail (XFAIL).
    `asserted=False`: the figures are reported and the test does not assert them (verdict REPORT)."""
    budget = log_budget_bytes()     # a bad setting fails before anything is written
    folder = REPORTS / stage / case
    folder.mkdir(parents=True, exist_ok=True)
    tolerances, scales, exact, perturbed = tolerances or {}, scales or {}, exact or {}, perturbed or {}
    missing = sorted(set(torch_out) ^ set(paddle_out))
    rows = {}
    for name in torch_out:
        if name in paddle_out:
            rows[name] = compare(torch_out[name], paddle_out[name], tolerances.get(name, tol), scales.get(name),
                                 exact.get(name), perturbed.get(name))
    for name in missing:
        rows[name] = {"passed": False, "rtol": tol.rtol, "atol": tol.atol, "over_bound": float("inf"),
                      "note": "present on one side only"}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "tensor"
    logged = _save_logs(torch_out, paddle_out, table, folder, budget)
    passed = bool(table["passed"].all()) and not missing
    case_verdict = verdict(passed, expected_failure, asserted)
    misshapen = [n for n in torch_out if n in paddle_out and np.shape(torch_out[n]) != np.shape(paddle_out[n])]
    if missing or misshapen:   # ReprodDiffHelper would crash on, or silently transpose, these
        (folder / "diff.txt").write_text(f"ReprodDiffHelper not run: {len(missing)} tensors on one side only, "
                                         f"{len(misshapen)} with different shapes (first: {(missing + misshapen)[0]})\n"
                                         f"{logged}\n"
                                         f"case verdict (element-wise bounds, alignment/harness.compare): "
                                         f"{case_verdict}\n")
    else:
        _reprod_report(torch_out, paddle_out, table, folder, case_verdict, logged)
    worst_first = table.sort_values("over_bound", ascending=False, kind="stable")
    worst_first.to_csv(folder / "table.csv")
    shown = [c for c in ("over_bound", "max_abs", "bound_at_worst", "max_bound", "rtol", "atol", "torch_fp64_noise",
                         "torch_order_noise", "max_rel", "cosine", "ref_max_abs", "n_over", "n", "worst_index",
                         "nonfinite_mismatch", "shape", "note") if c in worst_first]
    (folder / "table.md").write_text(
        f"# {stage} / {case}: {case_verdict}\n\nWorst first. over_bound = worst |paddle - torch| / its element's "
        "bound; bound_at_worst = that element's bound; max_bound = the largest element-wise bound of the tensor "
        "(atol + rtol x scale + noise factor x torch's own noise).\n\n"
        + worst_first[shown].to_markdown() + f"\n\nTolerance: {tol.why}\n\n{logged}\n")
    meta = dict(meta or {})
    failing = [name for name in (order or []) if not table.loc[name, "passed"]]
    if order is not None and not passed:
        meta["first_divergence"] = failing[0] if failing else ""
    worst = table["over_bound"].max() if "over_bound" in table else float("nan")
    info = {"stage": stage, "case": case, "passed": passed, "verdict": case_verdict,
            "expected_failure": expected_failure or "", "asserted": asserted,
            "worst_over_bound": float(worst), "worst_tensor": str(table["over_bound"].idxmax()) if len(table) else "",
            "tolerance": asdict(tol), "time": time.strftime("%Y-%m-%d %H:%M:%S"), "dtype": "float32", "logs": logged,
            **meta}
    if passed:
        info.pop("first_divergence", None)
    (folder / "result.json").write_text(json.dumps(info, indent=1, default=str))
    return Result(stage, case, passed, table, folder, info)


def clean_reports():
    """Removes every case folder (and the index) an earlier run left, so the index shows this run only."""
    import shutil
    for result in REPORTS.glob("*/*/result.json"):
        shutil.rmtree(result.parent, ignore_errors=True)
    for stage in REPORTS.glob("*/"):
        if stage.is_dir() and not any(stage.iterdir()):
            stage.rmdir()
    for name in ("index.md", "run.json"):
        (REPORTS / name).unlink(missing_ok=True)


def write_run_header(selection=""):
    """reports/run.json: what this run ran on (commit, CPU, ISA, threads, math-library settings, versions)."""
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / "run.json").write_text(json.dumps({**machine.describe(), "selection": selection}, indent=1))


def write_index():
    """reports/index.md: the run header, then every case of this run with verdict and worst |d| / bound."""
    rows = []
    for path in sorted(REPORTS.glob("*/*/result.json")):
        r = json.loads(path.read_text())
        rows.append({"stage": r["stage"], "case": f"[{r['case']}]({path.parent.relative_to(REPORTS)}/table.md)",
                     "verdict": r.get("verdict", "PASS" if r["passed"] else "FAIL"),
                     "worst |d|/bound": r.get("worst_over_bound", float("nan")),
                     "worst tensor": r.get("worst_tensor", ""),
                     "first divergence": r.get("first_divergence", "") if not r["passed"] else "",
                     "torch device": r.get("torch_device"), "paddle device": r.get("paddle_device"),
                     "tf32": r.get("tf32"), "dtype": r.get("dtype"), "run at": r.get("time")})
    if not rows:
        return None
    table = pd.DataFrame(rows)

    def summary(verdicts):
        counts = verdicts.value_counts()
        return ", ".join(f"{counts[v]} {v}" for v in counts.index)
    stages = table.groupby("stage").agg(cases=("verdict", summary), worst=("worst |d|/bound", "max"))
    header = ""
    if (REPORTS / "run.json").exists():
        run = json.loads((REPORTS / "run.json").read_text())
        header = "## Run\n\n" + pd.Series(run, dtype=object).astype(str).to_frame("value").to_markdown() + "\n\n"
    text = ("# Alignment report\n\nVerdicts: PASS / FAIL (element-wise bounds of alignment/tolerances.py); XFAIL: "
            "a known gap failing as expected; REPORT: figures shown, not asserted (fp32 where the verdict comes "
            "from float64). worst |d|/bound < 1 passes. Each row links to the case's per-tensor table (worst "
            "first); each case folder also holds both reprod_log logs (`torch.npy`, `paddle.npy`) and `diff.txt`, "
            "whose last lines say which tensors the logs hold (the worst first where a case's exceed the budget)."
            "\n\n" + header + "## Stages\n\n" + stages.to_markdown(floatfmt=".3g") + "\n\n## Cases\n\n"
            + table.to_markdown(index=False, floatfmt=".3g") + "\n")
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / "index.md").write_text(text)
    return REPORTS / "index.md"

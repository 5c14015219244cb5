"""One harness for every alignment stage: run both frameworks, compare tensors element-wise, report.

A case gives the two sides' outputs as {name: numpy array} and a tolerance; `run_case` writes
reports/<stage>/<case>/ (reprod_log logs of each side, ReprodDiffHelper's report, a per-tensor table as
CSV and markdown, result.json) *before* the test asserts, so a failing run still leaves its evidence.
The verdict is ours (element-wise, NaN-aware): reprod_log compares only mean/max/min of |a - b|, lets
NaN pass and transposes mismatched shapes silently.
"""
import contextlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REPORTS = Path(os.environ.get("BTS_REPORTS", Path(__file__).resolve().parents[1] / "reports"))


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
    `noise_factor`: adds k x max|torch fp32 - torch fp64|, torch's own rounding error on this tensor
    (where a case measures it): Paddle may differ from torch by a few times what torch differs from
    exact arithmetic, wherever the network amplifies rounding (BTS's near-zero LPG denominators).
    """
    rtol: float
    atol: float
    why: str
    atol_of_max: bool = False
    noise_factor: float = 0.0

    def bound(self, ref, scale=None, noise=0.0):
        atol = self.atol * float(np.abs(ref).max(initial=0.0)) if self.atol_of_max else self.atol
        return atol + self.noise_factor * noise + self.rtol * (np.abs(ref) if scale is None else scale)


def compare(ref, got, tol, scale=None, exact=None):
    """Figures for one tensor pair; `passed` is the element-wise verdict (shapes and NaN places must agree).

    `exact`: the same tensor computed by torch in float64, giving torch's own fp32 noise floor."""
    ref64, got64 = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    noise = float(np.nanmax(np.abs(ref64 - exact))) if exact is not None else 0.0
    row = {"shape": "x".join(map(str, ref64.shape)), "rtol": tol.rtol,
           "atol": tol.atol * (float(np.abs(ref64).max(initial=0)) if tol.atol_of_max else 1.0)}
    if exact is not None:
        row["torch_fp32_noise"] = noise
    if ref64.shape != got64.shape:
        return {**row, "passed": False, "note": f"shape {ref64.shape} vs {got64.shape}"}
    nan_ref, nan_got = np.isnan(ref64), np.isnan(got64)
    both = ~(nan_ref | nan_got)
    diff = np.abs(ref64 - got64)[both]
    rel = diff / np.maximum(np.abs(ref64[both]), np.finfo(np.float32).tiny)
    bound = tol.bound(ref64, scale, noise)
    bound = bound[both] if np.ndim(bound) else bound
    over = diff > bound
    a, b = ref64[both].ravel(), got64[both].ravel()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    worst = int(np.argmax(diff - bound)) if diff.size else 0
    with np.errstate(divide="ignore", invalid="ignore"):   # bound 0 (exact): any difference is inf x
        ratio = np.where(diff > 0, diff / bound, 0.0) if diff.size else np.zeros(1)
    row.update({
        "over_bound": float(ratio.max()),   # worst |d| / bound: how loudly a tensor fails (< 1 passes)
        "max_abs": float(diff.max(initial=0)), "mean_abs": float(diff.mean()) if diff.size else 0.0,
        "max_rel": float(rel.max(initial=0)), "cosine": float(a @ b / denom) if denom else 1.0,
        "ref_max_abs": float(np.abs(a).max(initial=0)), "n_over": int(over.sum()), "n": int(ref64.size),
        "worst_index": str(np.unravel_index(np.flatnonzero(both)[worst], ref64.shape)) if diff.size else "",
        "nan_mismatch": int((nan_ref != nan_got).sum()),
    })
    row["passed"] = bool(row["n_over"] == 0 and row["nan_mismatch"] == 0)
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
                         f"(rtol {r['rtol']:.2g}, atol {r['atol']:.2g}) {r.get('note', '') if isinstance(r.get('note'), str) else ''}")
        if self.meta.get("first_divergence"):
            lines.append(f"  first divergent layer: {self.meta['first_divergence']}")
        return "\n".join(lines)


def _reprod_report(torch_log, paddle_log, folder, threshold):
    """ReprodDiffHelper's familiar text report, with its root-logger handlers removed afterwards."""
    from reprod_log import ReprodDiffHelper
    root = logging.getLogger()
    before = list(root.handlers)
    helper = ReprodDiffHelper()
    helper.compare_info(helper.load_info(str(torch_log)), helper.load_info(str(paddle_log)))
    try:
        helper.report(diff_method="max", diff_threshold=threshold, path=str(folder / "diff.txt"))
    finally:
        for handler in set(root.handlers) - set(before):
            root.removeHandler(handler)
            handler.close()


def environment(torch_device="cpu", paddle_device="cpu"):
    import paddle
    import torch
    import reprod_log
    return {"torch": torch.__version__, "paddle": paddle.__version__, "numpy": np.__version__,
            "reprod_log": getattr(reprod_log, "__version__", "1.0.1"),
            "torch_device": str(torch_device), "paddle_device": str(paddle_device),
            "tf32": bool(torch.backends.cudnn.allow_tf32 and torch.cuda.is_available())}


def run_case(stage, case, torch_out, paddle_out, tol, scales=None, tolerances=None, meta=None, exact=None,
             order=None):
    """Compares two {name: array} dicts and writes the stage report; returns a Result (never raises on diff).

    `order`: tensor names in execution order; the first over tolerance is recorded as `first_divergence`."""
    from reprod_log import ReprodLogger
    folder = REPORTS / stage / case
    folder.mkdir(parents=True, exist_ok=True)
    tolerances, scales, exact = tolerances or {}, scales or {}, exact or {}
    missing = sorted(set(torch_out) ^ set(paddle_out))
    rows = {}
    for name in torch_out:
        if name in paddle_out:
            rows[name] = compare(torch_out[name], paddle_out[name], tolerances.get(name, tol), scales.get(name),
                                 exact.get(name))
    for name in missing:
        rows[name] = {"passed": False, "rtol": tol.rtol, "atol": tol.atol, "note": "present on one side only"}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "tensor"
    for side, out in (("torch", torch_out), ("paddle", paddle_out)):
        log = ReprodLogger()
        for name, value in out.items():
            log.add(name, np.asarray(value))
        log.save(str(folder / f"{side}.npy"))
    misshapen = [n for n in torch_out if n in paddle_out and np.shape(torch_out[n]) != np.shape(paddle_out[n])]
    if missing or misshapen:   # ReprodDiffHelper would crash on, or silently transpose, these
        (folder / "diff.txt").write_text(f"ReprodDiffHelper not run: {len(missing)} tensors on one side only, "
                                         f"{len(misshapen)} with different shapes (first: {(missing + misshapen)[0]})\n")
    else:
        _reprod_report(folder / "torch.npy", folder / "paddle.npy", folder, tol.atol)
    table.to_csv(folder / "table.csv")
    (folder / "table.md").write_text(table.to_markdown() + f"\n\nTolerance: {tol.why}\n")
    passed = bool(table["passed"].all()) and not missing
    if order is not None:
        failing = [name for name in order if not table.loc[name, "passed"]]
        meta = {**(meta or {}), "first_divergence": failing[0] if failing else ""}
    info = {"stage": stage, "case": case, "passed": passed, "tolerance": asdict(tol),
            "time": time.strftime("%Y-%m-%d %H:%M:%S"), "dtype": "float32", **(meta or {})}
    (folder / "result.json").write_text(json.dumps(info, indent=1, default=str))
    return Result(stage, case, passed, table, folder, info)


def write_index():
    """reports/index.md: every case found under reports/ with verdict, devices, dtype and versions."""
    rows = []
    for path in sorted(REPORTS.glob("*/*/result.json")):
        r = json.loads(path.read_text())
        rows.append({"stage": r["stage"], "case": f"[{r['case']}]({path.parent.relative_to(REPORTS)}/table.md)",
                     "verdict": "PASS" if r["passed"] else "FAIL", "first divergence": r.get("first_divergence", ""),
                     "torch device": r.get("torch_device"), "paddle device": r.get("paddle_device"),
                     "tf32": r.get("tf32"), "dtype": r.get("dtype"), "torch": r.get("torch"),
                     "paddle": r.get("paddle"), "run at": r.get("time")})
    if not rows:
        return None
    table = pd.DataFrame(rows)
    summary = table.groupby("stage")["verdict"].agg(lambda v: f"{(v == 'PASS').sum()}/{len(v)} pass")
    text = ("# Alignment report\n\nEach row links to the case's per-tensor table; each case folder also holds "
            "both reprod_log logs (`torch.npy`, `paddle.npy`) and ReprodDiffHelper's `diff.txt`.\n\n"
            "## Stages\n\n" + summary.to_frame("cases").to_markdown() + "\n\n## Cases\n\n"
            + table.to_markdown(index=False) + "\n")
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / "index.md").write_text(text)
    return REPORTS / "index.md"

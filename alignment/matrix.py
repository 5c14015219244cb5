"""Environment matrix: the default suite (alignment stages, unit tests, fault catalogue) under CPU settings
that change summation order and kernels, as another machine would.

    python -m alignment.matrix                      # every configuration; reports/matrix.md
    python -m alignment.matrix --configs 1-thread avx2 -- -k "model or faults"

Each configuration runs `python -m pytest` in a subprocess with its variables set and its own reports
folder (reports/matrix/<config>/). The table gives, per configuration: tests passed / failed, false alarms
(unfaulted cases that failed), faults of the catalogue caught, and the worst |paddle - torch| / bound of
any asserted unfaulted case (goal <= 0.5). Heavy (the default suite once per configuration): not part of
the default `pytest` run.
"""
import argparse
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
# The environment as this process started: Paddle's import (describe() below) sets OMP_NUM_THREADS=1 in
# os.environ, which every later configuration would otherwise inherit.
START_ENV = dict(os.environ)
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
CONFIGS = {
    "as-is": {},
    "1-thread": ONE_THREAD,
    # an older CPU: oneDNN (torch and Paddle convolutions), MKL and ATen's vector code capped at AVX2
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
             "ATEN_CPU_CAPABILITY": "avx2"},
    # MKL's code path chosen by CPU type (5: AVX2 path on any CPU; Paddle's runtime.configure sets it on AMD)
    "mkl-cpu-type-5": {"MKL_DEBUG_CPU_TYPE": "5"},
    # a much older CPU (SSE4.1 kernels): other blockings and summation orders even on an AVX2-only machine
    "sse41": {"ONEDNN_MAX_CPU_ISA": "SSE41", "DNNL_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
              "ATEN_CPU_CAPABILITY": "default"},
    # Paddle's own eager convolutions (im2col + MKL GEMM) instead of paddle_bts.onednn_conv's
    "paddle-conv": {"BTS_PADDLE_CONV": "paddle"},
}
DEFAULT = ["as-is", "1-thread", "avx2", "mkl-cpu-type-5"]


def run_config(name, pytest_args, out):
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    env = {**START_ENV, **CONFIGS[name], "BTS_REPORTS": str(folder), "BTS_MATRIX_CONFIG": name}
    junit = folder / "junit.xml"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:warnings", f"--junitxml={junit}", *pytest_args]
    start = time.perf_counter()
    with open(folder / "pytest.log", "w") as log:
        code = subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    return summarise(name, folder, junit, code, time.perf_counter() - start)


def _tests(junit):
    """(outcome per test id) from pytest's junit XML: passed, failed, skipped, xfailed."""
    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        test_id = f"{case.get('classname')}::{case.get('name')}"
        skipped = case.find("skipped")
        if case.find("failure") is not None or case.find("error") is not None:
            outcomes[test_id] = "failed"
        elif skipped is not None:
            outcomes[test_id] = "xfailed" if skipped.get("type") == "pytest.xfail" else "skipped"
        else:
            outcomes[test_id] = "passed"
    return outcomes


def summarise(name, folder, junit, code, seconds):
    outcomes = _tests(junit) if junit.exists() else {}
    counts = pd.Series(list(outcomes.values()), dtype=object).value_counts()
    failed = [t for t, o in outcomes.items() if o == "failed"]
    fault_tests = [t for t in outcomes if "test_faults" in t]
    false_alarms = [t for t in failed if t not in fault_tests]
    results = [json.loads(p.read_text()) for p in folder.glob("*/*/result.json")]
    asserted = [r for r in results if r.get("asserted", True) and not r.get("expected_failure")]
    worst = max(asserted, key=lambda r: r.get("worst_over_bound", 0.0), default=None)
    reported = [r for r in results if not r.get("asserted", True)]
    worst_reported = max(reported, key=lambda r: r.get("worst_over_bound", 0.0), default=None)
    return {"configuration": name, "settings": " ".join(f"{k}={v}" for k, v in CONFIGS[name].items()) or "(none)",
            "pytest exit": code, "passed": int(counts.get("passed", 0)), "failed": int(counts.get("failed", 0)),
            "xfailed": int(counts.get("xfailed", 0)), "skipped": int(counts.get("skipped", 0)),
            "false alarms": len(false_alarms),
            "faults caught": f"{sum(outcomes[t] == 'passed' for t in fault_tests)}/{len(fault_tests)}",
            "worst |d|/bound (asserted, unfaulted)": worst["worst_over_bound"] if worst else float("nan"),
            "worst case": f"{worst['case']} ({worst['worst_tensor']})" if worst else "",
            "worst reported fp32 figure": (f"{worst_reported['worst_over_bound']:.3g} ({worst_reported['case']})"
                                           if worst_reported else ""),
            "minutes": round(seconds / 60, 1), "failures": "; ".join(failed)}


def write_table(rows, out, machine):
    table = pd.DataFrame(rows)
    text = ("# Environment matrix\n\nThe default suite (`python -m pytest`: unit tests, alignment stages, fault "
            "catalogue) once per configuration (`python -m alignment.matrix`). A false alarm is an unfaulted "
            "case that failed; a fault is caught when its stage fails and names the layer it touched. Goal: 0 "
            "false alarms, every fault caught, worst |d|/bound of an asserted unfaulted case <= 0.5.\n\n"
            "## Machine\n\n" + pd.Series(machine, dtype=object).astype(str).to_frame("value").to_markdown()
            + "\n\n## Configurations\n\n" + table.drop(columns=["failures"]).to_markdown(index=False, floatfmt=".3g")
            + "\n\n## Failures\n\n" + "\n".join(f"- {r['configuration']}: {r['failures'] or 'none'}" for r in rows)
            + "\n")
    path = out.parent / "matrix.md"
    path.write_text(text)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m alignment.matrix", description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=DEFAULT,
                        help=f"configurations to run (default: {' '.join(DEFAULT)}; also: sse41)")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed to pytest (e.g. -k model)")
    args = parser.parse_args(argv)
    from alignment.machine import describe
    out = Path(os.environ.get("BTS_REPORTS", ROOT / "reports")) / "matrix"
    rows = []
    for name in args.configs:
        print(f"[matrix] {name}: {CONFIGS[name] or 'as is'}", flush=True)
        rows.append(run_config(name, args.pytest_args, out))
        print(f"[matrix] {name}: {rows[-1]['passed']} passed, {rows[-1]['failed']} failed, "
              f"faults caught {rows[-1]['faults caught']}, worst {rows[-1]['worst |d|/bound (asserted, unfaulted)']:.3g}, "
              f"{rows[-1]['minutes']} min", flush=True)
        write_table(rows, out, describe())
    path = write_table(rows, out, describe())
    print(f"[matrix] {path}")
    return 0 if all(r["false alarms"] == 0 and r["pytest exit"] in (0, 1) and r["failed"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

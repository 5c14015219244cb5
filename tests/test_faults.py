"""Fault catalogue: each known porting bug, injected for one test, must fail the stage named for it and,
where the stage localises, name the layer the bug touched. `pytest tests/ -k faults`; the table of what
was caught, where and how loudly is reports/faults.md (each fault's stage reports: reports/faults/<name>/).
"""
import json
import re

import pandas as pd
import pytest

from alignment import harness, twins
from faults import CATALOGUE

FAULTS_DIR = harness.REPORTS / "faults"


@pytest.fixture(scope="module", autouse=True)
def faults_table():
    import shutil
    shutil.rmtree(FAULTS_DIR, ignore_errors=True)   # the table shows this run's faults only
    (harness.REPORTS / "faults.md").unlink(missing_ok=True)
    yield
    rows = [json.loads(p.read_text()) for p in sorted(FAULTS_DIR.glob("*/row.json"))]
    if rows:
        order = {f.name: i for i, f in enumerate(CATALOGUE)}
        table = pd.DataFrame(sorted(rows, key=lambda r: order.get(r["fault"], len(order))))
        (harness.REPORTS / "faults.md").write_text(
            "# Fault catalogue\n\nEach row: a porting bug injected into paddle_bts or the converter for one "
            "test (tests/faults.py), the stage that must fail, what failed, the first divergence it named, "
            "and how loudly (worst |paddle - torch| / tolerance bound).\n\n" + table.to_markdown(index=False) + "\n")


@pytest.mark.parametrize("fault", [pytest.param(f, marks=[pytest.mark.slow] if f.slow else [])
                                   for f in CATALOGUE], ids=[f"faults-{f.name}" for f in CATALOGUE])
def test_faults(fault):
    folder = FAULTS_DIR / fault.name
    twins.twin_models.cache_clear()   # cached twins were built without the fault
    try:
        with harness.reports_under(folder), fault.patch():
            outcome = fault.run()
    finally:
        twins.twin_models.cache_clear()   # and those built under it must not outlive it
    named_ok = fault.first is None or bool(re.search(fault.first, outcome.first or ""))
    row = {"fault": fault.name, "bug": fault.what, "stage expected": fault.stage,
           "stage failed": "yes" if not outcome.passed else "NO (not caught)", "first divergence named": outcome.first,
           "expected first": fault.first or "(stage does not localise)", "named right": named_ok,
           "figure": outcome.figure, "report": outcome.report}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "row.json").write_text(json.dumps(row, indent=1))
    assert not outcome.passed, f"{fault.name}: stage {fault.stage} passed with the fault in place ({outcome.figure})"
    assert named_ok, f"{fault.name}: first divergence named {outcome.first!r}, expected /{fault.first}/"

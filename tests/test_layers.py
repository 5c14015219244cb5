"""The import graph drawn from the code: layers only point down, and no two modules import each other.

Floors, lowest first (README "Where things are"): a package may import its own floor's modules of the
same package and any lower floor, never a higher one or a sibling package on its floor. Imports inside
functions count too: a lazy import is still an arrow.
"""
import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOORS = [
    {"bts_core"},                    # spec, config schema, CLI plumbing, depth/image files: no framework
    {"bts_data"},                    # the official data pipeline (numpy, PIL)
    {"bts_commands"},                # evaluate / predict loops and arguments, framework-free (adapters below)
    {"torch_ref", "paddle_bts"},     # the two mirrors, each on its own
    {"conversion"},                  # converts between the mirrors, verifies, exports
    {"alignment", "bench"},          # proves and measures; alignment's stages and bench are peers
]
FLOOR = {package: level for level, packages in enumerate(FLOORS) for package in packages}


def modules():
    """{dotted module name: path} of every project module in the layered packages."""
    found = {}
    for package in FLOOR:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            if not parts[-1].startswith("test_") and parts[-1] != "conftest":
                found[name] = path
    return found


def imports_of(path, name, known):
    """Project modules `path` imports anywhere in its body (module level or inside functions)."""
    tree = ast.parse(path.read_text(), str(path))
    package_parts = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package_parts[:len(package_parts) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import submodule` depends on the submodule; `from pkg import name`, on pkg itself
            candidates = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
    return targets


GRAPH = None


def graph():
    global GRAPH
    if GRAPH is None:
        known = modules()
        GRAPH = {name: imports_of(path, name, known) for name, path in known.items()}
    return GRAPH


def test_layered_packages_exist():
    missing = [p for p in FLOOR if not (ROOT / p / "__init__.py").exists()]
    assert not missing, f"packages missing: {missing}"
    loose = sorted(p.name for p in ROOT.glob("*.py"))
    assert not loose, f"modules outside any floor at the top level: {loose}"


def test_no_import_points_up_or_sideways():
    wrong = []
    for name, targets in graph().items():
        package = name.split(".")[0]
        for target in targets:
            other = target.split(".")[0]
            if other != package and FLOOR[other] >= FLOOR[package]:
                wrong.append(f"{name} -> {target} (floor {FLOOR[package]} -> {FLOOR[other]})")
    assert not wrong, "imports that do not point down:\n" + "\n".join(sorted(wrong))


def test_no_cycles():
    edges = graph()
    state, cycles = defaultdict(int), []

    def visit(node, trail):
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state[nxt] == 1:
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif state[nxt] == 0:
                visit(nxt, trail + [nxt])
        state[node] = 2
    for node in sorted(edges):
        if state[node] == 0:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("folder,prefix", [("tests", ""), ("alignment", "alignment.")])
def test_no_file_imports_another_test_file_of_its_folder(folder, prefix):
    """Helpers shared by tests live in a conftest or a helper module, not in another test file. (The
    fault catalogue in tests/ runs the alignment stages' own runners: another folder, allowed.)"""
    wrong = []
    for path in sorted((ROOT / folder).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            wrong += [f"{path.name} imports {n}" for n in names
                      if n.startswith(prefix) and n[len(prefix):].startswith("test_")]
    assert not wrong, "\n".join(wrong)

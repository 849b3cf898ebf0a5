"""The codebase's own hygiene, as a checked contract: the layers of pyproject.toml's
import-linter contract hold (function-level imports included: grimp reads every import
statement), ruff finds nothing, no module is much over 600 lines, and no test module
imports another test module."""
import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

MAX_MODULE_LINES = 640   # "no module much over 600 lines"


def _tool(name):
    exe = Path(sys.executable).parent / name
    found = exe if exe.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return str(found)


def test_layers_contract_holds():
    r = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=REPO, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "Contracts: 1 kept, 0 broken" in r.stdout


def test_ruff_is_clean():
    r = subprocess.run([_tool("ruff"), "check", "--no-cache", "ncl", "tests", "experiments",
                        "benchmarks", "scripts"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_no_module_much_over_600_lines():
    sizes = {p.name: len(p.read_text().splitlines()) for p in (REPO / "ncl").glob("*.py")}
    big = {k: v for k, v in sizes.items() if v > MAX_MODULE_LINES}
    assert not big, f"modules over {MAX_MODULE_LINES} lines: {big}"


def test_every_module_is_in_the_layers_contract():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())
    (contract,) = cfg["tool"]["importlinter"]["contracts"]
    listed = {m.strip() for layer in contract["layers"]
              for m in layer.replace(":", "|").split("|")}
    modules = {p.stem for p in (REPO / "ncl").glob("*.py") if p.stem != "__init__"}
    assert modules == listed, (f"not in the contract: {sorted(modules - listed)}; "
                               f"listed but missing: {sorted(listed - modules)}")


def test_no_test_module_imports_another_test_module():
    offenders = []
    for p in (REPO / "tests").glob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            if any(n.split(".")[-1].startswith("test_") for n in names):
                offenders.append(p.name)
    assert not offenders, offenders

"""House rules, checked on every test run: one-way layers, no import cycle, small modules, ruff, mypy.

The layers are declared in pyproject.toml ([tool.importlinter]); a new module must be placed in them
(the contract is exhaustive), and an upward import fails here, and so in CI.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 400
BIN = Path(sys.executable).parent


def run_tool(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def test_layers_run_one_way():
    result = run_tool(str(BIN / "lint-imports"), "--no-cache")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "1 kept, 0 broken" in result.stdout


def test_no_import_cycle_between_modules():
    graph = grimp.build_graph("agent", cache_dir=None)
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back is not None:
                cycles.append(" -> ".join((module, *back)))
    assert not cycles, "import cycles:\n" + "\n".join(sorted(cycles))


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "agent").rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by what they do): {long}"


def test_ruff_finds_nothing():
    result = run_tool(sys.executable, "-m", "ruff", "check", "--no-cache", "agent", "tests", "bench")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_mypy_finds_nothing():
    pytest.importorskip("mypy", reason="pip install '.[test]' brings mypy")
    result = run_tool(sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir=/dev/null")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]

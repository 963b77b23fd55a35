"""agent/config is a leaf package: models, loader and checks, every name other modules import still there,
and agent/source_query.py no longer imports the configuration back."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import agent.config

ROOT = Path(__file__).resolve().parents[1]
# Every name imported from agent.config across agent/, tests/ and bench/ before the split, plus its public names.
NAMES = [
    "AgentConfig", "AlertsConfig", "CONTROL_COLUMN_PREFIX", "ColumnMapping", "Duration", "ENV_REFERENCE", "FlowConfig",
    "GrantsConfig", "IDENTIFIER_PATTERN", "LoadedConfig", "Model", "NAME_PATTERN", "PASSWORD_PLACEHOLDER", "Schedule",
    "SnapshotsConfig", "SystemConfig", "check_login", "check_placeholder", "load_config", "parse_duration",
]


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, wherever the import stands (TYPE_CHECKING blocks and functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_every_name_other_modules_import_is_re_exported():
    assert [name for name in NAMES if not hasattr(agent.config, name)] == []
    assert sorted(agent.config.__all__) == sorted(set(agent.config.__all__))


def test_source_query_does_not_import_the_configuration():
    assert {m for m in imported_modules(ROOT / "agent" / "source_query.py") if m.startswith("agent.config")} == set()


def test_the_configuration_imports_no_module_that_imports_it():
    inside = {f"agent.config.{p.stem}" for p in (ROOT / "agent" / "config").glob("*.py")} | {"agent.config"}
    imports = set().union(*(imported_modules(p) for p in (ROOT / "agent" / "config").glob("*.py")))
    assert sorted(m for m in imports if m.startswith("agent") and m not in inside) == [
        # `agent`: `from agent import dialects, source_query`; all of them are below the configuration's layer
        "agent", "agent.contract", "agent.dialects", "agent.errors", "agent.types",
    ]
    for module in ("agent/contract.py", "agent/dialects/__init__.py", "agent/dialects/base.py", "agent/errors.py", "agent/types.py",
                   "agent/source_query.py"):
        assert not {m for m in imported_modules(ROOT / module) if m.startswith("agent.config")}, module


def test_source_query_loads_without_the_configuration():
    script = "import sys, agent.source_query; print('agent.config' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout == "False\n"


def test_each_configuration_module_stays_under_400_lines():
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in (ROOT / "agent" / "config").glob("*.py")}
    assert sorted(sizes) == ["__init__.py", "basics.py", "checks.py", "interface.py", "loaded.py", "loader.py", "models.py"]
    assert {name: size for name, size in sizes.items() if size >= 400} == {}
    assert len((ROOT / "agent" / "source_query.py").read_text(encoding="utf-8").splitlines()) < 400

"""The wheel carries every package, the SQL templates and the demo data (users install with `pip install .`)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_agent_package_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "agent").rglob("__init__.py")
    }
    assert on_disk | {"agent.sql"} == listed


def test_templates_are_found_where_the_package_looks():
    from agent.dialects import templates

    folder = templates.sql_folder()
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) >= ["mssql", "mysql", "postgresql", "sqlite"]
    assert (folder / "postgresql" / "read_batch.sql").is_file()

"""The wheel carries every package, the SQL templates and the demo data (users install with `pip install .`).

The wheel is built from a copy of the checkout, so the test sees what `pip install .` installs, not the
checkout's own folders (a missing package or template would still be found there).
"""

from __future__ import annotations

import shutil
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DIALECT_FOLDERS = ("mssql", "mysql", "postgresql", "sqlite")


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    build_meta = pytest.importorskip("setuptools.build_meta", reason="pip install '.[test]' brings setuptools")
    source = tmp_path_factory.mktemp("source") / "mes-erp-agent"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__",
                                                                  "demo-run", ".pytest_cache"))
    out = tmp_path_factory.mktemp("wheel")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(source)
        name = build_meta.build_wheel(str(out))
    with zipfile.ZipFile(out / name) as wheel:
        return set(wheel.namelist())


def test_every_agent_package_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "agent").rglob("__init__.py")}
    missing = sorted(on_disk - listed)
    assert not missing, f"packages missing from [tool.setuptools] packages in pyproject.toml: {missing}"


def test_the_wheel_has_every_module_of_the_checkout(wheel_files: set[str]):
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "agent").rglob("*.py")}
    missing = sorted(modules - wheel_files)
    assert not missing, f"modules that `pip install .` would not install: {missing}"


def test_the_wheel_has_every_sql_template_under_agent_sql(wheel_files: set[str]):
    templates = {f"agent/sql/{p.relative_to(ROOT / 'sql')}" for p in (ROOT / "sql").rglob("*.sql")}
    assert {t.split("/")[2] for t in templates} == set(DIALECT_FOLDERS)
    missing = sorted(templates - wheel_files)
    assert not missing, f"SQL templates that `pip install .` would not install: {missing}"


def test_the_wheel_has_the_demo_data_and_its_license(wheel_files: set[str]):
    data = {str(p.relative_to(ROOT)) for p in (ROOT / "agent" / "demo").rglob("*") if p.is_file()
            and "__pycache__" not in p.parts}
    missing = sorted(data - wheel_files)
    assert not missing, f"demo files that `pip install .` would not install: {missing}"
    assert "agent/demo/data/adventureworks/LICENSE" in wheel_files

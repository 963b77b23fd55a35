"""Loads the SQL templates of `sql/<dialect>/` (Jinja2) and fills in identifiers.

Templates only ever receive identifiers that the dialect has already quoted, from validated
configuration. Values are never formatted into the text: they stay named bind parameters (`:name`).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2


def sql_folder() -> Path:
    """`sql/` of a source checkout, else the copy installed inside the package as `agent/sql`."""
    checkout = Path(__file__).resolve().parents[2] / "sql"
    if (checkout / "postgresql").is_dir():
        return checkout
    return Path(str(resources.files("agent") / "sql"))


@cache
def _environment(dialect: str) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(sql_folder() / dialect)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        autoescape=False,
    )


def template_path(dialect: str, template: str) -> Path:
    return sql_folder() / dialect / f"{template}.sql"


def render(dialect_name: str, template: str, keep_comments: bool = False, **context: Any) -> str:
    """The rendered template; without `keep_comments` its leading comment block (the DBA's notes) is dropped."""
    text = _environment(dialect_name).get_template(f"{template}.sql").render(**context)
    if keep_comments:
        return "\n".join(line.rstrip() for line in text.splitlines() if line.strip()).strip()
    return _strip_header(text)


def _strip_header(text: str) -> str:
    """Drop the leading `--` comment block (it documents the template for the DBA) and blank lines."""
    lines = text.splitlines()
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
        lines.pop(0)
    return "\n".join(line.rstrip() for line in lines if line.strip()).strip()


def template_names(dialect: str) -> list[str]:
    return sorted(p.stem for p in (sql_folder() / dialect).glob("*.sql"))

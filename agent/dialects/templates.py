"""Loads the SQL templates of `sql/<dialect>/` (Jinja2) and fills in identifiers.

Templates only ever receive identifiers that the dialect has already quoted, from validated
configuration. Values are never formatted into the text: they stay named bind parameters (`:name`).
"""

from __future__ import annotations

from functools import cache, lru_cache
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
    """The rendered template; without `keep_comments` its leading comment block (the DBA's notes) is dropped.

    A poll renders the same few statements every time (the read, the watermark's select): a context of plain values
    (text, numbers, lists and mappings of them) is rendered once and the text kept; any other context is rendered
    each time, since only plain values are sure to render the same text whenever they compare equal."""
    try:
        key = _frozen(context)
    except TypeError:
        return _render(dialect_name, template, keep_comments, context)
    return _render_plain(dialect_name, template, keep_comments, key)


@lru_cache(maxsize=1024)
def _render_plain(dialect_name: str, template: str, keep_comments: bool, key: tuple[Any, ...]) -> str:
    return _render(dialect_name, template, keep_comments, _thawed(key))


_PLAIN = (str, int, float, bool, type(None))


def _frozen(value: Any) -> Any:
    """`value` as a hashable key that tells its type apart; TypeError for what is not a plain value."""
    if type(value) in _PLAIN:  # exact types: a subclass may render differently from what it compares equal to
        return (type(value).__name__, value)
    if type(value) is dict:
        return ("dict", tuple((name, _frozen(item)) for name, item in value.items()))
    if type(value) in (list, tuple):
        return (type(value).__name__, tuple(_frozen(item) for item in value))
    raise TypeError(type(value).__name__)


def _thawed(key: tuple[str, Any]) -> Any:
    kind, value = key
    if kind == "dict":
        return {name: _thawed(item) for name, item in value}
    if kind in ("list", "tuple"):
        items = [_thawed(item) for item in value]
        return items if kind == "list" else tuple(items)
    return value


def _render(dialect_name: str, template: str, keep_comments: bool, context: dict[str, Any]) -> str:
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

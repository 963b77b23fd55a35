"""PostgreSQL's batch load: binary COPY where every column's type and values allow it, text COPY otherwise.

Binary COPY costs the agent about a third of text COPY's CPU per row (psycopg packs values instead of formatting
them). It carries no type information: each field must be in the exact binary layout of its column's type, so it
is used only for the types listed here, with the Python values the mapping gives them, and only inside a savepoint:
a value of another type (found only while streaming) rolls the attempt back and the batch goes as text, the layout
that parses anything. The stored values are the same either way (numeric scale, varchar length and float rounding
are applied by the column's receive function, as by its input function).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

log = logging.getLogger(__name__)

# The column's type as the catalog spells it (format_type, without its modifier) -> psycopg's binary dumper, and the
# Python types its values must have. Character types all take text's layout; a naive datetime into a timestamptz
# column goes as a timestamp (the same layout), read as UTC as text COPY reads it (the ERP session's time zone).
_BINARY: dict[str, tuple[str, tuple[type, ...]]] = {
    "character varying": ("text", (str,)), "character": ("text", (str,)), "text": ("text", (str,)),
    "smallint": ("int2", (int,)), "integer": ("int4", (int,)), "bigint": ("int8", (int,)),
    "numeric": ("numeric", (Decimal,)), "real": ("float4", (float,)), "double precision": ("float8", (float,)),
    "boolean": ("bool", (bool,)), "date": ("date", (dt.date,)), "bytea": ("bytea", (bytes,)),
    "timestamp without time zone": ("timestamp", (dt.datetime,)),
    "timestamp with time zone": ("timestamptz", (dt.datetime,)),
}
_MODIFIER = re.compile(r"\(\s*\d+\s*(,\s*\d+\s*)?\)")
CONTROL_NATIVE = "character varying"  # the batch table's stg_* columns (typed as agent_ledger's; stg_change as text)


def binary_types(natives: Sequence[str | None], rows: Sequence[Sequence[Any]]) -> list[str] | None:
    """psycopg type names for a binary COPY of `rows` into columns of these native types, or None (text COPY)."""
    found = []
    for position, native in enumerate(natives):
        entry = _BINARY.get(_MODIFIER.sub("", native or "").strip())
        if entry is None:
            return None
        name, accepted = entry
        sample = next((row[position] for row in rows if row[position] is not None), None)
        if sample is None:
            found.append(name)
            continue
        kind = type(sample)
        if kind not in accepted or (name == "timestamp" and sample.tzinfo is not None):
            return None  # bool is an int, a datetime is a date: exact types only
        found.append("timestamp" if name == "timestamptz" and sample.tzinfo is None else name)
    return found


def copy_rows(conn: Connection, statement: Callable[[bool], str], rows: Sequence[Sequence[Any]], types: list[str] | None) -> None:
    """COPY the rows: binary with `types` inside a savepoint (text if that fails on a value), else text.
    `statement(binary)`: the COPY statement of that form, rendered only when it is sent."""
    if types is not None:
        try:
            with conn.begin_nested():
                _copy(conn, statement(True), rows, types)
            return
        except Exception as exc:  # any failure of the binary attempt: the text COPY below decides
            log.debug("binary COPY not possible for this batch (%s): text COPY", exc.__class__.__name__)
    _copy(conn, statement(False), rows, None)


def _copy(conn: Connection, statement: str, rows: Sequence[Sequence[Any]], types: list[str] | None) -> None:
    driver_connection = conn.connection.driver_connection
    assert driver_connection is not None, "a connection in use is never detached from its driver connection"
    driver_error = conn.dialect.loaded_dbapi.Error
    try:
        with driver_connection.cursor().copy(statement) as copy:
            if types is not None:
                copy.set_types(types)
            for row in rows:
                copy.write_row(row)
    except driver_error as exc:
        # COPY runs on the driver's own cursor, outside SQLAlchemy, which wraps every other statement's errors:
        # wrap this one too, so that the run records a flow failure instead of ending in a traceback.
        raise sa.exc.DBAPIError.instance(statement, None, exc, driver_error) from exc


def natives_of(columns: Sequence[str], native_types: Mapping[str, str | None]) -> list[str | None]:
    """The batch table's column types in `columns` order: control columns as agent_ledger's, the rest as staged."""
    return [native_types.get(c, CONTROL_NATIVE if c.startswith("stg_") else None) for c in columns]

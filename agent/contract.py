"""The staging contract: what ERP import jobs, DBAs and every stage of the agent rely on.

Control columns of a staging table, the agent's control tables, the canonical text of key and version
values (`stg_source_key`, `stg_source_version`) and their length limits. Read, map, write, the drift gate
and the review commands import these; this module imports nothing of theirs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import sqlalchemy as sa

# Columns the agent writes into every staging row, in this order, before the mapped columns.
CONTROL_COLUMNS = ("stg_batch_id", "stg_flow", "stg_source_key", "stg_source_version", "stg_change")
# Every control column of a staging table (the rest have database defaults or belong to the import job).
ALL_CONTROL_COLUMNS = ("stg_id", *CONTROL_COLUMNS, "stg_status", "stg_error", "stg_loaded_at")
CONTROL_TYPES: dict[str, sa.types.TypeEngine[Any]] = {name: sa.String() for name in CONTROL_COLUMNS}
# Mapped staging columns may not use the control columns' prefix.
CONTROL_COLUMN_PREFIX = "stg_"
# The staging table's unique key: what makes a re-read row a duplicate.
STAGING_UNIQUE_KEY = ("stg_flow", "stg_source_key", "stg_source_version")
CHANGE_UPSERT = "U"  # stg_change of a new or changed source row
CHANGE_DELETE = "D"  # stg_change of a tombstone: the source row's key disappeared (hard delete, agent/recovery)
# A tombstone's stg_source_version: `D|` and the last version staged for the key. Deterministic, so the ledger's
# unique key makes every tombstone exactly-once; it sorts after every timestamp or date version text ('D' > '9').
TOMBSTONE_PREFIX = "D|"
STATUS_PENDING = "PENDING"  # stg_status as written; the import job sets its own values

KEY_TEXT_MAX = 256  # characters of stg_source_key
VERSION_TEXT_MAX = 128  # characters of stg_source_version

# The agent's own tables, in the staging schema next to the staging tables. agent_ledger records every
# (flow, source key, source version) the agent staged: the duplicate check reads it, never the staging rows,
# which an ERP import job may delete (consume) or update.
WATERMARK_TABLE, RUN_TABLE, QUARANTINE_TABLE, LEDGER_TABLE = "agent_watermark", "agent_run", "agent_quarantine", "agent_ledger"
# agent_holder: which agent (host, pid) holds each flow's lock (several agents on one configuration; agent/locks.py).
HOLDER_TABLE = "agent_holder"
HOLDER_AGENT_ROW = "*"  # agent_holder.flow of an agent's own row: it is alive, whether it holds a flow or not
CONTROL_TABLES = (WATERMARK_TABLE, RUN_TABLE, QUARANTINE_TABLE, LEDGER_TABLE, HOLDER_TABLE)

# Staging table layouts: `agent` (the default) is the stg_* layout of tables `sql ddl` creates; `vendor` is an
# interface table whose layout the ERP vendor defines: the agent adds no column to it and creates no DDL for it.
LAYOUT_AGENT, LAYOUT_VENDOR = "agent", "vendor"
# How the default layout reports the import outcome: the agent writes PENDING, the import job sets ERROR
# (with its message in stg_error) or any other value (done); a row it deleted is done.
STATUS_ERROR = "ERROR"
STATUS_COLUMN, ERROR_COLUMN, LOADED_AT_COLUMN = "stg_status", "stg_error", "stg_loaded_at"

NULL_TEXT = "\\N"


class QualifiesTables(Protocol):
    def table(self, schema: str | None, name: str) -> str: ...


@dataclass(frozen=True)
class ControlTables:
    """Qualified (quoted) names of the agent's control tables in one staging schema."""

    watermark: str
    run: str
    quarantine: str
    ledger: str
    holder: str

    @classmethod
    def in_schema(cls, dialect: QualifiesTables, schema: str) -> ControlTables:
        return cls(
            watermark=dialect.table(schema, WATERMARK_TABLE),
            run=dialect.table(schema, RUN_TABLE),
            quarantine=dialect.table(schema, QUARANTINE_TABLE),
            ledger=dialect.table(schema, LEDGER_TABLE),
            holder=dialect.table(schema, HOLDER_TABLE),
        )


def version_text(values: tuple[Any, ...]) -> str:
    """Canonical text of key or watermark values, joined by `|` (stg_source_key, stg_source_version).

    ISO-8601 timestamps with microseconds (and zone when the value has one), plain decimals, `\\N` for NULL;
    a `|` or `\\` inside a value is escaped with `\\`.
    """
    return "|".join([_FAST_TEXT.get(type(v), _canonical)(v) for v in values])


def _text_escaped(value: str) -> str:
    if "|" in value or "\\" in value:
        return value.replace("\\", "\\\\").replace("|", "\\|")
    return value


def _canonical(value: Any) -> str:
    if value is None:
        return NULL_TEXT
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dt.datetime, dt.time)):
        return value.isoformat(timespec="microseconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "0x" + bytes(value).hex().upper()
    if isinstance(value, str):
        return _text_escaped(value)
    return str(value)


# Exact-type shortcuts for the common types (this runs twice per row); anything else goes to _canonical.
_FAST_TEXT: dict[type, Callable[[Any], str]] = {
    int: str,
    str: _text_escaped,
    dt.datetime: lambda v: v.isoformat(timespec="microseconds"),
    Decimal: lambda v: format(v, "f"),
    type(None): lambda v: NULL_TEXT,
}


# For code compiled once per flow (mapping.RowMapper): version_text of one value is FAST_TEXT.get(type(v), canonical_text)(v).
FAST_TEXT = _FAST_TEXT
canonical_text = _canonical


def tombstone_version(last_version: str) -> str:
    """stg_source_version of the tombstone written when the key whose last staged version was `last_version` is gone."""
    return TOMBSTONE_PREFIX + last_version


def split_text(text: str) -> list[str | None]:
    """The values of a key or version text (version_text's inverse for text): unescaped, `\\N` as None."""
    values: list[str | None] = []
    raw, current, escaped = "", [], False
    for char in text:
        if escaped:
            current.append(char if char in "|\\" else "\\" + char)
            raw, escaped = raw + char, False
        elif char == "\\":
            raw, escaped = raw + char, True
        elif char == "|":
            values.append(None if raw == NULL_TEXT else "".join(current))
            raw, current = "", []
        else:
            raw += char
            current.append(char)
    if escaped:
        current.append("\\")
    values.append(None if raw == NULL_TEXT else "".join(current))
    return values

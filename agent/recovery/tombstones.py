"""Hard deletes: which keys agent_ledger knows are gone from the source, and their tombstone staging rows.

A candidate is a key whose latest ledger entry lies in a narrowed bucket that the source no longer has at that
version. The source is asked which of the candidates it still has, at any version (`reconcile_source_keys.sql`,
index lookups on the key); the others get one tombstone each: `stg_change = 'D'`, `stg_source_version` =
`D|<last version staged>`, the mapped columns that come from the key (or are constants, or have a `default:`)
filled, the rest NULL, and a vendor table's `deletes: {constants: ...}`. It is written through the write path,
so the ledger records it and no pass writes it twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from agent.contract import CHANGE_DELETE, VERSION_TEXT_MAX, split_text, tombstone_version, version_text
from agent.mapping import Rejected
from agent.pipeline import FlowContext
from agent.recovery.buckets import NotReconcilable

log = logging.getLogger("mes_erp_agent")
_PARSERS: dict[str, Any] = {
    "integer": int, "decimal": Decimal, "text": str, "timestamp": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat, "boolean": lambda text: text == "true",
}
KEYS_PER_STATEMENT = 500


def check_keys(ctx: FlowContext) -> None:
    """Delete detection looks keys up by value: each key column's text must convert back to its type."""
    for name in ctx.flow.key:
        column_type = ctx.source_columns[name].column_type
        if column_type is None or column_type.family not in _PARSERS:
            found = column_type.describe() if column_type else "of unknown type"
            raise NotReconcilable(f"flow {ctx.name}: delete detection looks source keys up by value, but key column "
                                  f"{name} is {found}; it needs integer, decimal, text, date or timestamp key columns")


def typed_key(ctx: FlowContext, key_text: str) -> tuple[Any, ...]:
    """stg_source_key text back to the key columns' values."""
    parts = split_text(key_text)
    values = []
    for name, part in zip(ctx.flow.key, parts, strict=True):
        column_type = ctx.source_columns[name].column_type
        assert column_type is not None, "check_keys ran first"
        values.append(None if part is None else _PARSERS[column_type.family](part))
    return tuple(values)


def still_in_source(ctx: FlowContext, keys: list[str]) -> set[str]:
    """Which of these key texts the source has (at any version)."""
    dialect, flow = ctx.source_dialect, ctx.flow
    size = max(1, min(KEYS_PER_STATEMENT, dialect.max_bind_params // len(flow.key) - 1))
    found: set[str] = set()
    for start in range(0, len(keys), size):
        part = keys[start:start + size]
        statement, params = keys_statement(ctx, [typed_key(ctx, k) for k in part])
        with ctx.source_engine.connect() as conn:
            found |= {version_text(tuple(row)) for row in conn.execute(statement, params)}
            conn.commit()
    return found


def keys_statement(ctx: FlowContext, keys: list[tuple[Any, ...]]) -> tuple[sa.TextualSelect, dict[str, Any]]:
    dialect, flow, columns = ctx.source_dialect, ctx.flow, ctx.source_columns
    sql = keys_sql(dialect, flow.key, ctx.reader.source_sql, len(keys))
    params = {f"k{i}_{j}": value for i, key in enumerate(keys) for j, value in enumerate(key)}
    clause = sa.text(sql).bindparams(*[
        sa.bindparam(f"k{i}_{j}", type_=dialect.bind_type(columns[name].sa_type))
        for i in range(len(keys)) for j, name in enumerate(flow.key)
    ])
    return clause.columns(*[sa.column(name, columns[name].sa_type) for name in flow.key]), params


def keys_sql(dialect: Any, key: list[str], source_sql: str, count: int) -> str:
    """The text of `reconcile_source_keys.sql` for `count` candidate keys (also for render-sql)."""
    conditions = [[(dialect.quote(name), f"k{i}_{j}") for j, name in enumerate(key)] for i in range(count)]
    return dialect.render("reconcile_source_keys", source=source_sql, key=[dialect.quote(k) for k in key],
                          conditions=conditions)


def tombstone_rows(ctx: FlowContext, gone: Iterable[tuple[str, str]], batch_id: str) -> list[tuple[Any, ...]]:
    """One staging row per (key text, last version staged): the batch table's layout (control columns, mapped)."""
    mapper = ctx.mapper
    constants = ctx.flow.deletes.constants if ctx.flow.deletes else {}
    rows = []
    for key_text, last_version in gone:
        version = tombstone_version(last_version)
        if len(version) > VERSION_TEXT_MAX:
            log.warning("flow %s: key %s is gone from the source, but its tombstone version %r is longer than "
                        "stg_source_version holds (%d); no tombstone written", ctx.name, key_text, version, VERSION_TEXT_MAX)
            continue
        source_row: list[Any] = [None] * len(mapper.source_columns)
        for position, value in zip(mapper.key_positions, typed_key(ctx, key_text), strict=True):
            source_row[position] = value
        values = []
        for name, convert in zip(mapper.staging_columns, mapper.converters, strict=True):
            if name in constants:
                values.append(constants[name])
                continue
            try:
                values.append(convert(tuple(source_row)))
            except Rejected:  # a required column without a value from the key: NULL in a tombstone
                values.append(None)
        rows.append((batch_id, ctx.name, key_text, version, CHANGE_DELETE, *values))
    return rows

"""Buckets of a flow's first watermark column, and their counts and checksums on both sides.

A bucket is a prefix of the column's canonical text (contract.version_text, the start of stg_source_version): 4
characters are a year, 7 a month, 10 a day, 13 an hour, 16 a minute, 19 a second. The source computes, per bucket,
how many rows it has and the sum of a 32-bit hash of each row's `key text|version text`
(`reconcile_source_buckets.sql`); agent_ledger computes the same for what it says the source holds now
(`reconcile_ledger_buckets.sql`). Both inside their database: only one row per bucket reaches the agent. Where
a key or watermark column's canonical text cannot be rendered in SQL exactly, only the counts are compared.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from agent.contract import TOMBSTONE_PREFIX, version_text
from agent.errors import AgentError
from agent.pipeline import FlowContext
from agent.read import SourceColumn

# Prefix widths of the canonical text, coarsest first, per family of the first watermark column.
LEVELS: dict[str, tuple[int, ...]] = {"timestamp": (4, 7, 10, 13, 16, 19), "date": (4, 7, 10)}
_ORIGIN = "0001-01-01T00:00:00"
_STEP = {"timestamp": dt.timedelta(microseconds=1), "date": dt.timedelta(days=1)}


class NotReconcilable(AgentError):
    """The flow's first watermark column is not a time the buckets can be cut from."""


@dataclass(frozen=True)
class Counts:
    rows: int
    checksum: int | None


EMPTY = Counts(0, None)


@dataclass(frozen=True)
class Bucket:
    """Values of the first watermark column in [lower, upper); `prefix` is their common canonical text."""

    prefix: str
    lower: Any
    upper: Any

    @property
    def lower_text(self) -> str:
        return version_text((self.lower,))

    @property
    def upper_text(self) -> str:
        return version_text((self.upper,))


def first_family(ctx: FlowContext) -> str:
    """`timestamp` or `date`: the family of the flow's first watermark column; raises NotReconcilable otherwise."""
    column = ctx.source_columns[ctx.flow.watermark[0]]
    column_type = column.column_type
    if ctx.flow.rowversion or column_type is None or column_type.family not in LEVELS or column_type.timezone:
        found = column_type.describe() if column_type else "of unknown type"
        raise NotReconcilable(
            f"flow {ctx.name}: reconciliation cuts buckets from the first watermark column's time, but "
            f"{ctx.flow.watermark[0]} is {found}; it needs a timestamp without time zone or a date")
    return column_type.family


def last_inside(family: str, upper: Any) -> Any:
    """The largest value below `upper` (for reads whose upper bound is inclusive)."""
    return upper - _STEP[family]


def after(family: str, value: Any) -> Any:
    """The smallest value above `value`."""
    return value + _STEP[family]


def as_family(family: str, value: Any) -> Any:
    """A bound given as a datetime or date, as a value of the column's family."""
    if family == "date" and isinstance(value, dt.datetime):
        return value.date()
    if family == "timestamp" and not isinstance(value, dt.datetime):
        return dt.datetime(value.year, value.month, value.day)
    return value


def parse_first(family: str, text: str) -> Any:
    """The first component of a version text (canonical text of the first watermark column) as a value."""
    first = text.split("|", 1)[0]
    return dt.date.fromisoformat(first[:10]) if family == "date" else dt.datetime.fromisoformat(first)


def child(prefix: str, family: str, within: Bucket) -> Bucket:
    """The bucket `prefix` inside `within` (clipped to it)."""
    text = prefix + _ORIGIN[len(prefix):]
    start: Any = dt.date.fromisoformat(text[:10]) if family == "date" else dt.datetime.fromisoformat(text)
    width = len(prefix)
    try:
        if width == 4:
            end = start.replace(year=start.year + 1)
        elif width == 7:
            end = (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        else:
            end = start + {10: dt.timedelta(days=1), 13: dt.timedelta(hours=1), 16: dt.timedelta(minutes=1),
                           19: dt.timedelta(seconds=1)}[width]
    except (OverflowError, ValueError):  # the year 9999
        end = within.upper
    return Bucket(prefix, max(start, within.lower), min(end, within.upper))


def checksum_possible(ctx: FlowContext) -> bool:
    """Whether the source can render every key and watermark column's canonical text in SQL."""
    names = [*ctx.flow.key, *ctx.flow.watermark]
    return all(_canonical(ctx.source_columns[n], ctx.source_dialect.canonical_families) for n in names)


def _canonical(column: SourceColumn, families: frozenset[str]) -> bool:
    column_type = column.column_type
    return column_type is not None and column_type.family in families and not column_type.timezone


class BucketQueries:
    """The aggregate statements of one flow, on its source and on agent_ledger, for one pass."""

    def __init__(self, ctx: FlowContext):
        self.ctx = ctx
        self.family = first_family(ctx)
        self.checksum = checksum_possible(ctx)
        self.levels = LEVELS[self.family]
        self._source = source_statement(ctx, self.checksum)
        ledger = ctx.target_dialect
        self._ledger = ledger.statement(
            "reconcile_ledger_buckets", {"prefix": sa.Integer()},
            ledger_table=ctx.control.ledger, quarantine_table=ctx.control.quarantine)
        self._entries = ledger.statement(
            "reconcile_ledger_entries", ledger_table=ctx.control.ledger, quarantine_table=ctx.control.quarantine)

    def same(self, source: Counts, ledger: Counts) -> bool:
        return source.rows == ledger.rows and (not self.checksum or source.checksum == ledger.checksum)

    def source(self, within: Bucket, width: int) -> dict[str, Counts]:
        params = {"prefix": width, "lower_bound": within.lower, "upper_bound": within.upper}
        with self.ctx.source_engine.connect() as conn:
            rows = conn.execute(self._source, params).all()
            conn.commit()
        return _counts(rows)

    def ledger(self, within: Bucket, width: int) -> dict[str, Counts]:
        params = {"flow": self.ctx.name, "prefix": width, "lower_text": within.lower_text,
                  "upper_text": within.upper_text}
        with self.ctx.target_engine.connect() as conn:
            rows = conn.execute(self._ledger, params).all()
            conn.commit()
        return _counts(rows)

    def entries(self, bucket: Bucket) -> list[tuple[str, str, str, bool]]:
        """(source_key, source_version, 'L' or 'Q', latest ledger entry of its key) of one narrowed bucket."""
        params = {"flow": self.ctx.name, "lower_text": bucket.lower_text, "upper_text": bucket.upper_text}
        with self.ctx.target_engine.connect() as conn:
            rows = conn.execute(self._entries, params).all()
            conn.commit()
        return [(str(r[0]), str(r[1]), str(r[2]), bool(r[3])) for r in rows]


def source_statement(ctx: FlowContext, checksum: bool) -> sa.TextClause | sa.TextualSelect:
    dialect, flow = ctx.source_dialect, ctx.flow
    first = ctx.source_columns[flow.watermark[0]]
    clause = dialect.statement(
        "reconcile_source_buckets",
        {"prefix": sa.Integer(), "lower_bound": first.sa_type, "upper_bound": first.sa_type},
        **source_context(dialect, flow, ctx.reader.source_sql, {n: c.column_type.family if c.column_type else None
                                                                for n, c in ctx.source_columns.items()}, checksum),
    )
    return clause


def source_context(dialect: Any, flow: Any, source_sql: str, families: dict[str, str | None], checksum: bool) -> dict[str, Any]:
    """What `reconcile_source_buckets.sql` is rendered with (also by render-sql, from the snapshot's types)."""
    def column(name: str) -> dict[str, Any]:
        return {"name": dialect.quote(name), "family": families.get(name)}

    return {"source": source_sql, "first": column(flow.watermark[0]), "key": [column(k) for k in flow.key],
            "watermark": [column(w) for w in flow.watermark], "checksum": checksum}


def _counts(rows: Sequence[Any]) -> dict[str, Counts]:
    return {str(r[0]): Counts(int(r[1]), None if r[2] is None else int(r[2])) for r in rows
            if r[0] is not None and not str(r[0]).startswith(TOMBSTONE_PREFIX)}

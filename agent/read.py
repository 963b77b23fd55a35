"""Read stage: pages of changed MES rows in watermark (keyset) order, read-only, memory bounded by batch_size.

Each page is its own short read on the source: `(c1, c2) > (:v1, :v2) ORDER BY c1, c2` with a limit, so the
MES does an index range scan per batch and never holds a snapshot open for a whole initial load.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from agent import dialects, source_query
from agent.config import FlowConfig
from agent.catalog.model import ColumnSnapshot
from agent.catalog.query import describe_table
from agent.dialects import Dialect
from agent.errors import SchemaMismatch, UnsortedBatch
from agent.types import ColumnType, to_sqlalchemy


@dataclass(frozen=True)
class SourceColumn:
    name: str
    sa_type: sa.types.TypeEngine
    column_type: ColumnType | None  # None: an expression of a custom query (its type is unknown)
    nullable: bool
    native: str | None = None  # the type as the database spells it (the catalog's), where it was read


def describe_source_table(engine: Engine, schema: str | None, table: str) -> dict[str, SourceColumn]:
    """Columns of a table as the database reports them (once per flow and process), from the catalog query."""
    described = describe_table(engine, dialects.for_engine(engine), schema, table)
    if described is None:
        return {}
    return {c.name: _source_column(c) for c in described.columns}


def _source_column(column: ColumnSnapshot) -> SourceColumn:
    column_type = column.type
    if column_type.family == "other":
        # A type the agent has no family for (an enum, uuid, json, interval): its values are read and staged as
        # text; an enum's are as long as its longest label.
        column_type = ColumnType("text", length=max((len(label) for label in column.labels), default=None))
    return SourceColumn(column.name, to_sqlalchemy(column_type), column_type, column.nullable, column.native)


def describe_source(engine: Engine, dialect: Dialect, flow: FlowConfig) -> dict[str, SourceColumn]:
    """The flow's source columns: its table's, or its query's output columns typed from the columns they select."""
    if flow.query is None:
        assert flow.source_table is not None, "FlowConfig has exactly one of `table:` and `query:`"
        return describe_source_table(engine, flow.source_schema, flow.source_table)
    tables: dict[tuple[str | None, str], dict[str, SourceColumn]] = {}
    found: dict[str, SourceColumn] = {}
    for output in source_query.load(flow.query, dialect).outputs:
        origin = None
        if output.origin is not None:
            schema, table, column = output.origin
            if (schema, table) not in tables:
                tables[(schema, table)] = describe_source_table(engine, schema, table)
            origin = next((c for n, c in tables[(schema, table)].items() if dialect.same_column(n, column)), None)
        found[output.name] = (
            SourceColumn(output.name, origin.sa_type, origin.column_type, origin.nullable) if origin
            else SourceColumn(output.name, sa.types.NullType(), None, True)
        )
    return found


def source_sql_for(dialect: Dialect, flow: FlowConfig) -> str:
    """What the read selects from: the quoted table, or the custom query as a derived table."""
    if flow.query is None:
        return dialect.table(flow.source_schema, flow.source_table or "")
    query = source_query.load(flow.query, dialect)
    return dialect.derived_table(source_query.escape_binds(query.sql), source_query.ALIAS)


def needed_source_columns(flow: FlowConfig) -> list[str]:
    """Watermark, key and mapped columns, each once, in that order: the read's select list."""
    return flow.source_columns


def check_source_columns(flow_name: str, flow: FlowConfig, system: str, columns: dict[str, SourceColumn]) -> list[str]:
    """Problems with the flow's source columns, for a person (empty when all exist)."""
    if not columns:
        return [f"flow {flow_name}: source table {flow.table} does not exist in system {system} (or the agent's login cannot see it)"]
    problems = []
    lowered = {name.lower(): name for name in columns}
    source = flow.table or f"query {flow.query}"
    typed = {*flow.watermark, *(m.source for m in flow.columns.values() if m.source and not m.type and m.map is None)}
    for name in needed_source_columns(flow):
        if name not in columns:
            hint = f" (the table has {lowered[name.lower()]!r}: names are case-sensitive)" if name.lower() in lowered else ""
            problems.append(f"flow {flow_name}: column {name!r} does not exist in source table {flow.table} on system {system}{hint}"
                            if flow.table else f"flow {flow_name}: column {name!r} is not an output column of {source}{hint}")
        elif columns[name].column_type is None and name in typed:
            problems.append(f"flow {flow_name}: the type of column {name!r} of {source} is unknown on system {system} (an "
                            "expression, or its table cannot be seen); select a plain column or give its mapping a `type:`")
    first = columns.get(flow.watermark[0])
    if flow.rowversion and first is not None and (first.column_type is None or first.column_type.family != "binary"):
        found = first.column_type.describe() if first.column_type else "of unknown type"
        problems.append(f"flow {flow_name}: `rowversion: true`, but watermark column {flow.watermark[0]!r} of {source} on "
                        f"system {system} is {found}, not a rowversion")
    return problems


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: after a row (keyset), from a timestamp (overlap window) or at the start."""

    after: tuple[Any, ...] | None = None
    from_value: Any = None

    @property
    def mode(self) -> str:
        if self.after is not None:
            return "after"
        return "from" if self.from_value is not None else "start"


class BatchReader:
    """Reads one flow's source in pages. Owns the select list and the keyset order."""

    def __init__(self, engine: Engine, dialect: Dialect, flow: FlowConfig, source: dict[str, SourceColumn], source_sql: str):
        self.engine = engine
        self.dialect = dialect
        self.flow = flow
        self.columns = needed_source_columns(flow)
        self.source = source
        self.source_sql = source_sql
        self.watermark_positions = [self.columns.index(c) for c in flow.watermark]
        self._statements: dict[tuple[str, bool], sa.TextualSelect] = {}

    def statement(self, cursor_mode: str, has_upper_bound: bool) -> sa.TextualSelect:
        """The page read for a cursor mode, built once per reader (every poll sends the same text)."""
        key = (cursor_mode, has_upper_bound)
        if key not in self._statements:
            self._statements[key] = self._build_statement(cursor_mode, has_upper_bound)
        return self._statements[key]

    def _build_statement(self, cursor_mode: str, has_upper_bound: bool) -> sa.TextualSelect:
        first = self.source[self.flow.watermark[0]].sa_type
        bind_types: dict[str, sa.types.TypeEngine] = {"batch_size": sa.Integer()}
        if cursor_mode == "after":
            bind_types.update({f"wm_{i}": self.source[c].sa_type for i, c in enumerate(self.flow.watermark)})
        if cursor_mode == "from":
            bind_types["lower_bound"] = first
        if has_upper_bound and not self.flow.rowversion:
            bind_types["upper_bound"] = first
        clause = sa.text(read_sql(self.dialect, self.flow, self.source_sql, cursor_mode, has_upper_bound))
        clause = clause.bindparams(
            *[sa.bindparam(name, type_=self.dialect.bind_type(type_)) for name, type_ in bind_types.items()]
        )
        return clause.columns(*[sa.column(c, self.source[c].sa_type) for c in self.columns])

    def check_query(self, flow_name: str, system: str) -> list[str]:
        """A custom query runs under the agent's own login before any data moves: one read of 0 rows."""
        if self.flow.query is None:
            return []
        try:
            with self.engine.connect() as conn:
                conn.execute(self.statement("start", False), {"batch_size": 0}).close()
                conn.rollback()
        except sa.exc.DBAPIError as exc:
            first = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
            return [f"flow {flow_name}: query {self.flow.query} fails on system {system}: {first}"]
        return []

    def read_page(self, cursor: Cursor, upper_bound: Any = None) -> list[tuple[Any, ...]]:
        statement = self.statement(cursor.mode, upper_bound is not None)
        params: dict[str, Any] = {"batch_size": self.flow.batch_size}
        if cursor.after is not None:
            params.update({f"wm_{i}": v for i, v in enumerate(cursor.after)})
        if cursor.from_value is not None:
            params["lower_bound"] = cursor.from_value
        if upper_bound is not None:
            params["upper_bound"] = upper_bound
        with self.engine.connect() as conn:
            rows = [tuple(row) for row in conn.execute(statement, params)]
            # Read-only, so commit and rollback are the same here; psycopg keeps prepared statements on commit.
            conn.commit()
        self._check_order(rows, cursor)
        return rows

    def watermark_of(self, row: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(row[i] for i in self.watermark_positions)

    def pages(self, cursor: Cursor, upper_bound: Any = None) -> Iterator[list[tuple[Any, ...]]]:
        """Pages until a short one; each page's cursor is the previous page's last row."""
        while True:
            rows = self.read_page(cursor, upper_bound)
            if rows:
                yield rows
            if len(rows) < self.flow.batch_size:
                return
            cursor = Cursor(after=self.watermark_of(rows[-1]))

    def _check_order(self, rows: list[tuple[Any, ...]], cursor: Cursor) -> None:
        if not rows:
            return
        get = operator.itemgetter(*self.watermark_positions)
        watermarks = [get(row) for row in rows] if len(self.watermark_positions) > 1 else [(get(row),) for row in rows]
        if any(None in values for values in watermarks):
            raise UnsortedBatch(
                f"a source row of {self.flow.table or self.flow.query} has NULL in a watermark column "
                f"({', '.join(self.flow.watermark)}): such rows cannot be tracked. Make the columns NOT NULL "
                "or filter NULLs out in a custom query."
            )
        if not _comparable(watermarks[0]):
            return
        previous = cursor.after if cursor.after is not None else watermarks[0]
        ordered = in_source_order if _zoned(watermarks[0]) or _zoned(previous) else _same
        for current in watermarks if cursor.after is not None else watermarks[1:]:
            if not ordered(current) > ordered(previous):
                raise UnsortedBatch(
                    f"source returned watermark {current} after {previous}: rows are not in strict "
                    f"({', '.join(self.flow.watermark)}) order; the last watermark column must be unique per value "
                    "of the others (add the key as last watermark column)"
                )
            previous = current


def read_sql(dialect: Dialect, flow: FlowConfig, source_sql: str, cursor_mode: str, has_upper_bound: bool) -> str:
    """The text of one page's read (`sql/<dialect>/read_batch.sql`), as executed and as `render-sql` shows it."""
    quote = dialect.quote
    return dialect.render(
        "read_batch",
        columns=[quote(c) for c in needed_source_columns(flow)],
        source=source_sql,
        watermark=[quote(c) for c in flow.watermark],
        params=[f":wm_{i}" for i in range(len(flow.watermark))],
        cursor=cursor_mode,
        # A rowversion watermark (SQL Server) stops below MIN_ACTIVE_ROWVERSION(); a lag binds :upper_bound.
        upper_bound="rowversion" if flow.rowversion else has_upper_bound,
    )


def in_source_order(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """Watermark values as the database orders them: a zoned timestamp by its instant. Python compares two datetimes
    with the same tzinfo by their wall-clock time, so in a DST zone's repeated hour (a timestamptz read in a session
    whose TimeZone is Europe/Berlin) 02:50+02:00 would look later than the 02:10+01:00 that follows it."""
    return tuple(v.astimezone(dt.timezone.utc) if isinstance(v, dt.datetime) and v.tzinfo is not None else v
                 for v in values)


def _zoned(values: tuple[Any, ...]) -> bool:
    """A zoned timestamp among the values: compared by its instant (in_source_order); else compared as they are."""
    return any(isinstance(v, dt.datetime) and v.tzinfo is not None for v in values)


def _same(values: tuple[Any, ...]) -> tuple[Any, ...]:
    return values


def _comparable(values: tuple[Any, ...]) -> bool:
    # Text order in the database follows its collation, not Python's; only check other types.
    return not any(isinstance(v, str) for v in values)


def lag_upper_bound(engine: Engine, dialect: Dialect, flow: FlowConfig, first: SourceColumn) -> Any:
    """`server now - lag` on the MES clock, or None when the flow has no lag."""
    if not flow.lag:
        return None
    with engine.connect() as conn:
        row = conn.execute(sa.text(dialect.render("server_time"))).one()
        conn.commit()
    assert first.column_type is not None, "check_source_columns refuses a watermark column of unknown type"
    now = row.zoned_now if first.column_type.timezone else row.local_now
    if isinstance(now, str):
        now = dt.datetime.fromisoformat(now)
    return earlier(now, flow.lag)


def earlier(moment: Any, by: dt.timedelta) -> Any:
    """`moment - by` in the source's terms: a zoned timestamp by its instant (within one tzinfo Python subtracts
    wall-clock time, which a DST change in between shifts by an hour); a naive one on its wall clock, as stored."""
    if isinstance(moment, dt.datetime) and moment.tzinfo is not None:
        return (moment.astimezone(dt.timezone.utc) - by).astimezone(moment.tzinfo)
    return moment - by


def overlap_start(flow: FlowConfig, watermark_values: tuple[Any, ...]) -> Any:
    """The first watermark column's value `overlap` before the stored position."""
    first = watermark_values[0]
    if isinstance(first, (dt.datetime, dt.date)):
        return earlier(first, flow.overlap)
    raise SchemaMismatch(
        f"`overlap:` needs a timestamp as first watermark column, but {flow.watermark[0]} holds "
        f"{type(first).__name__} values; remove `overlap:` from the flow"
    )

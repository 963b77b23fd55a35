"""Import outcomes: what the ERP's import job made of the rows the agent staged, read with set-based queries.

Per flow, an `OutcomeSource` says where to look: the staging (interface) table, how its rows are the flow's
(`stg_flow` in the stg_* layout; the `reference:` column holding an agent_ledger entry id in a vendor layout),
and the flow's outcome (`FlowConfig.import_outcome`). Three templates read and act on it:
`outcome_counts.sql` (pending, in error, staged: the running agent's check, `status`, /metrics),
`outcome_errors.sql` (the rows in error with the ERP's messages: incidents, `outcomes`) and
`outcome_resubmit.sql` (`outcomes --resubmit`: the flow's declared `resubmit:` on its rows in error).

Done is counted from the ledger: the flow's agent_ledger entries (what it staged within `ledger.keep`) minus its
rows still pending or in error. A row the import job consumed (deleted) or gave a status that is neither
pending nor an error is done. Status values are bound as parameters, converted to the live status column's type
(a YAML `64` for a text column is bound as '64').
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from agent.catalog.query import describe_table
from agent.config import AGENT_LAYOUT_OUTCOME, ROW_GONE, FlowConfig, LoadedConfig, OutcomeConfig, split_table
from agent.contract import LOADED_AT_COLUMN, NULL_TEXT, ControlTables
from agent.dialects import Dialect
from agent.types import ColumnType

_TIMESTAMP: sa.types.TypeEngine[Any] = sa.DateTime()


@dataclass(frozen=True)
class OutcomeCounts:
    """One flow's rows by import outcome. `staged_rows`: its agent_ledger entries (within `ledger.keep`)."""

    pending_rows: int
    oldest_pending: dt.datetime | None  # UTC
    error_rows: int
    staged_rows: int

    @property
    def done_rows(self) -> int:
        """Staged rows neither pending nor in error: consumed by the import job, or given a done status."""
        return max(self.staged_rows - self.pending_rows - self.error_rows, 0)

    def age_seconds(self, now: dt.datetime) -> float | None:
        if self.oldest_pending is None:
            return None
        return round(max((now - self.oldest_pending).total_seconds(), 0.0), 1)


@dataclass(frozen=True)
class ErrorRow:
    """A staged row the import job rejected: where it came from (key, version) and the ERP's own messages."""

    row_id: int  # the agent_ledger entry id (vendor layout) or stg_id
    source_key: str
    source_version: str
    staged_at: dt.datetime | None  # UTC
    status: Any
    messages: tuple[str, ...] = ()

    @property
    def error_text(self) -> str:
        return "; ".join(self.messages) if self.messages else "(no message)"


@dataclass(frozen=True)
class OutcomeSource:
    """Where and how one flow's import outcome is read (identifiers quoted for `dialect`)."""

    flow: str
    dialect: Dialect
    staging_table: str  # quoted, qualified
    staging_name: str  # schema.table, for people
    control: ControlTables
    outcome: OutcomeConfig
    reference: str | None = None  # vendor layout: the column holding the agent_ledger entry id
    error_table: str | None = None  # quoted, qualified
    error_table_name: str | None = None  # schema.table, for people
    live_types: Mapping[str, ColumnType] = field(default_factory=dict)  # staging column -> type, for binding values

    @property
    def vendor(self) -> bool:
        return self.reference is not None

    @property
    def resubmit(self) -> dict[str, Any] | None:
        return self.outcome.resubmit

    # --- the statements ------------------------------------------------------------------------
    def counts_sql(self) -> str:
        return self.dialect.render("outcome_counts", **self._context())

    def errors_sql(self, keys: int = 0) -> str:
        return self.dialect.render("outcome_errors", **self._context(keys))

    def resubmit_sql(self, keys: int) -> str:
        assert self.resubmit, "outcomes --resubmit refuses a flow without `resubmit:`"
        q = self.dialect.quote
        assignments = [f"{q(column)} = :set_{i}" for i, column in enumerate(self.resubmit)]
        return self.dialect.render("outcome_resubmit", assignments=assignments, **self._context(keys))

    def _context(self, keys: int = 0) -> dict[str, Any]:
        q, o = self.dialect.quote, self.outcome
        rows_gone = o.done == ROW_GONE
        since = f"s.{q(o.pending_since)}" if o.pending_since else ("l.staged_at" if self.vendor else f"s.{LOADED_AT_COLUMN}")
        error_text = [{"expr": f"s.{q(c)}", "alias": f"error_text_{i}"} for i, c in enumerate(o.error_text)]
        error_table = None
        if o.error_table is not None:
            offset = len(error_text)
            error_text += [{"expr": f"e.{q(c)}", "alias": f"error_text_{offset + i}"} for i, c in enumerate(o.error_table.text)]
            error_table = {"table": self.error_table, "link": q(o.error_table.link)}
        return {
            "staging_table": self.staging_table,
            "staging_name": self.staging_name,
            "ledger_table": self.control.ledger,
            "vendor": self.vendor,
            "reference": q(self.reference) if self.reference else None,
            "status": q(o.status_column),
            "pending": [f":pending_{i}" for i in range(len(o.pending))] if rows_gone else [],
            "not_pending": [] if rows_gone else [f":done_{i}" for i in range(len(o.done))] + self._error_params(),
            "error": self._error_params(),
            "since": since,
            "row_id": "l.entry_id" if self.vendor else "s.stg_id",
            "source_key": "l.source_key" if self.vendor else "s.stg_source_key",
            "source_version": "l.source_version" if self.vendor else "s.stg_source_version",
            "staged_at": "l.staged_at" if self.vendor else f"s.{LOADED_AT_COLUMN}",
            "error_text": error_text,
            "error_table": error_table,
            "keys": [f":key_{i}" for i in range(keys)],
        }

    def _error_params(self) -> list[str]:
        return [f":error_{i}" for i in range(len(self.outcome.error))]

    def params(self, keys: Sequence[str] = ()) -> dict[str, Any]:
        """The bind values: the flow, its status values (typed as the status column), the keys."""
        o, status_type = self.outcome, self.live_types.get(self.outcome.status_column)
        values: dict[str, Any] = {"flow": self.flow}
        lists = {"pending": o.pending if o.done == ROW_GONE else [], "done": [] if o.done == ROW_GONE else o.done,
                 "error": o.error}
        for name, listed in lists.items():
            values.update({f"{name}_{i}": bind_value(v, status_type) for i, v in enumerate(listed)})
        values.update({f"key_{i}": key for i, key in enumerate(keys)})
        return values

    # --- running them --------------------------------------------------------------------------
    def counts(self, conn: Connection) -> OutcomeCounts:
        statement = sa.text(self.counts_sql()).columns(
            sa.column("pending_rows"), sa.column("oldest_pending", _TIMESTAMP), sa.column("error_rows"),
            sa.column("staged_rows"))
        row = conn.execute(statement, self.params()).one()
        return OutcomeCounts(int(row.pending_rows or 0), as_utc(row.oldest_pending), int(row.error_rows or 0),
                             int(row.staged_rows or 0))

    def errors(self, conn: Connection, limit: int, keys: Sequence[str] = ()) -> list[ErrorRow]:
        """Up to `limit` result rows of the flow in error (with `keys`: only those keys), in row order."""
        columns = [sa.column("row_id"), sa.column("source_key"), sa.column("source_version"),
                   sa.column("staged_at", _TIMESTAMP), sa.column("status")]
        texts = len(self.outcome.error_text) + (len(self.outcome.error_table.text) if self.outcome.error_table else 0)
        columns += [sa.column(f"error_text_{i}") for i in range(texts)]
        statement = sa.text(self.errors_sql(len(keys))).columns(*columns)
        result = conn.execute(statement, {**self.params(keys), "max_rows": limit}).all()
        return group_errors([tuple(r) for r in result], len(self.outcome.error_text))

    def resubmit_rows(self, conn: Connection, keys: Sequence[str]) -> int:
        """Run the flow's `resubmit:` on its rows in error with these keys (the caller's transaction)."""
        assert self.resubmit
        values = {f"set_{i}": bind_value(v, self.live_types.get(c)) for i, (c, v) in enumerate(self.resubmit.items())}
        return int(conn.execute(sa.text(self.resubmit_sql(len(keys))), {**self.params(keys), **values}).rowcount)

    # --- for people ----------------------------------------------------------------------------
    def pending_words(self) -> str:
        """How the flow's pending rows are called: PENDING in the stg_* layout, else by status column and values."""
        o = self.outcome
        if (o.status_column, o.pending, o.done) == (AGENT_LAYOUT_OUTCOME.status_column, AGENT_LAYOUT_OUTCOME.pending, ROW_GONE):
            return "PENDING"
        if o.done == ROW_GONE:
            return f"pending ({o.status_column} {_listed(o.pending)})"
        return f"pending ({o.status_column} not {_listed([*o.done, *o.error])})"

    def error_words(self) -> str:
        return f"{self.outcome.status_column} {_listed(self.outcome.error)}"

    def pending_query(self) -> str:
        """A query a person can run to see the pending rows (values written out: it is for reading, not run)."""
        o, status_type = self.outcome, self.live_types.get(self.outcome.status_column)
        columns = [self.reference] if self.reference else ["stg_id", "stg_source_key", LOADED_AT_COLUMN]
        columns += [c for c in [o.status_column, *o.error_text] if c not in columns]
        if o.done == ROW_GONE:
            where = f"{o.status_column} IN ({', '.join(_literal(bind_value(v, status_type)) for v in o.pending)})"
        else:
            listed = ", ".join(_literal(bind_value(v, status_type)) for v in [*o.done, *o.error])
            where = f"({o.status_column} IS NULL OR {o.status_column} NOT IN ({listed}))"
        if not self.vendor:
            where = f"stg_flow = '{self.flow}' AND {where}"
        order = self.reference or "stg_id"
        return f"SELECT {', '.join(columns)} FROM {self.staging_name}\nWHERE {where} ORDER BY {order};"


def _listed(values: Sequence[Any]) -> str:
    return ", ".join(str(v) for v in values) if values else "(none)"


def _literal(value: Any) -> str:
    return str(value) if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool) else f"'{value}'"


def bind_value(value: Any, column_type: ColumnType | None) -> Any:
    """A configured status or resubmit value as the live column holds it (YAML reads `64` as a number)."""
    if value is None or column_type is None:
        return value
    family = column_type.family
    if family == "text":
        return str(value)
    try:
        if family == "integer" and not isinstance(value, bool):
            return int(value)
        if family == "decimal":
            return Decimal(str(value))
    except (ValueError, InvalidOperation):
        return value
    return value


def group_errors(rows: list[tuple[Any, ...]], staging_texts: int) -> list[ErrorRow]:
    """One ErrorRow per staged row: the staging row's own message columns, then one message per error-table row."""
    found: dict[int, ErrorRow] = {}
    for row in rows:
        row_id, key, version, staged_at, status, *texts = row
        own, linked = texts[:staging_texts], texts[staging_texts:]
        current = found.get(int(row_id))
        if current is None:
            first = [_joined(own)] if _joined(own) else []
            current = ErrorRow(int(row_id), str(key), str(version), as_utc(staged_at), status, tuple(first))
        message = _joined(linked)
        if message and message not in current.messages:
            current = ErrorRow(current.row_id, current.source_key, current.source_version, current.staged_at,
                               current.status, (*current.messages, message))
        found[current.row_id] = current
    return list(found.values())


def _joined(values: Sequence[Any]) -> str:
    return ": ".join(str(v).strip() for v in values if v is not None and str(v).strip())


def key_values(text: str) -> list[str | None]:
    """The values of a key or version text (`contract.version_text`): split at unescaped `|`, `\\N` is NULL."""
    values: list[str | None] = []
    current, escaped, raw = [], False, []
    for char in text:
        raw.append(char)
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "|":
            values.append(None if "".join(raw[:-1]) == NULL_TEXT else "".join(current))
            current, raw = [], []
        else:
            current.append(char)
    values.append(None if "".join(raw) == NULL_TEXT else "".join(current))
    return values


def describe_key(flow: FlowConfig, key_text: str) -> str:
    """`work_order_id = 1001` (or `a = 1, b = 2` for a key of several columns) from a stg_source_key text."""
    values = key_values(key_text)
    if len(values) != len(flow.key):
        return f"{', '.join(flow.key)} = {key_text}"
    return ", ".join(f"{column} = {'NULL' if value is None else value}" for column, value in zip(flow.key, values, strict=True))


def as_utc(value: Any) -> dt.datetime | None:
    """Control-table timestamps are UTC (naive in most dialects; text in SQLite)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time())
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


# --- building sources ------------------------------------------------------------------------------
def outcome_source(config: LoadedConfig, name: str, dialect: Dialect,
                   live_types: Mapping[str, ColumnType] | None = None) -> OutcomeSource | None:
    """The flow's OutcomeSource; None for a vendor-layout flow without `outcome:` (its outcome is not watched)."""
    flow = config.model.flows[name]
    outcome = flow.import_outcome
    if outcome is None:
        return None
    schema = config.model.systems[flow.target].staging_schema or ""
    error_table = error_table_name = None
    if outcome.error_table is not None:
        error_schema, error_name = error_table_location(schema, outcome)
        error_table, error_table_name = dialect.table(error_schema, error_name), f"{error_schema}.{error_name}"
    return OutcomeSource(
        flow=name, dialect=dialect, staging_table=dialect.table(schema, flow.staging_table_name),
        staging_name=f"{schema}.{flow.staging_table_name}", control=ControlTables.in_schema(dialect, schema),
        outcome=outcome, reference=flow.reference if flow.vendor_layout else None, error_table=error_table,
        error_table_name=error_table_name, live_types=dict(live_types or {}),
    )


def default_outcome_source(dialect: Dialect, control: ControlTables, staging_table: str, flow: str) -> OutcomeSource:
    """The stg_* layout's outcome on an already quoted staging table (the demo's `status` figures)."""
    return OutcomeSource(flow, dialect, staging_table, staging_table, control, AGENT_LAYOUT_OUTCOME)


def error_table_location(staging_schema: str, outcome: OutcomeConfig) -> tuple[str, str]:
    """(schema, table) of `error_table:`: the target's staging schema unless it names one."""
    assert outcome.error_table is not None
    schema, table = split_table(outcome.error_table.table)
    return schema or staging_schema, table


def live_types(engine: Engine, dialect: Dialect, schema: str, table: str) -> dict[str, ColumnType]:
    """The staging table's column types as the catalog shows them (empty when it cannot be seen)."""
    described = describe_table(engine, dialect, schema, table)
    return {c.name: c.type for c in described.columns} if described else {}


def check_error_table(name: str, source: OutcomeSource, live: Mapping[str, Any], system: str) -> list[str]:
    """Problems with the flow's `error_table:` against the live table, for a person (prepare: a configuration error)."""
    error_table = source.outcome.error_table
    if error_table is None:
        return []
    where = f"{source.error_table_name} on system {system}"
    if not live:
        return [f"flow {name}: error table {where} (outcome.error_table) does not exist; the ERP keeps the messages of "
                "rejected rows there: name the table as the ERP has it (schema.table outside the staging schema), "
                "and grant the agent's login SELECT on it"]
    wanted = [("link", error_table.link), *(("text", c) for c in error_table.text)]
    return [f"flow {name}: column {column!r} (outcome.error_table.{key}) does not exist in error table {where}"
            for key, column in wanted if column not in live]

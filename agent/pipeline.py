"""One run of one flow: the stages in order, nothing else.

drift gate -> read (watermark) -> map/validate -> write (staging + watermark, one transaction) -> report.
Everything a flow needs is prepared once per process (`prepare`), so a poll that finds nothing is cheap.
"""

from __future__ import annotations

import contextvars
import logging
import secrets
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from agent import log_context, source_query, watermark
from agent.config import FlowConfig, LoadedConfig
from agent.connect import Systems
from agent.dialects import Dialect
from agent.catalog.query import CatalogQuery
from agent.catalog.keyset import missing_guarantee_warning, missing_index_warning
from agent.catalog.query import WatchedTable
from agent.errors import AgentError, SchemaMismatch, mark_system, system_of
from agent.mapping import MappedBatch, RowMapper
from agent.outcome import OutcomeSource, check_error_table, error_table_location, outcome_source
from agent.read import (
    BatchReader, Cursor, SourceColumn, check_source_columns, describe_source, describe_source_table, in_source_order,
    lag_upper_bound, overlap_start, source_sql_for,
)
from agent.report import FAILED, HALTED, BatchReport, FlowReport, record_failure, utc_now
from agent.contract import ControlTables
from agent.staging import (
    StagingTable, check_staging_columns, staging_table_for, unbounded_decimal_problems, with_live_types,
)
from agent.watermark import Watermark
from agent.write import write_batch

log = logging.getLogger("mes_erp_agent")
# A drift gate answers, before each run of a flow, with None (go on) or the reason the flow must halt.
Gate = Callable[[str], "str | None"]
# Called after each committed batch (the demo shows progress with it).
BatchListener = Callable[[BatchReport], None]
# Asked before each page is read: True when the agent is stopping (the flow ends after its batch in flight).
StopCheck = Callable[[], bool]



@dataclass(frozen=True)
class FlowContext:
    name: str
    flow: FlowConfig
    source_engine: Engine
    target_engine: Engine
    source_dialect: Dialect
    target_dialect: Dialect
    source_columns: dict[str, SourceColumn]
    reader: BatchReader
    mapper: RowMapper
    staging: StagingTable
    control: ControlTables
    outcome: OutcomeSource | None = None  # where the ERP's import outcome is read (None: not watched)


def prepare(config: LoadedConfig, systems: Systems, name: str) -> FlowContext:
    """Look up the flow's tables once; raises SchemaMismatch (a configuration error) before any data moves."""
    flow = config.model.flows[name]
    source_engine, target_engine = systems.source(flow.source), systems.target(flow.target)
    source_dialect, target_dialect = systems.dialect(flow.source), systems.dialect(flow.target)
    source = describe_source(source_engine, source_dialect, flow)
    problems = check_source_columns(name, flow, flow.source, source)
    if problems:
        raise SchemaMismatch("\n".join(problems))
    staging = staging_table_for(config, name, flow, source)
    live_staging = describe_source_table(target_engine, staging.schema, staging.name)
    problems = unbounded_decimal_problems(config, target_dialect, [staging])
    problems += check_staging_columns(staging, live_staging, flow.target)
    outcome = outcome_source(config, name, target_dialect, {n: c.column_type for n, c in live_staging.items() if c.column_type})
    if outcome is not None and outcome.outcome.error_table is not None:
        live_errors = describe_source_table(target_engine, *error_table_location(staging.schema, outcome.outcome))
        problems += check_error_table(name, outcome, live_errors, flow.target)
    if problems:
        raise SchemaMismatch("\n".join(problems))
    # Values are validated against the live staging columns; the mapping's own types are checked first.
    live = with_live_types(staging, live_staging, target_dialect)
    reader = BatchReader(source_engine, source_dialect, flow, source, source_sql_for(source_dialect, flow))
    problems = reader.check_query(name, flow.source)
    if problems:
        raise SchemaMismatch("\n".join(problems))
    _warn_unless_keyset_unique(name, flow, source_engine, source_dialect)
    return FlowContext(
        name=name, flow=flow, source_engine=source_engine, target_engine=target_engine,
        source_dialect=source_dialect, target_dialect=target_dialect, source_columns=source, reader=reader,
        mapper=RowMapper(
            name, flow, reader.columns, live.types(), _trusted_types(source_dialect, source),
            configured_types=staging.types(), source_types={n: c.column_type for n, c in source.items()},
            integer_column=target_dialect.integer_column,
        ),
        staging=live,
        control=ControlTables.in_schema(target_dialect, staging.schema),
        outcome=outcome,
    )


def _warn_unless_keyset_unique(name: str, flow: FlowConfig, engine: Engine, dialect: Dialect) -> None:
    """Warn (never refuse) when no key in the source catalog makes the watermark columns unique: the keyset reads
    would skip rows sharing the last staged values. Views and custom queries may be unique without such a key."""
    names = source_query.query_tables(flow.query, (flow.source_schema, flow.source_table or ""), dialect)
    tables = [WatchedTable(flow.source, schema, table) for schema, table in names]
    query = CatalogQuery.build(flow.source, dialect, tables)
    try:
        with engine.connect() as conn:
            live = query.tables_from(query.fetch(conn))
            conn.rollback()
    except sa.exc.SQLAlchemyError as exc:  # the drift gate reports an unreadable catalog; this is only advice
        log.debug("flow %s: keyset uniqueness not checked: %s", name, exc)
        return
    warning = missing_guarantee_warning(name, flow.source, flow.watermark, [t.key for t in tables], live)
    if warning:
        log.warning(warning)
    if flow.query is None and tables:  # a custom query's plan is the plant's own (`render-sql` shows the read)
        warning = missing_index_warning(name, flow.source, flow.watermark, tables[0].key, live.get(tables[0].key))
        if warning:
            log.warning(warning)


def _trusted_types(dialect: Dialect, source: dict[str, SourceColumn]) -> dict[str, Any] | None:
    """Declared source types, where the database guarantees its values match them (not SQLite)."""
    if not dialect.enforces_column_types:
        return None
    return {name: column.column_type for name, column in source.items()}


def run_flow(ctx: FlowContext, gate: Gate | None = None, on_batch: BatchListener | None = None,
             log_failure: bool = True, stopping: StopCheck | None = None) -> FlowReport:
    """Catch the flow up: every changed row since its watermark, batch by batch. Never raises for data errors.
    `log_failure=False`: a failed or halted run is not logged here (the service logs a failure streak once).
    `stopping`: asked before each page; when it says so the run ends after the batch it committed last."""
    with log_context.flow(ctx.name):  # every log line of the run carries the flow's name
        return _catch_up(ctx, gate, on_batch, log_failure, stopping or _never)


def _never() -> bool:
    return False


def _catch_up(ctx: FlowContext, gate: Gate | None, on_batch: BatchListener | None, log_failure: bool,
              stopping: StopCheck) -> FlowReport:
    report = FlowReport(ctx.name)
    position: Watermark | None = None
    try:
        halt_reason = gate(ctx.name) if gate else None  # a gate that cannot read the catalog fails the run
        if halt_reason:
            _record_outcome(ctx, HALTED, halt_reason, None, log_failure)
            return report.finish(HALTED, halt_reason, log_failure)
        with _on_system(ctx.flow.target), ctx.target_engine.connect() as conn:
            position = watermark.load(conn, ctx.target_dialect, ctx.control, ctx.name, ctx.flow.watermark)
            conn.commit()  # a read; a rollback (the pool's reset) would drop psycopg's prepared statements
        report.watermark_before = report.watermark_after = position.describe()
        with _on_system(ctx.flow.source):
            pages = ctx.reader.pages(_start_cursor(ctx.flow, position), _upper_bound(ctx))
        # Rows after the watermark were not staged before, unless it was set back: the overlap window's are.
        expect_new = not (ctx.flow.overlap and position.values is not None)
        with ReadAhead(ctx, pages) as ahead:
            while True:
                if stopping():
                    report.stopped = True
                    return report.finish(message="stopped after the last committed batch; the next run goes on from there")
                page = ahead.next()
                if page is None:
                    break
                duplicates = report.rows_duplicate
                with _on_system(ctx.flow.target):
                    position = _write_page(ctx, page, position, report, on_batch, expect_new)
                expect_new = report.rows_duplicate == duplicates  # after re-reads (a watermark set back), more follow
        report.caught_up = True  # the page loop ends on a short page
        return report.finish()
    except (AgentError, sa.exc.SQLAlchemyError, OSError) as exc:
        message = describe_error(exc)
        report.system = system_of(exc)
        _record_outcome(ctx, FAILED, message, position, log_failure)
        return report.finish(FAILED, message, log_failure)


@contextmanager
def _on_system(system: str) -> Iterator[None]:
    """An error raised inside came from `system` (unless an inner block said otherwise)."""
    try:
        yield
    except Exception as exc:
        mark_system(exc, system)
        raise


@dataclass(frozen=True)
class MappedPage:
    rows: list[tuple[Any, ...]]  # as read
    batch_id: str
    started_at: Any
    mapped: MappedBatch


def _read_and_map(ctx: FlowContext, pages: Iterator[list[tuple[Any, ...]]]) -> MappedPage | None:
    with _on_system(ctx.flow.source):
        page = next(pages, None)
    if page is None:
        return None
    batch_id, started_at = new_batch_id(), utc_now()
    with log_context.batch(batch_id):
        return MappedPage(page, batch_id, started_at, ctx.mapper.map_batch(page, batch_id))


class ReadAhead:
    """Pages read and mapped one ahead of the write: while the ERP commits batch N, a thread reads and maps batch N+1
    (the driver waits on the server without the GIL). Writes stay one at a time and in order, so what commits is
    exactly what the sequential loop commits; a page read ahead of a failed or stopped run is dropped, unwritten.
    Only after a full page (another may follow) is the thread started: a poll that finds few rows runs none."""

    def __init__(self, ctx: FlowContext, pages: Iterator[list[tuple[Any, ...]]]):
        self.ctx, self.pages = ctx, pages
        self.pool: ThreadPoolExecutor | None = None
        self.pending: Future[MappedPage | None] | None = None

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def next(self) -> MappedPage | None:
        if self.pending is not None:
            page, self.pending = self.pending.result(), None
        else:
            page = _read_and_map(self.ctx, self.pages)
        if page is not None and len(page.rows) >= self.ctx.flow.batch_size:
            if self.pool is None:
                self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"read-{self.ctx.name}")
            self.pending = self.pool.submit(contextvars.copy_context().run, _read_and_map, self.ctx, self.pages)
        return page


def _write_page(
    ctx: FlowContext, page: MappedPage, position: Watermark, report: FlowReport, on_batch: BatchListener | None,
    expect_new: bool,
) -> Watermark:
    record = BatchReport(ctx.name, page.batch_id, page.started_at, rows_read=len(page.rows),
                         watermark_before=position.describe())
    with log_context.batch(record.batch_id):
        mapped = page.mapped
        new_values = _furthest(ctx.flow, position.values, ctx.reader.watermark_of(page.rows[-1]))
        with ctx.target_engine.begin() as conn:
            position = write_batch(conn, ctx.target_dialect, ctx.staging, ctx.control, mapped, position, new_values, record,
                                   expect_new)
        log.debug("flow %s: batch %s committed: %d read, %d written, %d already staged, %d quarantined; watermark %s",
                  ctx.name, record.batch_id, record.rows_read, record.rows_written, record.rows_duplicate,
                  record.rows_quarantined, record.watermark_after)
    report.add(record)
    report.watermark_after = position.describe()
    if on_batch:
        on_batch(record)
    return position


def _start_cursor(flow: FlowConfig, position: Watermark) -> Cursor:
    if position.values is None:
        return Cursor()
    if flow.overlap:
        return Cursor(from_value=overlap_start(flow, position.values))
    return Cursor(after=position.values)


def _upper_bound(ctx: FlowContext) -> Any:
    return lag_upper_bound(ctx.source_engine, ctx.source_dialect, ctx.flow, ctx.source_columns[ctx.flow.watermark[0]])


def _furthest(flow: FlowConfig, stored: tuple[Any, ...] | None, last_read: tuple[Any, ...]) -> tuple[Any, ...]:
    """The stored watermark never moves back (a re-read of the overlap window ends behind it)."""
    if stored is None or not flow.overlap:
        return last_read
    return last_read if in_source_order(last_read) > in_source_order(stored) else stored


def new_batch_id() -> str:
    """Sortable and unique: UTC time to the microsecond plus random bits, e.g. 20261125T101500123456-9f3a0c1e."""
    return f"{utc_now():%Y%m%dT%H%M%S%f}-{secrets.token_hex(4)}"


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, sa.exc.DBAPIError):
        # The driver's own message, without the statement or parameters (those are in `render-sql`).
        return f"database error ({type(exc.orig).__name__}): {str(exc.orig).strip().splitlines()[0]}"
    return str(exc)


def _record_outcome(ctx: FlowContext, outcome: str, message: str, position: Watermark | None, log_failure: bool) -> None:
    record = BatchReport(ctx.name, new_batch_id(), utc_now(), outcome=outcome, message=message)
    record.watermark_before = record.watermark_after = position.describe() if position else None
    record_failure(ctx.target_engine, ctx.target_dialect, ctx.control, record, log_failure)


def run_once(
    config: LoadedConfig, systems: Systems, only: str | None = None, gate: Gate | None = None,
    on_batch: BatchListener | None = None, stopping: StopCheck | None = None, skip: Collection[str] = (),
) -> list[FlowReport]:
    """`run --once`: prepare every flow first (configuration errors stop everything), then run each. Flows in `skip`
    (another agent holds them) are neither prepared nor run.

    A flow whose tables no longer match its configuration because of schema drift is halted, not an error.
    """
    contexts: dict[str, FlowContext] = {}
    halted: dict[str, FlowReport] = {}
    problems = []
    names = [name for name in config.flows(only) if name not in skip]
    for name in names:
        try:
            contexts[name] = prepare(config, systems, name)
        except SchemaMismatch as exc:
            reason = gate(name) if gate else None
            if reason:
                halted[name] = halt_unprepared(config, systems, name, reason)
            else:
                problems.append(str(exc))
    if problems:
        raise SchemaMismatch("\n".join(problems))
    reports = []
    for name in names:
        if stopping is not None and stopping():
            reports.append(FlowReport(name, stopped=True).finish(message="not run: the agent was stopping"))
        else:
            reports.append(halted[name] if name in halted else run_flow(contexts[name], gate, on_batch, stopping=stopping))
    return reports


def staging_tables_of(config: LoadedConfig, systems: Systems, system: str) -> list[StagingTable]:
    """The staging tables of every flow that writes to `system`, typed from the live source tables (`sql ddl`).

    Raises SchemaMismatch listing every flow whose source columns do not exist.
    """
    tables, problems = [], []
    for name, flow in config.model.flows.items():
        if flow.target != system:
            continue
        source = describe_source(systems.source(flow.source), systems.dialect(flow.source), flow)
        found = check_source_columns(name, flow, flow.source, source)
        problems += found
        if not found:
            tables.append(staging_table_for(config, name, flow, source))
    problems += unbounded_decimal_problems(config, systems.dialect(system), tables)
    if problems:
        raise SchemaMismatch("\n".join(problems))
    return tables


def halt_unprepared(config: LoadedConfig, systems: Systems, name: str, reason: str, outcome: str = HALTED,
                    log_failure: bool = True) -> FlowReport:
    """End a run of a flow that could not be prepared (its tables drifted): record it, move nothing."""
    flow = config.model.flows[name]
    dialect, schema = systems.dialect(flow.target), config.model.systems[flow.target].staging_schema
    assert schema is not None, "check-config guarantees a staging schema for every target"
    record = BatchReport(name, new_batch_id(), utc_now(), outcome=outcome, message=reason)
    record_failure(systems.target(flow.target), dialect, ControlTables.in_schema(dialect, schema), record, log_failure)
    with log_context.flow(name):
        return FlowReport(name).finish(outcome, reason, log_failure)

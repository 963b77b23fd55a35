"""Write stage: one batch = one transaction on the ERP: ledger entries, staging rows, quarantine rows,
watermark, run row.

A crash anywhere before the commit leaves nothing behind; the next run re-reads the batch from the last
committed watermark. What was staged is decided by agent_ledger, never by the staging rows: an ERP import
job may delete (consume) or update them, and a re-read must still not stage them again.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from agent import report, watermark
from agent.dialects import Dialect
from agent.mapping import MappedBatch
from agent.report import BatchReport
from agent.staging import StagingTable
from agent.contract import ControlTables
from agent.watermark import Watermark

log = logging.getLogger("mes_erp_agent")


def write_batch(
    conn: Connection,
    dialect: Dialect,
    staging: StagingTable,
    control: ControlTables,
    batch: MappedBatch,
    position: Watermark,
    new_position: tuple[Any, ...],
    record: BatchReport,
    expect_new: bool = False,
) -> Watermark:
    """Everything of one batch on the caller's transaction; returns the advanced watermark. `position` is the flow's
    live watermark, or a backfill's own position (`<flow>#backfill`, agent/recovery/backfill.py). `expect_new`: the
    rows were read after the watermark, so none is likely staged before (`insert_new_rows`)."""
    stage_rows(conn, dialect, staging, control, batch, record, expect_new)
    advanced = watermark.advance(conn, dialect, control, position, new_position, report.utc_now())
    record.watermark_after = advanced.describe()
    report.record_batch(conn, dialect, control, record)
    return advanced


def write_side_batch(
    conn: Connection, dialect: Dialect, staging: StagingTable, control: ControlTables, batch: MappedBatch,
    record: BatchReport,
) -> None:
    """A batch that moves no watermark (rows a reconcile pass found missing, tombstones), on the caller's transaction:
    the same ledger, staging and quarantine statements as every batch, and its agent_run row."""
    stage_rows(conn, dialect, staging, control, batch, record)
    report.record_batch(conn, dialect, control, record)


def stage_rows(
    conn: Connection, dialect: Dialect, staging: StagingTable, control: ControlTables, batch: MappedBatch,
    record: BatchReport, expect_new: bool = False,
) -> None:
    """Ledger entries and staging rows for what was not staged before, quarantine rows; counts into `record`."""
    record.rows_written = insert_new_rows(conn, dialect, staging, control, batch.rows, record.batch_id, expect_new)
    record.rows_duplicate = len(batch.rows) - record.rows_written
    record.rows_quarantined = insert_quarantined(conn, dialect, staging, control, batch, record.batch_id)


_STAGED_AT: dict[str, sa.types.TypeEngine[Any]] = {"staged_at": sa.DateTime()}


def insert_new_rows(
    conn: Connection, dialect: Dialect, staging: StagingTable, control: ControlTables, rows: list[tuple[Any, ...]],
    batch_id: str, expect_new: bool = False,
) -> int:
    """Bulk-load the batch into a session-private table, record in the ledger the rows it has not staged before,
    then append exactly those to the staging table. Returns how many were staged.

    `expect_new`: none of the rows is likely staged before (read after the watermark, not from an overlap window nor
    after a batch that held re-reads): on PostgreSQL the batch is first tried as all new (`_stage_if_all_new`). A
    refused try is a unique violation in the server's log, so re-reads (backfill, replay) never make one."""
    if not rows:
        return 0
    context = batch_context(dialect, staging, control)
    _execute_if_any(conn, dialect, "drop_batch_table", context)
    conn.execute(dialect.statement("create_batch_table", **context))
    dialect.load_batch_table(conn, context["batch_table"], staging.insert_columns, rows, staging.bind_types(),
                             staging.native_types())
    analyzed = not expect_new or first_try_joins(context)
    if analyzed:
        _execute_if_any(conn, dialect, "analyze_batch_table", context)
    params = {"batch_id": batch_id, "flow": staging.flow, "staged_at": report.utc_now()}
    written = _stage_if_all_new(conn, dialect, context, params) if expect_new else None
    if written is None:
        if not analyzed:
            _execute_if_any(conn, dialect, "analyze_batch_table", context)
        _execute_if_any(conn, dialect, "ledger_insert", context, params)
        # The same bound staged_at finds the entries ledger_insert.sql just wrote (where it is a statement of its own).
        written = conn.execute(dialect.statement("write_staging", _STAGED_AT, **context), params).rowcount
    _execute_if_any(conn, dialect, "drop_batch_table", context)
    return written


def first_try_joins(context: dict[str, Any]) -> bool:
    """The first try joins the batch table (to the new ledger entries, for a vendor table's reference), so the batch
    table is analyzed before it. The batch table's statistics are for the statements that join it (write_staging.sql
    too); a try without a join scans it once, whatever the planner guesses, so it goes first without them and a
    refused try analyzes before the checked statement."""
    return context["reference"] is not None


def _stage_if_all_new(conn: Connection, dialect: Dialect, context: dict[str, Any], params: dict[str, Any]) -> int | None:
    """write_staging_new.sql, where the dialect has it: the ledger entries and staging rows of a batch none of whose
    rows was staged before, without the duplicate check; returns how many were staged. None when the dialect has no
    such statement, or when a row was staged before: agent_ledger's unique key refused the statement, and its
    savepoint is rolled back (any other integrity error comes again from write_staging.sql, as without this try)."""
    if not dialect.render("write_staging_new", **context):
        return None
    try:
        with conn.begin_nested():
            return int(conn.execute(dialect.statement("write_staging_new", _STAGED_AT, **context), params).rowcount)
    except sa.exc.IntegrityError:
        log.debug("batch %s: a row of it was staged before; staging only the rows the ledger does not hold",
                  params["batch_id"])
        return None


def _execute_if_any(
    conn: Connection, dialect: Dialect, template: str, context: dict[str, Any], params: dict[str, Any] | None = None,
) -> None:
    """Run a batch statement where the dialect has one: a template of comments only (PostgreSQL's drop, ANALYZE and
    ledger insert, done otherwise there) renders empty and is skipped."""
    text = dialect.render(template, **context)
    if text:
        types = {name: type_ for name, type_ in _STAGED_AT.items() if f":{name}" in text}
        conn.execute(dialect.statement(template, types, **context), {k: v for k, v in (params or {}).items() if f":{k}" in text})


def batch_context(dialect: Dialect, staging: StagingTable, control: ControlTables) -> dict[str, Any]:
    """Identifiers of the batch statements (`*_batch_table.sql`, `ledger_insert.sql`, `write_staging*.sql`), quoted.

    `columns`: the batch table's columns (a staging row as mapped); `written`/`values`: the staging table's columns
    the agent writes and what each gets (a batch column, or, for a vendor table's reference, the ledger entry id)."""
    written = staging.written_columns
    return {
        "batch_table": dialect.batch_table_name(staging.flow, staging.schema, shape=_shape(staging)),
        "staging_table": dialect.table(staging.schema, staging.name),
        "ledger_table": control.ledger,
        "columns": [dialect.quote(c) for c in staging.insert_columns],
        "mapped": [dialect.quote(c.name) for c in staging.columns],
        "written": [dialect.quote(c) for c in written],
        "values": ["l.entry_id" if c == staging.reference else f"b.{dialect.quote(c)}" for c in written],
        "vendor": staging.vendor,
        "reference": dialect.quote(staging.reference) if staging.reference else None,
    }


def _shape(staging: StagingTable) -> str:
    """What the batch table's columns depend on: a dialect that keeps the table for the session names it by this."""
    return repr((staging.flow, staging.schema, staging.name, staging.columns))


def insert_quarantined(
    conn: Connection, dialect: Dialect, staging: StagingTable, control: ControlTables, batch: MappedBatch, batch_id: str
) -> int:
    """Record rejected rows not recorded before (a re-read skips them); returns how many were new."""
    if not batch.quarantined:
        return 0
    statement = dialect.statement("quarantine_insert", quarantine_table=control.quarantine)
    params = [
        {
            "flow": staging.flow, "source_key": row.source_key, "source_version": row.source_version,
            "batch_id": batch_id, "source_row": row.source_row, "reason": row.reason,
        }
        for row in batch.quarantined
    ]
    if conn.dialect.supports_sane_multi_rowcount:
        return conn.execute(statement, params).rowcount
    # Rejected rows are rare; where the driver cannot count an executemany, count row by row.
    return sum(conn.execute(statement, one).rowcount for one in params)

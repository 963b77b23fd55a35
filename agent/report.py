"""Report stage: what each batch and run did, recorded in agent_run and shown to people.

Stages return counts; only this module decides how they are stored, logged and displayed.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from agent import watermark
from agent.config import LoadedConfig
from agent.outcome import OutcomeSource, default_outcome_source, live_types, outcome_source
from agent.connect import Systems
from agent.dialects import Dialect
from agent.errors import AgentError, SecretUnavailable
from agent.contract import ControlTables

log = logging.getLogger("mes_erp_agent")

OK, FAILED, HALTED = "ok", "failed", "halted"
_TIMESTAMP = sa.DateTime()


def utc_now() -> dt.datetime:
    """Naive UTC: control tables store UTC in every dialect (PostgreSQL sessions run in UTC)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


@dataclass
class BatchReport:
    flow: str
    batch_id: str
    started_at: dt.datetime
    rows_read: int = 0
    rows_written: int = 0
    rows_duplicate: int = 0
    rows_quarantined: int = 0
    watermark_before: str | None = None
    watermark_after: str | None = None
    outcome: str = OK
    message: str | None = None
    finished_at: dt.datetime | None = None


@dataclass
class FlowReport:
    """One flow's run (`run --once` or one scheduled poll): the sum of its batches."""

    flow: str
    outcome: str = OK
    batches: int = 0
    rows_read: int = 0
    rows_written: int = 0
    rows_duplicate: int = 0
    rows_quarantined: int = 0
    watermark_before: str = ""
    watermark_after: str = ""
    message: str = ""
    system: str | None = None  # failed: the system the error came from, when known
    # True when the read ended on a short page: every change up to the read's bound is staged (health: ok,
    # not catching up). Set where the page loop ends (pipeline.run_flow).
    caught_up: bool = False
    stopped: bool = False  # the agent was stopping: the run ended after its last committed batch
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0

    def add(self, batch: BatchReport) -> None:
        self.batches += 1
        self.rows_read += batch.rows_read
        self.rows_written += batch.rows_written
        self.rows_duplicate += batch.rows_duplicate
        self.rows_quarantined += batch.rows_quarantined

    def finish(self, outcome: str = OK, message: str = "", log_failure: bool = True) -> FlowReport:
        """`log_failure=False`: the caller logs a failed or halted run itself (the service logs a failure streak once)."""
        self.outcome, self.message = outcome, message
        self.seconds = time.monotonic() - self.started
        if outcome == OK:
            # A poll that found nothing is routine: at a 1 s cadence INFO would log 86,400 lines a day.
            log.log(
                logging.INFO if self.rows_read else logging.DEBUG,
                "flow %s: %d read, %d written, %d already staged, %d quarantined in %d batches (%.1fs); watermark %s",
                self.flow, self.rows_read, self.rows_written, self.rows_duplicate, self.rows_quarantined,
                self.batches, self.seconds, self.watermark_after,
            )
        elif log_failure:
            log.error("flow %s %s: %s", self.flow, outcome, message)
        return self

    def as_dict(self) -> dict[str, Any]:
        return {
            "flow": self.flow, "outcome": self.outcome, "batches": self.batches, "rows_read": self.rows_read,
            "rows_written": self.rows_written, "rows_duplicate": self.rows_duplicate,
            "rows_quarantined": self.rows_quarantined, "watermark_before": self.watermark_before,
            "watermark_after": self.watermark_after, "seconds": round(self.seconds, 3), "message": self.message,
        }


def record_batch(conn: Connection, dialect: Dialect, control: ControlTables, batch: BatchReport) -> None:
    """Insert the batch's agent_run row on the caller's connection (the batch's own transaction)."""
    batch.finished_at = batch.finished_at or utc_now()
    statement = dialect.statement(
        "run_insert", {"started_at": _TIMESTAMP, "finished_at": _TIMESTAMP}, run_table=control.run
    )
    conn.execute(statement, {
        "batch_id": batch.batch_id, "flow": batch.flow, "started_at": batch.started_at,
        "finished_at": batch.finished_at, "rows_read": batch.rows_read, "rows_written": batch.rows_written,
        "rows_duplicate": batch.rows_duplicate, "rows_quarantined": batch.rows_quarantined,
        "watermark_before": batch.watermark_before, "watermark_after": batch.watermark_after,
        "outcome": batch.outcome, "message": (batch.message or "")[:4000] or None,
    })


def record_failure(engine: Engine, dialect: Dialect, control: ControlTables, batch: BatchReport,
                   log_failure: bool = True) -> None:
    """Best effort: a failed or halted run leaves an agent_run row in its own transaction. `log_failure=False`:
    not being able to is DEBUG (the service logs the failing flow once; the ERP is then usually what is down)."""
    try:
        with engine.begin() as conn:
            record_batch(conn, dialect, control, batch)
    except Exception as exc:  # the ERP may be the thing that is down; the log still has the failure
        log.log(logging.WARNING if log_failure else logging.DEBUG, "flow %s: could not record the %s run in agent_run (%s)",
                batch.flow, batch.outcome, _first_line(exc))


@dataclass(frozen=True)
class FlowStatus:
    flow: str
    watermark: str
    last_run_at: str | None
    last_outcome: str | None
    last_message: str | None
    rows_moved: int
    rows_quarantined: int
    pending_rows: int | None
    oldest_pending: str | None
    oldest_pending_age_seconds: float | None
    quarantine_rows: int = 0  # rows in agent_quarantine now (a DBA removes handled ones); rows_quarantined: ever
    oldest_quarantined: str | None = None
    # The ERP import's outcome (None: not watched, a vendor-layout flow without `outcome:`): rows in error, and rows
    # done (the flow's agent_ledger entries neither pending nor in error: consumed, or given a done status).
    error_rows: int | None = None
    done_rows: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


_DEFAULT_LAYOUT: Any = object()


def flow_status(
    conn: Connection, dialect: Dialect, control: ControlTables, staging_table: str, flow: str, watermark: str,
    outcome: OutcomeSource | None = _DEFAULT_LAYOUT,
) -> FlowStatus:
    """`outcome`: where the flow's import outcome is read (default: the stg_* layout of `staging_table`; None: a
    vendor-layout flow without `outcome:`, whose pending, error and done figures are None)."""
    params = {"flow": flow}
    totals = conn.execute(dialect.statement("status_totals", run_table=control.run), params).one()
    last = conn.execute(
        dialect.statement("status_last_run", result_types={"finished_at": _TIMESTAMP}, run_table=control.run), params
    ).first()
    if outcome is _DEFAULT_LAYOUT:
        outcome = default_outcome_source(dialect, control, staging_table, flow)
    counts = outcome.counts(conn) if outcome is not None else None
    quarantined, oldest_quarantined = quarantine_count(conn, dialect, control, flow)
    oldest = counts.oldest_pending if counts else None
    age = (dt.datetime.now(dt.timezone.utc) - oldest).total_seconds() if oldest else None
    return FlowStatus(
        flow=flow,
        watermark=watermark,
        last_run_at=dialect.to_utc_text(_as_utc(last.finished_at)) if last else None,
        last_outcome=last.outcome if last else None,
        last_message=last.message if last else None,
        rows_moved=int(totals.rows_written or 0),
        rows_quarantined=int(totals.rows_quarantined or 0),
        pending_rows=counts.pending_rows if counts else None,
        oldest_pending=dialect.to_utc_text(oldest),
        oldest_pending_age_seconds=round(age, 1) if age is not None else None,
        quarantine_rows=quarantined,
        oldest_quarantined=dialect.to_utc_text(oldest_quarantined),
        error_rows=counts.error_rows if counts else None,
        done_rows=counts.done_rows if counts else None,
    )


def quarantine_count(conn: Connection, dialect: Dialect, control: ControlTables, flow: str) -> tuple[int, dt.datetime | None]:
    """Rows of `flow` in agent_quarantine now, and when the oldest of them was recorded (UTC)."""
    statement = dialect.statement("status_quarantine", result_types={"oldest_quarantined": _TIMESTAMP},
                                  quarantine_table=control.quarantine)
    row = conn.execute(statement, {"flow": flow}).one()
    return int(row.quarantined_rows or 0), _as_utc(row.oldest_quarantined)


def read_flow_status(config: LoadedConfig, systems: Systems, name: str) -> dict[str, Any]:
    """One flow's status as a dict (`status --json`); `error` instead of figures when its database is down."""
    flow = config.model.flows[name]
    dialect = systems.dialect(flow.target)
    schema = config.model.systems[flow.target].staging_schema or ""
    control = ControlTables.in_schema(dialect, schema)
    try:
        engine = systems.target(flow.target)
        outcome = outcome_source(config, name, dialect, live_types(engine, dialect, schema, flow.staging_table_name))
        with engine.connect() as conn:
            position = watermark.load(conn, dialect, control, name, flow.watermark)
            staging = dialect.table(schema, flow.staging_table_name)
            return flow_status(conn, dialect, control, staging, name, position.describe(), outcome).as_dict()
    except SecretUnavailable:  # a configuration error (exit 2), not a database that is down
        raise
    except (sa.exc.SQLAlchemyError, AgentError, OSError) as exc:  # status shows every flow, even one whose database is down
        return {"flow": name, "error": str(getattr(exc, "orig", exc)).strip().splitlines()[0], "system": flow.target,
                "url": config.redacted_url(flow.target)}


def _as_utc(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

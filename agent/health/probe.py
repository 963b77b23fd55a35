"""Figures a poll's report does not carry, read cheaply after a poll: lag behind the source, the import outcome
(pending backlog and its oldest row's age, rows in error, rows done: `outcome_counts.sql`, agent/outcome.py).

Lag is how far the staging table trails the source, on the source's own clock: the newest value of the
first watermark column in the source (`source_newest.sql`, one index lookup) minus the staged watermark's
first value (`agent_watermark`, one key lookup), or 0 when nothing newer is in the source. Both values come
from the same column, so neither the MES nor the agent's clock nor time zones enter the figure. It grows
while a flow fails and changes keep arriving, is 0 for an idle source, and is unknown (None) for a
watermark that is not a time (integers, rowversion) or before the first batch.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from agent import watermark
from agent.config import FlowConfig
from agent.dialects import Dialect
from agent.errors import AgentError
from agent.outcome import OutcomeCounts
from agent.pipeline import FlowContext, describe_error
from agent.read import SourceColumn, source_sql_for

log = logging.getLogger("mes_erp_agent")
_TIME_FAMILIES = ("timestamp", "date")


@dataclass(frozen=True)
class Measurement:
    """None for a figure that could not be read (its database is down) or does not apply."""

    lag_seconds: float | None = None
    pending_rows: int | None = None
    oldest_pending_age_seconds: float | None = None


def newest_source_sql(dialect: Dialect, flow: FlowConfig) -> str:
    """The text of `source_newest.sql` for a flow, as run and as `render-sql` shows it."""
    return dialect.render("source_newest", column=dialect.quote(flow.watermark[0]), source=source_sql_for(dialect, flow))


def measures_lag(flow: FlowConfig, first: SourceColumn) -> bool:
    """Lag in seconds exists only for a time watermark (not for integers or a SQL Server rowversion)."""
    return not flow.rowversion and first.column_type is not None and first.column_type.family in _TIME_FAMILIES


def lag_seconds(newest_source: Any, staged: Any) -> float | None:
    """Source's newest first-watermark value minus the staged one, in seconds; 0 when the source has nothing newer."""
    if staged is None:
        return None
    if newest_source is None:
        return 0.0
    newest_source, staged = _as_datetime(newest_source), _as_datetime(staged)
    return max((newest_source - staged).total_seconds(), 0.0)


def measure(ctx: FlowContext, now: dt.datetime | None = None) -> Measurement:
    """Lag and backlog of one flow; a figure whose database cannot be read is None (the poll reports why)."""
    return measure_outcomes(ctx, now)[0]


@dataclass(frozen=True)
class OutcomeReading:
    """The flow's rows by import outcome (None: not watched, or not read), and why they were not read when the target
    answered and refused the query (`refused`: the driver's first line; an outage leaves it None)."""

    counts: OutcomeCounts | None
    refused: str | None = None


def measure_outcomes(ctx: FlowContext, now: dt.datetime | None = None) -> tuple[Measurement, OutcomeReading]:
    """Lag and backlog, and the flow's rows by import outcome."""
    reading = _read_outcomes(ctx)
    now = now or dt.datetime.now(dt.timezone.utc)
    counts = reading.counts
    if counts is None:
        return Measurement(_read_lag(ctx)), reading
    return Measurement(_read_lag(ctx), counts.pending_rows, counts.age_seconds(now)), reading


def refused_statement(exc: BaseException) -> bool:
    """The database answered and refused a statement (an unknown column or table, a permission, a timeout), as opposed
    to a connection that could not be made or was lost: the flow's polls report those, not these."""
    return isinstance(exc, sa.exc.DBAPIError) and exc.statement is not None and not exc.connection_invalidated


def _read_lag(ctx: FlowContext) -> float | None:
    first = ctx.source_columns[ctx.flow.watermark[0]]
    if not measures_lag(ctx.flow, first):
        return None
    try:
        with ctx.target_engine.connect() as conn:
            staged = watermark.load(conn, ctx.target_dialect, ctx.control, ctx.name, ctx.flow.watermark).values
        if staged is None:
            return None
        statement = sa.text(newest_source_sql(ctx.source_dialect, ctx.flow)).columns(sa.column("newest", first.sa_type))
        with ctx.source_engine.connect() as conn:
            newest = conn.execute(statement).scalar()
            conn.rollback()
    except (sa.exc.SQLAlchemyError, AgentError, OSError) as exc:
        log.debug("flow %s: lag not measured: %s", ctx.name, _first_line(exc))
        return None
    return lag_seconds(newest, staged[0])


def _read_outcomes(ctx: FlowContext) -> OutcomeReading:
    """Pending, in error and staged rows of the flow (`outcome_counts.sql`, as `status` reads them)."""
    if ctx.outcome is None:
        return OutcomeReading(None)
    try:
        with ctx.target_engine.connect() as conn:
            return OutcomeReading(ctx.outcome.counts(conn))
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        log.debug("flow %s: import outcome not measured: %s", ctx.name, _first_line(exc))
        return OutcomeReading(None, describe_error(exc) if refused_statement(exc) else None)


def _as_datetime(value: Any) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.datetime):
        return value
    return dt.datetime.combine(value, dt.time())  # a date column


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

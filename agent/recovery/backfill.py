"""Backfill: read a range of the first watermark column again, through the write path, without moving the watermark.

`mes-erp-agent backfill --flow NAME --from A --to B` reads the rows with A <= first watermark column <= B in keyset
pages of `batch_size` (the flow's own read), maps them and writes each page as one batch: agent_ledger drops what
was staged before, so only what is missing is staged. The flow's live watermark is never touched.

Its own position is a row of agent_watermark under the derived name `<flow>#backfill`, moved in each batch's
transaction: columns `backfill_from`, `backfill_to`, `backfill_done`, then the flow's watermark columns (the last
row written). After a crash, the same command resumes after that row; once the range is done the row says so, and
the next backfill (of any range) starts from its beginning.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from agent import log_context, watermark
from agent.errors import AgentError
from agent.pipeline import FlowContext, new_batch_id
from agent.read import Cursor
from agent.report import BatchReport, utc_now
from agent.watermark import Watermark
from agent.write import write_batch

SUFFIX = "#backfill"
POSITION_COLUMNS = ("backfill_from", "backfill_to", "backfill_done")
FLOW_NAME_MAX = 64  # agent_watermark.flow
MESSAGE = "backfill"
_PARSERS: dict[str, Callable[[str], Any]] = {
    "integer": int, "decimal": Decimal, "text": str, "timestamp": dt.datetime.fromisoformat, "date": dt.date.fromisoformat,
}


class BackfillRefused(AgentError):
    """The range or the flow cannot be backfilled as asked."""


@dataclass
class BackfillProgress:
    flow: str
    total: int  # source rows in the range when it started (or in what was left of it, when resuming)
    resumed_after: str | None = None  # the stored position a resumed backfill continues after
    rows_read: int = 0
    rows_written: int = 0
    rows_duplicate: int = 0
    rows_quarantined: int = 0
    batches: int = 0
    position: str = ""
    live_watermark: str = ""


def position_key(flow: str) -> str:
    return flow + SUFFIX


def parse_bound(ctx: FlowContext, text: str) -> Any:
    """`--from`/`--to` as a value of the first watermark column (ISO timestamp or date, number, text)."""
    column_type = ctx.source_columns[ctx.flow.watermark[0]].column_type
    family = column_type.family if column_type else "text"
    if family not in _PARSERS or ctx.flow.rowversion:
        raise BackfillRefused(f"flow {ctx.name}: its first watermark column {ctx.flow.watermark[0]} is "
                              f"{column_type.describe() if column_type else 'of unknown type'}; a backfill range needs "
                              "a timestamp, date, number or text column")
    try:
        value = _PARSERS[family](text.strip())
    except ValueError:
        raise BackfillRefused(f"{text!r} is not a value of {ctx.flow.watermark[0]} ({family}); e.g. "
                              "2026-03-10 or 2026-03-10T12:00:00") from None
    if family == "timestamp" and isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    return value


def backfill(ctx: FlowContext, lower: Any, upper: Any, on_start: Callable[[BackfillProgress], None],
             on_batch: Callable[[BackfillProgress], None], stopping: Callable[[], bool]) -> BackfillProgress:
    """Stage what the range holds and the ledger does not; resumes an unfinished backfill of the same range."""
    key = position_key(ctx.name)
    if len(key) > FLOW_NAME_MAX:
        raise BackfillRefused(f"flow {ctx.name}: its backfill position {key!r} is longer than agent_watermark.flow "
                              f"holds ({FLOW_NAME_MAX}); rename the flow to backfill it")
    if lower > upper:
        raise BackfillRefused(f"--from {lower} is after --to {upper}")
    columns = [*POSITION_COLUMNS, *ctx.flow.watermark]
    with log_context.flow(ctx.name), ctx.target_engine.connect() as conn:
        stored = watermark.load(conn, ctx.target_dialect, ctx.control, key, columns)
        live = watermark.load(conn, ctx.target_dialect, ctx.control, ctx.name, ctx.flow.watermark)
    values = stored.values
    resume = values is not None and values[0] == lower and values[1] == upper and not values[2] and values[3] is not None
    last: tuple[Any, ...] | None = tuple(values[3:]) if resume and values is not None else None
    progress = BackfillProgress(ctx.name, _count(ctx, last[0] if last else lower, upper), live_watermark=live.describe())
    if last is not None:
        progress.resumed_after = Watermark(ctx.name, tuple(ctx.flow.watermark), last).describe()
    on_start(progress)
    position = stored
    pages = ctx.reader.pages(Cursor(after=last) if last is not None else Cursor(from_value=lower), upper)
    for page in pages:
        record = BatchReport(ctx.name, new_batch_id(), utc_now(), rows_read=len(page), message=MESSAGE,
                             watermark_before=position.describe())
        last = ctx.reader.watermark_of(page[-1])
        with log_context.flow(ctx.name), log_context.batch(record.batch_id):
            mapped = ctx.mapper.map_batch(page, record.batch_id)
            with ctx.target_engine.begin() as conn:
                position = write_batch(conn, ctx.target_dialect, ctx.staging, ctx.control, mapped, position,
                                       (lower, upper, False, *last), record)
        progress.batches += 1
        progress.rows_read += record.rows_read
        progress.rows_written += record.rows_written
        progress.rows_duplicate += record.rows_duplicate
        progress.rows_quarantined += record.rows_quarantined
        progress.position = Watermark(ctx.name, tuple(ctx.flow.watermark), last).describe()
        on_batch(progress)
        if stopping():
            return progress
    done = (lower, upper, True, *(last if last is not None else (None,) * len(ctx.flow.watermark)))
    with ctx.target_engine.begin() as conn:
        watermark.advance(conn, ctx.target_dialect, ctx.control, position, done, utc_now())
    return progress


def _count(ctx: FlowContext, lower: Any, upper: Any) -> int:
    first = ctx.source_columns[ctx.flow.watermark[0]].sa_type
    statement = ctx.source_dialect.statement(
        "source_count", {"lower_bound": first, "upper_bound": first},
        source=ctx.reader.source_sql, first=ctx.source_dialect.quote(ctx.flow.watermark[0]))
    with ctx.source_engine.connect() as conn:
        count = conn.execute(statement, {"lower_bound": lower, "upper_bound": upper}).scalar()
        conn.commit()
    return int(count or 0)


def count_statement_sql(dialect: Any, source_sql: str, column: str) -> str:
    return str(dialect.render("source_count", source=source_sql, first=dialect.quote(column)))


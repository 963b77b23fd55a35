"""The reconcile and delete passes of one flow: compare buckets, narrow down the ones that differ, fix them.

Narrowing: the whole range is compared per year; a bucket whose counts or checksums differ is compared again per
month, then day, hour, minute, second, until it holds at most `batch_size` rows on each side (or is a second).
Only then are rows read: that bucket's source rows (the flow's own keyset read, bounded to the bucket) and its
ledger and quarantine entries. A consistent range costs one aggregate query on each side.

- `reconcile`: the range is `window` (or `--since`) below the live watermark minus `overlap`, rows no poll reads
  again. A source row whose (key, version) the ledger and quarantine do not hold is missing: it is mapped and
  written through the write path (agent/write.py) without moving the watermark.
- `deletes`: the range is everything agent_ledger remembers up to the live watermark. A key whose latest ledger
  entry the bucket's source rows lack, and that the source no longer has at any version, gets a tombstone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from itertools import chain
from typing import Any

import sqlalchemy as sa

from agent import log_context, watermark
from agent.contract import TOMBSTONE_PREFIX, version_text
from agent.errors import AgentError, mark_system, system_of
from agent.mapping import MappedBatch
from agent.pipeline import FlowContext, describe_error, new_batch_id
from agent.read import Cursor
from agent.recovery import tombstones
from agent.recovery.buckets import (
    EMPTY, Bucket, BucketQueries, Counts, NotReconcilable, after, as_family, child, last_inside, parse_first,
)
from agent.report import FAILED, OK, BatchReport, utc_now
from agent.write import write_side_batch

log = logging.getLogger("mes_erp_agent")
RECONCILE, DELETES = "reconcile", "deletes"
RECONCILE_MESSAGE = "reconcile: rows the polls missed (committed after the overlap window)"
DELETES_MESSAGE = "deletes: tombstones for keys gone from the source"


@dataclass
class PassReport:
    flow: str
    kind: str
    column: str
    lower: Any = None
    upper: Any = None
    buckets_compared: int = 0
    buckets_differing: int = 0
    rows_missing: int = 0
    rows_staged: int = 0
    rows_quarantined: int = 0
    keys_gone: int = 0
    tombstones: int = 0
    missing_versions: list[str] = field(default_factory=list)  # version texts of the rows found missing
    outcome: str = OK
    message: str = ""
    system: str | None = None
    complete: bool = True  # False: the agent was stopping and the pass ended early

    @property
    def fixed(self) -> bool:
        """Rows were missing: the overlap is too short for this MES."""
        return self.rows_missing > 0


def reconcile(ctx: FlowContext, window: dt.timedelta, since: Any = None, horizon: dt.timedelta | None = None,
              stopping: Callable[[], bool] = lambda: False) -> PassReport:
    """Stage the rows of `window` (or from `since`) below the watermark minus overlap that the polls missed.
    `horizon`: how far back agent_ledger surely remembers (a `since` further back is refused). `stopping`: asked
    before each bucket (the agent is stopping: the pass ends after what it committed)."""
    report = PassReport(ctx.name, RECONCILE, ctx.flow.watermark[0])
    return _guarded(ctx, report, lambda: _reconcile(ctx, report, window, since, horizon, stopping))


def detect_deletes(ctx: FlowContext, lock: AbstractContextManager[Any] | None = None,
                   stopping: Callable[[], bool] = lambda: False) -> PassReport:
    """Write a tombstone for each key agent_ledger knows that the source no longer has. `lock` is held while the
    source is asked and the tombstones are written (the running agent's flow lock: no poll stages meanwhile)."""
    report = PassReport(ctx.name, DELETES, ctx.flow.watermark[0])
    return _guarded(ctx, report, lambda: _detect_deletes(ctx, report, lock or contextlib.nullcontext(), stopping))


def _guarded(ctx: FlowContext, report: PassReport, work: Callable[[], None]) -> PassReport:
    with log_context.flow(ctx.name):
        try:
            work()
        except (AgentError, sa.exc.SQLAlchemyError, OSError) as exc:
            report.outcome, report.message, report.system = FAILED, describe_error(exc), system_of(exc)
    return report


def _reconcile(ctx: FlowContext, report: PassReport, window: dt.timedelta, since: Any,
               horizon: dt.timedelta | None, stopping: Callable[[], bool]) -> None:
    queries = BucketQueries(ctx)
    position = _live_watermark(ctx)
    if position is None:
        return
    upper = as_family(queries.family, position[0] - ctx.flow.overlap)
    lower = as_family(queries.family, since if since is not None else upper - window)
    if horizon is not None and lower < as_family(queries.family, upper - horizon):
        raise NotReconcilable(f"flow {ctx.name}: reconciling from {version_text((lower,))} reaches further back than "
                              f"agent_ledger surely remembers ({version_text((upper - horizon,))}, ledger.keep less a "
                              "day's margin): rows staged before then would be staged again")
    report.lower, report.upper = lower, upper
    if lower >= upper:
        return
    for bucket in _narrowed(ctx, queries, Bucket("", lower, upper), report, lambda s, _l: s.rows > 0, stopping):
        rows = _read(ctx, queries.family, bucket)
        with _on(ctx.flow.target):
            staged = {(k, v) for k, v, _origin, _latest in queries.entries(bucket)}
        missing = [row for row in rows if _pair(ctx, row) not in staged]
        report.rows_missing += len(missing)
        report.missing_versions += [_pair(ctx, row)[1] for row in missing]
        for start in range(0, len(missing), ctx.flow.batch_size):
            chunk = missing[start:start + ctx.flow.batch_size]
            record = _stage(ctx, partial(_map_rows, ctx, chunk), len(chunk), RECONCILE_MESSAGE)
            report.rows_staged += record.rows_written
            report.rows_quarantined += record.rows_quarantined
    if report.rows_missing:
        log.warning("flow %s: reconcile found %d rows the polls missed (%s .. %s); staged %d, quarantined %d",
                    ctx.name, report.rows_missing, min(report.missing_versions), max(report.missing_versions),
                    report.rows_staged, report.rows_quarantined)


def _detect_deletes(ctx: FlowContext, report: PassReport, lock: AbstractContextManager[Any],
                    stopping: Callable[[], bool]) -> None:
    queries = BucketQueries(ctx)
    tombstones.check_keys(ctx)
    position = _live_watermark(ctx)
    if position is None:
        return
    with _on(ctx.flow.target), ctx.target_engine.connect() as conn:
        oldest = conn.execute(ctx.target_dialect.statement("ledger_oldest", ledger_table=ctx.control.ledger),
                              {"flow": ctx.name, "tombstone": TOMBSTONE_PREFIX[0]}).scalar()
        conn.commit()
    if oldest is None:
        return
    lower = as_family(queries.family, parse_first(queries.family, str(oldest)))
    upper = after(queries.family, as_family(queries.family, position[0]))
    report.lower, report.upper = lower, upper
    for bucket in _narrowed(ctx, queries, Bucket("", lower, upper), report, lambda _s, ledger: ledger.rows > 0,
                            stopping):
        rows = _read(ctx, queries.family, bucket)
        in_bucket = {_pair(ctx, row) for row in rows}
        keys_in_bucket = {key for key, _version in in_bucket}
        with _on(ctx.flow.target):
            latest = [(k, v) for k, v, origin, is_latest in queries.entries(bucket)
                      if origin == "L" and is_latest and (k, v) not in in_bucket and k not in keys_in_bucket]
        if not latest:
            continue
        with lock:
            with _on(ctx.flow.source):
                present = tombstones.still_in_source(ctx, [k for k, _v in latest])
            gone = [(k, v) for k, v in latest if k not in present]
            report.keys_gone += len(gone)
            if gone:
                record = _stage(ctx, partial(_tombstones, ctx, gone), len(gone), DELETES_MESSAGE)
                report.tombstones += record.rows_written
    if report.keys_gone:
        log.info("flow %s: %d keys are gone from the source; %d tombstones staged", ctx.name, report.keys_gone,
                 report.tombstones)


def _map_rows(ctx: FlowContext, rows: list[tuple[Any, ...]], batch_id: str) -> MappedBatch:
    return ctx.mapper.map_batch(rows, batch_id)


def _tombstones(ctx: FlowContext, gone: list[tuple[str, str]], batch_id: str) -> MappedBatch:
    return MappedBatch(tombstones.tombstone_rows(ctx, gone, batch_id), [])


def _narrowed(ctx: FlowContext, queries: BucketQueries, whole: Bucket, report: PassReport,
              wanted: Callable[[Counts, Counts], bool], stopping: Callable[[], bool]) -> Iterator[Bucket]:
    """The differing buckets worth reading (`wanted`), as narrow as the rules above make them."""
    pending = [(whole, 0)]
    leaf_rows = ctx.flow.batch_size
    while pending:
        if stopping():
            report.complete = False
            return
        parent, level = pending.pop(0)
        width = queries.levels[level]
        with _on(ctx.flow.source):
            source = queries.source(parent, width)
        with _on(ctx.flow.target):
            ledger = queries.ledger(parent, width)
        for prefix in sorted(source.keys() | ledger.keys()):
            report.buckets_compared += 1
            s, staged = source.get(prefix, EMPTY), ledger.get(prefix, EMPTY)
            if queries.same(s, staged):
                continue
            report.buckets_differing += 1
            if not wanted(s, staged):
                continue
            bucket = child(prefix, queries.family, parent)
            if level + 1 == len(queries.levels) or max(s.rows, staged.rows) <= leaf_rows:
                yield bucket
            else:
                pending.append((bucket, level + 1))


def _read(ctx: FlowContext, family: str, bucket: Bucket) -> list[tuple[Any, ...]]:
    """The bucket's source rows, with the flow's keyset read (every column the mapping needs)."""
    with _on(ctx.flow.source):
        return list(chain.from_iterable(ctx.reader.pages(Cursor(from_value=bucket.lower), last_inside(family, bucket.upper))))


def _pair(ctx: FlowContext, row: tuple[Any, ...]) -> tuple[str, str]:
    mapper = ctx.mapper
    return (version_text(tuple(row[i] for i in mapper.key_positions)),
            version_text(tuple(row[i] for i in mapper.watermark_positions)))


def _stage(ctx: FlowContext, build: Callable[[str], MappedBatch], rows_read: int, message: str) -> BatchReport:
    """One side batch (no watermark moves) through the write path, in one ERP transaction."""
    record = BatchReport(ctx.name, new_batch_id(), utc_now(), rows_read=rows_read, message=message)
    with log_context.batch(record.batch_id), _on(ctx.flow.target):
        batch = build(record.batch_id)
        with ctx.target_engine.begin() as conn:
            write_side_batch(conn, ctx.target_dialect, ctx.staging, ctx.control, batch, record)
    return record


def _live_watermark(ctx: FlowContext) -> tuple[Any, ...] | None:
    with _on(ctx.flow.target), ctx.target_engine.connect() as conn:
        return watermark.load(conn, ctx.target_dialect, ctx.control, ctx.name, ctx.flow.watermark).values


@contextlib.contextmanager
def _on(system: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        mark_system(exc, system)
        raise

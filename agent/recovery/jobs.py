"""The recovery passes in the long-running agent, and the `late_rows` incident both it and the CLI raise.

Per flow with `reconcile:` an interval job `reconcile:<flow>` (every `reconcile.every`), and with
`deletes: {detect: true}` a job `deletes:<flow>` (every `deletes.every`), next to the flow's own poll job. A job
uses the flow's prepared context; it skips a flow that is not prepared, halted on drift, backing off after failed
polls, stopping, or in standby (another agent holds it). The delete pass asks the source and writes its tombstones
under the flow's poll lock, so no poll stages a re-inserted key in between. `sync_jobs` adds, reschedules and removes the jobs to match the
configuration (at start and after a reload).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any, Protocol

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.interval import IntervalTrigger

from agent.alerts import IncidentBook, kinds
from agent.config import FlowConfig
from agent.pipeline import FlowContext
from agent.recovery.passes import DELETES, RECONCILE, PassReport, detect_deletes, reconcile
from agent.report import FAILED, HALTED
from agent.stopping import InFlight, StopRequest

log = logging.getLogger("mes_erp_agent")
KINDS = (RECONCILE, DELETES)


class PolledFlow(Protocol):
    """What a pass needs of the flow's poll job (agent/schedule.py FlowJob)."""

    context: FlowContext | None
    last_outcome: str | None
    stop: StopRequest
    in_flight: InFlight
    poll_lock: threading.Lock

    @property
    def config(self) -> Any: ...

    def holding(self) -> bool: ...


def record_incident(book: IncidentBook, report: PassReport, ctx: FlowContext, config_path: Any,
                    at: dt.datetime | None = None) -> None:
    """Open `late_rows:<flow>` when a reconcile pass had to stage missing rows; resolve it after a clean pass."""
    if report.kind != RECONCILE or report.outcome != "ok" or not (report.fixed or report.complete):
        return
    at = at or dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    key = f"late_rows:{report.flow}"
    if report.fixed:
        if book.current(key) is None:
            firsts = [v.split("|", 1)[0] for v in report.missing_versions]
            book.open(kinds.late_rows(
                report.flow, ctx.flow.source, ctx.flow.table or str(ctx.flow.query),
                f"{ctx.staging.schema}.{ctx.staging.name}", report.rows_missing, report.rows_staged,
                report.rows_quarantined, min(firsts), max(firsts), report.column, ctx.flow.overlap, at, config_path))
        return
    incident = book.current(key)
    if incident is not None:
        resolved = kinds.late_rows_resolved(incident, at)
        book.resolve(resolved.key, resolved.title, resolved.body, resolved.data, resolved.at)


class PassJob:
    """One flow's scheduled reconcile or delete pass."""

    def __init__(self, scheduler: BaseScheduler, flow: str, kind: str, book: IncidentBook):
        self.scheduler, self.flow, self.kind, self.book = scheduler, flow, kind, book

    def __call__(self) -> PassReport | None:
        job = self.scheduler.get_job(self.flow)
        polled: PolledFlow | None = job.func if job is not None else None
        if (polled is None or polled.context is None or polled.stop.is_set() or not polled.holding()
                or polled.last_outcome in (HALTED, FAILED)):
            return None
        ctx = polled.context
        with polled.in_flight:
            if self.kind == RECONCILE:
                settings = ctx.flow.reconcile
                report = reconcile(ctx, settings.window if settings else dt.timedelta(days=7), stopping=polled.stop.is_set)
            else:
                report = detect_deletes(ctx, polled.poll_lock, stopping=polled.stop.is_set)
        if report.outcome == FAILED:
            log.warning("flow %s: %s pass failed (it runs again at its next time): %s", self.flow, self.kind,
                        report.message)
        record_incident(self.book, report, ctx, polled.config.path)
        return report


def intervals(flow: FlowConfig) -> dict[str, dt.timedelta]:
    """The passes a flow's configuration asks for, and how often."""
    found = {}
    if flow.reconcile is not None:
        found[RECONCILE] = flow.reconcile.every
    if flow.deletes is not None and flow.deletes.detect:
        found[DELETES] = flow.deletes.every
    return found


def sync_jobs(scheduler: BaseScheduler, flows: dict[str, FlowConfig], book: IncidentBook) -> None:
    """Make the scheduler's pass jobs those of `flows` (ids `reconcile:<flow>`, `deletes:<flow>`)."""
    wanted = {f"{kind}:{name}": (name, kind, every) for name, flow in flows.items()
              for kind, every in intervals(flow).items()}
    for job in scheduler.get_jobs():
        if isinstance(job.func, PassJob) and job.id not in wanted:
            scheduler.remove_job(job.id)
    for job_id, (name, kind, every) in wanted.items():
        trigger = IntervalTrigger(seconds=max(every.total_seconds(), 0.1))
        existing = scheduler.get_job(job_id)
        if existing is None:
            scheduler.add_job(PassJob(scheduler, name, kind, book), trigger, id=job_id, name=f"{kind} pass of flow {name}")
        elif existing.trigger.interval != trigger.interval:
            scheduler.reschedule_job(job_id, trigger=trigger)

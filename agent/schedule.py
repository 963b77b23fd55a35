"""Schedule stage: the long-running mode. Each flow polls on its own cadence (`schedule: {every|cron}`).

APScheduler 3 with the defaults that keep a slow run from piling up: one instance per flow, missed runs
coalesced into one, and a worker thread per flow (plus the monitor's), so a flow waiting on a dead database
never delays another. Flows without a schedule poll every 60 s. Every poll passes the drift gate first; a
watchdog on the snapshot folder lets an accepted snapshot resume halted flows without a restart. A failed
poll backs off (agent/retry.py) and the flow resumes from its committed watermark by itself.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import sqlalchemy as sa
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from agent import ledger, pipeline, recovery
from agent.config import FlowConfig, LoadedConfig
from agent.connect import Systems, known_passwords
from agent.drift.gate import DriftGate
from agent.errors import AgentError, SchemaMismatch, SecretUnavailable, system_of
from agent.locks import FlowLocks
from agent.monitor import Monitor
from agent.report import FAILED, HALTED, FlowReport
from agent.retry import FailureStreak
from agent.stopping import InFlight, StopRequest

log = logging.getLogger("mes_erp_agent")
DEFAULT_EVERY = timedelta(seconds=60)
MONITOR_JOB = "monitor"
LEDGER_JOB = "ledger_prune"
SPARE_WORKERS = 2  # the monitor's periodic check, and room for a coalesced late run
CADENCE_ANCHOR = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)  # `every:` fire times count from here (CadenceTrigger)
ALIGN_STEP = timedelta(milliseconds=1)  # a multiple less than this after a run is the run itself (float rounding)
OVERRUN_WARN_EVERY = 15 * 60.0  # seconds: a flow whose polls keep outlasting their interval warns at most this often


def trigger_for(flow: FlowConfig) -> CronTrigger | IntervalTrigger:
    schedule = flow.schedule
    if schedule is not None and schedule.cron:
        return CronTrigger.from_crontab(schedule.cron)
    every = schedule.every if schedule is not None and schedule.every else DEFAULT_EVERY
    return CadenceTrigger(seconds=max(every.total_seconds(), 0.1), start_date=CADENCE_ANCHOR)


class CadenceTrigger(IntervalTrigger):
    """`every:` fires at whole multiples of the interval since CADENCE_ANCHOR, whenever the flow was added (a
    plain IntervalTrigger counts from its own first run, and the flows' first runs are spread by the time each
    takes to prepare): flows on one cadence poll in the same scheduler tick, as cron flows of one minute do, and
    the drift gate answers them with one catalog read per system (agent/drift/shared.py). A flow's first poll
    still runs at once; the next is at the first whole multiple after it."""

    def get_next_fire_time(self, previous_fire_time: dt.datetime | None, now: dt.datetime) -> dt.datetime | None:
        if previous_fire_time is not None:
            now = previous_fire_time + ALIGN_STEP  # the next multiple after the previous run, whatever the time now
        return super().get_next_fire_time(None, now)


class FlowJob:
    """One flow's scheduled poll: drift gate, then run. The flow's tables are looked up again after one of
    its snapshots was reloaded (an accepted schema change), and when drift kept them from being looked up.
    `on_batch` is told of each committed batch (the demo's live view); `monitor` of each poll's report.

    After a failed poll the flow backs off: calls during the wait return None at once, without a query. So do calls
    while another agent holds the flow (`locks`: the flow is in standby here), and a run in flight ends after its
    batch when this agent loses the flow's lock."""

    def __init__(
        self, config: LoadedConfig, systems: Systems, name: str, gate: pipeline.Gate | None,
        on_batch: pipeline.BatchListener | None = None, monitor: Monitor | None = None,
        stop: StopRequest | None = None, in_flight: InFlight | None = None, locks: FlowLocks | None = None,
    ):
        self.config, self.systems, self.name, self.gate = config, systems, name, gate
        self.locks = locks
        self.on_batch, self.monitor = on_batch, monitor
        self.stop, self.in_flight = stop or StopRequest(), in_flight or InFlight()
        self.retired = False  # a reload replaced or removed the flow: a run in flight ends after its batch
        self.context: pipeline.FlowContext | None = None
        self.generation: object = None
        self.trigger = trigger_for(config.model.flows[name])
        self.streak = FailureStreak(name, config.model.retry, known_passwords(config))
        self.last_outcome: str | None = None
        self.poll_lock = threading.Lock()  # held by a poll; the delete pass holds it while it writes tombstones
        self.overruns = Overruns(name)

    def _generation(self) -> object:
        return self.gate.generation(self.name) if isinstance(self.gate, DriftGate) else None

    def prepare(self) -> None:
        """Raises SchemaMismatch when the flow's tables do not match its configuration."""
        generation = self._generation()
        self.context = pipeline.prepare(self.config, self.systems, self.name)
        self.generation = generation

    def __call__(self) -> FlowReport | None:
        self.overruns.poll_started()
        try:
            return self._call()
        finally:
            self.overruns.poll_ended()

    def _call(self) -> FlowReport | None:
        if self.streak.waiting() or self.stopping():
            return None
        if self.holding():
            with self.in_flight, self.poll_lock:
                if not self.holding():  # handed to another agent while this poll waited for the lock
                    return None
                report = self._poll()
        else:
            unreachable = self.locks.unreachable(self.name) if self.locks is not None else None
            if unreachable is None:
                return None  # standby: another agent holds the flow
            report = self._cannot_lock(unreachable)
        if report.outcome == FAILED:
            self.streak.failed(report)
        else:
            self.streak.succeeded()
        if report.outcome == HALTED and self.last_outcome != HALTED:
            log.error("flow %s halted: %s", self.name, report.message)  # once; the drift report says the rest
        self.last_outcome = report.outcome
        if self.monitor is not None:
            self.monitor.after_poll(report, self.next_run())
        return report

    def next_run(self) -> dt.datetime | None:
        """When the flow polls next: its schedule's next time, after the backoff wait when it is failing."""
        now = dt.datetime.now(dt.timezone.utc)
        if self.streak.retry_at is not None:
            now += timedelta(seconds=max(0.0, self.streak.retry_at - self.streak.clock()))
        return self.trigger.get_next_fire_time(None, now)

    def _poll(self) -> FlowReport:
        if self.context is not None and self._generation() != self.generation:
            self.context = None
        if self.context is None:
            try:
                self.prepare()
            except SchemaMismatch as exc:
                reason = self.gate(self.name) if self.gate else None
                if reason:
                    return pipeline.halt_unprepared(self.config, self.systems, self.name, reason, log_failure=False)
                message = f"configuration does not match the databases: {exc}"
                return pipeline.halt_unprepared(self.config, self.systems, self.name, message, FAILED, log_failure=False)
            except SecretUnavailable:
                raise
            except (AgentError, sa.exc.SQLAlchemyError, OSError) as exc:  # a database down while looking up tables
                report = FlowReport(self.name, system=system_of(exc))
                return report.finish(FAILED, _first_line(exc), log_failure=False)
        assert self.context is not None
        return pipeline.run_flow(self.context, self.gate, self.on_batch, log_failure=False,
                                 stopping=lambda: self.stopping() or not self.holding())

    def _cannot_lock(self, error: BaseException) -> FlowReport:
        """The flow's target refuses the lock session (down, or refusing connections): nobody can move the flow, and
        that is an outage of the target, reported (failing, alerts) as a poll that could not reach it would be."""
        target = self.config.model.flows[self.name].target
        return FlowReport(self.name, system=target).finish(FAILED, pipeline.describe_error(error), log_failure=False)

    def stopping(self) -> bool:
        return self.retired or self.stop.is_set()

    def holding(self) -> bool:
        """This agent holds the flow's lock (always, without `locks`: one agent, or the demo)."""
        return self.locks is None or self.locks.holds(self.name)


class Overruns:
    """The times a flow's schedule came round while its poll was still running (one instance per flow: that time is
    skipped). The first skip of a poll is one WARNING, at most one per flow every OVERRUN_WARN_EVERY: a 1 s flow
    catching up on a weekend's rows skips a time every second, and its log gets one line, not one per second. When
    the poll ends, one INFO line says how long it took and how many times were skipped."""

    def __init__(self, flow: str, clock: Callable[[], float] = time.monotonic):
        self.flow, self.clock = flow, clock
        self.lock = threading.Lock()
        self.started: float | None = None  # the running poll's start (clock), None between polls
        self.started_at: dt.datetime | None = None
        self.skipped = 0  # times skipped during the running poll
        self.warned: float | None = None  # the last warning (clock)
        self.unwarned = 0  # polls that outlasted their interval since the last warning, not warned about

    def poll_started(self) -> None:
        with self.lock:
            self.started, self.started_at, self.skipped = self.clock(), dt.datetime.now(dt.timezone.utc), 0

    def skipped_time(self) -> None:
        """APScheduler skipped one of the flow's times: its poll is still running (called from the scheduler's thread)."""
        with self.lock:
            self.skipped += 1
            now = self.clock()
            if self.skipped > 1:
                return
            if self.warned is not None and now - self.warned < OVERRUN_WARN_EVERY:
                self.unwarned += 1
                return
            unwarned, self.unwarned, self.warned = self.unwarned, 0, now
            since = f"{self.started_at:%H:%M:%S} UTC" if self.started_at else "earlier"
        more = (f" {unwarned} more {'poll' if unwarned == 1 else 'polls'} of this flow outlasted their interval since the "
                f"last such warning." if unwarned else "")
        log.warning("flow %s: its poll that started at %s is still running at its next scheduled time; its scheduled "
                    "polls are skipped until it ends. That is expected while it catches up (an initial load, after an "
                    "outage); if it happens every poll, give the flow a longer interval or a smaller batch_size "
                    "(logged at most once every %d minutes per flow).%s",
                    self.flow, since, OVERRUN_WARN_EVERY // 60, more)

    def poll_ended(self) -> None:
        with self.lock:
            skipped, started = self.skipped, self.started
            self.started, self.started_at, self.skipped = None, None, 0
        if skipped and started is not None:
            log.info("flow %s: its poll took %.1f s, longer than its interval; %d scheduled %s skipped while it ran",
                     self.flow, self.clock() - started, skipped, "poll was" if skipped == 1 else "polls were")


class _NoSkipNotice(logging.Filter):
    """Drops APScheduler's own line for a skipped time ("maximum number of running instances reached"): Overruns
    says it once, in words for the flow."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in str(record.msg)


_NO_SKIP_NOTICE = _NoSkipNotice()


def build_scheduler(
    config: LoadedConfig, systems: Systems, only: str | None = None, gate: pipeline.Gate | None = None,
    on_batch: pipeline.BatchListener | None = None, scheduler_class: type[BaseScheduler] = BlockingScheduler,
    monitor: Monitor | None = None, stop: StopRequest | None = None, in_flight: InFlight | None = None,
    locks: FlowLocks | None = None,
) -> BaseScheduler:
    """One FlowJob per flow, with id the flow's name, on the flow's trigger. `scheduler_class=BackgroundScheduler`
    gives the same jobs, triggers and defaults running in the background (the demo drives its view meanwhile).
    With a `monitor`, one more job runs its periodic check every `alerts.check_every`.

    Raises SchemaMismatch when a flow's tables do not match its configuration (and not because of drift)."""
    flows = config.flows(only)
    scheduler = scheduler_class(
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
        executors={"default": ThreadPoolExecutor(max(10, len(flows) + SPARE_WORKERS))},
    )
    problems = []
    jobs: list[FlowJob] = []
    for name in flows:
        job = FlowJob(config, systems, name, gate, on_batch, monitor, stop, in_flight, locks)
        try:
            job.prepare()
        except SchemaMismatch as exc:
            if not (gate and gate(name)):
                problems.append(str(exc))
        jobs.append(job)
        scheduler.add_job(job, job.trigger, id=name, name=f"flow {name}", next_run_time=_now(scheduler))
    if problems:
        raise SchemaMismatch("\n".join(problems))
    if monitor is not None:
        def check() -> None:  # the scheduler's current flows (a reload adds and removes them) this agent holds
            monitor.check({job.name: job.context for job in flow_jobs(scheduler)
                           if job.context is not None and job.holding()})

        every = max(config.model.alerts.check_every.total_seconds(), 0.1)
        scheduler.add_job(check, IntervalTrigger(seconds=every), id=MONITOR_JOB, name="quarantine and backlog check",
                          next_run_time=_now(scheduler))
        scheduler.add_job(_prune_ledgers, IntervalTrigger(seconds=config.model.ledger.prune_every.total_seconds()),
                          args=(config, scheduler), id=LEDGER_JOB, name="ledger prune", next_run_time=_now(scheduler))
        recovery.sync_jobs(scheduler, flows, monitor.book)  # `reconcile:` and `deletes:` passes, per flow
    logging.getLogger("apscheduler.scheduler").addFilter(_NO_SKIP_NOTICE)  # the same object: added once
    scheduler.add_listener(lambda event: _on_job_event(scheduler, event), EVENT_JOB_ERROR | EVENT_JOB_MAX_INSTANCES)
    return scheduler


def _prune_ledgers(config: LoadedConfig, scheduler: BaseScheduler) -> None:
    """Every prepared flow's agent_ledger entries older than `ledger.keep`; a flow whose ERP is down waits."""
    for job in flow_jobs(scheduler):
        ctx = job.context
        if ctx is None or not job.holding():  # a flow in standby: its holder prunes
            continue
        try:
            ledger.prune(ctx.target_engine, ctx.target_dialect, ctx.control, ctx.name, config.model.ledger.keep)
        except (sa.exc.SQLAlchemyError, AgentError, OSError) as exc:  # its polls report the outage
            log.debug("flow %s: agent_ledger not pruned: %s", ctx.name, _first_line(exc))


def flow_jobs(scheduler: BaseScheduler) -> list[FlowJob]:
    return [job.func for job in scheduler.get_jobs() if isinstance(job.func, FlowJob)]


def _now(scheduler: BaseScheduler) -> dt.datetime:
    return dt.datetime.now(scheduler.timezone)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _on_job_event(scheduler: BaseScheduler, event: JobExecutionEvent) -> None:
    if getattr(event, "exception", None) is not None:
        log.error("%s crashed: %s (it runs again at its next time)", event.job_id, event.exception)
        return
    job = scheduler.get_job(event.job_id)
    if job is not None and isinstance(job.func, FlowJob):
        job.func.overruns.skipped_time()
    else:  # the monitor's check or the ledger prune
        log.warning("%s is still running from its previous time; this run was skipped", event.job_id)

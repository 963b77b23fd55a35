"""Schedule stage: the long-running mode. Each flow polls on its own cadence (`schedule: {every|cron}`).

APScheduler 3 with the defaults that keep a slow run from piling up: one instance per flow, missed runs
coalesced into one. Flows without a schedule poll every 60 s. Every poll passes the drift gate first; a
watchdog on the snapshot folder lets an accepted snapshot resume halted flows without a restart.
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import timedelta

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, JobExecutionEvent
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from agent import pipeline
from agent.config import FlowConfig, LoadedConfig
from agent.connect import Systems
from agent.drift.gate import DriftGate
from agent.drift.watcher import SnapshotWatcher
from agent.errors import SchemaMismatch, SnapshotError
from agent.exit_codes import ExitCode
from agent.report import FAILED, FlowReport

log = logging.getLogger("mes_erp_agent")
DEFAULT_EVERY = timedelta(seconds=60)


def trigger_for(flow: FlowConfig) -> CronTrigger | IntervalTrigger:
    schedule = flow.schedule
    if schedule is not None and schedule.cron:
        return CronTrigger.from_crontab(schedule.cron)
    every = schedule.every if schedule is not None and schedule.every else DEFAULT_EVERY
    return IntervalTrigger(seconds=max(every.total_seconds(), 0.1))


class FlowJob:
    """One flow's scheduled poll: drift gate, then run. The flow's tables are looked up again after one of
    its snapshots was reloaded (an accepted schema change), and when drift kept them from being looked up.
    `on_batch` is told of each committed batch (the demo's live view)."""

    def __init__(
        self, config: LoadedConfig, systems: Systems, name: str, gate: pipeline.Gate | None,
        on_batch: pipeline.BatchListener | None = None,
    ):
        self.config, self.systems, self.name, self.gate = config, systems, name, gate
        self.on_batch = on_batch
        self.context: pipeline.FlowContext | None = None
        self.generation: object = None

    def _generation(self) -> object:
        return self.gate.generation(self.name) if isinstance(self.gate, DriftGate) else None

    def prepare(self) -> None:
        """Raises SchemaMismatch when the flow's tables do not match its configuration."""
        generation = self._generation()
        self.context = pipeline.prepare(self.config, self.systems, self.name)
        self.generation = generation

    def __call__(self) -> FlowReport:
        if self.context is not None and self._generation() != self.generation:
            self.context = None
        if self.context is None:
            try:
                self.prepare()
            except SchemaMismatch as exc:
                reason = self.gate(self.name) if self.gate else None
                if reason:
                    return pipeline.halt_unprepared(self.config, self.systems, self.name, reason)
                message = f"configuration does not match the databases: {exc}"
                return pipeline.halt_unprepared(self.config, self.systems, self.name, message, FAILED)
        assert self.context is not None
        return pipeline.run_flow(self.context, self.gate, self.on_batch)


def build_scheduler(
    config: LoadedConfig, systems: Systems, only: str | None = None, gate: pipeline.Gate | None = None,
    on_batch: pipeline.BatchListener | None = None, scheduler_class: type[BaseScheduler] = BlockingScheduler,
) -> BaseScheduler:
    """One FlowJob per flow, with id the flow's name, on the flow's trigger. `scheduler_class=BackgroundScheduler`
    gives the same jobs, triggers and defaults running in the background (the demo drives its view meanwhile).

    Raises SchemaMismatch when a flow's tables do not match its configuration (and not because of drift)."""
    scheduler = scheduler_class(job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30})
    problems = []
    for name, flow in config.flows(only).items():
        job = FlowJob(config, systems, name, gate, on_batch)
        try:
            job.prepare()
        except SchemaMismatch as exc:
            if not (gate and gate(name)):
                problems.append(str(exc))
        scheduler.add_job(job, trigger_for(flow), id=name, name=f"flow {name}", next_run_time=_now(scheduler))
    if problems:
        raise SchemaMismatch("\n".join(problems))
    scheduler.add_listener(_on_job_event, EVENT_JOB_ERROR | EVENT_JOB_MAX_INSTANCES)
    return scheduler


def _now(scheduler: BaseScheduler):
    import datetime as dt

    return dt.datetime.now(scheduler.timezone)


def _on_job_event(event: JobExecutionEvent) -> None:
    if getattr(event, "exception", None) is not None:
        log.error("%s crashed: %s (it runs again at its next time)", event.job_id, event.exception)
    else:
        log.warning("%s is still running from its previous time; this poll was skipped", event.job_id)


def run_forever(config: LoadedConfig, only: str | None = None) -> ExitCode:
    """Run until SIGTERM/SIGINT. Returns the exit code."""
    systems = Systems(config)
    try:
        gate = DriftGate(config, systems, only)
        scheduler = build_scheduler(config, systems, only, gate)
    except SnapshotError as exc:
        log.error("cannot check for schema drift; not starting:\n%s", exc)
        systems.dispose()
        return ExitCode.CONFIG
    except SchemaMismatch as exc:
        log.error("configuration does not match the databases; not starting:\n%s", exc)
        systems.dispose()
        return ExitCode.CONFIG
    watcher = SnapshotWatcher(gate).start()  # an accepted snapshot resumes halted flows without a restart
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: scheduler.shutdown(wait=False))
    log.info("mes-erp-agent running %d flows; stop with Ctrl+C or SIGTERM", len(scheduler.get_jobs()))
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        watcher.stop()
        gate.close()
        systems.dispose()
    return ExitCode.OK

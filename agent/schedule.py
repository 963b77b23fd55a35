"""Schedule stage: the long-running mode. Each flow polls on its own cadence (`schedule: {every|cron}`).

APScheduler 3 with the defaults that keep a slow run from piling up: one instance per flow, missed runs
coalesced into one. Flows without a schedule poll every 60 s.
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import timedelta

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, JobExecutionEvent
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from agent import pipeline
from agent.config import FlowConfig, LoadedConfig
from agent.connect import Systems
from agent.errors import SchemaMismatch

log = logging.getLogger("mes_erp_agent")
DEFAULT_EVERY = timedelta(seconds=60)


def trigger_for(flow: FlowConfig) -> CronTrigger | IntervalTrigger:
    schedule = flow.schedule
    if schedule is not None and schedule.cron:
        return CronTrigger.from_crontab(schedule.cron)
    every = schedule.every if schedule is not None and schedule.every else DEFAULT_EVERY
    return IntervalTrigger(seconds=max(every.total_seconds(), 0.1))


def build_scheduler(config: LoadedConfig, systems: Systems, only: str | None = None) -> BlockingScheduler:
    scheduler = BlockingScheduler(job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30})
    for name in config.flows(only):
        context = pipeline.prepare(config, systems, name)
        scheduler.add_job(pipeline.run_flow, trigger_for(context.flow), args=[context], id=name, name=f"flow {name}",
                          next_run_time=_now(scheduler))
    scheduler.add_listener(_on_job_event, EVENT_JOB_ERROR | EVENT_JOB_MAX_INSTANCES)
    return scheduler


def _now(scheduler: BlockingScheduler):
    import datetime as dt

    return dt.datetime.now(scheduler.timezone)


def _on_job_event(event: JobExecutionEvent) -> None:
    if getattr(event, "exception", None) is not None:
        log.error("%s crashed: %s (it runs again at its next time)", event.job_id, event.exception)
    else:
        log.warning("%s is still running from its previous time; this poll was skipped", event.job_id)


def run_forever(config: LoadedConfig, only: str | None = None) -> int:
    """Run until SIGTERM/SIGINT. Returns the exit code."""
    systems = Systems(config)
    try:
        scheduler = build_scheduler(config, systems, only)
    except SchemaMismatch as exc:
        log.error("configuration does not match the databases; not starting:\n%s", exc)
        systems.dispose()
        return 2
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: scheduler.shutdown(wait=False))
    log.info("mes-erp-agent running %d flows; stop with Ctrl+C or SIGTERM", len(scheduler.get_jobs()))
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        systems.dispose()
    return 0

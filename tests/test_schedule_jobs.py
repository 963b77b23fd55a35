"""`schedule.build_scheduler`: the service's jobs, also as a BackgroundScheduler (the demo), on a real database.

The background variant must be the service exactly: the same FlowJob per flow, ids, triggers and job defaults.
Its polls report their FlowReport through EVENT_JOB_EXECUTED and each committed batch through `on_batch`.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from apscheduler.events import EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from agent.config import LoadedConfig, load_config
from agent.connect import Systems
from agent.demo import adventureworks
from agent.drift.gate import DriftGate
from agent.report import BatchReport, FlowReport
from agent.schedule import FlowJob, build_scheduler, trigger_for
from helpers import Pair, make_pair, prepare_erp, scalar, work_order_flow, write_config

ORDERS = 120


@pytest.fixture(scope="module")
def plant(db_factory, tmp_path_factory: pytest.TempPathFactory) -> tuple[Pair, Path]:
    """An SQLite MES with 120 work orders and its ERP: a 2 s flow and a daily one, 50 rows per batch."""
    pair = make_pair(db_factory, "sqlite")
    mes = sa.create_engine(pair.mes_url)
    adventureworks.create_and_load(mes, ["work_order"], limit=ORDERS)
    mes.dispose()
    flows = {
        "work_order_confirmations": work_order_flow(pair, schedule={"every": "2s"}, batch_size=50),
        "daily_work_orders": work_order_flow(pair, schedule={"cron": "0 6 * * *"}, staging_table="stg_daily"),
    }
    config = write_config(tmp_path_factory.mktemp("schedule") / "agent.yaml", pair, flows)
    prepare_erp(config)
    return pair, config


def job_table(scheduler: BaseScheduler) -> list[tuple]:
    """The jobs as the started scheduler holds them (job defaults are applied at start), started paused: no poll runs."""
    if not isinstance(scheduler, BackgroundScheduler):  # the service's: its start() blocks until shutdown
        thread = threading.Thread(target=scheduler.start, kwargs={"paused": True})
        thread.start()
        deadline = time.monotonic() + 10
        while not scheduler.running and time.monotonic() < deadline:
            time.sleep(0.01)
    else:
        thread = None
        scheduler.start(paused=True)
    try:
        return [(job.id, job.name, type(job.func), str(job.trigger), job.coalesce, job.max_instances,
                 job.misfire_grace_time) for job in scheduler.get_jobs()]
    finally:
        scheduler.shutdown(wait=True)
        if thread is not None:
            thread.join(10)


def test_background_scheduler_has_the_services_jobs_triggers_and_defaults(plant: tuple[Pair, Path]) -> None:
    _, path = plant
    config = load_config(path)
    systems = Systems(config)
    try:
        service = build_scheduler(config, systems)
        background = build_scheduler(config, systems, scheduler_class=BackgroundScheduler)
        assert (type(service), type(background)) == (BlockingScheduler, BackgroundScheduler)
        jobs = job_table(background)
        assert jobs == [
            ("work_order_confirmations", "flow work_order_confirmations", FlowJob, "interval[0:00:02]", True, 1, 30),
            ("daily_work_orders", "flow daily_work_orders", FlowJob, "cron[month='*', day='*', day_of_week='*', "
             "hour='6', minute='0']", True, 1, 30),
        ]
        assert job_table(service) == jobs
    finally:
        systems.dispose()


def run_one_poll(config: LoadedConfig, systems: Systems, on_batch) -> tuple[str, FlowReport, str]:
    """Start the background scheduler with the 2 s flow, wait for its first poll's event, stop it."""
    gate = DriftGate(config, systems)
    scheduler = build_scheduler(config, systems, "work_order_confirmations", gate, on_batch=on_batch,
                                scheduler_class=BackgroundScheduler)
    executed: list[tuple[str, FlowReport, str]] = []
    done = threading.Event()

    def on_executed(event: JobExecutionEvent) -> None:
        executed.append((event.job_id, event.retval, threading.current_thread().name))
        done.set()

    scheduler.add_listener(on_executed, EVENT_JOB_EXECUTED)
    scheduler.start()
    try:
        assert done.wait(30), "the first poll did not run"
    finally:
        scheduler.shutdown(wait=True)
        gate.close()
    assert len(executed) == 1
    return executed[0]


def test_background_poll_reports_its_flow_report_and_each_batch(plant: tuple[Pair, Path]) -> None:
    pair, path = plant
    config = load_config(path)
    systems = Systems(config)
    batches: list[BatchReport] = []
    try:
        job_id, flow_report, thread = run_one_poll(config, systems, batches.append)
    finally:
        systems.dispose()
    assert thread != threading.main_thread().name  # the poll ran in the scheduler's worker thread
    assert (job_id, flow_report.flow, flow_report.outcome) == ("work_order_confirmations", "work_order_confirmations", "ok")
    assert (flow_report.batches, flow_report.rows_read, flow_report.rows_written) == (3, ORDERS, ORDERS)
    assert [(b.flow, b.rows_read, b.rows_written) for b in batches] == [
        ("work_order_confirmations", 50, 50), ("work_order_confirmations", 50, 50), ("work_order_confirmations", 20, 20),
    ]
    recorded = sa.create_engine(pair.erp_url)
    try:
        with recorded.connect() as conn:
            conn.exec_driver_sql(f"ATTACH DATABASE '{pair.attach['staging']}' AS staging")
            run_rows = conn.execute(sa.text(
                "SELECT batch_id, rows_written FROM staging.agent_run WHERE flow = 'work_order_confirmations' "
                "ORDER BY run_id")).all()
    finally:
        recorded.dispose()
    assert [tuple(r) for r in run_rows] == [(b.batch_id, b.rows_written) for b in batches]
    assert scalar(pair.erp_url, "SELECT COUNT(*) FROM staging.stg_work_order", pair) == ORDERS


def test_flows_on_one_cadence_poll_in_the_same_tick_whenever_they_were_added() -> None:
    """`every:` fires at whole multiples of the interval from one fixed instant, not from each flow's first run (spread
    by the time each flow takes to prepare, or by a reload adding a flow later): one cadence's flows poll together, so
    the drift gate answers them with one catalog read per system."""
    flow = SimpleNamespace(schedule=SimpleNamespace(every=dt.timedelta(seconds=2), cron=None))
    start = dt.datetime(2026, 3, 1, 6, 0, 0, 123456, tzinfo=dt.timezone.utc)
    runs = []
    for added in (0.0, 0.017, 0.34, 1.8, 7.5):  # first runs (at once, when added), then every 2 s from the anchor
        trigger = trigger_for(flow)
        first = start + dt.timedelta(seconds=added)
        fired = [first]
        for _ in range(3):
            fired.append(trigger.get_next_fire_time(fired[-1], first))
        runs.append(fired[1:])
        assert trigger.get_next_fire_time(None, first) == fired[1]  # `next_run` and a rescheduled job agree
    expected = [dt.datetime(2026, 3, 1, 6, 0, s, tzinfo=dt.timezone.utc) for s in (2, 4, 6)]
    assert runs[:4] == [expected] * 4
    assert runs[4] == [dt.datetime(2026, 3, 1, 6, 0, s, tzinfo=dt.timezone.utc) for s in (8, 10, 12)]

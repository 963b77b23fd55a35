"""A poll that outlasts its flow's interval: the scheduler skips the flow's times meanwhile (one instance per flow),
and the log says so once, in words for the flow, not once per skipped time (a 1 s flow catching up on a weekend
skips a time every second). When the poll ends, one INFO line counts what was skipped.

The live test runs the service's scheduler on SQLite databases with a flow every 200 ms whose poll takes over a
second (its batch listener waits); the others drive `Overruns` with a clock of their own.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from apscheduler.events import EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler

from agent.config import load_config
from agent.connect import Systems
from agent.demo import adventureworks
from agent.schedule import OVERRUN_WARN_EVERY, Overruns, build_scheduler
from helpers import make_pair, prepare_erp, work_order_flow, write_config

WARNING = ("flow orders: its poll that started at {at} UTC is still running at its next scheduled time; its scheduled "
           "polls are skipped until it ends. That is expected while it catches up (an initial load, after an outage); "
           "if it happens every poll, give the flow a longer interval or a smaller batch_size (logged at most once "
           "every 15 minutes per flow).")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "mes_erp_agent"]


def test_a_long_poll_warns_once_and_counts_the_skipped_times_when_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    overruns = Overruns("orders", clock)
    caplog.set_level(logging.INFO, logger="mes_erp_agent")
    overruns.poll_started()
    at = f"{overruns.started_at:%H:%M:%S}"
    for _ in range(150):  # a 1 s flow whose catch-up poll takes 150 s
        clock.now += 1
        overruns.skipped_time()
    clock.now += 0.4
    overruns.poll_ended()
    assert lines(caplog) == [
        ("WARNING", WARNING.format(at=at)),
        ("INFO", "flow orders: its poll took 150.4 s, longer than its interval; 150 scheduled polls were skipped while it ran"),
    ]


def test_polls_that_keep_outlasting_their_interval_warn_once_every_15_minutes(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    overruns = Overruns("orders", clock)
    caplog.set_level(logging.WARNING, logger="mes_erp_agent")
    starts = []
    for _ in range(3):  # three overlong polls within 15 minutes: one warning
        overruns.poll_started()
        starts.append(f"{overruns.started_at:%H:%M:%S}")
        clock.now += 1.5
        overruns.skipped_time()
        overruns.poll_ended()
        clock.now += 60
    assert lines(caplog) == [("WARNING", WARNING.format(at=starts[0]))]
    clock.now += OVERRUN_WARN_EVERY  # the next one, 15 minutes later, warns and counts the two not warned about
    overruns.poll_started()
    at = f"{overruns.started_at:%H:%M:%S}"
    overruns.skipped_time()
    overruns.poll_ended()
    assert lines(caplog)[1:] == [
        ("WARNING", WARNING.format(at=at) + " 2 more polls of this flow outlasted their interval since the last such warning."),
    ]


def test_a_poll_within_its_interval_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    overruns = Overruns("orders", Clock())
    caplog.set_level(logging.DEBUG, logger="mes_erp_agent")
    overruns.poll_started()
    overruns.poll_ended()
    assert lines(caplog) == []


@pytest.fixture(scope="module")
def plant(db_factory, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite MES with 30 work orders, a flow every 200 ms, 10 rows per batch."""
    pair = make_pair(db_factory, "sqlite")
    mes = sa.create_engine(pair.mes_url)
    adventureworks.create_and_load(mes, ["work_order"], limit=30)
    mes.dispose()
    flows = {"orders": work_order_flow(pair, schedule={"every": "200ms"}, batch_size=10)}
    config = write_config(tmp_path_factory.mktemp("overruns") / "agent.yaml", pair, flows)
    prepare_erp(config)
    return config


def test_the_services_scheduler_says_once_that_a_long_poll_skips_its_times(
    plant: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    config = load_config(plant)
    systems = Systems(config)
    scheduler = build_scheduler(config, systems, "orders", on_batch=lambda _batch: time.sleep(0.5),
                                scheduler_class=BackgroundScheduler)
    first_done = threading.Event()
    reports: list[JobExecutionEvent] = []

    def on_executed(event: JobExecutionEvent) -> None:
        reports.append(event)
        first_done.set()

    # Not test_schedule_jobs.run_one_poll: at 200 ms a second poll may end before the scheduler stops, which that
    # helper counts as a failure.
    scheduler.add_listener(on_executed, EVENT_JOB_EXECUTED)
    scheduler.start()
    try:
        assert first_done.wait(30), "the first poll did not end"
    finally:
        scheduler.shutdown(wait=True)
        systems.dispose()
    first = reports[0].retval
    assert (first.outcome, first.rows_written, first.batches) == ("ok", 30, 3)  # 3 batches, 0.5 s each
    ours = lines(caplog)
    warnings = [m for level, m in ours if level == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith("flow orders: its poll that started at "), ours
    assert "is still running at its next scheduled time; its scheduled polls are skipped until it ends" in warnings[0]
    ended = [m for level, m in ours if level == "INFO" and "longer than its interval" in m]
    assert len(ended) == 1, ours
    found = re.fullmatch(r"flow orders: its poll took (\d+\.\d) s, longer than its interval; (\d+) scheduled polls were "
                         r"skipped while it ran", ended[0])
    assert found is not None, ended[0]
    assert float(found[1]) >= 1.5 and int(found[2]) >= 3  # 1.5 s at 200 ms: about 7 times
    apscheduler = [r.getMessage() for r in caplog.records if r.name.startswith("apscheduler")]
    assert not [m for m in apscheduler if "maximum number of running instances" in m], apscheduler

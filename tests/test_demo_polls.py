"""The demo's live polls are the long-running service's: `schedule.FlowJob`, run by APScheduler on each flow's
schedule, and what the demo shows is what those jobs returned and wrote (agent_run, staging), in both directions:
the ERP's staging file for MES -> ERP, the MES inbound file for ERP -> MES.

FlowJob is wrapped (not replaced) to see which calls the scheduler made; the databases are the demo's own.
"""

from __future__ import annotations

import io
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from rich.console import Console

from agent import schedule
from agent.demo.run import Demo, DemoResult
from agent.report import FlowReport

FLOWS = {"work_order_confirmations", "operation_confirmations", "released_orders"}
# Where each flow's staging table and agent_run live: the ERP's staging file, or the MES inbound file (ERP -> MES).
STAGING = {"work_order_confirmations": ("erp_staging.db", "stg_work_order"),
           "operation_confirmations": ("erp_staging.db", "stg_operation"),
           "released_orders": ("mes_inbound.db", "stg_production_order")}


@dataclass(frozen=True)
class JobCall:
    flow: str
    thread: str
    report: FlowReport


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DemoResult, str, list[JobCall]]]:
    """One demo run (3 s of shop floor), with every call of schedule.FlowJob recorded: the thread it ran in and
    the FlowReport it returned."""
    calls: list[JobCall] = []
    original = schedule.FlowJob.__call__

    def recorded(job: schedule.FlowJob) -> FlowReport:
        flow_report = original(job)
        calls.append(JobCall(job.name, threading.current_thread().name, flow_report))
        return flow_report

    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(schedule.FlowJob, "__call__", recorded)
        result = Demo(tmp_path_factory.mktemp("demo-polls") / "demo-run", 3, Console(file=out, width=200)).run()
    yield result, out.getvalue(), calls


def erp_rows(folder: Path, sql: str, file: str = "erp_staging.db") -> list[sa.Row]:
    engine = sa.create_engine(f"sqlite:///{folder / file}")
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql)).all()
    finally:
        engine.dispose()


def test_live_polls_are_the_services_flow_jobs_run_by_the_scheduler(demo) -> None:
    result, output, calls = demo
    assert result.exit_code == 0, output
    assert {c.flow for c in calls} == FLOWS  # each flow polled through schedule.FlowJob
    assert all(c.thread != threading.main_thread().name for c in calls)  # in APScheduler's worker threads
    initial, live = result.polls[:3], result.polls[3:]
    assert [(p.job_id, p.report.flow) for p in initial] == [(None, "work_order_confirmations"),
                                                           (None, "operation_confirmations"), (None, "released_orders")]
    # Every live poll the demo shows came from the scheduler (its job id is the flow) and is a FlowJob's own report.
    assert all(p.job_id == p.report.flow for p in live)
    assert sorted(id(p.report) for p in live) == sorted(id(c.report) for c in calls)
    polls_per_flow = Counter(p.job_id for p in live)
    assert polls_per_flow == {name: f.polls for name, f in result.flows.items()}
    assert all(f.polls >= 2 for f in result.flows.values()), polls_per_flow  # the first poll, then the catch-up


def test_each_flows_last_poll_started_after_its_last_changes_lag(demo) -> None:
    result, _, _ = demo
    last_commit = max(c.committed_at for c in result.changes)
    for name, f in result.flows.items():
        last_poll = [p for p in result.polls if p.job_id == name][-1]
        assert last_poll.report.started >= last_commit + f.lag, name


def test_the_batches_shown_are_the_agent_run_rows_and_their_staging_rows(demo) -> None:
    result, _, _ = demo
    shown = {batch_id: (p.report.flow, p.job_id) for p in result.polls for batch_id in p.batch_ids}
    runs = [row for file in ("erp_staging.db", "mes_inbound.db")  # each target system's agent_run
            for row in erp_rows(result.folder, "SELECT batch_id, flow, rows_written, outcome FROM agent_run ORDER BY run_id",
                                file)]
    assert sorted(shown) == sorted(r.batch_id for r in runs)  # nothing the demo missed, nothing it made up
    assert all(r.outcome == "ok" and shown[r.batch_id][0] == r.flow for r in runs)
    for p in result.polls:
        assert len(p.batch_ids) == p.report.batches
        assert sum(r.rows_written for r in runs if r.batch_id in p.batch_ids) == p.report.rows_written
    for name, f in result.flows.items():
        file, table = STAGING[name]
        live_rows = erp_rows(result.folder, f"SELECT stg_batch_id FROM {table} WHERE stg_id > {f.initial_rows}", file)
        assert len(live_rows) == f.live_staged
        assert {shown[r.stg_batch_id] for r in live_rows} <= {(name, name)}  # written by a scheduled poll of the flow


def test_a_crashing_poll_is_a_failed_flow_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = schedule.FlowJob.__call__

    def crash_operations(job: schedule.FlowJob) -> FlowReport:
        if job.name == "operation_confirmations":
            raise RuntimeError("simulated bug")
        return original(job)

    monkeypatch.setattr(schedule.FlowJob, "__call__", crash_operations)
    out = io.StringIO()
    result = Demo(tmp_path / "demo-run", 1, Console(file=out, width=200)).run()
    output = out.getvalue()
    assert result.exit_code == 1, output
    operations = result.flows["operation_confirmations"]
    assert (operations.outcome, operations.message) == ("failed", "the poll crashed: simulated bug")
    assert "  operation_confirmations failed: the poll crashed: simulated bug" in output
    assert "Traceback" not in output
    assert result.flows["work_order_confirmations"].outcome == "ok"

"""FlowHealth fed by real polls (FlowJob's drift gate and pipeline on SQLite and PostgreSQL): the state machine,
the figures of `status --json`, and the lag and backlog probe."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from agent.health import FlowHealth, probe
from agent.report import FlowReport
from health_support import (
    BATCH, FLOW, ROWS, T0, Agent, new_agent, new_pair, newest_source_change, quarantined_in_source, source_down,
)
from helpers import cli, scalar, table_name

KINDS = ["sqlite", "postgresql"]


@pytest.fixture(params=KINDS)
def agent(request, db_factory, tmp_path):
    pair = new_pair(db_factory, request.param, f"{request.node.originalname[5:18]}_{request.param[:2]}")
    made = new_agent(pair, tmp_path / "agent")
    yield made
    made.close()


def at(seconds: float) -> str:
    return (T0 + dt.timedelta(seconds=seconds)).replace(tzinfo=None).isoformat() + "Z"


def unquarantined_ids(agent: Agent, count: int) -> list[int]:
    """Work orders without a scrap reason: the code map never rejects them."""
    engine = sa.create_engine(agent.pair.mes_url)
    with engine.connect() as conn:
        ids = conn.execute(sa.text(f"SELECT work_order_id FROM {table_name(agent.pair, 'work_order')} "
                                   "WHERE scrap_reason_id IS NULL ORDER BY work_order_id")).scalars().all()
    engine.dispose()
    return list(ids[:count])


def touch(agent: Agent, ids: list[int], when: dt.datetime) -> None:
    agent.mes(f"UPDATE {table_name(agent.pair, 'work_order')} SET modified_date = :at "
              f"WHERE work_order_id IN ({', '.join(map(str, ids))})", at=when)


def test_a_flow_catches_up_fails_recovers_halts_on_drift_and_resumes(agent):
    quarantined = quarantined_in_source(agent.pair)
    assert 0 < quarantined < ROWS
    assert agent.flow_health() == {
        "flow": FLOW, "state": "starting", "healthy": False, "message": None, "failing_since": None,
        "consecutive_failures": 0, "last_poll_at": None, "last_success_at": None, "rows_staged": 0,
        "rows_quarantined": 0, "batches": 0, "failures": 0, "lag_seconds": None, "pending_rows": None,
        "oldest_pending_age_seconds": None, "open_incidents": 0, "next_run": None,
    }
    assert not agent.health.healthy()

    # Initial load: 120 rows in batches of 50, 50, 20. Full batches mean more rows are waiting.
    assert agent.poll().outcome == "ok"
    assert agent.states_after_batches == ["catching_up", "catching_up", "catching_up"]
    assert agent.flow_health() == {
        "flow": FLOW, "state": "ok", "healthy": True, "message": None, "failing_since": None,
        "consecutive_failures": 0, "last_poll_at": at(0), "last_success_at": at(0), "rows_staged": ROWS - quarantined,
        "rows_quarantined": quarantined, "batches": 3, "failures": 0, "lag_seconds": None, "pending_rows": None,
        "oldest_pending_age_seconds": None, "open_incidents": 0, "next_run": None,
    }
    assert agent.health.healthy()

    # The MES refuses connections: failing since the first failure of the streak, with the error's first line.
    with source_down(agent) as error:
        agent.clock.advance(60)
        assert agent.poll().outcome == "failed"
        agent.clock.advance(60)
        assert agent.poll().outcome == "failed"
        failing = agent.flow_health()
        assert not agent.health.healthy()
    assert {k: failing[k] for k in ("state", "healthy", "message", "failing_since", "consecutive_failures",
                                    "last_poll_at", "last_success_at", "failures")} == {
        "state": "failing", "healthy": False, "message": error, "failing_since": at(60), "consecutive_failures": 2,
        "last_poll_at": at(120), "last_success_at": at(0), "failures": 2,
    }

    # Back: the next poll moves the changes made meanwhile, and the streak is over.
    touch(agent, unquarantined_ids(agent, 5), dt.datetime(2030, 1, 1, 8, 0))
    agent.clock.advance(60)
    assert agent.poll().outcome == "ok"
    recovered = agent.flow_health()
    assert {k: recovered[k] for k in ("state", "healthy", "message", "failing_since", "consecutive_failures",
                                      "last_success_at", "rows_staged", "batches", "failures")} == {
        "state": "ok", "healthy": True, "message": None, "failing_since": None, "consecutive_failures": 0,
        "last_success_at": at(180), "rows_staged": ROWS - quarantined + 5, "batches": 4, "failures": 2,
    }

    # A vendor adds a column: halted on drift is deliberate, so healthy; undone, the flow resumes.
    work_order = table_name(agent.pair, "work_order")
    agent.mes(f"ALTER TABLE {work_order} ADD COLUMN vendor_note varchar(20)")
    agent.clock.advance(60)
    halted_report = agent.poll()
    assert halted_report.outcome == "halted"
    halted = agent.flow_health()
    assert (halted["state"], halted["healthy"], halted["failing_since"], halted["last_success_at"]) == (
        "halted", True, None, at(180))
    column_type = "character varying(20)" if agent.pair.kind == "postgresql" else "varchar(20)"
    alerts = agent.config.folder / "alerts"
    assert halted["message"] == halted_report.message
    assert halted["message"].startswith(
        f"halted by schema drift on system mes (1 change, 0 breaking for this flow): {work_order}.vendor_note: new "
        f"column (now {column_type}). Report: {alerts}/drift-mes-")
    assert agent.health.healthy()
    agent.mes(f"ALTER TABLE {work_order} DROP COLUMN vendor_note")
    agent.clock.advance(60)
    assert agent.poll().outcome == "ok"
    assert (agent.flow_health()["state"], agent.flow_health()["last_success_at"]) == ("ok", at(300))


def test_lag_is_how_far_staging_trails_the_source_and_backlog_is_the_pending_rows(agent):
    agent.job.prepare()
    ctx = agent.job.context
    assert probe.measure(ctx) == probe.Measurement(lag_seconds=None, pending_rows=0, oldest_pending_age_seconds=None)
    agent.poll()
    staged = ROWS - quarantined_in_source(agent.pair)
    loaded_at = scalar(agent.pair.erp_url, f"SELECT MIN(stg_loaded_at) FROM {agent.pair.staging_schema}.stg_work_order",
                       agent.pair)
    loaded_at = dt.datetime.fromisoformat(loaded_at) if isinstance(loaded_at, str) else loaded_at
    now = loaded_at.replace(tzinfo=dt.timezone.utc) + dt.timedelta(seconds=90)
    assert probe.measure(ctx, now) == probe.Measurement(lag_seconds=0.0, pending_rows=staged, oldest_pending_age_seconds=90.0)

    # A change one hour and a half second after the staged watermark: staging trails by exactly that.
    newest = newest_source_change(agent.pair)
    touch(agent, unquarantined_ids(agent, 1), newest + dt.timedelta(hours=1, milliseconds=500))
    measured = probe.measure(ctx, now)
    assert measured == probe.Measurement(lag_seconds=3600.5, pending_rows=staged, oldest_pending_age_seconds=90.0)
    agent.health.record_measurement(FLOW, measured)
    assert (agent.flow_health()["lag_seconds"], agent.flow_health()["pending_rows"]) == (3600.5, staged)

    with source_down(agent):  # the ERP still answers: the backlog is known, the lag is not
        assert probe.measure(ctx, now) == probe.Measurement(None, staged, 90.0)
    agent.poll()
    assert probe.measure(ctx, now) == probe.Measurement(0.0, staged + 1, 90.0)


def test_a_poll_that_ends_with_rows_still_pending_is_catching_up():
    health = FlowHealth({"a": BATCH, "b": BATCH})
    health.record(FlowReport("a", caught_up=False, batches=1, rows_read=BATCH, rows_written=BATCH))
    health.record(FlowReport("b", caught_up=True))
    assert [(f["flow"], f["state"], f["healthy"], f["rows_staged"]) for f in health.snapshot()] == [
        ("a", "catching_up", False, BATCH), ("b", "ok", True, 0)]
    assert not health.healthy()
    health.set_next_run("b", dt.datetime(2026, 3, 1, 7, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=1))))
    health.set_open_incidents("b", 2)
    assert {k: health.snapshot()[1][k] for k in ("next_run", "open_incidents")} == {
        "next_run": "2026-03-01T06:00:05Z", "open_incidents": 2}


def test_a_password_in_an_error_message_is_hidden():
    health = FlowHealth({"a": BATCH}, secrets=["s3cret-Pw"])
    health.record(FlowReport("a", outcome="failed", message="login agent:s3cret-Pw@db refused\nsecond line"))
    assert health.snapshot()[0]["message"] == "login agent:***@db refused"


def test_render_sql_lists_the_lag_query(agent):
    result = cli("render-sql", "-c", str(agent.config.path))
    assert result.exit_code == 0, result.output
    source = table_name(agent.pair, "work_order")
    quoted = ".".join(f'"{part}"' for part in source.split("."))
    assert (f"-- 18. health, after a poll: the newest modified_date in the source (lag = it minus the staged watermark; "
            f"only for a timestamp or date watermark)\n--    system mes ({agent.pair.kind}), template "
            f"sql/{agent.pair.kind}/source_newest.sql\n--    no bind parameters\n"
            f'SELECT MAX("modified_date") AS newest\nFROM {quoted};\n') in result.output

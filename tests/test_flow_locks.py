"""One active agent per flow (agent/locks.py), the parts the fault suite's three-agent test does not cover:

- `run --once` does not run a flow another agent holds: exit 5, with who holds it; it runs once the flow is free;
- `status` says per flow who holds it (host, pid, since), or that it is free;
- SQLite (a file lock next to the ERP database): of two agents one holds the flow and the other is in standby;
  SIGKILL of the holder lets the other take the flow over within 10 s, and staging equals the source afterwards.
(The three agents with four flows on PostgreSQL and MariaDB: tests/faults/test_several_agents.py.)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from agent.config import load_config
from agent.connect import Systems
from agent.exit_codes import ExitCode
from agent.locks import FlowLocks
from helpers import Pair, cli, make_pair, prepare_erp, staging_engine, table_name, write_config


def plant(db_factory, kind: str, folder: Path, name: str, rows: int = 50, **extra) -> tuple[Pair, Path]:
    pair = make_pair(db_factory, kind, suffix=f"_{name}_{kind[:2]}")
    engine = sa.create_engine(pair.mes_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {table_name(pair, 'wo')} (wo_id integer PRIMARY KEY, qty integer NOT NULL, "
                             "updated_at timestamp NOT NULL)")
    engine.dispose()
    insert(pair, range(1, rows + 1))
    flow = {"source": "mes", "target": "erp", "table": table_name(pair, "wo"), "watermark": ["updated_at", "wo_id"],
            "key": ["wo_id"], "staging_table": "stg_wo", "columns": {"order_no": "wo_id", "qty": "qty"},
            "schedule": {"every": "250ms"}}
    config = write_config(folder / "agent.yaml", pair, {"wo": flow}, **extra)
    prepare_erp(config)
    return pair, config


def insert(pair: Pair, keys) -> None:
    engine = sa.create_engine(pair.mes_url)
    at = dt.datetime(2026, 1, 1)
    with engine.begin() as conn:
        for key in keys:
            conn.execute(sa.text(f"INSERT INTO {table_name(pair, 'wo')} VALUES (:k, :q, :at)"),
                         {"k": key, "q": key % 7, "at": at + dt.timedelta(seconds=key)})
    engine.dispose()


def staged_keys(pair: Pair) -> list[int]:
    engine = staging_engine(pair)
    with engine.connect() as conn:
        keys = [int(k) for (k,) in conn.execute(sa.text(f"SELECT stg_source_key FROM {pair.staging_schema}.stg_wo"))]
    engine.dispose()
    return sorted(keys)


def holder_of(config: Path) -> dict | None:
    result = cli("status", "-c", str(config), "--json")
    return json.loads(result.stdout)[0].get("held_by")


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_run_once_leaves_a_flow_another_agent_holds_and_exits_5(kind, db_factory, tmp_path):
    pair, config = plant(db_factory, kind, tmp_path, "once")
    loaded = load_config(config)
    systems = Systems(loaded)
    other = FlowLocks(loaded, systems, share=False)  # another agent, holding the flow
    try:
        assert other.take_all(["wo"]) == ([], {})
        since = f"{other._held['wo']:%Y-%m-%d %H:%M:%S}Z"
        result = cli("run", "-c", str(config), "--once")
        assert result.exit_code == ExitCode.HELD_ELSEWHERE == 5, result.output
        assert result.stderr.splitlines()[-1] == (
            f"flow wo is held by agent on host {socket.gethostname()} (pid {os.getpid()}) since {since}; nothing was "
            "run. That agent moves the flow; this one runs it when the flow is free (that agent stopped or died).")
        assert staged_keys(pair) == []
        status = cli("status", "-c", str(config))
        assert f"flow wo: held by {socket.gethostname()} (pid {os.getpid()}) since {since}\n" in status.stdout
    finally:
        other.close()
        systems.dispose()
    assert cli("status", "-c", str(config)).stdout.count("flow wo: free (no agent holds it)\n") == 1
    result = cli("run", "-c", str(config), "--once")
    assert result.exit_code == 0, result.output
    assert staged_keys(pair) == list(range(1, 51))
    assert holder_of(config) is None  # `run --once` released the flow and removed its row


def start_agent(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    with log.open("ab") as stderr:
        return subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(config)], stdout=subprocess.DEVNULL,
                                stderr=stderr, env=env)


def wait_until(condition, timeout: float, what: str, every: float = 0.1) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"timed out after {timeout:g}s waiting for: {what}"
        time.sleep(every)


def test_sqlite_two_agents_one_holds_the_other_takes_over_after_sigkill(db_factory, tmp_path):
    pair, config = plant(db_factory, "sqlite", tmp_path, "two")
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    first = start_agent(config, logs[0])
    wait_until(lambda: (holder_of(config) or {}).get("pid") == first.pid, 30, "the first agent holds the flow")
    second = start_agent(config, logs[1])
    agents = [first, second]
    try:
        wait_until(lambda: "flow locks: this agent holds no flow" in logs[1].read_text(), 30, "the second in standby")
        wait_until(lambda: staged_keys(pair) == list(range(1, 51)), 30, "the first load")
        time.sleep(1)
        assert "holds it now" not in logs[1].read_text()  # in standby: it never moved the flow
        insert(pair, range(51, 61))
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=30) == -signal.SIGKILL
        killed = time.monotonic()
        wait_until(lambda: "flow wo: this agent" in logs[1].read_text(), 30, "the second agent takes the flow over")
        assert time.monotonic() - killed <= 10.0
        insert(pair, range(61, 71))
        wait_until(lambda: staged_keys(pair) == list(range(1, 71)), 30, "staging equals the source")
        assert (holder_of(config) or {}).get("pid") == second.pid
    finally:
        for process in agents:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                assert process.wait(timeout=60) == 0, logs[1].read_text()[-2000:]
    assert staged_keys(pair) == list(range(1, 71))  # each row once


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_a_lock_session_the_database_ends_puts_its_flows_in_standby_at_the_next_round(kind, db_factory, tmp_path):
    pair, config = plant(db_factory, kind, tmp_path, "lost")
    loaded = load_config(config)
    systems = Systems(loaded)
    changes: list[tuple[str, bool]] = []
    locks = FlowLocks(loaded, systems, on_change=lambda flow, held: changes.append((flow, held)))
    try:
        locks.round()
        assert locks.holds("wo") and changes == [("wo", True)]
        session = holder_of(config)["session_id"]
        kill = "SELECT pg_terminate_backend(:s)" if kind == "postgresql" else "KILL :s"
        admin = sa.create_engine(pair.erp_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(kill), {"s": int(session)})
        admin.dispose()
        locks.round()  # the check fails: the flow is in standby, and the same round connects again and takes it back
        assert changes == [("wo", True), ("wo", False), ("wo", True)] and locks.holds("wo")
        assert holder_of(config)["session_id"] != session
    finally:
        locks.close()
        systems.dispose()
    assert holder_of(config) is None


def test_a_reload_releases_removed_flows_and_takes_added_ones(db_factory, tmp_path):
    pair, config = plant(db_factory, "postgresql", tmp_path, "reload")
    loaded = load_config(config)
    systems = Systems(loaded)
    locks = FlowLocks(loaded, systems)
    try:
        locks.round()
        assert locks.held() == ["wo"]
        document = yaml.safe_load(config.read_text(encoding="utf-8"))
        document["flows"] = {"wo_renamed": document["flows"]["wo"]}
        renamed = tmp_path / "renamed.yaml"
        renamed.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        locks.update(load_config(renamed), systems)
        assert locks.held() == ["wo_renamed"]
        engine = sa.create_engine(pair.erp_url)
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT flow FROM staging.agent_holder ORDER BY flow")).scalars().all()
            free = conn.execute(sa.text("SELECT pg_try_advisory_lock(hashtextextended('mes-erp-agent:staging.wo', 0))"))
            assert free.scalar() is True  # the removed flow's lock was released: anyone may take it
        engine.dispose()
        assert rows == ["*", "wo_renamed"]
    finally:
        locks.close()
        systems.dispose()

"""SIGTERM and SIGINT during a 300,000-row initial load: the agent finishes (or rolls back) the batch in flight,
commits nothing half-written, exits 0 within `stop_timeout`, and the next run completes the load exactly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from helpers import Pair, cli, make_pair, prepare_erp, staging_engine, table_name, write_config

ROWS = 300_000
BATCH = 5_000

GENERATE = {
    "postgresql": [
        "CREATE TABLE {t} (wo_id integer PRIMARY KEY, qty integer NOT NULL, updated_at timestamp(6) NOT NULL)",
        # 50 rows per second of MES time, microseconds everywhere, ties at every batch boundary size
        "INSERT INTO {t} SELECT g, mod(g, 97), timestamp '2026-01-01' + (g / 3) * interval '1 millisecond' "
        "+ mod(g, 3) * interval '1 microsecond' FROM generate_series(1, {rows}) g",
        "CREATE INDEX ix_wo_updated ON {t} (updated_at, wo_id)",
    ],
    "mysql": [
        "CREATE TABLE {t} (wo_id int PRIMARY KEY, qty int NOT NULL, updated_at datetime(6) NOT NULL)",
        "SET SESSION max_recursive_iterations = 1000000",
        "INSERT INTO {t} WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {rows}) "
        "SELECT n, MOD(n, 97), TIMESTAMP('2026-01-01') + INTERVAL (n DIV 3) * 1000 + (n MOD 3) MICROSECOND FROM g",
        "CREATE INDEX ix_wo_updated ON {t} (updated_at, wo_id)",
    ],
}


def flow(pair: Pair, batch_size: int = BATCH) -> dict:
    return {"source": "mes", "target": "erp", "table": table_name(pair, "wo"), "watermark": ["updated_at", "wo_id"],
            "key": ["wo_id"], "staging_table": "stg_wo", "batch_size": batch_size,
            "columns": {"order_no": "wo_id", "qty": "qty"}, "schedule": {"every": "1h"}}


@pytest.fixture(scope="module", params=["postgresql", "mysql"])
def loaded(request, db_factory):
    pair = make_pair(db_factory, request.param, suffix=f"_{request.param}")
    engine = sa.create_engine(pair.mes_url)
    with engine.begin() as conn:
        for statement in GENERATE[pair.kind]:
            conn.exec_driver_sql(statement.format(t=table_name(pair, "wo"), rows=ROWS))
    engine.dispose()
    return pair


def counts(pair: Pair) -> dict[str, int]:
    s = pair.staging_schema
    engine = staging_engine(pair)
    try:
        with engine.connect() as conn:
            return {
                "staged": conn.exec_driver_sql(f"SELECT COUNT(*) FROM {s}.stg_wo").scalar(),
                "ledger": conn.exec_driver_sql(f"SELECT COUNT(*) FROM {s}.agent_ledger WHERE flow = 'wo'").scalar(),
                "run_written": conn.exec_driver_sql(
                    f"SELECT COALESCE(SUM(rows_written), 0) FROM {s}.agent_run WHERE flow = 'wo'").scalar(),
            }
    finally:
        engine.dispose()


def reset_staging(pair: Pair, folder: Path, **extra) -> Path:
    """A fresh staging schema for each scenario (the MES table is shared by the module)."""
    s = pair.staging_schema
    engine = staging_engine(pair)
    with engine.begin() as conn:
        for table in ("stg_wo", "agent_ledger", "agent_run", "agent_watermark", "agent_quarantine"):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {s}.{table}")
    engine.dispose()
    config = write_config(folder / "agent.yaml", pair, {"wo": flow(pair, extra.pop("batch_size", BATCH))}, **extra)
    prepare_erp(config)
    return config


def start(config: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(config)], stdout=subprocess.DEVNULL,
                            stderr=log.open("wb"), env=env)


def wait_for_rows(pair: Pair, process: subprocess.Popen, rows: int, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while counts(pair)["staged"] < rows:
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"fewer than {rows} rows staged in {timeout}s"
        time.sleep(0.05)


def assert_consistent(pair: Pair) -> dict[str, int]:
    """Every committed batch is whole: staging, ledger and agent_run agree, in whole batches."""
    found = counts(pair)
    assert found["staged"] == found["ledger"] == found["run_written"], found
    return found


def assert_complete(pair: Pair) -> None:
    engine, staging = sa.create_engine(pair.mes_url), staging_engine(pair)
    try:
        with engine.connect() as conn:
            source = {(str(i), f"{at.isoformat(timespec='microseconds')}|{i}") for i, at in conn.exec_driver_sql(
                f"SELECT wo_id, updated_at FROM {table_name(pair, 'wo')}")}
        with staging.connect() as conn:
            staged = list(conn.exec_driver_sql(f"SELECT stg_source_key, stg_source_version FROM {pair.staging_schema}.stg_wo"))
    finally:
        engine.dispose()
        staging.dispose()
    assert len(staged) == ROWS and set(staged) == source


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_mid_load_finishes_the_batch_in_flight_and_exits_0(loaded, tmp_path, stop_signal):
    pair = loaded
    config = reset_staging(pair, tmp_path)
    log = tmp_path / "agent.log"
    process = start(config, log)
    wait_for_rows(pair, process, 30_000, log)
    asked = time.monotonic()
    process.send_signal(stop_signal)
    returncode = process.wait(timeout=60)
    elapsed = time.monotonic() - asked
    assert returncode == 0, log.read_text()[-3000:]
    assert elapsed < 30, f"took {elapsed:.1f}s to stop"
    found = assert_consistent(pair)
    assert found["staged"] % BATCH == 0 and 30_000 <= found["staged"] < ROWS, found
    text = log.read_text()
    assert f"stopping ({stop_signal.name}): each flow finishes the batch in flight, then the agent exits" in text
    assert f"mes-erp-agent stopped ({stop_signal.name})" in text

    result = cli("run", "-c", str(config), "--once")  # the next run completes it exactly
    assert result.exit_code == 0, result.output
    assert_consistent(pair)
    assert_complete(pair)


def test_a_batch_too_large_to_finish_in_time_is_rolled_back_and_the_agent_still_exits_0(loaded, tmp_path):
    pair = loaded
    config = reset_staging(pair, tmp_path, batch_size=ROWS, stop_timeout="2s")
    log = tmp_path / "agent.log"
    process = start(config, log)
    wait_for_writing(pair, process, log)  # its one batch of 300,000 rows is being loaded into the ERP
    asked = time.monotonic()
    process.send_signal(signal.SIGTERM)
    returncode = process.wait(timeout=60)
    elapsed = time.monotonic() - asked
    assert returncode == 0, log.read_text()[-3000:]
    assert elapsed < 2 + 2, f"took {elapsed:.1f}s to stop with stop_timeout 2s"
    assert "still writing after" in log.read_text()
    assert assert_consistent(pair) == {"staged": 0, "ledger": 0, "run_written": 0}  # nothing half-written
    assert cli("run", "-c", str(config), "--once").exit_code == 0
    assert_complete(pair)


# The agent's session on the ERP loading a batch: its bulk load into the batch table or the ledger + staging insert.
WRITING = {
    "postgresql": "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' "
                  "AND pid <> pg_backend_pid() AND (query LIKE :copy OR query LIKE :insert)",
    "mysql": "SELECT count(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE() AND ID <> CONNECTION_ID() "
             "AND (INFO LIKE :load OR INFO LIKE :insert)",
}


def wait_for_writing(pair: Pair, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    """Until the agent is writing a batch on the ERP (a stop asked while it reads ends the run before any write)."""
    engine, deadline = staging_engine(pair), time.monotonic() + timeout
    patterns = {"copy": "COPY %", "load": "LOAD DATA%", "insert": "%INSERT INTO%agent_ledger%"}
    try:
        with engine.connect() as conn:
            query = sa.text(WRITING[pair.kind])
            params = {k: v for k, v in patterns.items() if f":{k}" in WRITING[pair.kind]}
            while not conn.execute(query, params).scalar():
                conn.rollback()
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.02)
    finally:
        engine.dispose()


def test_run_once_stopped_by_sigterm_ends_after_a_committed_batch_with_130(loaded, tmp_path):
    pair = loaded
    config = reset_staging(pair, tmp_path)
    log = tmp_path / "once.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(config), "--once"],
                               stdout=subprocess.DEVNULL, stderr=log.open("wb"), env=env)
    wait_for_rows(pair, process, 20_000, log)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 130, log.read_text()[-3000:]
    found = assert_consistent(pair)
    assert found["staged"] % BATCH == 0 and found["staged"] < ROWS, found
    assert "stopped by SIGTERM after the last committed batch; the next run goes on from there" in log.read_text()
    assert cli("run", "-c", str(config), "--once").exit_code == 0
    assert_complete(pair)

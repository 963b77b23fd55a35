"""Kill -9 in the middle of an initial load, several times: nothing lost, nothing written twice.

The agent runs as a real process (`python -m agent run --once`); the test waits until it has committed
some batches, kills it with SIGKILL mid-load, restarts it, and at the end compares staging with the source.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from agent.demo import adventureworks
from helpers import make_pair, prepare_erp, scalar, staging_rows, work_order_flow, write_config

WORK_ORDERS = 72_591
KILL_AFTER_ROWS = (3_000, 15_000, 30_000, 50_000)


def staged_count(pair) -> int:
    return scalar(pair.erp_url, f"SELECT COUNT(*) FROM {pair.staging_schema}.stg_work_order", pair)


def start_agent(config) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "-c", str(config), "--once"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def kill_when_staged(process: subprocess.Popen, pair, rows: int, timeout: float = 120) -> int:
    """SIGKILL the agent as soon as at least `rows` are staged; returns the count seen just before."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        count = staged_count(pair)
        if count >= rows:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
            return count
        if process.poll() is not None:
            pytest.fail(f"agent finished before {rows} rows were staged: {process.stderr.read().decode()[-2000:]}")
        time.sleep(0.02)
    process.kill()
    pytest.fail(f"agent did not stage {rows} rows within {timeout}s")


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_sigkill_during_initial_load_loses_and_duplicates_nothing(kind, db_factory, tmp_path):
    pair = make_pair(db_factory, kind, suffix=f"_{kind}")
    mes = sa.create_engine(pair.mes_url)
    adventureworks.create_and_load(mes, ["work_order"], schema=pair.mes_schema)
    table = adventureworks.define_table(sa.MetaData(), "work_order", pair.mes_schema)
    with mes.connect() as conn:
        source_versions = {
            (str(r.work_order_id), f"{r.modified_date.isoformat(timespec='microseconds')}|{r.work_order_id}")
            for r in conn.execute(sa.select(table.c.work_order_id, table.c.modified_date))
        }
    mes.dispose()
    config = write_config(tmp_path / "agent.yaml", pair, {"work_order_confirmations": work_order_flow(pair, batch_size=500)})
    prepare_erp(config)

    seen = []
    for rows in KILL_AFTER_ROWS:
        process = start_agent(config)
        seen.append(kill_when_staged(process, pair, rows))
        assert process.returncode == -signal.SIGKILL
    assert seen == sorted(seen) and seen[-1] < WORK_ORDERS, f"kills were not mid-load: {seen}"

    final = start_agent(config)
    _, stderr = final.communicate(timeout=300)
    assert final.returncode == 0, stderr.decode()[-2000:]

    engine_rows = _staged_versions(pair)
    assert len(engine_rows) == WORK_ORDERS, "a row was lost or written twice"
    assert set(engine_rows) == source_versions
    written = scalar(pair.erp_url, f"SELECT SUM(rows_written) FROM {pair.staging_schema}.agent_run", pair)
    assert int(written) == WORK_ORDERS


def _staged_versions(pair) -> list[tuple[str, str]]:
    return [tuple(r) for r in staging_rows(pair, columns="stg_source_key, stg_source_version")]

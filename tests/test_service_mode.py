"""The long-running mode: each flow polls on its own cadence until SIGTERM, then exits 0."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time

import sqlalchemy as sa

from agent.demo import adventureworks
from helpers import make_pair, prepare_erp, scalar, work_order_flow, write_config


def wait_for(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_service_picks_up_new_rows_on_its_schedule_and_stops_on_sigterm(db_factory, tmp_path):
    pair = make_pair(db_factory, "postgresql")
    mes = sa.create_engine(pair.mes_url)
    adventureworks.create_and_load(mes, ["work_order"], schema=pair.mes_schema, limit=100)
    flow = work_order_flow(pair, schedule={"every": "500ms"})
    config = write_config(tmp_path / "agent.yaml", pair, {"work_order_confirmations": flow})
    prepare_erp(config)

    def count() -> int:
        return scalar(pair.erp_url, f"SELECT COUNT(*) FROM {pair.staging_schema}.stg_work_order")

    service = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert wait_for(lambda: count() == 100), "initial rows did not arrive"
        table = adventureworks.define_table(sa.MetaData(), "work_order", pair.mes_schema)
        with mes.begin() as conn:
            conn.execute(table.update().where(table.c.work_order_id <= 5)
                         .values(modified_date=dt.datetime(2026, 11, 25, 8, 0)))
        assert wait_for(lambda: count() == 105), "the change was not picked up by the next poll"
    finally:
        service.send_signal(signal.SIGTERM)
        _, stderr = service.communicate(timeout=30)
        mes.dispose()
    assert service.returncode == 0, stderr.decode()[-2000:]
    assert "mes-erp-agent running 1 flows" in stderr.decode()

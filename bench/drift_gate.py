"""What the drift gate costs on PostgreSQL: a poll that finds nothing, gate included.

Sets up an MES and an ERP database on a PostgreSQL server (created here and dropped at the end), with
FLOWS flows that each read their own copy of the AdventureWorks work order table, so the gate watches
2 * FLOWS + 3 tables (source tables, staging tables and the three control tables). After the initial load
it times, many times over:
  - the gate alone for one flow: one catalog query on the MES and one on the ERP, compared with the snapshots;
  - a whole no-change poll of one flow (`pipeline.run_flow`): gate, watermark read, keyset read of nothing.
It prints the median and 95th percentile of wall time and of the agent's own CPU time (the process's time,
without the time spent waiting for the server). Target (issue 4): a no-change poll under 5 ms of agent time.
One flow polling alone while the others do not ask also waits the gate's coalescing window (agent/drift/shared.py:
QUIET, 10 ms, for the other flows of its tick): its wall time includes that wait, its CPU time does not.

    python bench/drift_gate.py [--flows 8] [--polls 500]     # server: $MEA_BENCH_PG_URL or postgres@127.0.0.1
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from agent import pipeline
from agent.cli import main as cli_main
from agent.config import load_config
from agent.connect import Systems
from agent.demo import adventureworks
from agent.drift.gate import DriftGate

ADMIN_URL = os.environ.get("MEA_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=8, help="flows, each with its own source and staging table")
    parser.add_argument("--polls", type=int, default=500, help="timed repetitions")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the bench prints its own figures
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    names = [f"mea_bench_{secrets.token_hex(3)}_{role}" for role in ("mes", "erp")]
    try:
        with admin.connect() as conn:
            for name in names:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        with tempfile.TemporaryDirectory() as folder:
            return bench(Path(folder), [sa.make_url(ADMIN_URL).set(database=n) for n in names], args.flows, args.polls)
    finally:
        with admin.connect() as conn:
            for name in names:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def bench(folder: Path, urls: list[sa.URL], flows: int, polls: int) -> int:
    mes_url, erp_url = (u.render_as_string(hide_password=False) for u in urls)
    mes = sa.create_engine(mes_url)
    with mes.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA production")
    adventureworks.create_and_load(mes, ["work_order"], schema="production", limit=1000)
    tables = ["production.work_order"] + [f"production.work_order_{i}" for i in range(2, flows + 1)]
    with mes.begin() as conn:
        for table in tables[1:]:
            conn.exec_driver_sql(f"CREATE TABLE {table} (LIKE production.work_order INCLUDING ALL)")
            conn.exec_driver_sql(f"INSERT INTO {table} SELECT * FROM production.work_order")
    mes.dispose()
    config_path = folder / "agent.yaml"
    config_path.write_text(yaml.safe_dump({
        "systems": {"mes": {"url": mes_url}, "erp": {"url": erp_url, "staging_schema": "staging"}},
        "flows": {
            f"flow_{i}": {
                "source": "mes", "target": "erp", "table": table, "watermark": ["modified_date", "work_order_id"],
                "key": ["work_order_id"], "staging_table": f"stg_work_order_{i}",
                "columns": {"order_no": "work_order_id", "qty": "order_qty", "due": "due_date", "changed": "modified_date"},
            }
            for i, table in enumerate(tables, start=1)
        },
    }))
    for args in (["sql", "ddl", "-c", str(config_path), "--system", "erp", "--apply"], ["snapshot", "-c", str(config_path)],
                 ["run", "-c", str(config_path), "--once"]):
        result = CliRunner().invoke(cli_main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    config = load_config(config_path)
    systems = Systems(config)
    gate = DriftGate(config, systems)
    try:
        context = pipeline.prepare(config, systems, "flow_1")
        watched = sum(len(tables) for tables in gate.uses.values())
        print(f"PostgreSQL, {flows} flows, {watched} watched tables ({len(gate.uses['mes'])} on the MES, "
              f"{len(gate.uses['erp'])} on the ERP), {polls} polls each")
        report("gate alone (2 catalog queries)", polls, lambda: _expect(gate("flow_1") is None))
        report("no-change poll, gate included", polls, lambda: _expect(pipeline.run_flow(context, gate).rows_read == 0))
        report("no-change poll without the gate", polls, lambda: _expect(pipeline.run_flow(context).rows_read == 0))
    finally:
        gate.close()
        systems.dispose()
    return 0


def _expect(ok: bool) -> None:
    if not ok:
        raise SystemExit("unexpected: the poll found drift or rows")


def report(label: str, polls: int, poll: Callable[[], None]) -> None:
    for _ in range(20):  # warm up: connection pools, statement caches
        poll()
    wall, cpu = [], []
    for _ in range(polls):
        w, c = time.perf_counter(), time.process_time()
        poll()
        cpu.append((time.process_time() - c) * 1000)
        wall.append((time.perf_counter() - w) * 1000)
    print(f"  {label:34s} wall median {statistics.median(wall):6.2f} ms, p95 {_p95(wall):6.2f} ms | "
          f"agent CPU median {statistics.median(cpu):6.2f} ms, p95 {_p95(cpu):6.2f} ms")


def _p95(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.95) - 1]


if __name__ == "__main__":
    sys.exit(main())

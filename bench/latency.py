"""Long-running mode: how long a committed MES row takes to reach staging, and what the agent costs meanwhile.

    python bench/latency.py [--flows 20] [--every 1] [--seconds 30]     # target: p99 <= every + 250 ms
    python bench/latency.py --flows 100 --every 5 --seconds 60          # target: keeps cadence on <= 1 core

Starts `mes-erp-agent run` (the service's long-running mode) on FLOWS flows polling every EVERY seconds, each on its
own MES table, then commits one work order at a time into a random table, spread evenly over SECONDS. A row's
latency is from its commit (this process's clock, after COMMIT returned) to the end of the agent batch that staged
it (agent_run.finished_at, recorded just before that batch commits, same machine clock). The agent's CPU is read
from /proc for the measuring window.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

import common


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=20)
    parser.add_argument("--every", type=float, default=1.0, help="each flow's poll interval, seconds")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long rows are written")
    args = parser.parse_args()
    scratch = common.Scratch()
    try:
        with tempfile.TemporaryDirectory() as folder:
            return bench(Path(folder), scratch, args)
    finally:
        scratch.drop_all()


def bench(folder: Path, scratch: common.Scratch, args: argparse.Namespace) -> int:
    mes_url = common.url_of(common.PG_ADMIN, scratch.database(common.PG_ADMIN, "mes"))
    erp_url = common.url_of(common.PG_ADMIN, scratch.database(common.PG_ADMIN, "erp"))
    common.load_work_orders(mes_url, "production", 1000)
    tables = [f"wo_{i}" for i in range(1, args.flows + 1)]
    mes = sa.create_engine(mes_url)
    with mes.begin() as conn:
        for table in tables:
            conn.exec_driver_sql(f"CREATE TABLE production.{table} (LIKE production.work_order INCLUDING ALL)")
            conn.exec_driver_sql(f"INSERT INTO production.{table} SELECT * FROM production.work_order LIMIT 10")
    every = f"{int(args.every * 1000)}ms" if args.every < 1 else f"{int(args.every)}s"
    flows = {f"flow_{t}": {**common.work_order_flow(f"production.{t}", f"stg_{t}"), "schedule": {"every": every}}
             for t in tables}
    config = common.agent_config(folder, {"mes": {"url": mes_url}, "erp": {"url": erp_url, "staging_schema": "staging"}},
                                 flows)
    common.prepare_erp(config)
    log = (folder / "agent.log").open("w")  # a file, not a pipe: nobody reads a pipe while the agent runs
    agent = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(config)], stdout=log, stderr=log)
    try:
        time.sleep(args.every * 2 + 3)  # start-up and the initial loads
        cpu_before, wall_before = _cpu_seconds(agent.pid), time.monotonic()
        committed = write_rows(mes, tables, args.seconds, args.flows)
        time.sleep(args.every + 1)  # the last rows' polls
        cpu = (_cpu_seconds(agent.pid) - cpu_before) / (time.monotonic() - wall_before)
        if agent.poll() is not None:
            raise SystemExit(f"the agent stopped:\n{(folder / 'agent.log').read_text()[-3000:]}")
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=60)
        log.close()
    mes.dispose()
    latencies = staged_latencies(erp_url, tables, committed)
    missing = len(committed) - len(latencies)
    print(f"{args.flows} flows every {args.every:g} s, {len(committed)} rows committed over {args.seconds:g} s, "
          f"{missing} not staged")
    print(f"  latency commit -> staged: median {common.median(latencies) * 1000:.0f} ms, p99 {common.p99(latencies) * 1000:.0f} ms"
          f" (target p99 <= {args.every * 1000 + 250:.0f} ms: {'holds' if common.p99(latencies) <= args.every + 0.25 else 'misses'})")
    print(f"  agent CPU: {cpu:.2f} cores (target <= 1 core)")
    return 0 if missing == 0 else 1


def write_rows(mes: sa.Engine, tables: list[str], seconds: float, flows: int) -> dict[tuple[str, int], float]:
    """One row at a time into a random table, about one per flow per second; commit times by key."""
    committed: dict[tuple[str, int], float] = {}
    pause = seconds / max(1, int(seconds * flows))
    next_id = 10_000_000
    end = time.monotonic() + seconds
    with mes.connect() as conn:
        while time.monotonic() < end:
            table = random.choice(tables)
            next_id += 1
            conn.execute(sa.text(
                f"INSERT INTO production.{table} SELECT :id, product_id, order_qty, stocked_qty, scrapped_qty, start_date, "
                f"end_date, due_date, scrap_reason_id, localtimestamp FROM production.work_order LIMIT 1"), {"id": next_id})
            conn.commit()
            committed[(table, next_id)] = time.time()
            time.sleep(pause)
    return committed


def staged_latencies(erp_url: str, tables: list[str], committed: dict[tuple[str, int], float]) -> list[float]:
    engine = sa.create_engine(erp_url)
    found = []
    with engine.connect() as conn:
        for table in tables:
            rows = conn.execute(sa.text(
                f"SELECT s.order_no, r.finished_at FROM staging.stg_{table} s JOIN staging.agent_run r "
                f"ON r.batch_id = s.stg_batch_id WHERE s.order_no > 10000000")).all()
            for order_no, finished in rows:
                at = committed.get((table, order_no))
                if at is not None:
                    found.append(finished.astimezone(dt.timezone.utc).timestamp() - at)
    engine.dispose()
    return found


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    sys.exit(main())

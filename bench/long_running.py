"""The long-running agent under many flows: end-to-end latency and cadence, on PostgreSQL.

    python bench/long_running.py [--seconds 60] [--scenario latency|cadence|both]

Creates an MES and an ERP database on the local PostgreSQL ($MEA_BENCH_PG, default postgres@127.0.0.1; both
dropped at the end), one small synthetic work-order table per flow (an index on the watermark), the staging
tables and snapshots, then starts `mes-erp-agent run` as a separate process, as a service runs it.

- latency (issue 12: 20 flows at 1 s, a committed MES row in staging within interval + 250 ms at p99): a writer
  commits one new row into a random flow's table every 50 ms and notes the time the commit returned; afterwards
  each row's latency is its staging row's `stg_loaded_at` (the ERP's clock at the start of the agent's write
  transaction, which commits a few ms later: same machine, same clock) minus that commit time.
- cadence (100 flows at 5 s on one agent keep their cadence, none late by more than one interval, using at most
  one core): a writer commits a row into a random flow every 200 ms; /healthz is sampled every 250 ms, and each
  flow's gaps between polls (`last_poll_at`) give how late a poll started; the agent process's CPU time (user +
  system, from /proc) over the measured span gives the cores it used.

Prints the figures with their targets; exit 0 either way (these are measurements, not tests).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import logging
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
import yaml

import common

ADMIN_URL = common.PG_ADMIN
ROWS_PER_TABLE = 2_000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Scenario:
    name: str
    flows: int
    every: float  # seconds
    write_every: float  # seconds between two MES commits (one row each, a random flow)
    target: str


SCENARIOS = {
    "latency": Scenario("latency", 20, 1.0, 0.05, "p99 ≤ interval + 250 ms = 1.25 s"),
    "cadence": Scenario("cadence", 100, 5.0, 0.2, "no poll late by more than one interval (5 s); ≤ 1 core"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60, help="measured span per scenario")
    parser.add_argument("--scenario", choices=[*SCENARIOS, "both"], default="both")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    chosen = list(SCENARIOS.values()) if args.scenario == "both" else [SCENARIOS[args.scenario]]
    for scenario in chosen:
        scratch = common.Scratch()
        try:
            mes_url, erp_url = (common.url_of(ADMIN_URL, scratch.database(ADMIN_URL, role)) for role in ("mes", "erp"))
            with tempfile.TemporaryDirectory() as folder:
                run_scenario(scenario, Path(folder), mes_url, erp_url, args.seconds)
        finally:
            scratch.drop_all()
    return 0


def run_scenario(scenario: Scenario, folder: Path, mes_url: str, erp_url: str, seconds: float) -> None:
    print(f"\n{scenario.name}: {scenario.flows} flows every {scenario.every:g} s, one MES commit every "
          f"{scenario.write_every * 1000:.0f} ms, {seconds:g} s measured")
    mes = sa.create_engine(mes_url)
    create_tables(mes, scenario.flows)
    port = free_port()
    config = write_config(folder, mes_url, erp_url, scenario, port)
    common.prepare_erp(config)
    common.cli("run", "-c", str(config), "--once")
    log = (folder / "agent.log").open("wb")
    agent = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(config)], stdout=subprocess.DEVNULL,
                             stderr=log, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        wait_healthy(port, agent)
        time.sleep(2 * scenario.every)  # every flow has polled once: the first polls prepare nothing more
        writer = Writer(mes, scenario, seconds)
        sampler = Sampler(port)
        cpu_before, started = cpu_seconds(agent.pid), time.monotonic()
        writer.start()
        sampler.start()
        writer.join()
        cpu_used = cpu_seconds(agent.pid) - cpu_before
        span = time.monotonic() - started
        time.sleep(scenario.every + 1)  # the last rows' polls
        sampler.stop()
    finally:
        agent.terminate()
        agent.wait(60)
        log.close()
        mes.dispose()
    erp = sa.create_engine(erp_url)
    latencies = staged_latencies(erp, writer.commits)
    erp.dispose()
    print_figures(scenario, latencies, len(writer.commits), sampler.gaps(), cpu_used / span)


def create_tables(mes: sa.Engine, flows: int) -> None:
    with mes.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA mes")
        for i in range(1, flows + 1):
            conn.exec_driver_sql(f"CREATE TABLE mes.wo_{i} (wo_id bigint PRIMARY KEY, qty integer NOT NULL, "
                                 "updated_at timestamp(6) with time zone NOT NULL)")
            conn.exec_driver_sql(f"CREATE INDEX wo_{i}_watermark ON mes.wo_{i} (updated_at, wo_id)")
            conn.exec_driver_sql(f"INSERT INTO mes.wo_{i} SELECT g, mod(g, 97), now() - interval '1 day' + g * interval '1 ms' "
                                 f"FROM generate_series(1, {ROWS_PER_TABLE}) g")
            conn.exec_driver_sql(f"ANALYZE mes.wo_{i}")


def write_config(folder: Path, mes_url: str, erp_url: str, scenario: Scenario, port: int) -> Path:
    flows = {
        f"flow_{i}": {
            "source": "mes", "target": "erp", "table": f"mes.wo_{i}", "watermark": ["updated_at", "wo_id"],
            "key": ["wo_id"], "staging_table": f"stg_wo_{i}", "schedule": {"every": f"{scenario.every:g}s"},
            "columns": {"order_no": "wo_id", "qty": "qty", "changed_at": "updated_at"},
        }
        for i in range(1, scenario.flows + 1)
    }
    config = folder / "agent.yaml"
    config.write_text(yaml.safe_dump({
        "systems": {"mes": {"url": mes_url}, "erp": {"url": erp_url, "staging_schema": "staging"}},
        "http": {"bind": f"127.0.0.1:{port}"}, "flows": flows,
    }, sort_keys=False), encoding="utf-8")
    return config


class Writer(threading.Thread):
    """Commits one new row at a time into a random flow's table; remembers (flow, key) -> commit time (epoch s)."""

    def __init__(self, mes: sa.Engine, scenario: Scenario, seconds: float):
        super().__init__(daemon=True)
        self.mes, self.scenario, self.seconds = mes, scenario, seconds
        self.commits: dict[tuple[int, int], float] = {}

    def run(self) -> None:
        chance, key, end = random.Random(12), ROWS_PER_TABLE, time.monotonic() + self.seconds
        with self.mes.connect() as conn:
            while time.monotonic() < end:
                flow, key = chance.randint(1, self.scenario.flows), key + 1
                conn.execute(sa.text(f"INSERT INTO mes.wo_{flow} VALUES (:k, 1, clock_timestamp())"), {"k": key})
                conn.commit()
                self.commits[(flow, key)] = time.time()
                time.sleep(self.scenario.write_every)


class Sampler(threading.Thread):
    """Reads /healthz every 250 ms: each flow's distinct `last_poll_at` values."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/healthz"
        self.polls: dict[str, set[str]] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.25):
            for flow in healthz(self.url)["flows"]:
                if flow["last_poll_at"]:
                    self.polls.setdefault(flow["flow"], set()).add(flow["last_poll_at"])

    def stop(self) -> None:
        self.done.set()
        self.join()

    def gaps(self) -> list[float]:
        """Seconds between two consecutive polls of a flow, over every flow."""
        found = []
        for stamps in self.polls.values():
            times = sorted(dt.datetime.fromisoformat(s.replace("Z", "+00:00")) for s in stamps)
            found += [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
        return found


def staged_latencies(erp: sa.Engine, commits: dict[tuple[int, int], float]) -> list[float]:
    flows = sorted({flow for flow, _ in commits})
    loaded: dict[tuple[int, int], float] = {}
    with erp.connect() as conn:
        for flow in flows:
            for key, at in conn.execute(sa.text(f"SELECT stg_source_key, stg_loaded_at FROM staging.stg_wo_{flow}")):
                loaded[(flow, int(key))] = at.timestamp()
    missing = [fk for fk in commits if fk not in loaded]
    if missing:
        print(f"  NOT STAGED: {len(missing)} of {len(commits)} committed rows, e.g. {missing[:3]}")
    return sorted(loaded[fk] - at for fk, at in commits.items() if fk in loaded)


def print_figures(scenario: Scenario, latencies: list[float], committed: int, gaps: list[float], cores: float) -> None:
    if latencies:
        print(f"  latency commit -> staging over {len(latencies)} of {committed} rows: median "
              f"{statistics.median(latencies) * 1000:.0f} ms, p95 {_p95(latencies) * 1000:.0f} ms, p99 "
              f"{common.p99(latencies) * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms")
    if gaps:
        late = max(gaps) - scenario.every
        print(f"  cadence over {len(gaps)} poll gaps: median {statistics.median(gaps):.2f} s, p99 {common.p99(gaps):.2f} s, "
              f"max {max(gaps):.2f} s (the latest poll started {max(late, 0):.2f} s late; polls more than one interval "
              f"late: {sum(1 for g in gaps if g > 2 * scenario.every)}; /healthz gives whole seconds: ±1 s)")
    print(f"  agent process CPU: {cores:.2f} cores")
    print(f"  target: {scenario.target}")


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14 and 15 of stat)


def healthz(url: str) -> dict:  # type: ignore[type-arg]
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return json.loads(answer.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as error:  # 503 while a flow is not ok: the body is the same JSON
        return json.loads(error.read())  # type: ignore[no-any-return]


def wait_healthy(port: int, agent: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if agent.poll() is not None:
            raise SystemExit(f"the agent exited with {agent.returncode} before it served /healthz")
        try:
            healthz(f"http://127.0.0.1:{port}/healthz")
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the agent did not serve /healthz within 120 s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main())

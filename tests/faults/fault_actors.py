"""What acts on a plant while the agent runs, for the fault-injection suite: the agent as a real process, MES writer
threads that remember every version they committed, an observer that checks every snapshot of the ERP holds whole
batches only, and bulk generation of an MES history.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from fault_support import Plant, Version, consistent_counts, engine_for, utc_now, version
from helpers import staging_engine


# --- the agent as a process ---------------------------------------------------------------------------
def start_agent(config: Path, log: Path, once: bool = False) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "agent", "run", "-c", str(config), *(["--once"] if once else [])]
    with log.open("ab") as stderr:  # a file: a pipe nobody reads fills up and blocks the agent
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=env)


def stop_agent(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    return process.wait(timeout=60)


def sigkill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL


def wait_until(condition: Any, timeout: float, what: str, every: float = 0.1) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"timed out after {timeout:g}s waiting for: {what}"
        time.sleep(every)


class Looker(threading.Thread):
    """Calls `look()` every `every` seconds until `finish()`; an error in a look fails the test at `finish()`."""

    every = 0.01

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.looks = 0
        self.error: BaseException | None = None

    def look(self) -> None:
        raise NotImplementedError

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.look()
                self.looks += 1
                time.sleep(self.every)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=30)
        assert self.error is None, repr(self.error)


class Observer(Looker):
    """Looks at the ERP the way its users do, all the time: every snapshot must show whole batches only (staging
    rows, ledger entries and agent_run's rows_written agree, and are a multiple of the batch size during an initial
    load of full batches)."""

    def __init__(self, plant: Plant, batch_size: int):
        super().__init__()
        self.plant, self.batch_size = plant, batch_size
        self.partial: list[tuple[int, int, int]] = []

    def look(self) -> None:
        found = consistent_counts(self.plant)
        if len(set(found)) != 1 or found[0] % self.batch_size:
            self.partial.append(found)

    def finish(self) -> None:
        super().finish()
        assert self.partial == [], f"a partial batch was visible (staged, ledger, rows_written): {self.partial[:5]}"
        assert self.looks > 10, "the observer hardly looked"


GENERATE = {
    "postgresql": "INSERT INTO {t} (wo_id, qty, updated_at) SELECT g, mod(g, 97), timestamp '2026-01-01' "
                  "+ (g / 3) * interval '1 millisecond' + mod(g, 3) * interval '1 microsecond' FROM generate_series(1, {n}) g",
    "mysql": "INSERT INTO {t} (wo_id, qty, updated_at) WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g "
             "WHERE n < {n}) SELECT n, MOD(n, 97), TIMESTAMP('2026-01-01') + INTERVAL (n DIV 3) * 1000 + (n MOD 3) "
             "MICROSECOND FROM g",
}


def generate(plant: Plant, rows: int) -> None:
    """`rows` work orders with microsecond timestamps in the past, ties at every batch size (like a plant's history)."""
    with engine_for(plant.pair.mes_url).begin() as conn:
        if plant.kind == "mysql":
            conn.exec_driver_sql("SET SESSION max_recursive_iterations = 1000000")
        conn.exec_driver_sql(GENERATE[plant.kind].format(t=plant.table, n=rows))


# --- MES writers --------------------------------------------------------------------------------------
@dataclass
class Life:
    """One committed version: when it became the key's latest and when it stopped being (monotonic seconds)."""

    committed: float
    superseded: float | None = None


@dataclass
class Deleted:
    last: Version
    staged_before: bool  # the ledger held the key's last version when the MES deleted the row


class Writer(threading.Thread):
    """An MES client: short transactions at a steady rate, each stamping `updated_at` with its own time (several rows
    of one transaction share it: ties), inserting new keys, updating and deleting existing ones. It owns the keys
    `first + n * step`, so writers never wait on each other's locks. It remembers every version it committed."""

    def __init__(self, plant: Plant, seed: int, seconds: float, first: int = 1, step: int = 1, pause: float = 0.03,
                 updates: float = 0.4, deletes: float = 0.0):
        super().__init__(daemon=True)
        self.plant, self.random, self.seconds, self.pause = plant, random.Random(seed), seconds, pause
        self.first, self.step, self.updates, self.deletes = first, step, updates, deletes
        self.lives: dict[Version, Life] = {}
        self.latest: dict[int, Version] = {}  # live keys
        self.deleted: dict[int, Deleted] = {}
        self.transactions = 0
        self.error: BaseException | None = None
        self._last = dt.datetime.min

    @property
    def committed(self) -> set[Version]:
        return set(self.lives)

    def _stamp(self) -> dt.datetime:
        self._last = max(utc_now(), self._last + dt.timedelta(microseconds=1))
        return self._last

    def run(self) -> None:
        engine, erp = self.plant.mes(), staging_engine(self.plant.pair)
        next_key = self.first
        try:
            deadline = time.monotonic() + self.seconds
            while time.monotonic() < deadline:
                choice = self.random.random()
                if choice < self.deletes and self.latest:
                    self._remove(engine, erp, self.random.choice(sorted(self.latest)))
                elif choice < self.deletes + self.updates and self.latest:
                    keys = self.random.sample(sorted(self.latest), k=min(len(self.latest), self.random.randint(1, 3)))
                    self._write(engine, keys, update=True)
                else:
                    keys = [next_key + n * self.step for n in range(self.random.randint(1, 2))]
                    next_key = keys[-1] + self.step
                    self._write(engine, keys, update=False)
                self.transactions += 1
                time.sleep(self.pause * self.random.uniform(0.5, 1.5))
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            engine.dispose()
            erp.dispose()

    def _write(self, engine: sa.Engine, keys: list[int], update: bool) -> None:
        at = self._stamp()
        with engine.begin() as conn:
            for key in keys:
                qty = self.random.randint(0, 500)
                statement = (f"UPDATE {self.plant.table} SET qty = :q, updated_at = :at WHERE wo_id = :k" if update else
                             f"INSERT INTO {self.plant.table} (wo_id, qty, updated_at) VALUES (:k, :q, :at)")
                conn.execute(sa.text(statement), {"q": qty, "at": at, "k": key})
        now = time.monotonic()
        for key in keys:
            if key in self.latest:
                self.lives[self.latest[key]].superseded = now
            self.latest[key] = version(key, at)
            self.lives[self.latest[key]] = Life(now)

    def _remove(self, engine: sa.Engine, erp: sa.Engine, key: int) -> None:
        last = self.latest[key]
        with erp.connect() as conn:
            staged_before = conn.execute(sa.text(
                f"SELECT 1 FROM {self.plant.control('agent_ledger')} WHERE flow = :f AND source_key = :k "
                "AND source_version = :v"), {"f": self.plant.name, "k": last[0], "v": last[1]}).first() is not None
        with engine.begin() as conn:
            conn.execute(sa.text(f"DELETE FROM {self.plant.table} WHERE wo_id = :k"), {"k": key})
        self.lives[last].superseded = time.monotonic()
        self.deleted[key] = Deleted(last, staged_before)
        del self.latest[key]


@dataclass
class Writers:
    """Several writers on one MES, started and joined together."""

    threads: list[Writer] = field(default_factory=list)

    def start(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def join(self, timeout: float) -> None:
        for thread in self.threads:
            thread.join(timeout=timeout)
            assert not thread.is_alive(), "an MES writer did not finish"
            assert thread.error is None, repr(thread.error)

    def __iter__(self) -> Iterator[Writer]:
        return iter(self.threads)

    @property
    def committed(self) -> set[Version]:
        return set().union(*(w.committed for w in self.threads))

    @property
    def latest(self) -> set[Version]:
        return set().union(*(set(w.latest.values()) for w in self.threads))

    @property
    def lives(self) -> dict[Version, Life]:
        return {kv: life for w in self.threads for kv, life in w.lives.items()}

    @property
    def deleted(self) -> dict[int, Deleted]:
        return {k: d for w in self.threads for k, d in w.deleted.items()}

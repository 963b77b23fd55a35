"""An ERP import job that consumes (deletes) and updates the rows the agent staged: nothing is staged twice,
nothing the job wrote is overwritten, with `overlap` re-reading every poll, and across SIGKILLs mid-batch.

A trigger on the staging table copies every row it receives into a test-owned audit table, so a row staged
a second time after the import job deleted the first is seen even though the staging table no longer holds
both. The agent's own agent_ledger must agree with the audit.
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
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from helpers import Pair, cli, make_pair, prepare_erp, staging_engine, table_name, write_config

COLUMNS = {"order_no": "wo_id", "qty": "qty"}
STAGING = "stg_wo"


def create_mes_table(pair: Pair) -> sa.Table:
    """A work-order table with a microsecond last-modified timestamp and the keyset index."""
    table = sa.Table("wo", sa.MetaData(), sa.Column("wo_id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("qty", sa.Integer, nullable=False),
                     sa.Column("updated_at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql"),
                               nullable=False),
                     sa.Index("ix_wo_updated", "updated_at", "wo_id"), schema=pair.mes_schema)
    engine = sa.create_engine(pair.mes_url)
    table.metadata.create_all(engine)
    engine.dispose()
    return table


def flow(pair: Pair, **overrides) -> dict:
    return {"source": "mes", "target": "erp", "table": table_name(pair, "wo"), "watermark": ["updated_at", "wo_id"],
            "key": ["wo_id"], "staging_table": STAGING, "columns": COLUMNS, "overlap": "5m", **overrides}


def add_audit_trigger(pair: Pair) -> None:
    """Every row inserted into the staging table is copied into stg_audit (which nothing deletes)."""
    s = pair.staging_schema
    statements = {
        "postgresql": [
            f"CREATE TABLE {s}.stg_audit (source_key varchar(256), source_version varchar(128))",
            f"CREATE FUNCTION {s}.audit_stg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"INSERT INTO {s}.stg_audit VALUES (NEW.stg_source_key, NEW.stg_source_version); RETURN NEW; END $$",
            f"CREATE TRIGGER audit_stg AFTER INSERT ON {s}.{STAGING} FOR EACH ROW EXECUTE FUNCTION {s}.audit_stg()",
        ],
        "mysql": [
            f"CREATE TABLE {s}.stg_audit (source_key varchar(256), source_version varchar(128))",
            f"CREATE TRIGGER {s}.audit_stg AFTER INSERT ON {s}.{STAGING} FOR EACH ROW "
            f"INSERT INTO {s}.stg_audit VALUES (NEW.stg_source_key, NEW.stg_source_version)",
        ],
        "sqlite": [
            f"CREATE TABLE {s}.stg_audit (source_key varchar(256), source_version varchar(128))",
            f"CREATE TRIGGER {s}.audit_stg AFTER INSERT ON {STAGING} BEGIN "
            f"INSERT INTO stg_audit VALUES (NEW.stg_source_key, NEW.stg_source_version); END",
        ],
    }[pair.kind]
    engine = staging_engine(pair)
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
    engine.dispose()


def query(pair: Pair, sql: str, **params) -> list[tuple]:
    engine = staging_engine(pair)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params)]
    finally:
        engine.dispose()


def audited(pair: Pair) -> Counter:
    return Counter(query(pair, f"SELECT source_key, source_version FROM {pair.staging_schema}.stg_audit"))


def ledger(pair: Pair) -> set[tuple]:
    return set(query(pair, f"SELECT source_key, source_version FROM {pair.staging_schema}.agent_ledger WHERE flow = 'wo'"))


def version(wo_id: int, at: dt.datetime) -> tuple[str, str]:
    return str(wo_id), f"{at.isoformat(timespec='microseconds')}|{wo_id}"


def write_mes(pair: Pair, table: sa.Table, rows: list[dict]) -> None:
    engine = sa.create_engine(pair.mes_url)
    with engine.begin() as conn:
        for row in rows:
            if conn.execute(sa.select(table.c.wo_id).where(table.c.wo_id == row["wo_id"])).first():
                conn.execute(table.update().where(table.c.wo_id == row["wo_id"]).values(**row))
            else:
                conn.execute(table.insert().values(**row))
    engine.dispose()


def recent(seconds_ago: float) -> dt.datetime:
    """A microsecond timestamp inside the overlap window (UTC, as the databases' sessions compare it)."""
    return (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=seconds_ago)).replace(tzinfo=None)


@pytest.fixture(params=["postgresql", "mysql", "sqlite"])
def plant(request, db_factory, tmp_path):
    kind = request.param
    pair = make_pair(db_factory, kind, suffix=f"_{kind}_{request.node.name[5:12]}")
    table = create_mes_table(pair)
    return pair, table, tmp_path


def run_once(config: Path) -> str:
    result = cli("run", "-c", str(config), "--once")
    assert result.exit_code == 0, result.output
    return result.output


# --- the issue's own steps ---------------------------------------------------------------------------
def test_a_row_the_import_job_consumed_is_not_staged_again_by_the_overlap_reread(plant):
    pair, table, folder = plant
    config = write_config(folder / "agent.yaml", pair, {"wo": flow(pair)})
    at = recent(60).replace(microsecond=123456)
    write_mes(pair, table, [{"wo_id": 1, "qty": 5, "updated_at": at}])
    prepare_erp(config)
    add_audit_trigger(pair)
    run_once(config)
    assert query(pair, f"SELECT stg_source_key, stg_source_version FROM {pair.staging_schema}.{STAGING}") == [version(1, at)]

    query_delete = f"DELETE FROM {pair.staging_schema}.{STAGING}"  # the import job took the row
    engine = staging_engine(pair)
    with engine.begin() as conn:
        conn.exec_driver_sql(query_delete)
    engine.dispose()

    run_once(config)  # overlap: 5m re-reads the row
    assert query(pair, f"SELECT COUNT(*) FROM {pair.staging_schema}.{STAGING}") == [(0,)]
    assert audited(pair) == Counter({version(1, at): 1})
    assert ledger(pair) == {version(1, at)}
    last = query(pair, f"SELECT rows_read, rows_written, rows_duplicate FROM {pair.staging_schema}.agent_run "
                       "WHERE flow = 'wo' ORDER BY run_id DESC")[0]
    assert last == (1, 0, 1)  # read again, recognised by the ledger as already staged

    later = at + dt.timedelta(seconds=1, microseconds=1)
    write_mes(pair, table, [{"wo_id": 1, "qty": 7, "updated_at": later}])  # a new version is a new change
    run_once(config)
    run_once(config)
    assert audited(pair) == Counter({version(1, at): 1, version(1, later): 1})
    assert query(pair, f"SELECT stg_source_version, qty FROM {pair.staging_schema}.{STAGING}") == [(version(1, later)[1], 7)]


def test_nothing_the_import_job_wrote_is_overwritten_by_a_reread(plant):
    pair, table, folder = plant
    config = write_config(folder / "agent.yaml", pair, {"wo": flow(pair, batch_size=2)})
    base = recent(90)
    # Two rows share a timestamp across the batch boundary (batch_size 2), microseconds everywhere.
    rows = [{"wo_id": i, "qty": i * 10, "updated_at": base + dt.timedelta(microseconds=[1, 2, 2, 7][i - 1])} for i in (1, 2, 3, 4)]
    write_mes(pair, table, rows)
    prepare_erp(config)
    add_audit_trigger(pair)
    run_once(config)
    s = pair.staging_schema
    engine = staging_engine(pair)
    with engine.begin() as conn:  # the import job: applied, rejected, consumed, and one left pending
        conn.exec_driver_sql(f"UPDATE {s}.{STAGING} SET stg_status = 'DONE' WHERE order_no = 1")
        conn.exec_driver_sql(f"UPDATE {s}.{STAGING} SET stg_status = 'ERROR', stg_error = 'item 2 is blocked' WHERE order_no = 2")
        conn.exec_driver_sql(f"DELETE FROM {s}.{STAGING} WHERE order_no = 3")
    engine.dispose()
    columns = "order_no, qty, stg_source_key, stg_source_version, stg_status, stg_error, stg_batch_id, stg_loaded_at"
    before = query(pair, f"SELECT {columns} FROM {s}.{STAGING} ORDER BY order_no")
    assert [(r[0], r[4], r[5]) for r in before] == [(1, "DONE", None), (2, "ERROR", "item 2 is blocked"), (4, "PENDING", None)]

    run_once(config)
    run_once(config)
    assert query(pair, f"SELECT {columns} FROM {s}.{STAGING} ORDER BY order_no") == before
    expected = {version(r["wo_id"], r["updated_at"]) for r in rows}
    assert audited(pair) == Counter(dict.fromkeys(expected, 1))
    assert ledger(pair) == expected


# --- long-running, with an MES writer, an import job and SIGKILLs ------------------------------------
class Writer(threading.Thread):
    """Inserts and updates work orders with microsecond timestamps, some equal (ties at batch boundaries)."""

    def __init__(self, pair: Pair, table: sa.Table, seconds: float, seed: int):
        super().__init__(daemon=True)
        self.pair, self.table, self.seconds, self.random = pair, table, seconds, random.Random(seed)
        self.committed: dict[int, set[str]] = {}  # wo_id -> every version committed
        self.latest: dict[int, str] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        engine = sa.create_engine(self.pair.mes_url)
        try:
            deadline, next_id = time.monotonic() + self.seconds, 1
            while time.monotonic() < deadline:
                at = recent(0)
                ids = [next_id, next_id + 1] if self.random.random() < 0.5 or next_id < 5 else []
                next_id += len(ids)
                ids += self.random.sample(range(1, next_id), k=min(2, next_id - 1))
                with engine.begin() as conn:
                    for wo_id in dict.fromkeys(ids):  # one transaction, one timestamp: ties
                        row = {"wo_id": wo_id, "qty": self.random.randint(0, 500), "updated_at": at}
                        if wo_id in self.latest:
                            conn.execute(self.table.update().where(self.table.c.wo_id == wo_id).values(**row))
                        else:
                            conn.execute(self.table.insert().values(**row))
                for wo_id in dict.fromkeys(ids):
                    text = version(wo_id, at)[1]
                    self.committed.setdefault(wo_id, set()).add(text)
                    self.latest[wo_id] = text
                time.sleep(0.03)
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            engine.dispose()


class ImportJob(threading.Thread):
    """Takes PENDING rows as an ERP import job does: deletes (consumes) some, marks others DONE or ERROR."""

    def __init__(self, pair: Pair, seed: int):
        super().__init__(daemon=True)
        self.pair, self.random, self.stop = pair, random.Random(seed), threading.Event()
        self.marked: dict[tuple[str, str], tuple[str, str | None]] = {}  # what the job wrote, by (key, version)
        self.error: BaseException | None = None

    def run(self) -> None:
        engine = staging_engine(self.pair)
        table = f"{self.pair.staging_schema}.{STAGING}"
        try:
            while not self.stop.is_set():
                with engine.begin() as conn:
                    pending = conn.execute(sa.text(
                        f"SELECT stg_id, stg_source_key, stg_source_version FROM {table} WHERE stg_status = 'PENDING'"
                    )).all()
                    for stg_id, key, row_version in pending:
                        choice = self.random.random()
                        if choice < 0.5:
                            conn.execute(sa.text(f"DELETE FROM {table} WHERE stg_id = :id"), {"id": stg_id})
                        elif choice < 0.8:
                            outcome = ("DONE", None) if choice < 0.7 else ("ERROR", f"rejected {key}")
                            conn.execute(sa.text(f"UPDATE {table} SET stg_status = :s, stg_error = :e WHERE stg_id = :id"),
                                         {"s": outcome[0], "e": outcome[1], "id": stg_id})
                            self.marked[(key, row_version)] = outcome
                time.sleep(0.05)
        except BaseException as exc:
            self.error = exc
        finally:
            engine.dispose()


def start_agent(config: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(config)], stdout=subprocess.DEVNULL,
                            stderr=log.open("ab"), env=env)


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_long_running_agent_with_an_import_job_and_sigkills_stages_each_version_once(kind, db_factory, tmp_path):
    pair = make_pair(db_factory, kind, suffix=f"_{kind}_live")
    table = create_mes_table(pair)
    config = write_config(tmp_path / "agent.yaml", pair, {
        "wo": flow(pair, batch_size=2, lag="200ms", schedule={"every": "250ms"}),
    }, alerts={"dir": "alerts", "check_every": "1s"}, retry={"first_wait": "200ms", "max_wait": "1s"})
    prepare_erp(config)
    add_audit_trigger(pair)
    seed = 20261201
    writer, job, kills = Writer(pair, table, seconds=8, seed=seed), ImportJob(pair, seed + 1), random.Random(seed + 2)
    log = tmp_path / "agent.log"
    agent = start_agent(config, log)
    writer.start()
    job.start()
    try:
        for _ in range(3):  # SIGKILL at seeded random points while it polls, writes and the job consumes
            time.sleep(kills.uniform(1.0, 2.2))
            agent.send_signal(signal.SIGKILL)
            agent.wait(timeout=30)
            agent = start_agent(config, log)
        writer.join(timeout=60)
        assert writer.error is None, writer.error
        expected_latest = {(str(k), v) for k, v in writer.latest.items()}
        deadline = time.monotonic() + 60
        while not expected_latest <= ledger(pair) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # a few more overlap re-reads of everything in the window
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=60)
        job.stop.set()
        job.join(timeout=30)
    assert job.error is None, job.error
    staged = ledger(pair)
    assert expected_latest <= staged, f"latest versions never staged: {sorted(expected_latest - staged)[:5]}\n{log.read_text()[-3000:]}"
    committed = {(str(k), v) for k, versions in writer.committed.items() for v in versions}
    assert staged <= committed  # nothing invented
    audit = audited(pair)
    assert {k: n for k, n in audit.items() if n != 1} == {}, "a (key, version) was staged twice"
    assert set(audit) == staged  # the ledger records exactly what the staging table received
    s = pair.staging_schema
    now = {(k, v): (st, e) for k, v, st, e in query(
        pair, f"SELECT stg_source_key, stg_source_version, stg_status, stg_error FROM {s}.{STAGING}")}
    overwritten = {kv: (outcome, now.get(kv)) for kv, outcome in job.marked.items() if now.get(kv) != outcome}
    assert overwritten == {}, "the agent changed what the import job wrote"
    assert len(job.marked) > 10 and len(staged) > len(now) + 10  # the job both consumed and marked rows

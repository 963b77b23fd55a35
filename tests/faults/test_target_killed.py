"""The agent's ERP connection terminated in the middle of its write transaction, again and again, while the
long-running agent loads and then polls (PostgreSQL: pg_terminate_backend of the session that holds a transaction
id, i.e. has written; MariaDB: KILL CONNECTION of the session found in information_schema.PROCESSLIST by user and
database whose InnoDB transaction has modified rows).

An observer reads the ERP all the while: every snapshot holds whole batches only (staging rows, agent_ledger and
agent_run agree, in multiples of the batch size). The agent records each failure, retries from its committed
watermark by itself, and in the end staging equals the source exactly, each (key, version) once.
"""

from __future__ import annotations

import random
import threading
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

import dbs
from fault_actors import Observer, generate, start_agent, stop_agent, wait_until
from fault_support import (
    KINDS, Plant, assert_staging_equals_source, audited, configure, consistent_counts, engine_for, erp_rows, utc_now,
)

ROWS, BATCH, CHUNKS, MAX_CHUNKS, KILLS = 3_000, 100, 15, 150, 6
SEED = 20261202
WRITING = {
    # backend_xid: the transaction has written (the batch table, the ledger, staging, the watermark, agent_run); not the
    # flow lock's heartbeat (agent_holder: rare here, `locks: {check_every: 5m}`, but the first round is at start)
    "postgresql": "SELECT pid, state, left(query, 60) FROM pg_stat_activity WHERE datname = :db "
                  "AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL AND query NOT LIKE '%agent_holder%'",
    "mysql": "SELECT p.ID, t.trx_state, LEFT(COALESCE(p.INFO, ''), 60) FROM information_schema.PROCESSLIST p "
             "JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID "
             "WHERE p.USER = :user AND p.DB = :db AND p.ID <> CONNECTION_ID() AND t.trx_rows_modified > 0 "
             "AND COALESCE(t.trx_query, '') NOT LIKE '%agent_holder%'",
}
TERMINATE = {"postgresql": "SELECT pg_terminate_backend({id})", "mysql": "KILL CONNECTION {id}"}


class Killer(threading.Thread):
    """At seeded random intervals, terminates the agent's ERP session while it is inside a write transaction."""

    def __init__(self, plant: Plant, seed: int, kills: int):
        super().__init__(daemon=True)
        self.plant, self.random, self.wanted = plant, random.Random(seed), kills
        self.killed: list[tuple[str, str]] = []  # (state, statement) of each session terminated
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        url = dbs.pg_admin_url() if self.plant.kind == "postgresql" else dbs.mysql_admin_url()
        admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        erp = make_url(self.plant.pair.erp_url)
        try:
            # A kill can land just after the COMMIT (the transaction had ended): go on until one failed a batch.
            while not self.stop.is_set() and (len(self.killed) < self.wanted or not failed_runs(self.plant)):
                time.sleep(self.random.uniform(0.01, 0.15))
                with admin.connect() as conn:
                    found = conn.execute(sa.text(WRITING[self.plant.kind]), {"db": erp.database, "user": erp.username}).all()
                    if found:
                        session, state, statement = found[0]
                        try:
                            conn.exec_driver_sql(TERMINATE[self.plant.kind].format(id=int(session)))
                        except sa.exc.OperationalError as exc:  # MariaDB: it ended meanwhile (1094 unknown thread id)
                            if "1094" not in str(exc):
                                raise
                            continue
                        self.killed.append((str(state), str(statement)))
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            admin.dispose()


def failed_runs(plant: Plant) -> list[tuple[str]]:
    return erp_rows(plant, f"SELECT message FROM {plant.control('agent_run')} WHERE flow = :f AND outcome = 'failed'",
                    f=plant.name)


def insert_chunk(plant: Plant, first_id: int) -> None:
    """One MES transaction of exactly one batch of new rows: polls see whole batches of them."""
    at = utc_now()
    with engine_for(plant.pair.mes_url).begin() as conn:
        conn.execute(sa.text(f"INSERT INTO {plant.table} (wo_id, qty, updated_at) VALUES (:k, 1, :at)"),
                     [{"k": first_id + n, "at": at} for n in range(BATCH)])


@pytest.mark.parametrize("kind", KINDS)
def test_erp_connection_terminated_mid_transaction_leaves_no_partial_batch_and_loses_nothing(kind, sites, tmp_path):
    plant = sites.plant(kind, "killed", tmp_path)
    generate(plant, ROWS)
    configure(plant, batch_size=BATCH, schedule={"every": "200ms"}, retry={"first_wait": "100ms", "max_wait": "400ms"},
              alerts={"dir": "alerts", "check_every": "1s"}, locks={"check_every": "5m"})
    log = tmp_path / "agent.log"
    observer, killer = Observer(plant, BATCH), Killer(plant, SEED if kind == "postgresql" else SEED + 1, KILLS)
    observer.start()
    agent = start_agent(plant.config, log)
    killer.start()
    try:
        wait_until(lambda: consistent_counts(plant)[0] == ROWS, 120, "the initial load", every=0.05)
        chunks = 0  # steady state: new rows while the kills go on, until a kill has failed a batch (timing)
        while chunks < CHUNKS or (not failed_runs(plant) and chunks < MAX_CHUNKS):
            insert_chunk(plant, ROWS + 1 + chunks * BATCH)
            chunks += 1
            time.sleep(0.1)
        total = ROWS + chunks * BATCH
        wait_until(lambda: consistent_counts(plant)[0] == total, 60, "every chunk staged", every=0.05)
    finally:
        killer.stop.set()
        killer.join(timeout=30)
        returncode = stop_agent(agent)
    observer.finish()
    assert killer.error is None, repr(killer.error)
    assert returncode == 0, log.read_text()[-3000:]
    # The killer must have caught the agent mid-write at least once (how often depends on timing on a shared machine).
    assert len(killer.killed) >= 1, f"no session was caught writing: {killer.killed}"
    assert consistent_counts(plant) == (total, total, total)
    assert_staging_equals_source(plant)
    assert sum(audited(plant).values()) == total
    failures = failed_runs(plant)
    assert failures, f"no failed run was recorded for {len(killer.killed)} terminated sessions"
    print(f"{kind}: terminated {len(killer.killed)} sessions mid-transaction: {killer.killed}; failures recorded: "
          f"{[m[:80] for (m,) in failures]}")

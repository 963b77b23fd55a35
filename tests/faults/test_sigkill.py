"""SIGKILL of the agent at seeded random points, on PostgreSQL and MariaDB:

- during an initial load (`run --once`): at random row counts plus a random few milliseconds (so that the kill
  lands while it reads, maps, loads the batch table or commits), and once at a random moment of its start-up;
  an observer meanwhile checks that every snapshot of the ERP holds whole batches only;
- during steady-state polling (`run`, every 250 ms, lag and overlap) while MES writers insert and update.

Afterwards staging equals the source exactly: for each key its final version is the one staged last, no
(key, version) was staged twice (the audit trigger sees every insert), nothing was invented (every staged version
was committed by the MES), and the ledger records exactly what staging received.
"""

from __future__ import annotations

import random
import time

import pytest

from fault_actors import Observer, Writer, Writers, generate, sigkill, start_agent, stop_agent, wait_until
from fault_support import (
    KINDS, assert_staged_once, assert_staging_equals_source, audited, configure, consistent_counts, latest_staged,
    ledger, run_once, source_versions,
)

ROWS, BATCH = 6_000, 150
SEED = 20261125


@pytest.mark.parametrize("kind", KINDS)
def test_sigkill_at_random_points_of_an_initial_load_loses_and_duplicates_nothing(kind, sites, tmp_path):
    plant = sites.plant(kind, "load", tmp_path, batch_size=BATCH)
    generate(plant, ROWS)
    configure(plant)
    log = tmp_path / "agent.log"
    chance = random.Random(SEED)
    thresholds = sorted(chance.sample(range(ROWS // 20, ROWS * 4 // 5), 2))
    observer = Observer(plant, BATCH)
    observer.start()

    startup = start_agent(plant.config, log, once=True)  # killed at a random moment of its start-up or first batch
    time.sleep(chance.uniform(0.1, 1.5))
    sigkill(startup)
    seen = []
    for threshold in thresholds:
        process = start_agent(plant.config, log, once=True)
        wait_until(lambda: consistent_counts(plant)[0] >= threshold or process.poll() is not None, 120,  # noqa: B023
                   f"{threshold} rows staged", every=0.005)
        time.sleep(chance.uniform(0, 0.03))
        assert process.poll() is None, f"the load finished before the kill at {threshold} rows:\n{log.read_text()[-2000:]}"
        sigkill(process)
        seen.append(consistent_counts(plant)[0])
    assert seen == sorted(seen) and seen[-1] < ROWS, f"kills were not mid-load: {seen}"

    run_once(plant.config)  # the next run completes the load
    observer.finish()
    assert consistent_counts(plant) == (ROWS, ROWS, ROWS)
    assert_staging_equals_source(plant)
    assert len(audited(plant)) == ROWS == len(source_versions(plant))


@pytest.mark.parametrize("kind", KINDS)
def test_sigkill_at_random_moments_of_steady_polling_with_mes_writers_loses_and_duplicates_nothing(kind, sites, tmp_path):
    plant = sites.plant(kind, "steady", tmp_path)
    configure(plant, batch_size=7, lag="300ms", overlap="5s", schedule={"every": "250ms"},
              retry={"first_wait": "200ms", "max_wait": "1s"}, alerts={"dir": "alerts", "check_every": "1s"})
    writers = Writers([Writer(plant, SEED + n, seconds=7, first=1 + n, step=2, pause=0.03, updates=0.5)
                       for n in range(2)])
    log = tmp_path / "agent.log"
    chance = random.Random(SEED + 2)
    agent = start_agent(plant.config, log)
    writers.start()
    try:
        for _ in range(3):  # while the writers commit and the agent polls, reads and writes batches
            time.sleep(chance.uniform(0.8, 2.0))
            sigkill(agent)
            agent = start_agent(plant.config, log)
        writers.join(timeout=60)
        latest = writers.latest
        wait_until(lambda: latest <= ledger(plant), 60, "every key's final version staged", every=0.2)
    finally:
        assert stop_agent(agent) == 0, log.read_text()[-3000:]
    assert latest == source_versions(plant)
    assert latest_staged(plant) == latest  # per key, the version staged last is the MES's final one
    staged = set(assert_staged_once(plant))  # no (key, version) twice; the ledger agrees
    assert staged <= writers.committed, f"staged but never committed: {sorted(staged - writers.committed)[:5]}"
    assert sum(w.transactions for w in writers) > 100
    assert_staging_equals_source(plant)

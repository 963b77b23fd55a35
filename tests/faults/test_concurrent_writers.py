"""Concurrent MES writers at a steady rate for a minute while the long-running agent polls every second, on
PostgreSQL and MariaDB at the same time (one minute in all: the two plants share nothing but the machine, and each
has the CPU it needs at these rates; running them one after the other would only double the test's time).

Per MES, two writers (each owning its keys) commit short transactions, about 25 a second together: new work
orders (one or two per transaction, sharing a timestamp), updates of one to three existing ones, and deletes. The
agent runs with `lag: 500ms` and `overlap: 10s`, batch size 50. A polling reader sees each key's state at each
poll, so afterwards (README, Guarantees):
- every key still in the MES has its final version staged, exactly once, and it is the version staged last;
- every version that stayed a key's latest for 6 seconds or more (several polls) was staged;
- no (key, version) was staged twice, and every staged version was committed by a writer (nothing invented);
- a deleted key's last version was staged once when a poll saw it before the delete;
- every deleted key the ERP had received (any version staged) has exactly one tombstone (`stg_change = 'D'`,
  version `D|<last version staged>`), staged after that version, and no live key has one: the delete pass runs
  every 5 s while the writers write (`deletes: {detect: true, every: 5s}`), and `mes-erp-agent reconcile` once
  at the end writes the rest; a second `reconcile` finds nothing left to do.
"""

from __future__ import annotations

import time
from collections import Counter

from fault_actors import Writer, Writers, start_agent, stop_agent, wait_until
from fault_support import (
    Plant, assert_staged_once, audited, configure, erp_rows, latest_staged, ledger, source_versions,
)
from helpers import cli

from agent.contract import TOMBSTONE_PREFIX, tombstone_version

SECONDS = 60
LONG_LIVED = 6.0  # a version latest for this long has been seen by several polls (every 1 s, lag 0.5 s)
SEED = 20261203


def is_tombstone(kv: tuple[str, str]) -> bool:
    return kv[1].startswith(TOMBSTONE_PREFIX)


def expect_tombstones(plant: Plant, writers: Writers) -> None:
    """One tombstone per deleted key the ERP had received, of the last version it received; none for a live key."""
    rows = erp_rows(plant, f"SELECT stg_source_key, stg_source_version, stg_change FROM {plant.staging} ORDER BY stg_id")
    assert {change for _, _, change in rows} == {"U", "D"}
    tombstones = Counter(key for key, _, change in rows if change == "D")
    assert {key: n for key, n in tombstones.items() if n != 1} == {}, "a deleted key has more than one tombstone"
    deleted = writers.deleted
    ever_staged = {key for key, _, change in rows if change == "U"}
    expected = {str(k) for k in deleted if str(k) in ever_staged}
    assert set(tombstones) == expected, (sorted(set(tombstones) - expected)[:5], sorted(expected - set(tombstones))[:5])
    assert {str(k) for k, d in deleted.items() if d.staged_before} <= set(tombstones)
    last_change: dict[str, str] = {}
    for key, staged_version, change in rows:  # in load order: the tombstone follows the key's last change
        assert key not in last_change or not is_tombstone((key, last_change[key])), f"key {key} staged after its tombstone"
        if change == "D":
            assert staged_version == tombstone_version(last_change[key]), (key, staged_version, last_change[key])
        last_change[key] = staged_version


def reconcile_at_the_end(plant: Plant) -> None:
    """The passes the agent had not run yet: nothing is missing (the polls staged every live version), the deleted
    keys' tombstones are written; run again, nothing is left to do."""
    first = cli("reconcile", "-c", str(plant.config), "--flow", plant.name)
    assert first.exit_code == 0, first.output
    assert f"flow {plant.name}: reconcile " in first.output and "rows missing: 0, staged: 0, quarantined: 0" in first.output, \
        first.output
    again = cli("reconcile", "-c", str(plant.config), "--flow", plant.name)
    assert again.exit_code == 0, again.output
    assert "keys gone: 0, tombstones staged: 0" in again.output, again.output


def check(plant: Plant, writers: Writers, log_text: str) -> None:
    live = writers.latest
    assert live == source_versions(plant)
    latest = latest_staged(plant)
    live_keys = {k for k, _ in live}
    assert {kv for kv in latest if kv[0] in live_keys} == live, "a live key's final version is not the one staged last"
    everything = set(assert_staged_once(plant))  # no (key, version) twice, and the ledger agrees
    staged = {kv for kv in everything if not is_tombstone(kv)}
    assert live <= staged
    assert staged <= writers.committed, f"staged but never committed: {sorted(staged - writers.committed)[:5]}"
    long_lived = {kv for kv, life in writers.lives.items()
                  if (life.superseded or time.monotonic()) - life.committed >= LONG_LIVED}
    assert long_lived <= staged, f"long-lived versions never staged: {sorted(long_lived - staged)[:5]}"
    audit = audited(plant)
    deleted = writers.deleted
    seen_before_delete = [d.last for d in deleted.values() if d.staged_before]
    assert all(audit[kv] == 1 for kv in seen_before_delete)
    assert len(deleted) > 20 and len(seen_before_delete) > len(deleted) // 2, (len(deleted), len(seen_before_delete))
    expect_tombstones(plant, writers)
    failed = erp_rows(plant, f"SELECT message FROM {plant.control('agent_run')} WHERE flow = :f AND outcome <> 'ok'",
                      f=plant.name)
    assert failed == [], failed
    assert "Traceback" not in log_text and " ERROR " not in log_text, log_text[-3000:]
    print(f"{plant.kind}: {sum(w.transactions for w in writers)} MES transactions, {len(writers.committed)} versions "
          f"committed, {len(staged)} staged, {len(long_lived)} long-lived, {len(live)} live keys, {len(deleted)} "
          f"deleted ({len(seen_before_delete)} seen before the delete), {len(everything - staged)} tombstones")


def test_a_minute_of_concurrent_writers_on_both_databases_every_final_version_staged_once(sites, tmp_path):
    plants, agents, logs, writers = {}, {}, {}, {}
    for kind in ("postgresql", "mysql"):
        folder = tmp_path / kind
        folder.mkdir()
        plants[kind] = sites.plant(kind, "busy", folder)
        configure(plants[kind], batch_size=50, lag="500ms", overlap="10s", schedule={"every": "1s"},
                  deletes={"detect": True, "every": "5s"},
                  retry={"first_wait": "200ms", "max_wait": "1s"}, alerts={"dir": "alerts", "check_every": "5s"})
        writers[kind] = Writers([Writer(plants[kind], SEED + 10 * len(writers) + n, seconds=SECONDS, first=1 + n, step=2,
                                        pause=0.06, updates=0.45, deletes=0.1) for n in range(2)])
        logs[kind] = folder / "agent.log"
    for kind in plants:
        agents[kind] = start_agent(plants[kind].config, logs[kind])
    try:
        for group in writers.values():
            group.start()
        for group in writers.values():
            group.join(timeout=SECONDS + 60)
        for kind, plant in plants.items():
            live = writers[kind].latest
            wait_until(lambda: live <= ledger(plant), 60, f"{kind}: every live key's final version staged",  # noqa: B023
                       every=0.25)
        time.sleep(1.5)  # one more poll: its overlap re-read must stage nothing again
    finally:
        codes = {kind: stop_agent(agent) for kind, agent in agents.items()}
    for kind, plant in plants.items():
        assert codes[kind] == 0, logs[kind].read_text()[-3000:]
        reconcile_at_the_end(plant)
        check(plant, writers[kind], logs[kind].read_text())


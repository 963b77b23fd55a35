"""Time: watermark comparisons in the source database's own terms (its column types and its clock).

- naive and zoned timestamps round-trip exactly: source -> staging values, version text, stored watermark, and the
  keyset read that continues from it (PostgreSQL timestamp and timestamptz, MariaDB datetime(6) and timestamp(6));
- a zoned column read in a daylight-saving time zone: the same wall-clock hour twice, ordered by the instant;
- a daylight-saving fall-back on an MES that stores local wall-clock time in a naive column: a row written in the
  repeated hour with a wall-clock time below the watermark is caught by `overlap` >= the DST step, exactly once,
  and missed by a shorter one (README, Guarantees: overlap must cover the step on such an MES);
- an MES clock ahead of (or behind) the agent's: `lag` is measured on the MES clock;
- equal timestamps across batch boundaries, batch sizes 1, 2 and 3.

Each test runs several flows (one per batch size or column type) from one configuration, polled by the pipeline as
the long-running agent drives it (fault_support.Poller); the round trip also runs the `run --once` command.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from zoneinfo import ZoneInfo

import pytest

from agent.watermark import decode
from fault_support import (
    KINDS, NAIVE, Plant, Poller, assert_staged_once, assert_staging_equals_source, audited, configure, erp_rows,
    mes_rows, run_once, source_versions, staged, version,
)

BERLIN = ZoneInfo("Europe/Berlin")
UTC = dt.timezone.utc


def insert(plant: Plant, rows: list[tuple[int, dt.datetime]], update: bool = False) -> None:
    engine = plant.mes()
    with engine.begin() as conn:
        for wo_id, at in rows:
            statement = (f"UPDATE {plant.table} SET updated_at = %(at)s, qty = qty + 1 WHERE wo_id = %(id)s" if update
                         else f"INSERT INTO {plant.table} (wo_id, qty, updated_at) VALUES (%(id)s, 1, %(at)s)")
            conn.exec_driver_sql(statement, {"id": wo_id, "at": at})
    engine.dispose()


def counts(plant: Plant) -> tuple[int, int, int]:
    """One poll of the plant's flow: (rows read, staged, already staged)."""
    poller = Poller(plant)
    try:
        found = poller.poll()
    finally:
        poller.close()
    return found.rows_read, found.rows_written, found.rows_duplicate


def poll(*plants: Plant, times: int = 1) -> None:
    for plant in plants:
        poller = Poller(plant)
        for _ in range(times):
            poller.poll()
        poller.close()


# --- naive and zoned round trips ----------------------------------------------------------------------
COLUMN_TYPES = {"postgresql": ["timestamp(6)", "timestamptz"], "mysql": ["datetime(6)", "timestamp(6)"]}


@pytest.mark.parametrize("kind", KINDS)
def test_naive_and_zoned_timestamps_round_trip_exactly(kind, sites, tmp_path):
    plants = [sites.plant(kind, f"rt{n}", tmp_path, column) for n, column in enumerate(COLUMN_TYPES[kind])]
    micros = [0, 1, 999_999, 1_000_000, 1_000_000, 1_000_001, 59_999_999, 60_000_000]  # ties, second boundaries
    for plant, column in zip(plants, COLUMN_TYPES[kind], strict=True):
        base = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC if column == "timestamptz" else None)
        insert(plant, [(i, base + dt.timedelta(microseconds=m)) for i, m in enumerate(micros, start=1)])
    configure(*plants, batch_size=2)
    run_once(plants[0].config)  # the command, every flow

    for plant, column in zip(plants, COLUMN_TYPES[kind], strict=True):
        assert_staging_equals_source(plant)
        # The values themselves: the staging column holds the same instant, to the microsecond.
        source = dict(mes_rows(plant, f"SELECT wo_id, updated_at FROM {plant.table}"))
        assert dict(erp_rows(plant, f"SELECT order_no, mes_updated_at FROM {plant.staging}")) == source
        assert {at.tzinfo is not None for at in source.values()} == {column == "timestamptz"}
        # The stored watermark is the last row's typed value, exactly, and the next read continues right after it:
        # only the two new rows are read (a bind that lost microseconds would re-read or skip rows at the boundary).
        stored = erp_rows(plant, f"SELECT watermark_values FROM {plant.control('agent_watermark')} WHERE flow = :f",
                          f=plant.name)
        last_at = source[8]
        assert decode(stored[0][0]) == (last_at, 8)
        assert json.loads(stored[0][0])[0] == {"type": "datetime", "value": last_at.isoformat(timespec="microseconds")}
        insert(plant, [(9, last_at), (10, last_at + dt.timedelta(microseconds=1))])
        assert counts(plant) == (2, 2, 0)
        assert_staging_equals_source(plant)


def test_a_zoned_watermark_in_a_dst_time_zone_orders_the_repeated_hour_by_the_instant(sites, tmp_path):
    """timestamptz on a PostgreSQL MES whose TimeZone is Europe/Berlin: psycopg returns the values in that zone, so
    02:00+01:00 (after the fall-back) follows 02:50+02:00. Compared as wall-clock times (what Python does for two
    datetimes with the same tzinfo) that looks like a step back; the agent must compare instants. Batch sizes 1, 2
    and 3, with an overlap of 1h re-reading across the fold."""
    plants = [sites.plant("postgresql", f"tz{n}", tmp_path, "timestamptz", mes_time_zone="Europe/Berlin", batch_size=n)
              for n in (1, 2, 3)]
    start = dt.datetime(2026, 10, 24, 23, 40, tzinfo=UTC)  # 01:40 CEST; the clocks go back at 01:00 UTC
    rows = [(i, start + dt.timedelta(minutes=10 * (i // 2))) for i in range(1, 26)]  # pairs share an instant
    for plant in plants:
        insert(plant, rows)
    configure(*plants, overlap="1h")
    for plant in plants:
        poller = Poller(plant)
        poller.poll()
        assert_staging_equals_source(plant)
        texts = {v for _, v in staged(plant)}
        assert {"2026-10-25T02:30:00.000000+02:00|10", "2026-10-25T02:30:00.000000+01:00|22"} <= texts
        poller.poll()  # the overlap re-reads an hour across the fold: nothing twice
        insert(plant, [(1, dt.datetime(2026, 10, 25, 2, 5, tzinfo=BERLIN, fold=1))], update=True)
        poller.poll()
        poller.close()
        assert_staging_equals_source(plant)
        assert version(1, dt.datetime(2026, 10, 25, 2, 5, tzinfo=dt.timezone(dt.timedelta(hours=1)))) in set(staged(plant))


# --- daylight saving on an MES that stores local time --------------------------------------------------
def berlin(hour: int, minute: int, second: int = 0, micro: int = 0) -> dt.datetime:
    """A Europe/Berlin wall-clock time on 2026-10-25, naive, as a local-time MES stores it (02:xx happens twice)."""
    return dt.datetime(2026, 10, 25, hour, minute, second, micro)


FIRST_PASS = [(1, berlin(1, 30)), (2, berlin(2, 20)), (3, berlin(2, 59, 59, 999_999))]  # CEST, before 03:00 CEST
# After the fall-back (03:00 CEST -> 02:00 CET), written later in real time, with lower wall-clock times:
SECOND_PASS_NEW = [(4, berlin(2, 0)), (5, berlin(2, 40)), (6, berlin(3, 10))]
SECOND_PASS_UPDATE = [(2, berlin(2, 15))]  # key 2 changes again; its new version is below the watermark too
DST_FLOWS = {"dst1": {"batch_size": 1, "overlap": "1h"}, "dst2": {"batch_size": 2, "overlap": "1h"},
             "dst1000": {"batch_size": 1000, "overlap": "1h"}, "dst59m": {"batch_size": 2, "overlap": "59m"}}


@pytest.mark.parametrize("kind", KINDS)
def test_dst_fall_back_on_a_local_time_mes_is_caught_by_an_overlap_covering_the_step(kind, sites, tmp_path):
    """The keyset is (updated_at, wo_id). After the first pass the watermark is (02:59:59.999999, 3). In the repeated
    hour the MES writes wall-clock times from 02:00:00 again: below the watermark, so only the overlap window
    re-reads them. An overlap of 1h (the DST step) reaches back to 01:59:59.999999 and catches every one exactly
    once, at batch sizes 1, 2 and 1000; 59 minutes misses the row written at the very start of the repeated hour.
    (PostgreSQL: the MES database's TimeZone is Europe/Berlin, as a local-time MES's would be.)"""
    plants = [sites.plant(kind, name, tmp_path, NAIVE[kind], mes_time_zone="Europe/Berlin" if kind == "postgresql"
                          else None, **settings) for name, settings in DST_FLOWS.items()]
    for plant in plants:
        insert(plant, FIRST_PASS)
    configure(*plants)
    first = {version(i, at) for i, at in FIRST_PASS}
    for plant in plants:
        poller = Poller(plant)
        poller.poll()
        assert set(staged(plant)) == first
        insert(plant, SECOND_PASS_NEW)
        insert(plant, SECOND_PASS_UPDATE, update=True)
        poller.poll()
        poller.poll()  # and again: the window re-reads them, the ledger stages nothing twice
        poller.close()
        missed = {4} if plant.settings["overlap"] == "59m" else set()
        expected = first | {version(i, at) for i, at in SECOND_PASS_NEW + SECOND_PASS_UPDATE if i not in missed}
        assert set(staged(plant)) == expected, plant.name
        assert_staged_once(plant)
        if missed:
            assert source_versions(plant) - set(staged(plant)) == {version(4, berlin(2, 0))}
        else:
            assert_staging_equals_source(plant)


# --- an MES clock ahead of or behind the agent's --------------------------------------------------------
LAG_S = 2.0
CLOCKS = {"postgresql": {"ahead": "<+0010>-00:10", "behind": "<-0010>+00:10"},
          "mysql": {"ahead": "+00:10", "behind": "-00:10"}}


@pytest.mark.parametrize("kind", KINDS)
def test_lag_is_measured_on_the_mes_clock_even_when_it_is_off_by_ten_minutes(kind, sites, tmp_path):
    """The servers share this machine's clock, so an MES clock 10 minutes off is simulated where the agent sees it:
    the MES session's time zone is 10 minutes east (or west) of UTC, so the MES stamps its local-time rows, and
    answers LOCALTIMESTAMP / NOW(6) (server_time.sql), 10 minutes ahead of (or behind) the agent host's UTC clock.
    With the bound on the MES clock a row is held back exactly `lag`, then staged. On the agent's clock, a clock
    ahead would hold every row back 10 minutes, and one behind would read rows younger than `lag` at once."""
    plants = {clock: sites.plant(kind, f"clk_{clock}", tmp_path, mes_time_zone=zone) for clock, zone in CLOCKS[kind].items()}
    configure(*plants.values(), lag=f"{LAG_S:g}s")
    pollers = {clock: Poller(plant) for clock, plant in plants.items()}
    mes_now = "LOCALTIMESTAMP" if kind == "postgresql" else "NOW(6)"
    for plant in plants.values():
        engine = plant.mes()
        with engine.begin() as conn:
            conn.exec_driver_sql(f"INSERT INTO {plant.table} (wo_id, qty, updated_at) VALUES (1, 1, {mes_now}), (2, 1, {mes_now})")
        engine.dispose()
    written = time.monotonic()
    for clock, plant in plants.items():
        stamped = mes_rows(plant, f"SELECT updated_at FROM {plant.table}")[0][0]
        offset = (stamped - dt.datetime.now(UTC).replace(tzinfo=None)).total_seconds()
        assert abs(abs(offset) - 600) < 5 and (offset > 0) == (clock == "ahead"), offset
        pollers[clock].poll()
    assert time.monotonic() - written < LAG_S, "too slow to test: the first polls must start within the lag"
    for plant in plants.values():
        assert staged(plant) == []  # younger than the lag on the MES clock: left for the next poll
    time.sleep(max(0.0, written + LAG_S + 0.2 - time.monotonic()))
    for clock, plant in plants.items():
        pollers[clock].poll()
        pollers[clock].close()
        assert_staging_equals_source(plant)
        assert len(source_versions(plant)) == 2


# --- equal timestamps across batch boundaries -----------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_equal_timestamps_across_batch_boundaries_are_each_staged_once(kind, sites, tmp_path):
    """18 rows in tie groups of 1 to 5 rows (ids not in time order), at batch sizes 1, 2 and 3: every batch boundary
    falls inside some group. Then more rows at exactly the watermark's timestamp with higher ids: the keyset's
    tie-breaker finds each, once, without re-reading the rest."""
    plants = [sites.plant(kind, f"tie{n}", tmp_path, batch_size=n) for n in (1, 2, 3)]
    ids = list(range(1, 19))
    random.Random(20261025).shuffle(ids)
    rows: list[tuple[int, dt.datetime]] = []
    at = dt.datetime(2026, 3, 1, 8, 0, 0, 500_000)
    for size in [3, 1, 2, 2, 4, 1, 5]:
        rows += [(ids.pop(), at) for _ in range(size)]
        at += dt.timedelta(microseconds=1)
    last_at, last_id = max((a, i) for i, a in rows)
    assert last_id < 101
    for plant in plants:
        insert(plant, rows)
    configure(*plants)
    for plant in plants:
        poll(plant)
        assert_staging_equals_source(plant)
        assert sorted(staged(plant)) == sorted(version(i, a) for i, a in rows)
        insert(plant, [(100 + n, last_at) for n in (1, 2, 3)] + [(200, last_at + dt.timedelta(microseconds=1))])
        assert counts(plant) == (4, 4, 0)
        assert_staging_equals_source(plant)
        assert sum(audited(plant).values()) == len(rows) + 4

"""Property-based tests (hypothesis, derandomized and bounded, so every run tries the same examples quickly):

- keyset ordering: the read's keyset predicate `(g, updated_at, wo_id) > (:wm_0, :wm_1, :wm_2)` (agent/read.py,
  sql/<dialect>/read_batch.sql) on a real database selects exactly the rows Python's tuple ordering puts after the
  cursor, in that order (NULL-free multi-column keys, equal values in every column but the last);
- batch boundaries with duplicate timestamps: at any batch size from 1 up, the pages the real reader reads cover
  every row exactly once, in keyset order, from the start, after a row and from an overlap bound;
- window arithmetic: `overlap_start` and the lag bound (`earlier`) are `overlap`/`lag` before the moment as an
  instant, also for zoned values around both 2026 DST changes; `lag_upper_bound` is the MES clock minus `lag`;
  the watermark never moves back (`pipeline._furthest`), and polls with rows committed late inside the overlap
  window move it only forward while staging each version exactly once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import pipeline
from agent.config import FlowConfig
from agent.errors import SchemaMismatch
from agent.read import BatchReader, Cursor, earlier, in_source_order, lag_upper_bound, overlap_start
from agent.watermark import decode
from fault_support import (
    KINDS, Plant, Poller, assert_staged_once, configure, engine_for, erp_rows, latest_staged, source_versions, version,
)

UTC = dt.timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
DB_EXAMPLES = settings(max_examples=40, derandomize=True, deadline=None, database=None,
                       suppress_health_check=[HealthCheck.too_slow])
PURE_EXAMPLES = settings(max_examples=300, derandomize=True, deadline=None, database=None)
TIMES = [dt.datetime(2026, 5, 1, 6, 0, 0) + dt.timedelta(microseconds=m) for m in (0, 1, 2, 999_999, 1_000_000)]


@dataclasses.dataclass
class Readers:
    plants: dict[str, Plant]
    pollers: dict[str, Poller]

    def reader(self, name: str, batch_size: int) -> BatchReader:
        ctx = self.pollers[name].context
        return BatchReader(ctx.reader.engine, ctx.reader.dialect, ctx.flow.model_copy(update={"batch_size": batch_size}),
                           ctx.reader.source, ctx.reader.source_sql)

    def fill(self, name: str, rows: list[dict[str, Any]]) -> None:
        """The MES table holds exactly `rows` (wo_id, updated_at and, for the keyset table, g)."""
        with engine_for(self.plants[name].pair.mes_url).begin() as conn:
            conn.execute(sa.text(f"DELETE FROM {self.plants[name].table}"))
            if rows:
                columns = ", ".join(rows[0])
                conn.execute(sa.text(f"INSERT INTO {self.plants[name].table} ({columns}, qty) VALUES "
                                     f"({', '.join(':' + c for c in rows[0])}, 0)"), rows)


@pytest.fixture(scope="module", params=KINDS)
def readers(request, sites, tmp_path_factory):
    kind, folder = request.param, tmp_path_factory.mktemp(f"properties_{request.param}")
    plants = {
        "keyset": sites.plant(kind, "keyset", folder, extra_column="g integer NOT NULL",
                              watermark=["g", "updated_at", "wo_id"]),
        "ties": sites.plant(kind, "ties", folder),
        "window": sites.plant(kind, "window", folder, overlap="10m", batch_size=3),
    }
    if kind == "postgresql":
        plants["zoned"] = sites.plant(kind, "zoned", folder, "timestamptz", mes_time_zone="Europe/Berlin")
    configure(*plants.values())
    pollers = {name: Poller(plant) for name, plant in plants.items()}
    yield Readers(plants, pollers)
    for poller in pollers.values():
        poller.close()


# --- keyset ordering ------------------------------------------------------------------------------------
@st.composite
def keyset_rows(draw: Any) -> list[dict[str, Any]]:
    ids = draw(st.lists(st.integers(1, 60), max_size=25, unique=True))
    return [{"wo_id": i, "g": draw(st.integers(0, 3)), "updated_at": draw(st.sampled_from(TIMES))} for i in ids]


EDGES = [TIMES[0] - dt.timedelta(microseconds=1), *TIMES, TIMES[-1] + dt.timedelta(microseconds=1)]


@given(rows=keyset_rows(), cursor=st.tuples(st.integers(-1, 4), st.sampled_from(EDGES), st.integers(0, 61)),
       batch_size=st.integers(1, 7))
@DB_EXAMPLES
def test_the_keyset_predicate_selects_what_python_tuple_order_puts_after_the_cursor(readers, rows, cursor, batch_size):
    readers.fill("keyset", rows)
    expected = sorted(k for k in ((r["g"], r["updated_at"], r["wo_id"]) for r in rows) if k > cursor)
    whole = readers.reader("keyset", 1000)
    assert [whole.watermark_of(r) for r in whole.read_page(Cursor(after=cursor))] == expected
    paged = readers.reader("keyset", batch_size)
    assert [paged.watermark_of(r) for page in paged.pages(Cursor(after=cursor)) for r in page] == expected


# --- batch boundaries with duplicate timestamps ------------------------------------------------------------
@st.composite
def tied_rows(draw: Any) -> list[dict[str, Any]]:
    times = TIMES[:draw(st.integers(1, 3))]  # one to three distinct timestamps for up to 25 rows: many ties
    ids = draw(st.lists(st.integers(1, 60), min_size=1, max_size=25, unique=True))
    return [{"wo_id": i, "updated_at": draw(st.sampled_from(times))} for i in ids]


@given(rows=tied_rows(), batch_size=st.integers(1, 27), start=st.integers(0, 30))
@DB_EXAMPLES
def test_pages_cover_every_row_exactly_once_at_any_batch_size(readers, rows, batch_size, start):
    readers.fill("ties", rows)
    everything = sorted((r["updated_at"], r["wo_id"]) for r in rows)
    reader = readers.reader("ties", batch_size)

    def read(cursor: Cursor) -> list[tuple[Any, ...]]:
        pages = list(reader.pages(cursor))
        assert all(0 < len(page) <= batch_size for page in pages)
        assert all(len(page) == batch_size for page in pages[:-1])
        return [reader.watermark_of(r) for page in pages for r in page]

    assert read(Cursor()) == everything
    after = everything[min(start, len(everything) - 1)]  # after a row, as the next poll does
    assert read(Cursor(after=after)) == [k for k in everything if k > after]
    bound = after[0]  # from a timestamp, as an overlap re-read does
    assert read(Cursor(from_value=bound)) == [k for k in everything if k[0] >= bound]


# --- window arithmetic ----------------------------------------------------------------------------------
def around_dst(minutes: int, micro: int) -> dt.datetime:
    """A Europe/Berlin time as psycopg returns a timestamptz read in that zone, within 6 hours of a 2026 DST change."""
    change = dt.datetime(2026, 3, 29, 1, tzinfo=UTC) if minutes < 0 else dt.datetime(2026, 10, 25, 1, tzinfo=UTC)
    return (change + dt.timedelta(minutes=abs(minutes) - 180, microseconds=micro)).astimezone(BERLIN)


# The repeated hour itself, both passes: 02:xx+02:00 (fold 0) and 02:xx+01:00 (fold 1), where wall-clock order and
# instant order disagree.
REPEATED = st.builds(lambda minute, micro, fold: dt.datetime(2026, 10, 25, 2, minute, 0, micro, tzinfo=BERLIN, fold=fold),
                     st.integers(0, 59), st.integers(0, 999_999), st.integers(0, 1))
ZONED = st.one_of(REPEATED, st.builds(around_dst, st.integers(-360, 360), st.integers(0, 999_999)))
FIXED = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 1, 1),
                     timezones=st.sampled_from([UTC, dt.timezone(dt.timedelta(hours=2)), dt.timezone(-dt.timedelta(hours=5))]))
NAIVE = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 1, 1))
WINDOWS = st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(hours=3))


def flow_config(**settings: Any) -> FlowConfig:
    return FlowConfig.model_validate({"source": "mes", "target": "erp", "table": "production.wo", "key": ["wo_id"],
                                      "watermark": ["updated_at", "wo_id"], "staging_table": "stg_wo",
                                      "columns": {"order_no": "wo_id"}, **settings})


@given(moment=st.one_of(NAIVE, FIXED, ZONED), window=WINDOWS, wo_id=st.integers(0, 10))
@PURE_EXAMPLES
def test_overlap_and_lag_windows_are_that_long_as_instants(moment, window, wo_id):
    start = overlap_start(flow_config().model_copy(update={"overlap": window}), (moment, wo_id))
    assert start == earlier(moment, window)
    if moment.tzinfo is None:  # a naive MES value: on its own wall clock, as the MES wrote it
        assert start == moment - window
    else:  # a zoned one: the instant `window` before, in the value's own zone
        assert start.astimezone(UTC) == moment.astimezone(UTC) - window
        assert start.tzinfo is moment.tzinfo


def test_an_overlap_needs_a_timestamp_watermark():
    with pytest.raises(SchemaMismatch, match="needs a timestamp as first watermark column"):
        overlap_start(flow_config(overlap="5m"), (42, 1))


@given(stored=st.tuples(st.one_of(ZONED, FIXED), st.integers(0, 3)),
       last_read=st.tuples(st.one_of(ZONED, FIXED), st.integers(0, 3)), overlap=st.booleans())
@PURE_EXAMPLES
def test_the_watermark_never_moves_back(stored, last_read, overlap):
    flow = flow_config(overlap="1h" if overlap else "0s")
    result = pipeline._furthest(flow, stored, last_read)
    if not overlap:  # keyset reads only go forward: the last row read is the position
        assert result == last_read
        return
    assert result in (stored, last_read)
    assert in_source_order(result) == max(in_source_order(stored), in_source_order(last_read))
    assert pipeline._furthest(flow, None, last_read) == last_read


@given(lag=st.timedeltas(min_value=dt.timedelta(microseconds=1), max_value=dt.timedelta(days=2)))
@DB_EXAMPLES
def test_the_lag_bound_is_the_mes_clock_minus_lag(readers, lag):
    for name in [n for n in ("ties", "zoned") if n in readers.plants]:
        ctx = readers.pollers[name].context
        flow = ctx.flow.model_copy(update={"lag": lag})
        column = ctx.source_columns["updated_at"]
        zoned = column.column_type is not None and column.column_type.timezone
        now_sql = ("SELECT CURRENT_TIMESTAMP" if zoned else "SELECT LOCALTIMESTAMP") if ctx.source_dialect.name == \
            "postgresql" else "SELECT NOW(6)"
        with ctx.source_engine.connect() as conn:
            before = conn.exec_driver_sql(now_sql).scalar_one()
            conn.rollback()
            bound = lag_upper_bound(ctx.source_engine, ctx.source_dialect, flow, column)
            after = conn.exec_driver_sql(now_sql).scalar_one()
        assert (bound.tzinfo is not None) == zoned
        assert before - lag <= bound <= after - lag
    assert lag_upper_bound(ctx.source_engine, ctx.source_dialect, ctx.flow, column) is None  # no lag, no bound


# --- polls with late commits inside the overlap: forward only, each version once ------------------------------
STEPS = st.lists(st.one_of(
    st.tuples(st.just("write"), st.integers(1, 90), st.lists(st.tuples(st.integers(1, 6), st.integers(0, 540)),
                                                             min_size=1, max_size=4)),
    st.tuples(st.just("poll")),
), min_size=1, max_size=10)


@given(steps=STEPS, batch_size=st.integers(1, 4))
@settings(DB_EXAMPLES, max_examples=25)
def test_polls_with_late_commits_in_the_overlap_move_forward_and_stage_each_version_once(readers, steps, batch_size):
    """Each write step moves the MES clock on by 1-90 s and commits rows stamped up to 9 minutes behind it (a late
    commit), inside the 10-minute overlap: every poll may re-read rows it staged and find rows below its watermark."""
    plant = readers.plants["window"]
    ctx = readers.pollers["window"].context
    reset(plant)
    ctx = dataclasses.replace(ctx, flow=ctx.flow.model_copy(update={"batch_size": batch_size}))
    ctx = dataclasses.replace(ctx, reader=BatchReader(ctx.reader.engine, ctx.reader.dialect, ctx.flow,
                                                      ctx.reader.source, ctx.reader.source_sql))
    clock, current, committed, positions = dt.datetime(2026, 5, 1, 6, 0), {}, set(), []
    mes = engine_for(plant.pair.mes_url)
    for step in [*steps, ("poll",)]:
        if step[0] == "write":
            clock += dt.timedelta(seconds=step[1])
            with mes.begin() as conn:
                for key, late in step[2]:
                    at = clock - dt.timedelta(seconds=late, microseconds=key)
                    if current.get(key) == at:
                        continue  # the same version again is no change
                    statement = (f"UPDATE {plant.table} SET updated_at = :at WHERE wo_id = :k" if key in current else
                                 f"INSERT INTO {plant.table} (wo_id, qty, updated_at) VALUES (:k, 0, :at)")
                    conn.execute(sa.text(statement), {"k": key, "at": at})
                    current[key] = at
                    committed.add(version(key, at))
            continue
        found = pipeline.run_flow(ctx)
        assert found.outcome == "ok", found.message
        stored = erp_rows(plant, f"SELECT watermark_values FROM {plant.control('agent_watermark')} WHERE flow = :f",
                          f=plant.name)
        if stored:
            positions.append(in_source_order(decode(stored[0][0])))
    assert positions == sorted(positions), "the watermark moved back"
    assert latest_staged(plant) == source_versions(plant) == {version(k, at) for k, at in current.items()}
    assert set(assert_staged_once(plant)) <= committed


def reset(plant: Plant) -> None:
    """The MES table and everything the agent and the audit know about the flow, emptied."""
    with engine_for(plant.pair.mes_url).begin() as conn:
        conn.execute(sa.text(f"DELETE FROM {plant.table}"))
    with engine_for(plant.pair.erp_url).begin() as conn:
        conn.execute(sa.text(f"DELETE FROM {plant.staging}"))
        conn.execute(sa.text(f"DELETE FROM {plant.control(f'audit_{plant.name}')}"))
        for table in ("agent_ledger", "agent_watermark", "agent_run"):
            conn.execute(sa.text(f"DELETE FROM {plant.control(table)} WHERE flow = :f"), {"f": plant.name})

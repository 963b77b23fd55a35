"""The long-running mode's drift gate: flows polling at the same moment share one catalog read per system, and a poll
is answered only by a read begun after it asked (agent/drift/shared.py). On real databases; catalog statements are
counted with SQLAlchemy's cursor events, as bench/common.py does."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from agent.config import load_config
from agent.connect import Systems
from agent.demo import adventureworks
from agent.drift.gate import DriftGate
from drift_support import WORK_ORDERS, flows, new_plant
from helpers import make_pair, prepare_erp, write_config

KINDS = ["postgresql", "mysql"]
FLOWS = 20


def catalog_read(sql: str) -> bool:
    return sql.lstrip().startswith("WITH watched")


@contextlib.contextmanager
def catalog_reads(pair) -> Iterator[list[str]]:
    """The systems ("mes", "erp") of every catalog query run meanwhile, in order."""
    databases = {sa.make_url(pair.mes_url).database: "mes", sa.make_url(pair.erp_url).database: "erp"}
    reads: list[str] = []

    def record(conn, _cursor, sql, *_args):
        if catalog_read(sql):
            reads.append(databases[conn.engine.url.database])

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    try:
        yield reads
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)


def at_once(gate: DriftGate, names: list[str]) -> list[str | None]:
    """Every flow of `names` calls the gate at the same moment (the scheduler fires one cadence's flows in one tick)."""
    start = threading.Barrier(len(names))
    answers: dict[str, str | None] = {}

    def poll(flow: str) -> None:
        start.wait()
        answers[flow] = gate(flow)

    threads = [threading.Thread(target=poll, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return [answers.get(name, "no answer") for name in names]


@pytest.mark.parametrize("kind", KINDS)
def test_twenty_flows_polling_at_once_cost_one_catalog_query_per_system(kind, db_factory, tmp_path):
    pair = make_pair(db_factory, kind, suffix=f"_burst_{kind}")
    engine = sa.create_engine(pair.mes_url)
    adventureworks.create_and_load(engine, ["work_order"], schema=pair.mes_schema, limit=WORK_ORDERS)
    engine.dispose()
    base = flows(pair)["work_orders"]
    names = [f"flow_{n}" for n in range(1, FLOWS + 1)]
    config_path = write_config(tmp_path / "agent.yaml", pair,
                               {name: {**base, "staging_table": f"stg_{name}"} for name in names})
    prepare_erp(config_path)
    config = load_config(config_path)
    systems = Systems(config)
    gate = DriftGate(config, systems)
    try:
        assert gate(names[0]) is None  # connections opened, statements prepared
        for _ in range(3):  # every burst, not a lucky one
            with catalog_reads(pair) as reads:
                assert at_once(gate, names) == [None] * FLOWS
            assert sorted(reads) == ["erp", "mes"], reads
        with catalog_reads(pair) as reads:  # one after the other: each asks after the last check began
            for name in names[:3]:
                assert gate(name) is None
        assert sorted(reads) == ["erp"] * 3 + ["mes"] * 3
    finally:
        gate.close()
        systems.dispose()


@pytest.mark.parametrize("kind", KINDS)
def test_a_poll_is_answered_only_by_a_check_begun_after_it_asked(kind, db_factory, tmp_path):
    """Flow scrap_reasons asks while work_orders' MES check runs (that read already went to the server); then the MES
    drops a column scrap_reasons reads. The running check must not answer scrap_reasons (it began before it asked),
    and the check that does, begun after the change, stops that poll: drift committed before a poll is never missed."""
    plant = new_plant(db_factory, kind, tmp_path)
    config = load_config(plant.config)
    systems = Systems(config)
    gate = DriftGate(config, systems)
    mes_database = sa.make_url(plant.pair.mes_url).database
    read, release = threading.Event(), threading.Event()

    def hold_first_mes_read(conn, _cursor, sql, *_args):
        if catalog_read(sql) and conn.engine.url.database == mes_database and not read.is_set():
            read.set()
            release.wait(timeout=30)

    answers: dict[str, str | None] = {}

    def poll(flow: str) -> None:
        answers[flow] = gate(flow)

    try:
        assert gate("work_orders") is None
        sa.event.listen(sa.engine.Engine, "after_cursor_execute", hold_first_mes_read)
        try:
            with catalog_reads(plant.pair) as reads:
                first = threading.Thread(target=poll, args=("work_orders",))
                first.start()
                assert read.wait(timeout=30)  # work_orders' MES check has read the catalog, and has not ended
                second = threading.Thread(target=poll, args=("scrap_reasons",))
                second.start()
                deadline = time.monotonic() + 30
                while "scrap_reasons" not in gate._shared["mes"].asking() and time.monotonic() < deadline:
                    time.sleep(0.001)
                assert "scrap_reasons" in gate._shared["mes"].asking()  # asked; its check has not begun
                plant.mes(f"ALTER TABLE {plant.mes_table('scrap_reason')} DROP COLUMN name")
                release.set()
                first.join(timeout=30)
                second.join(timeout=30)
        finally:
            sa.event.remove(sa.engine.Engine, "after_cursor_execute", hold_first_mes_read)
            release.set()
        assert answers["work_orders"] is None  # its check began before the change
        assert "halted by schema drift on system mes" in (answers["scrap_reasons"] or ""), answers
        assert reads.count("mes") == 2, reads  # the held check, then one begun after scrap_reasons asked
    finally:
        gate.close()
        systems.dispose()


@pytest.mark.parametrize("kind", KINDS)
def test_a_change_made_while_a_poll_waits_for_its_check_to_begin_stops_that_poll(kind, db_factory, tmp_path):
    """The coalescing window: a poll has asked, its check has not begun (it waits for other flows of the burst), the
    MES changes meanwhile: the check, begun after the change, sees it."""
    plant = new_plant(db_factory, kind, tmp_path)
    config = load_config(plant.config)
    systems = Systems(config)
    gate = DriftGate(config, systems)
    try:
        assert gate("scrap_reasons") is None
        with catalog_reads(plant.pair) as reads:
            answer = gate._ask("mes", "scrap_reasons")  # asked: the round is open, its read not begun
            assert gate._shared["mes"].asking() == {"scrap_reasons"} and reads == []
            plant.mes(f"ALTER TABLE {plant.mes_table('scrap_reason')} DROP COLUMN name")
            check = answer()
        assert [diff.summary() for diff in check.diffs] and reads == ["mes"]
        assert "halted by schema drift on system mes" in (gate("scrap_reasons") or "")
    finally:
        gate.close()
        systems.dispose()

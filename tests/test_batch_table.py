"""The write stage's batch table on PostgreSQL, on a real server: made once per session and kept (no catalog writes
per batch), emptied by every commit and rollback, read only for the batch's own rows, one table per shape.

Each batch goes through `write.insert_new_rows`, the statements every poll runs (batch table, COPY, ANALYZE, the
ledger + staging statement), on one pooled connection, as a long-running agent keeps them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from agent import pipeline, write
from agent.config import load_config
from agent.connect import Systems
from agent.demo import adventureworks
from agent.dialects import pg_copy
from agent.drift.gate import DriftGate
from helpers import make_pair, prepare_erp, staging_engine, work_order_flow, write_config

STAMP = dt.datetime(2026, 3, 1, 6, 0, 0, 123456)


@pytest.fixture(scope="module")
def flow(db_factory, tmp_path_factory):
    pair = make_pair(db_factory, "postgresql")
    mes = sa.create_engine(pair.mes_url)
    adventureworks.create_and_load(mes, ["work_order"], schema=pair.mes_schema, limit=10)
    mes.dispose()
    config_path = write_config(tmp_path_factory.mktemp("batch") / "agent.yaml", pair, {"work_orders": work_order_flow(pair)})
    prepare_erp(config_path)
    config = load_config(config_path)
    systems = Systems(config)
    gate = DriftGate(config, systems)
    ctx = pipeline.prepare(config, systems, "work_orders")
    yield ctx, staging_engine(pair)
    gate.close()
    systems.dispose()


def mapped(batch_id: str, key: int, version: str = "v1", columns: int = 10) -> tuple[Any, ...]:
    values = (key, 707, 8, Decimal("7.125"), 1, "BRKN", STAMP, STAMP, STAMP, STAMP)[:columns]
    return (batch_id, "work_orders", str(key), version, "U", *values)


def staged(engine: sa.Engine) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT stg_batch_id, stg_source_key, stg_source_version FROM staging.stg_work_order ORDER BY stg_id"))]


def batch_tables(conn: sa.Connection) -> list[tuple[int, str]]:
    """This session's batch tables: (oid, name)."""
    found = [tuple(r) for r in conn.execute(sa.text(
        "SELECT c.oid::int, c.relname::text FROM pg_class c WHERE c.relnamespace = pg_my_temp_schema() "
        "AND c.relname LIKE 'agent_batch_%' ORDER BY c.relname"))]
    conn.rollback()
    return found


def insert(conn: sa.Connection, ctx: pipeline.FlowContext, rows: list[tuple[Any, ...]], batch_id: str,
           staging: Any = None) -> int:
    return write.insert_new_rows(conn, ctx.target_dialect, staging or ctx.staging, ctx.control, rows, batch_id)


def test_the_batch_table_is_kept_per_session_and_each_batch_stages_exactly_its_new_rows(flow):
    """Rows an earlier batch of the same transaction left in the batch table are in the ledger already, so they are
    never staged twice even without write_staging.sql's stg_batch_id condition (which this test cannot tell apart)."""
    ctx, erp = flow
    with ctx.target_engine.connect() as conn:
        with conn.begin():
            assert insert(conn, ctx, [mapped("A", 1), mapped("A", 2)], "A") == 2
        kept = batch_tables(conn)
        assert len(kept) == 1 and kept[0][1].endswith("_work_orders")
        with conn.begin():
            # Emptied by the commit: batch B sees neither A's rows nor stages k2 again (the ledger has it).
            assert conn.execute(sa.text(f'SELECT count(*) FROM "{kept[0][1]}"')).scalar() == 0
            assert insert(conn, ctx, [mapped("B", 2), mapped("B", 3)], "B") == 1
        with conn.begin():
            # Two batches in one transaction: the second stages only its own new row.
            assert insert(conn, ctx, [mapped("C", 4)], "C") == 1
            assert insert(conn, ctx, [mapped("D", 4), mapped("D", 5)], "D") == 1
        assert batch_tables(conn) == kept  # the same table (same oid): nothing made or dropped per batch
    assert staged(erp) == [("A", "1", "v1"), ("A", "2", "v1"), ("B", "3", "v1"), ("C", "4", "v1"), ("D", "5", "v1")]


def test_a_rolled_back_batch_leaves_nothing_and_is_staged_by_the_retry(flow):
    ctx, erp = flow
    before = staged(erp)
    with ctx.target_engine.connect() as conn:
        transaction = conn.begin()
        assert insert(conn, ctx, [mapped("E", 6)], "E") == 1
        transaction.rollback()
        with conn.begin():
            assert insert(conn, ctx, [mapped("F", 6)], "F") == 1
    assert staged(erp) == [*before, ("F", "6", "v1")]


def test_a_flow_whose_columns_changed_gets_a_batch_table_of_its_new_shape_on_the_same_session(flow):
    ctx, erp = flow
    narrower = dataclasses.replace(ctx.staging, columns=ctx.staging.columns[:9])  # mes_modified_at no longer mapped
    before = staged(erp)
    with ctx.target_engine.connect() as conn:
        with conn.begin():
            assert insert(conn, ctx, [mapped("G", 7)], "G") == 1
        with conn.begin():
            assert insert(conn, ctx, [mapped("H", 8, columns=9)], "H", staging=narrower) == 1
        with conn.begin():
            assert insert(conn, ctx, [mapped("I", 9)], "I") == 1
        tables = batch_tables(conn)
    assert len(tables) == 2 and all(name.endswith("_work_orders") for _, name in tables)
    assert staged(erp) == [*before, ("G", "7", "v1"), ("H", "8", "v1"), ("I", "9", "v1")]
    with erp.connect() as conn:
        modified = dict(conn.execute(sa.text(
            "SELECT stg_source_key, mes_modified_at FROM staging.stg_work_order WHERE stg_batch_id IN ('G', 'H')")).all())
    assert modified["8"] is None and modified["7"].replace(tzinfo=None) == STAMP


def test_a_large_batch_is_joined_to_its_new_ledger_entries_by_hash_or_merge_never_by_a_loop(flow):
    """The plan of the ledger + staging statement as the agent sends it, explained in the batch's own transaction
    (the batch table still holds the 10,000 rows and the statistics ANALYZE gave it). A nested loop here costs a
    scan of the batch table per row: 20 s instead of 0.2 s for a batch of 10,000 (seen when the planner guessed).
    One row of the batch was staged before, so the batch goes by write_staging.sql, the statement with the join."""
    ctx, _erp = flow
    sent: list[tuple[str, Any]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many):
        if "INSERT INTO" in statement and "ON CONFLICT" in statement:
            sent.append((statement, parameters))

    with ctx.target_engine.connect() as conn, conn.begin():
        assert insert(conn, ctx, [mapped("J0", 100_000)], "J0") == 1
    rows = [mapped("J", key) for key in range(100_000, 110_000)]
    sa.event.listen(ctx.target_engine, "before_cursor_execute", capture)
    try:
        with ctx.target_engine.connect() as conn, conn.begin():
            assert insert(conn, ctx, rows, "J") == 9_999
            statement, parameters = sent[-1]
            cursor = conn.connection.driver_connection.cursor()
            cursor.execute(f"EXPLAIN {statement}", parameters)
            plan = "\n".join(line for (line,) in cursor.fetchall())
    finally:
        sa.event.remove(ctx.target_engine, "before_cursor_execute", capture)
    assert "Nested Loop" not in plan and ("Hash Join" in plan or "Merge Join" in plan), plan


def text_only(ctx: pipeline.FlowContext) -> Any:
    """The flow's staging table without the live native types: its batches go by text COPY."""
    return dataclasses.replace(ctx.staging, columns=tuple(dataclasses.replace(c, native=None) for c in ctx.staging.columns))


def staged_values(engine: sa.Engine, batch_id: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT order_no, product_id, qty_planned, qty_good, qty_scrap, scrap_reason, started_at, finished_at, "
            "due_date, mes_modified_at FROM staging.stg_work_order WHERE stg_batch_id = :b ORDER BY order_no"), {"b": batch_id})]


def test_binary_copy_stores_exactly_what_text_copy_stores(flow):
    ctx, erp = flow
    assert ctx.staging.native_types()["qty_good"] == "numeric(18,3)"  # read from the live staging table
    odd = dt.datetime(1999, 12, 31, 23, 59, 59, 999999)

    def rows(batch_id: str, base: int) -> list[tuple[Any, ...]]:
        return [(batch_id, "work_orders", str(base + i), "v1", "U", base + i, -2**31, 2**31 - 1, amount, -2**15, code,
                 odd, STAMP, dt.datetime(1, 1, 1), None)
                for i, (amount, code) in enumerate([(Decimal("7.1256"), "ÄÖü€"), (Decimal("-0.0005"), ""),
                                                    (Decimal("999999999999999.999"), "a\tb")])]

    natives = pg_copy.natives_of(ctx.staging.insert_columns, ctx.staging.native_types())
    assert pg_copy.binary_types(natives, rows("K", 200)) is not None  # batch K goes by binary COPY
    assert pg_copy.binary_types(pg_copy.natives_of(ctx.staging.insert_columns, {}), rows("L", 300)) is None
    with ctx.target_engine.connect() as conn:
        with conn.begin():
            assert insert(conn, ctx, rows("K", 200), "K") == 3
        with conn.begin():
            assert insert(conn, ctx, rows("L", 300), "L", staging=text_only(ctx)) == 3
    binary, text = staged_values(erp, "K"), staged_values(erp, "L")
    assert [r[1:] for r in binary] == [r[1:] for r in text]
    assert [r[3] for r in binary] == [Decimal("7.126"), Decimal("-0.001"), Decimal("999999999999999.999")]
    assert binary[0][6] == odd and binary[0][8] == dt.datetime(1, 1, 1) and binary[0][5] == "ÄÖü€"


def test_a_batch_whose_values_binary_copy_cannot_take_goes_as_text(flow):
    """A zoned datetime after a naive one in a `timestamp` column: found only while streaming, so the binary attempt
    rolls back to its savepoint and the batch goes by text COPY (which keeps the wall-clock time)."""
    ctx, erp = flow
    zoned = dt.datetime(2026, 3, 1, 8, 0, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    rows = [(*mapped("M", 400)[:11], STAMP, *mapped("M", 400)[12:]),
            (*mapped("M", 401)[:11], zoned, *mapped("M", 401)[12:])]
    with ctx.target_engine.connect() as conn, conn.begin():
        assert insert(conn, ctx, rows, "M") == 2
    assert [r[6] for r in staged_values(erp, "M")] == [STAMP, zoned.replace(tzinfo=None)]


def test_a_value_neither_copy_can_take_fails_the_batch_with_the_database_message(flow):
    ctx, _erp = flow
    too_long = (*mapped("N", 500)[:10], "TOOLONG", *mapped("N", 500)[11:])  # scrap_reason is varchar(5)
    too_long_message = r"value too long for type character varying\(5\)"
    with ctx.target_engine.connect() as conn, pytest.raises(sa.exc.DBAPIError, match=too_long_message), conn.begin():
        insert(conn, ctx, [too_long], "N")

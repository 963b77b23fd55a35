"""Issue 2's core promise on real databases: the 72,591 AdventureWorks work orders move exactly once.

For each database kind: an initial `run --once` stages every work order with values equal after mapping;
a second run moves nothing; updating 100 rows and inserting 50 moves exactly 150.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import sqlalchemy as sa

from agent.demo import adventureworks
from helpers import Pair, cli, make_pair, prepare_erp, staging_rows, work_order_flow, write_config

KINDS = ["postgresql", "mysql", "mysql_odbc", "sqlite"]
WORK_ORDERS = 72_591
SCRAP_CODES = {"1": "BRKN", "2": "DRILL"}


@pytest.fixture(scope="module", params=KINDS)
def loaded(request, db_factory, tmp_path_factory):
    """MES with all work orders, ERP with staging tables, and one completed initial load."""
    pair = make_pair(db_factory, request.param, suffix=f"_{request.param}")
    mes = sa.create_engine(pair.mes_url)
    counts = adventureworks.create_and_load(mes, ["work_order"], schema=pair.mes_schema)
    mes.dispose()
    assert counts == {"work_order": WORK_ORDERS}
    config = write_config(tmp_path_factory.mktemp(request.param) / "agent.yaml", pair,
                          {"work_order_confirmations": work_order_flow(pair)})
    prepare_erp(config)
    first = cli("run", "-c", str(config), "--once")
    return pair, config, first


def expected_staging(row: dict) -> tuple:
    """What the mapping in helpers.WORK_ORDER_COLUMNS makes of one source work order."""
    scrap = row["scrap_reason_id"]
    return (
        row["work_order_id"], row["product_id"], row["order_qty"], Decimal(row["stocked_qty"]),
        row["scrapped_qty"], None if scrap is None else SCRAP_CODES.get(str(scrap), "OTHER"),
        row["start_date"], row["end_date"], row["due_date"], row["modified_date"],
    )


def staged_values(pair: Pair) -> list[tuple]:
    rows = staging_rows(
        pair, columns="order_no, product_id, qty_planned, qty_good, qty_scrap, scrap_reason, started_at, "
        "finished_at, due_date, mes_modified_at", order="order_no",
    )
    return [tuple(_typed(v) for v in row) for row in rows]


def _typed(value):
    # SQLite hands back text for timestamps and floats for decimals through raw SQL; compare typed values.
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] in " T":
        return dt.datetime.fromisoformat(value)
    if isinstance(value, float):
        return Decimal(str(value))
    return value


def source_rows(pair: Pair) -> list[dict]:
    engine = sa.create_engine(pair.mes_url)
    with engine.connect() as conn:
        table = adventureworks.define_table(sa.MetaData(), "work_order", pair.mes_schema)
        rows = [dict(r._mapping) for r in conn.execute(sa.select(table).order_by(table.c.work_order_id))]
    engine.dispose()
    return rows


def test_initial_load_stages_every_work_order_once_with_mapped_values(loaded):
    pair, _config, first = loaded
    assert first.exit_code == 0, first.output
    assert [expected_staging(r) for r in source_rows(pair)] == staged_values(pair)


def test_control_columns_follow_the_staging_contract(loaded):
    pair, _config, _ = loaded
    rows = staging_rows(pair, columns="stg_flow, stg_source_key, stg_source_version, stg_change, stg_status, stg_error",
                        order="order_no")
    assert len(rows) == WORK_ORDERS
    assert tuple(rows[0]) == ("work_order_confirmations", "1", "2022-06-12T00:00:00.000000|1", "U", "PENDING", None)
    assert {tuple(r[3:]) for r in rows} == {("U", "PENDING", None)}
    assert len({(r[1], r[2]) for r in rows}) == WORK_ORDERS


def test_second_run_moves_nothing_then_exactly_the_150_changes(loaded):
    pair, config, _ = loaded
    again = cli("run", "-c", str(config), "--once")
    assert again.exit_code == 0, again.output
    assert len(staging_rows(pair, columns="stg_id")) == WORK_ORDERS

    changed_at = dt.datetime(2026, 1, 5, 6, 30, 15, 123456)
    mes = sa.create_engine(pair.mes_url)
    table = adventureworks.define_table(sa.MetaData(), "work_order", pair.mes_schema)
    with mes.begin() as conn:
        conn.execute(table.update().where(table.c.work_order_id.between(1000, 1099))
                     .values(scrapped_qty=1, stocked_qty=table.c.order_qty - 1, scrap_reason_id=2, modified_date=changed_at))
        conn.execute(table.insert(), [
            {"work_order_id": 100_000 + i, "product_id": 722, "order_qty": 10, "stocked_qty": 10, "scrapped_qty": 0,
             "start_date": changed_at, "end_date": None, "due_date": changed_at + dt.timedelta(days=3),
             "scrap_reason_id": None, "modified_date": changed_at + dt.timedelta(microseconds=i)}
            for i in range(50)
        ])
    mes.dispose()

    result = cli("run", "-c", str(config), "--once")
    assert result.exit_code == 0, result.output
    new_rows = staging_rows(pair, columns="order_no, qty_scrap, scrap_reason, stg_source_version",
                            order="stg_id")[WORK_ORDERS:]
    assert len(new_rows) == 150
    assert sorted(r[0] for r in new_rows) == [*range(1000, 1100), *range(100_000, 100_050)]
    updated = [r for r in new_rows if r[0] < 100_000]
    assert {(r[1], r[2]) for r in updated} == {(1, "DRILL")}
    assert updated[0][3] == f"2026-01-05T06:30:15.123456|{updated[0][0]}"
    # The changed orders now have two staging rows each: the original event and the change (append-only).
    assert len(staging_rows(pair, columns="stg_id")) == WORK_ORDERS + 150
    assert cli("run", "-c", str(config), "--once").exit_code == 0
    assert len(staging_rows(pair, columns="stg_id")) == WORK_ORDERS + 150


def test_status_reports_watermark_moved_rows_and_backlog(loaded):
    _pair, config, _ = loaded
    result = cli("status", "-c", str(config), "--json")
    assert result.exit_code == 0, result.output
    import json

    (status,) = json.loads(result.output)
    assert status["flow"] == "work_order_confirmations"
    assert status["rows_moved"] == WORK_ORDERS + 150
    assert status["rows_quarantined"] == 0
    assert status["pending_rows"] == WORK_ORDERS + 150
    assert status["last_outcome"] == "ok"
    assert status["watermark"] == "modified_date=2026-01-05T06:30:15.123505, work_order_id=100049"
    assert 0 <= status["oldest_pending_age_seconds"] < 600

"""The database fixtures and the AdventureWorks loader work against real servers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, create_engine, func, make_url, select

import dbs
from agent.demo import adventureworks

LOAD_KINDS = ("sqlite", "postgresql", "mysql")
EXPECTED_ROW_COUNTS = {
    "work_order": 72_591,
    "work_order_routing": 67_131,
    "scrap_reason": 16,
    "location": 14,
    "product": 504,
}
WORK_ORDER_1 = {
    "work_order_id": 1,
    "product_id": 722,
    "order_qty": 8,
    "stocked_qty": 8,
    "scrapped_qty": 0,
    "start_date": dt.datetime(2022, 6, 2),
    "end_date": dt.datetime(2022, 6, 12),
    "due_date": dt.datetime(2022, 6, 13),
    "scrap_reason_id": None,
    "modified_date": dt.datetime(2022, 6, 12),
}


@contextmanager
def engine_for(url: str) -> Iterator[Engine]:
    engine = create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def loaded_url(db_factory: Callable[..., str]) -> Callable[[str], str]:
    """``loaded_url(kind)``: URL of a database of ``kind`` holding all AdventureWorks tables (loaded once)."""
    urls: dict[str, str] = {}

    def get(kind: str) -> str:
        if kind not in urls:
            url = db_factory(kind)
            with engine_for(url) as engine:
                assert adventureworks.create_and_load(engine, adventureworks.TABLES) == EXPECTED_ROW_COUNTS
            urls[kind] = url
        return urls[kind]

    return get


def read_table(url: str, name: str) -> list[dict[str, Any]]:
    table = adventureworks.define_table(MetaData(), name, None)
    with engine_for(url) as engine, engine.connect() as connection:
        result = connection.execute(select(table).order_by(*table.primary_key.columns))
        return [dict(row._mapping) for row in result]


@pytest.mark.parametrize("kind", LOAD_KINDS)
def test_work_order_facts(kind: str, loaded_url: Callable[[str], str]) -> None:
    work_order = adventureworks.define_table(MetaData(), "work_order", None)
    with engine_for(loaded_url(kind)) as engine, engine.connect() as connection:
        count, max_id = connection.execute(select(func.count(), func.max(work_order.c.work_order_id))).one()
        scrapped = connection.execute(
            select(func.count()).where(work_order.c.scrapped_qty > 0)
        ).scalar_one()
        first = connection.execute(select(work_order).where(work_order.c.work_order_id == 1)).one()
    assert (count, max_id, scrapped) == (72_591, 72_591, 729)
    assert dict(first._mapping) == WORK_ORDER_1
    assert all(type(first._mapping[c]) is dt.datetime for c in ("start_date", "end_date", "due_date"))


@pytest.mark.parametrize("kind", LOAD_KINDS)
@pytest.mark.parametrize("table_name", adventureworks.TABLES)
def test_every_row_round_trips(kind: str, table_name: str, loaded_url: Callable[[str], str]) -> None:
    assert read_table(loaded_url(kind), table_name) == list(adventureworks.iter_rows(table_name))


@pytest.mark.parametrize("kind", LOAD_KINDS)
def test_product_keeps_milliseconds_flags_and_money(kind: str, loaded_url: Callable[[str], str]) -> None:
    product_680 = next(row for row in read_table(loaded_url(kind), "product") if row["product_id"] == 680)
    assert product_680["modified_date"] == dt.datetime(2025, 2, 7, 10, 1, 36, 827000)
    assert product_680["make_flag"] is True and product_680["finished_goods_flag"] is True
    assert product_680["list_price"] == Decimal("1431.5000")


def test_mysql_odbc_reads_the_rows_pymysql_loaded(loaded_url: Callable[[str], str]) -> None:
    dbs.skip_unless_available("mysql_odbc")
    database = make_url(loaded_url("mysql")).database
    assert database is not None
    odbc_url = dbs.url_for("mysql_odbc", database)
    assert make_url(odbc_url).drivername == "mysql+pyodbc"
    assert read_table(odbc_url, "work_order") == list(adventureworks.iter_rows("work_order"))
    assert read_table(odbc_url, "product") == list(adventureworks.iter_rows("product"))


def test_mysql_odbc_database_from_factory(db_factory: Callable[..., str]) -> None:
    url = db_factory("mysql_odbc")
    with engine_for(url) as engine:
        counts = adventureworks.create_and_load(engine, ["scrap_reason", "location"])
    assert counts == {"scrap_reason": 16, "location": 14}
    assert read_table(url, "location") == list(adventureworks.iter_rows("location"))


def test_iter_rows_limit_and_types() -> None:
    rows = list(adventureworks.iter_rows("location", limit=2))
    assert [row["name"] for row in rows] == ["Tool Crib", "Sheet Metal Racks"]
    assert rows[0]["cost_rate"] == Decimal("0") and isinstance(rows[0]["cost_rate"], Decimal)

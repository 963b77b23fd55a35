"""AdventureWorks Production tables as MES source tables: definitions and a fast loader.

The data ships gzip-compressed in ``agent/demo/data/adventureworks`` (see its README.md).
Table and column names are the snake_case forms of Microsoft's names (``WorkOrderID`` ->
``work_order_id``); ``define_table`` decides which source columns are kept and their types,
and ``iter_rows`` parses each kept field according to that type.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import re
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from functools import cache
from importlib import resources
from itertools import islice
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeEngine

TABLES: tuple[str, ...] = ("work_order", "work_order_routing", "scrap_reason", "location", "product")

SOURCE_FILES: dict[str, str] = {
    "work_order": "WorkOrder.csv.gz",
    "work_order_routing": "WorkOrderRouting.csv.gz",
    "scrap_reason": "ScrapReason.csv.gz",
    "location": "Location.csv.gz",
    "product": "Product.csv.gz",
}

EXECUTEMANY_CHUNK_ROWS = 5000


def _datetime() -> TypeEngine[dt.datetime]:
    # MySQL/MariaDB DATETIME drops fractional seconds unless fsp is given; sources have milliseconds.
    return DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _money() -> Numeric[Decimal]:
    return Numeric(19, 4)


def _key(name: str, type_: TypeEngine[Any]) -> Column[Any]:
    return Column(name, type_, primary_key=True, autoincrement=False)


def _columns(name: str) -> list[Column[Any]]:
    if name == "work_order":
        return [
            _key("work_order_id", Integer()),
            Column("product_id", Integer(), nullable=False),
            Column("order_qty", Integer(), nullable=False),
            Column("stocked_qty", Integer(), nullable=False),
            Column("scrapped_qty", SmallInteger(), nullable=False),
            Column("start_date", _datetime(), nullable=False),
            Column("end_date", _datetime(), nullable=True),
            Column("due_date", _datetime(), nullable=False),
            Column("scrap_reason_id", SmallInteger(), nullable=True),
            Column("modified_date", _datetime(), nullable=False),
        ]
    if name == "work_order_routing":
        return [
            _key("work_order_id", Integer()),
            _key("product_id", Integer()),
            _key("operation_sequence", SmallInteger()),
            Column("location_id", SmallInteger(), nullable=False),
            Column("scheduled_start_date", _datetime(), nullable=False),
            Column("scheduled_end_date", _datetime(), nullable=False),
            Column("actual_start_date", _datetime(), nullable=True),
            Column("actual_end_date", _datetime(), nullable=True),
            Column("actual_resource_hrs", Numeric(9, 4), nullable=True),
            Column("planned_cost", _money(), nullable=False),
            Column("actual_cost", _money(), nullable=True),
            Column("modified_date", _datetime(), nullable=False),
        ]
    if name == "scrap_reason":
        return [
            _key("scrap_reason_id", SmallInteger()),
            Column("name", String(50), nullable=False),
            Column("modified_date", _datetime(), nullable=False),
        ]
    if name == "location":
        return [
            _key("location_id", SmallInteger()),
            Column("name", String(50), nullable=False),
            Column("cost_rate", Numeric(10, 4), nullable=False),
            Column("availability", Numeric(8, 2), nullable=False),
            Column("modified_date", _datetime(), nullable=False),
        ]
    if name == "product":
        return [
            _key("product_id", Integer()),
            Column("name", String(50), nullable=False),
            Column("product_number", String(25), nullable=False),
            Column("make_flag", Boolean(), nullable=False),
            Column("finished_goods_flag", Boolean(), nullable=False),
            Column("color", String(15), nullable=True),
            Column("standard_cost", _money(), nullable=False),
            Column("list_price", _money(), nullable=False),
            Column("days_to_manufacture", Integer(), nullable=False),
            Column("modified_date", _datetime(), nullable=False),
        ]
    raise ValueError(f"unknown AdventureWorks table {name!r}; expected one of {', '.join(TABLES)}")


def define_table(metadata: MetaData, name: str, schema: str | None) -> Table:
    """Define MES table ``name`` in ``metadata``, with an index for watermark reads by modified_date."""
    columns = _columns(name)
    key_names = [c.name for c in columns if c.primary_key]
    table = Table(name, metadata, *columns, schema=schema)
    Index(f"ix_{name}_modified", table.c.modified_date, *(table.c[k] for k in key_names))
    return table


def _parse_bool(text: str) -> bool:
    return {"0": False, "1": True}[text]


def _parser(type_: TypeEngine[Any]) -> Callable[[str], Any]:
    if isinstance(type_, Boolean):
        return _parse_bool
    if isinstance(type_, Integer):
        return int
    if isinstance(type_, Numeric):
        return Decimal  # Decimal(".5000") works; bcp writes no leading zero below 1
    if isinstance(type_, DateTime):
        return dt.datetime.fromisoformat  # "2022-06-02 00:00:00.000" -> naive datetime
    if isinstance(type_, String):
        return str  # kept columns are nvarchar; nchar padding would need rstrip here
    raise TypeError(f"no CSV parser for {type_!r}")


def _snake_case(source_name: str) -> str:
    """``WorkOrderID`` -> ``work_order_id``, ``rowguid`` -> ``rowguid``."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", source_name).lower()


@cache
def _template(name: str) -> Table:
    return define_table(MetaData(), name, None)


def iter_rows(name: str, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Yield the rows of table ``name`` as dicts of typed values (None for NULL), in file order."""
    table = _template(name)
    data_file = resources.files("agent.demo") / "data" / "adventureworks" / SOURCE_FILES[name]
    with data_file.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8", newline="") as text:
        reader = csv.reader(text)
        header = [_snake_case(h) for h in next(reader)]
        missing = set(table.c.keys()) - set(header)
        if missing:
            raise ValueError(f"{SOURCE_FILES[name]} lacks columns {sorted(missing)}")
        fields = [(i, col, _parser(table.c[col].type)) for i, col in enumerate(header) if col in table.c]
        for record in islice(reader, limit):
            yield {col: (parse(record[i]) if record[i] != "" else None) for i, col, parse in fields}


def _copy_into_postgresql(connection: Any, table: Table, rows: Iterable[dict[str, Any]]) -> int:
    preparer = connection.dialect.identifier_preparer
    column_names = list(table.c.keys())
    statement = "COPY {} ({}) FROM STDIN".format(
        preparer.format_table(table), ", ".join(preparer.quote(c) for c in column_names)
    )
    count = 0
    with connection.connection.driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row([row[c] for c in column_names])
            count += 1
    return count


def _insert_in_chunks(connection: Any, table: Table, rows: Iterable[dict[str, Any]]) -> int:
    rows_iter = iter(rows)
    insert = table.insert()
    count = 0
    while chunk := list(islice(rows_iter, EXECUTEMANY_CHUNK_ROWS)):
        connection.execute(insert, chunk)
        count += len(chunk)
    return count


def create_and_load(
    engine: Engine, names: Iterable[str], schema: str | None = None, limit: int | None = None
) -> dict[str, int]:
    """Create tables ``names`` in ``schema`` if missing, load their rows, return rows loaded per table.

    Tables are expected to be empty. All tables load in one transaction. On MySQL/MariaDB
    ``schema`` is a database, which the caller must create.
    """
    metadata = MetaData()
    tables = [define_table(metadata, name, schema) for name in names]
    use_copy = engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"
    counts: dict[str, int] = {}
    with engine.begin() as connection:
        metadata.create_all(connection, checkfirst=True)
        for table in tables:
            rows = iter_rows(table.name, limit)
            load = _copy_into_postgresql if use_copy else _insert_in_chunks
            counts[table.name] = load(connection, table, rows)
    return counts

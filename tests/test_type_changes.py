"""Vendor updates change source column types (issue 2). After the change is accepted (`snapshot --accept`), the
flow runs on: a value that fits the live staging column exactly is converted, one that does not is quarantined
with a reason naming the column and both types, and no value ever fails the whole flow."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from helpers import Pair, cli, make_pair, prepare_erp, staging_rows, table_name, write_config

T0 = dt.datetime(2026, 3, 2, 6, 0, 0)
COLUMNS = ["qty", "amount", "weight", "ratio", "code", "note", "stamp", "day", "at"]
# Each column's type before and after the vendor update, per database. SQLite declares no fractional-second
# precision (SQLAlchemy writes microseconds) and its `sql ddl` writes TIMESTAMP: the finer fraction fits there.
BEFORE = {
    "postgresql": ["integer", "numeric(10,2)", "numeric(10,2)", "numeric(10,2)", "varchar(10)", "varchar(20)",
                   "timestamp(0)", "date", "timestamp(6)"],
    "mysql": ["int", "decimal(10,2)", "decimal(10,2)", "decimal(10,2)", "varchar(10)", "varchar(20)", "datetime(0)",
              "date", "datetime(6)"],
    "sqlite": ["INTEGER", "DECIMAL(10,2)", "DECIMAL(10,2)", "DECIMAL(10,2)", "VARCHAR(10)", "VARCHAR(20)",
               "DATETIME", "DATE", "DATETIME"],
}
AFTER = {
    "postgresql": ["numeric(12,2)", "integer", "numeric(14,4)", "numeric(8,1)", "varchar(20)", "varchar(10)",
                   "timestamp(6)", "timestamp(6)", "date"],
    "mysql": ["decimal(12,2)", "int", "decimal(14,4)", "decimal(8,1)", "varchar(20)", "varchar(10)", "datetime(6)",
              "datetime(6)", "date"],
    "sqlite": ["DECIMAL(12,2)", "INTEGER", "DECIMAL(14,4)", "DECIMAL(8,1)", "VARCHAR(20)", "VARCHAR(10)",
               "DATETIME", "DATETIME", "DATE"],
}
FIRST = (1, 5, Decimal("10.50"), Decimal("1.25"), Decimal("2.50"), "A1", "first", T0, dt.date(2026, 3, 1), T0)
FITS = (2, Decimal("7.00"), 12, Decimal("1.2500"), Decimal("3.5"), "ABCDEFGHIJ", "short", T0.replace(second=1),
        dt.datetime(2026, 3, 5), dt.date(2026, 3, 5))
# One value each that the staging column, still typed as before the update, cannot hold.
MISFITS = {
    3: ("qty", Decimal("1.50")),
    4: ("amount", 123456789),
    5: ("weight", Decimal("1.2345")),
    6: ("code", "ABCDEFGHIJKLMNO"),
    7: ("stamp", T0.replace(second=1, microsecond=250000)),
    8: ("day", dt.datetime(2026, 3, 5, 14, 30)),
}
REASONS = [
    ("3", "qty: not a whole number (source column qty is decimal(12,2), the staging column int; value '1.50')"),
    ("4", "amount: too large for decimal(10,2) (source column amount is int, the staging column decimal(10,2); "
          "value '123456789')"),
    ("5", "weight: has more than 2 decimal places (decimal(10,2)) (source column weight, value '1.2345')"),
    ("6", "code: 15 characters, the staging column holds at most 10 (source column code, value 'ABCDEFGHIJKLMNO')"),
    ("7", "stamp: has a finer fraction of a second than the staging column keeps (timestamp(0)) "
          "(source column stamp, value '2026-03-02T06:00:01.250000')"),
    ("8", "day: has a time of day; the staging column is a date (source column day is timestamp(6), the staging "
          "column date; value '2026-03-05T14:30:00')"),
]
# SQLite: its INTEGER staging column holds 64 bits; DATETIME text keeps microseconds, so a finer fraction fits.
SQLITE_REASONS = [(key, reason.replace("the staging column int;", "the staging column bigint;"))
                  for key, reason in REASONS if key != "7"]


def create_source(pair: Pair, types: list[str]) -> None:
    columns = ", ".join(f"{name} {type_} NULL" for name, type_ in zip(COLUMNS, types))
    stamp = {"mysql": "datetime(6)", "postgresql": "timestamp(6)", "sqlite": "DATETIME"}[pair.kind]
    mes(pair, f"CREATE TABLE {table_name(pair, 'part_event')} (event_id integer PRIMARY KEY, {columns}, "
              f"modified_at {stamp} NOT NULL)")


def mes(pair: Pair, *statements: str, rows: list[tuple[Any, ...]] = ()) -> None:
    engine = sa.create_engine(pair.mes_url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
            if rows:
                insert = sa.text(f"INSERT INTO {table_name(pair, 'part_event')} (event_id, {', '.join(COLUMNS)}, "
                                 f"modified_at) VALUES (:event_id, {', '.join(':' + c for c in COLUMNS)}, :modified_at)")
                conn.execute(insert, [
                    {name: bindable(pair, value) for name, value in zip(["event_id", *COLUMNS, "modified_at"],
                                                                       (*row, T0 + dt.timedelta(minutes=row[0])))}
                    for row in rows
                ])
    finally:
        engine.dispose()


def bindable(pair: Pair, value: Any) -> Any:
    """SQLite's driver takes no Decimal and stores datetimes as SQLAlchemy writes them (ISO text)."""
    if pair.kind != "sqlite":
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="microseconds")
    return value.isoformat() if isinstance(value, dt.date) else value


def vendor_update(pair: Pair) -> None:
    """The source columns' types change to AFTER, the way each database does it."""
    table = table_name(pair, "part_event")
    if pair.kind == "postgresql":
        mes(pair, f"ALTER TABLE {table} " + ", ".join(
            f"ALTER COLUMN {c} TYPE {t}" for c, t in zip(COLUMNS, AFTER["postgresql"])))
    elif pair.kind == "mysql":
        mes(pair, f"ALTER TABLE {table} " + ", ".join(f"MODIFY {c} {t} NULL" for c, t in zip(COLUMNS, AFTER["mysql"])))
    else:  # SQLite cannot change a column's type: rebuild the table, as sqlite.org/lang_altertable.html describes
        mes(pair, f"ALTER TABLE {table} RENAME TO part_event_old")
        create_source(pair, AFTER["sqlite"])
        mes(pair, f"INSERT INTO {table} SELECT * FROM part_event_old", "DROP TABLE part_event_old")


def flow(pair: Pair) -> dict[str, Any]:
    return {
        "source": "mes", "target": "erp", "table": table_name(pair, "part_event"),
        "watermark": ["modified_at", "event_id"], "key": ["event_id"], "staging_table": "stg_part_event",
        "columns": {"event_no": "event_id", **{c: c for c in COLUMNS}},
    }


def plain(value: Any) -> Any:
    """A staged value as comparable text/number, whatever the driver returns (SQLite gives text and floats)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float, Decimal)):
        return Decimal(str(value)).normalize()
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="microseconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?", value):
        return dt.datetime.fromisoformat(value).isoformat(sep=" ", timespec="microseconds")
    return value


@pytest.mark.parametrize("kind", ["postgresql", "mysql", "sqlite"])
def test_accepted_type_changes_convert_what_fits_and_quarantine_the_rest(kind, db_factory, tmp_path: Path):
    pair = make_pair(db_factory, kind, suffix=f"_{kind}")
    create_source(pair, BEFORE[kind])
    mes(pair, rows=[FIRST])
    config = write_config(tmp_path / "agent.yaml", pair, {"part_events": flow(pair)})
    prepare_erp(config)
    first = cli("run", "-c", str(config), "--once")
    assert first.exit_code == 0, first.output

    vendor_update(pair)
    assert cli("drift", "-c", str(config)).exit_code == 3
    accepted = cli("snapshot", "-c", str(config), "--system", "mes", "--accept", "--yes")
    assert accepted.exit_code == 0, accepted.output
    misfits = [tuple(value if COLUMNS[i] != column else bad for i, value in enumerate(FITS[1:], start=0))
               for column, bad in MISFITS.values()]
    mes(pair, rows=[FITS, *[(key, *values) for key, values in zip(MISFITS, misfits)]])

    result = cli("run", "-c", str(config), "--once")
    assert result.exit_code == 0, result.output  # quarantined rows are not a failure
    staged = staging_rows(pair, "stg_part_event", "event_no, " + ", ".join(COLUMNS), "event_no")
    expected = [
        (1, 5, Decimal("10.5"), Decimal("1.25"), Decimal("2.5"), "A1", "first", "2026-03-02 06:00:00.000000", "2026-03-01",
         "2026-03-02 06:00:00.000000"),
        (2, 7, Decimal("12"), Decimal("1.25"), Decimal("3.5"), "ABCDEFGHIJ", "short", "2026-03-02 06:00:01.000000", "2026-03-05",
         "2026-03-05 00:00:00.000000"),
    ]
    if kind == "sqlite":  # the finer fraction fits SQLite's TIMESTAMP staging column
        expected.append((7, 7, Decimal("12"), Decimal("1.25"), Decimal("3.5"), "ABCDEFGHIJ", "short", "2026-03-02 06:00:01.250000",
                         "2026-03-05", "2026-03-05 00:00:00.000000"))
    assert [tuple(plain(v) for v in row) for row in staged] == [tuple(plain(v) for v in row) for row in expected]
    quarantined = staging_rows(pair, "agent_quarantine", "source_key, reason", "source_key")
    assert [tuple(q) for q in quarantined] == (SQLITE_REASONS if kind == "sqlite" else REASONS)


def test_integer_to_decimal_on_postgresql_is_not_a_copy_failure(db_factory, tmp_path: Path):
    """The issue's own steps: integer order_qty becomes numeric(12,2); 1.00 goes to the integer staging column."""
    pair = make_pair(db_factory, "postgresql", suffix="_issue")
    mes(pair, "CREATE TABLE production.work_order (work_order_id integer PRIMARY KEY, order_qty integer NOT NULL, "
              "modified_date timestamp NOT NULL)",
        "INSERT INTO production.work_order VALUES (1, 4, '2026-03-02 06:00:00')")
    config = write_config(tmp_path / "agent.yaml", pair, {"work_orders": {
        "source": "mes", "target": "erp", "table": "production.work_order", "watermark": ["modified_date", "work_order_id"],
        "key": ["work_order_id"], "staging_table": "stg_work_order", "columns": {"qty_planned": "order_qty"},
    }})
    prepare_erp(config)
    assert cli("run", "-c", str(config), "--once").exit_code == 0
    mes(pair, "ALTER TABLE production.work_order ALTER COLUMN order_qty TYPE numeric(12,2)",
        "INSERT INTO production.work_order VALUES (2, 1.00, '2026-03-02 07:00:00'), (3, 1.50, '2026-03-02 08:00:00')")
    assert cli("drift", "-c", str(config)).exit_code == 3
    assert cli("snapshot", "-c", str(config), "--accept", "--yes").exit_code == 0

    for _ in range(2):  # every run, not only the first
        result = cli("run", "-c", str(config), "--once")
        assert result.exit_code == 0, result.output
    assert [tuple(r) for r in staging_rows(pair, "stg_work_order", "stg_source_key, qty_planned")] == [("1", 4), ("2", 1)]
    assert [tuple(q) for q in staging_rows(pair, "agent_quarantine", "source_key, reason", "source_key")] == [
        ("3", "qty_planned: not a whole number (source column order_qty is decimal(12,2), the staging column int; "
              "value '1.50')"),
    ]

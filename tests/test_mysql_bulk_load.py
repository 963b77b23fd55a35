"""The MySQL/MariaDB batch table's loads (agent/dialects/mysql_load.py) on a real MariaDB, natively (PyMySQL) and
through ODBC: LOAD DATA LOCAL INFILE, and the multi-row INSERTs a server that refuses it gets, load exactly the values
given (decimals, microseconds, NULLs, unicode and the characters LOAD DATA escapes, signed and unsigned 64-bit
integers, binary), fail the batch rather than load a changed value, and a refusal falls back once, logged."""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal

import pytest
import sqlalchemy as sa

from agent.dialects import for_engine, mysql_load
from agent.errors import BulkLoadChanged

COLUMNS = {
    "k": ("int NOT NULL", sa.Integer()),
    "amount": ("decimal(65,30) NULL", sa.Numeric(65, 30)),
    "qty": ("decimal(18,3) NULL", sa.Numeric(18, 3)),
    "at": ("datetime(6) NULL", sa.DateTime()),
    "day": ("date NULL", sa.Date()),
    "clock": ("time(6) NULL", sa.Time()),
    "label": ("varchar(40) COLLATE utf8mb4_bin NULL", sa.String(40)),
    "note": ("longtext NULL", sa.Text()),
    "big": ("bigint NULL", sa.BigInteger()),
    "ubig": ("bigint unsigned NULL", sa.BigInteger()),
    "ratio": ("double NULL", sa.Float()),
    "raw": ("varbinary(300) NULL", sa.LargeBinary(300)),
}
ROWS = [
    (1, Decimal("12345678901234567890123456789012345.123456789012345678901234567890"), Decimal("-0.001"),
     dt.datetime(2024, 2, 29, 23, 59, 59, 999999), dt.date(1, 1, 1), dt.time(0, 0, 0, 1), "Grüße 😀 \\N",
     "tab\there\nnewline\r\\back\0nul", -(2**63), 2**64 - 1, 0.1, bytes(range(256))),
    (2, Decimal("0E-30"), Decimal("1E+2"), dt.datetime(1000, 1, 1, 0, 0, 0, 1), dt.date(9999, 12, 31),
     dt.time(23, 59, 59, 999999), "", "\\N", 2**63 - 1, 0, -1.5e300, b""),
    (3, None, None, None, None, None, None, None, None, None, None, None),
    (4, Decimal("-99999999999999999999999999999999999.999999999999999999999999999999"), Decimal("0.500"),
     dt.datetime(2024, 3, 31, 2, 30, 0), dt.date(2024, 3, 31), dt.time(12, 0), "NULL", "a\tb", -1, 2**63, -0.0,
     b"\t\n\\\0N"),
]
EXPECTED = [
    (1, ROWS[0][1], Decimal("-0.001"), *ROWS[0][3:]),
    (2, Decimal("0E-30"), Decimal("100.000"), *ROWS[1][3:]),
    ROWS[2],
    (4, ROWS[3][1], Decimal("0.500"), *ROWS[3][3:]),
]
DRIVERS = ["mysql", "mysql_odbc"]


@pytest.fixture(scope="module", params=DRIVERS)
def target(request, db_factory):
    url = db_factory(request.param, f"bulk_{request.param}")
    yield url
    mysql_load._refused.clear()


def _engine(url: str, **connect: object) -> sa.Engine:
    """The engine as the agent makes it for a target (connect arguments and session setup of the dialect)."""
    dialect = for_engine(sa.create_engine(url))
    engine = sa.create_engine(url, connect_args={**dialect.connect_args("target"), **connect})
    dialect.configure_engine(engine, "target", {})
    return engine


def _load(engine: sa.Engine, rows: list[tuple], columns: dict = COLUMNS) -> list[tuple]:
    """Load `rows` into a fresh temporary table with the dialect's load, then read it back natively (exact)."""
    dialect = for_engine(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TEMPORARY TABLE IF EXISTS batch")
        conn.exec_driver_sql(f"CREATE TEMPORARY TABLE batch ({', '.join(f'{n} {t}' for n, (t, _) in columns.items())}) "
                             "DEFAULT CHARSET=utf8mb4")
        dialect.load_batch_table(conn, "batch", list(columns), rows, {n: t for n, (_, t) in columns.items()})
        raw = conn.connection.driver_connection
        if engine.dialect.driver == "pyodbc":  # read back through the same session: the table is temporary
            cursor = raw.cursor()
            cursor.execute(f"SELECT {', '.join(_native(c) for c in columns)} FROM batch ORDER BY k")
            return [_from_text(tuple(row), columns) for row in cursor.fetchall()]
        return [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM batch ORDER BY k").fetchall()]


def _native(column: str) -> str:
    # MariaDB Connector/ODBC 3.1 rounds some types on the way back (its own limits, not the load's): read them as text.
    kind = COLUMNS.get(column, ("",))[0]
    if kind.startswith(("decimal", "datetime", "time", "bigint", "double", "varbinary")):
        return f"CAST({column} AS CHAR)" if not kind.startswith("varbinary") else f"HEX({column})"
    return column


def _from_text(row: tuple, columns: dict) -> tuple:
    out = []
    for value, (name, (kind, _)) in zip(row, columns.items(), strict=True):
        if value is None or not isinstance(value, str):
            out.append(value)
        elif kind.startswith("decimal"):
            out.append(Decimal(value))
        elif kind.startswith("datetime"):
            out.append(dt.datetime.fromisoformat(value))
        elif kind.startswith("time"):
            out.append(dt.time.fromisoformat(value))
        elif kind.startswith("bigint"):
            out.append(int(value))
        elif kind.startswith("double"):
            out.append(float(value))
        elif kind.startswith("varbinary"):
            out.append(bytes.fromhex(value))
        else:
            out.append(value)
        del name
    return tuple(out)


def _same(found: list[tuple], expected: list[tuple]) -> None:
    assert len(found) == len(expected)
    for got, want in zip(found, expected, strict=True):
        for value, wanted, name in zip(got, want, COLUMNS, strict=True):
            if isinstance(wanted, dt.time) and isinstance(value, dt.timedelta):  # PyMySQL reads TIME as timedelta
                value = (dt.datetime.min + value).time()
            if isinstance(wanted, Decimal):
                assert isinstance(value, Decimal) and value == wanted, (name, value, wanted)
            else:
                assert value == wanted and type(value) is type(wanted), (name, value, wanted)


def test_load_data_local_infile_loads_every_value_exactly(target):
    engine = _engine(target)
    try:
        with engine.connect() as conn:
            assert mysql_load.infile_allowed(conn)
        _same(_load(engine, ROWS), EXPECTED)
    finally:
        engine.dispose()


def test_multi_row_inserts_load_every_value_exactly(target, monkeypatch):
    monkeypatch.setattr(mysql_load, "infile_allowed", lambda conn: False)
    monkeypatch.setattr(mysql_load, "_PARAMS_PER_STATEMENT", 30)  # statements of 2 rows: a full one and a last one
    engine = _engine(target)
    try:
        _same(_load(engine, ROWS + [(5, *ROWS[2][1:])]), [*EXPECTED, (5, *ROWS[2][1:])])
    finally:
        engine.dispose()


def test_a_value_the_column_cannot_hold_fails_the_load_instead_of_being_changed(target):
    engine = _engine(target)
    columns = {"k": ("int NOT NULL", sa.Integer()), "label": ("varchar(3) NULL", sa.String(3))}
    try:
        with pytest.raises(BulkLoadChanged, match=r"Data truncated for column 'label'.*rolled back"):
            _load(engine, [(1, "abcdef")], columns)
    finally:
        engine.dispose()


def test_a_server_refusing_load_data_local_gets_inserts_and_one_log_line(db_factory, caplog):
    url = db_factory("mysql", "bulk_refused")
    mysql_load._refused.clear()
    engine = _engine(url, local_infile=False)  # the client does not offer LOCAL: the server refuses it, as when OFF
    try:
        with caplog.at_level(logging.WARNING, logger="mes_erp_agent"):
            _same(_load(engine, ROWS), EXPECTED)
            _same(_load(engine, ROWS), EXPECTED)
        refusals = [r for r in caplog.records if "refuses LOAD DATA LOCAL INFILE" in r.getMessage()]
        assert len(refusals) == 1, [r.getMessage() for r in caplog.records]
        assert "local_infile=ON" in refusals[0].getMessage()
    finally:
        engine.dispose()
        mysql_load._refused.clear()


def test_text_for_load_data_escapes_what_it_must_and_nothing_else():
    text = mysql_load.infile_text(
        [("a\tb", None, 1, Decimal("1E+2"), b"\x00\xff", dt.datetime(2024, 1, 2, 3, 4, 5, 6), True),
         ("\\N", "", -2, Decimal("-0.10"), None, dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc), False)],
        [False, False, False, False, True, False, False])
    assert text == ("a\\tb\t\\N\t1\t100\t00ff\t2024-01-02 03:04:05.000006\t1\n"
                    "\\\\N\t\t-2\t-0.10\t\\N\t2024-01-02 00:00:00\t0\n")

"""Timestamps keep their microseconds through every driver: in the keyset read's bind parameters (a page
ending inside a second continues exactly after its last row) and in the staged values.

MariaDB Connector/ODBC 3.1 dropped the fraction of bound datetimes: the next page restarted at the whole
second and the read's order check stopped the flow. Tested with the MES and the ERP through ODBC, the ERP
only through ODBC, natively with PyMySQL, and on PostgreSQL; batch sizes 1, 2 and 3 end batches inside a
second.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from agent import dialects
from helpers import (
    Pair, cli, make_pair, prepare_erp, scalar, staging_rows, table_name, with_odbc_source, write_config,
)

T0 = dt.datetime(2026, 5, 4, 10, 0, 0)
# (event_id, modified_date): several rows per second, a tie broken by the key, a row at exactly a whole second.
FIRST_LOAD = [
    (1, T0 + dt.timedelta(microseconds=100001)),
    (2, T0 + dt.timedelta(microseconds=100001)),
    (3, T0 + dt.timedelta(microseconds=250000)),
    (4, T0 + dt.timedelta(microseconds=999999)),
    (5, T0 + dt.timedelta(seconds=1)),
    (6, T0 + dt.timedelta(seconds=1, microseconds=1)),
    (7, T0 + dt.timedelta(seconds=1, microseconds=500000)),
]
# Later in the same second as the last watermark (event 7 at 10:00:01.500000), one of them 1 µs after it.
SECOND_LOAD = [
    (8, T0 + dt.timedelta(seconds=1, microseconds=500001)),
    (9, T0 + dt.timedelta(seconds=1, microseconds=750000)),
]
BATCH_SIZES = (1, 2, 3)
VARIANTS = {
    "mysql_odbc_source_and_target": ("mysql_odbc", True),
    "mysql_odbc_target": ("mysql_odbc", False),
    "mysql_native": ("mysql", False),
    "postgresql": ("postgresql", False),
}

MICROSECONDS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def event_table(schema: str | None) -> sa.Table:
    return sa.Table(
        "machine_event", sa.MetaData(),
        sa.Column("event_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("measured_at", MICROSECONDS, nullable=False),
        sa.Column("modified_date", MICROSECONDS, nullable=False),
        schema=schema,
    )


def measured_at(event_id: int, modified: dt.datetime) -> dt.datetime:
    """A staged, non-watermark timestamp with its own microseconds."""
    return modified - dt.timedelta(minutes=event_id, microseconds=event_id * 11)


def insert_events(url: str, table: sa.Table, events: list[tuple[int, dt.datetime]]) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(table.insert(), [
            {"event_id": i, "measured_at": measured_at(i, at), "modified_date": at} for i, at in events
        ])
    engine.dispose()


def flows(pair: Pair) -> dict:
    return {
        f"events_b{size}": {
            "source": "mes", "target": "erp", "table": table_name(pair, "machine_event"),
            "watermark": ["modified_date", "event_id"], "key": ["event_id"], "staging_table": f"stg_event_b{size}",
            "batch_size": size,
            "columns": {"event_no": "event_id", "measured_at": "measured_at", "mes_modified_at": "modified_date"},
        }
        for size in BATCH_SIZES
    }


def expected_versions(events: list[tuple[int, dt.datetime]]) -> set[tuple[str, str]]:
    return {(str(i), f"{at.isoformat(timespec='microseconds')}|{i}") for i, at in events}


def staged(pair: Pair, size: int) -> list[tuple]:
    rows = staging_rows(pair, f"stg_event_b{size}",
                        "stg_source_key, stg_source_version, event_no, measured_at, mes_modified_at", "event_no")
    return [tuple(r) for r in rows]


def expected_staged(events: list[tuple[int, dt.datetime]]) -> list[tuple]:
    return [
        (str(i), f"{at.isoformat(timespec='microseconds')}|{i}", i, measured_at(i, at), at) for i, at in sorted(events)
    ]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_batches_ending_inside_a_second_continue_exactly_and_keep_microseconds(variant, db_factory, tmp_path):
    kind, odbc_source = VARIANTS[variant]
    pair = make_pair(db_factory, kind, suffix=f"_{variant[:14]}")
    table = event_table(pair.mes_schema)
    native_mes = pair.mes_url
    mes = sa.create_engine(native_mes)
    table.metadata.create_all(mes)
    mes.dispose()
    insert_events(native_mes, table, FIRST_LOAD)
    if odbc_source:
        pair = with_odbc_source(pair)
        assert pair.mes_url.startswith("mysql+pyodbc://")
    config = write_config(tmp_path / "agent.yaml", pair, flows(pair))
    prepare_erp(config)

    first = cli("run", "-c", str(config), "--once")
    assert first.exit_code == 0, first.output
    for size in BATCH_SIZES:
        rows = staged(pair, size)
        assert {(r[0], r[1]) for r in rows} == expected_versions(FIRST_LOAD), f"batch_size {size}"
        assert rows == expected_staged(FIRST_LOAD), f"batch_size {size}"

    # The stored watermark (event 7 at 10:00:01.500000) is bound exactly: the next run reads only what is after it.
    insert_events(native_mes, table, SECOND_LOAD)
    second = cli("run", "-c", str(config), "--once")
    assert second.exit_code == 0, second.output
    for size in BATCH_SIZES:
        assert staged(pair, size) == expected_staged(FIRST_LOAD + SECOND_LOAD), f"batch_size {size}"
        # Nothing was read twice: 7 rows, then 2, each read and written once.
        assert run_totals(pair, f"events_b{size}") == (9, 9, 0), f"batch_size {size}"
    # The control tables' timestamps keep their microseconds too (agent_run has one row per batch).
    assert scalar(pair.erp_url, f"SELECT MAX(MICROSECOND(started_at)) FROM {pair.staging_schema}.agent_run"
                  if kind.startswith("mysql") else
                  f"SELECT MAX(EXTRACT(MICROSECONDS FROM started_at)::int % 1000000) FROM {pair.staging_schema}.agent_run") > 0


def run_totals(pair: Pair, flow: str) -> tuple[int, int, int]:
    """(rows read, rows written, rows already staged) over every batch of the flow."""
    engine = sa.create_engine(pair.erp_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.text(
                f"SELECT SUM(rows_read), SUM(rows_written), SUM(rows_duplicate) FROM {pair.staging_schema}.agent_run "
                "WHERE flow = :flow"
            ), {"flow": flow}).one()
    finally:
        engine.dispose()
    return tuple(int(v) for v in row)


@pytest.mark.parametrize("sa_type", [sa.DateTime(), sa.DateTime(timezone=True), sa.Time()])
def test_mariadb_odbc_binds_datetimes_and_times_as_exact_text(sa_type):
    from agent.dialects.mysql import ExactTemporalText

    odbc = dialects.for_url(sa.make_url("mysql+pyodbc://agent@mes/mes?driver=MariaDB+Unicode"))
    bound = odbc.bind_type(sa_type)
    assert isinstance(bound, ExactTemporalText)
    process = bound.bind_processor(odbc.sa_dialect) or (lambda v: v)
    assert process(dt.datetime(2026, 5, 4, 10, 0, 1, 500)) == "2026-05-04 10:00:01.000500"
    assert process(dt.datetime(999, 1, 2, 3, 4, 5)) == "0999-01-02 03:04:05.000000"
    assert process(dt.datetime(2026, 5, 4, 10, 0, 1, 7, tzinfo=dt.timezone.utc)) == "2026-05-04 10:00:01.000007"
    assert process(dt.time(23, 59, 59, 999999)) == "23:59:59.999999"
    assert process(None) is None


@pytest.mark.parametrize("url", [
    "mysql+pymysql://agent@mes/mes", "mssql+pyodbc://agent@mes/mes?driver=ODBC+Driver+18+for+SQL+Server",
    "postgresql+psycopg://agent@mes/mes", "sqlite:///mes.db",
])
def test_drivers_that_keep_microseconds_bind_with_the_column_type(url):
    sa_type = sa.DateTime()
    assert dialects.for_url(sa.make_url(url)).bind_type(sa_type) is sa_type

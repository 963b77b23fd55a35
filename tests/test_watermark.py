"""Watermarks round-trip exactly: timestamps with full precision and zone, decimals, big integers, text.

The proof is at the boundary: after a run, rows one smallest step past the stored watermark (1 µs, 0.000001,
+1, the next text) must be read by the next run, and nothing at or before it read again.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from agent import watermark
from helpers import cli, make_pair, prepare_erp, staging_rows, table_name, write_config

UTC = dt.timezone.utc
BIG = 2**62


def test_typed_json_round_trip():
    values = (dt.datetime(2026, 1, 5, 6, 30, 15, 123457, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
              Decimal("12345678901234.000001"), BIG + 1, "A|B\\C", dt.date(2026, 2, 1), b"\x00\x00\x00\x00\x00\x00\x07\xd1")
    assert watermark.decode(watermark.encode(values)) == values
    assert watermark.version_text(values) == (
        "2026-01-05T06:30:15.123457-05:00|12345678901234.000001|4611686018427387905|A\\|B\\\\C|2026-02-01|0x00000000000007D1"
    )


def event_table(schema, timezone: bool) -> sa.Table:
    return sa.Table(
        "event", sa.MetaData(),
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("recorded_at", sa.DateTime(timezone=timezone).with_variant(mysql.DATETIME(fsp=6), "mysql"),
                  nullable=False),
        sa.Column("amount", sa.Numeric(20, 6), nullable=False),
        sa.Column("code", sa.String(20), nullable=False, unique=True),
        schema=schema,
    )


def flows(pair) -> dict:
    base = {"source": "mes", "target": "erp", "table": table_name(pair, "event"), "key": ["id"], "batch_size": 2,
            "columns": {"event_id": "id", "amount": "amount", "code": "code", "recorded_at": "recorded_at"}}
    return {
        "by_time": {**base, "watermark": ["recorded_at", "id"], "staging_table": "stg_by_time"},
        "by_amount": {**base, "watermark": ["amount", "id"], "staging_table": "stg_by_amount"},
        "by_code": {**base, "watermark": ["code"], "staging_table": "stg_by_code"},
    }


def row(i: int, at: dt.datetime, amount: str, code: str) -> dict:
    return {"id": BIG + i, "recorded_at": at, "amount": Decimal(amount), "code": code}


@pytest.mark.parametrize("kind", ["postgresql", "mysql", "sqlite"])
def test_next_smallest_step_past_the_watermark_is_read_exactly_once(kind, db_factory, tmp_path):
    pair = make_pair(db_factory, kind, suffix=f"_{kind}")
    zoned = kind == "postgresql"  # timestamptz; MariaDB/SQLite store local timestamps
    t0 = dt.datetime(2026, 1, 5, 6, 30, 15, 123456, tzinfo=UTC if zoned else None)
    table = event_table(pair.mes_schema, zoned)
    mes = sa.create_engine(pair.mes_url)
    table.metadata.create_all(mes)
    with mes.begin() as conn:
        conn.execute(table.insert(), [row(1, t0, "100.000001", "K-0001"), row(2, t0, "100.000002", "K-0002"),
                                      row(3, t0, "100.000003", "K-0003")])
    config = write_config(tmp_path / "agent.yaml", pair, flows(pair))
    prepare_erp(config)
    assert cli("run", "-c", str(config), "--once").exit_code == 0

    step = dt.timedelta(microseconds=1)
    with mes.begin() as conn:
        conn.execute(table.insert(), [row(4, t0 + step, "100.000004", "K-0004"), row(5, t0 + step, "100.000005", "K-0005")])
    mes.dispose()
    result = cli("run", "-c", str(config), "--once")
    assert result.exit_code == 0, result.output

    for name in ("stg_by_time", "stg_by_amount", "stg_by_code"):
        staged = staging_rows(pair, name, "event_id", "stg_id")
        assert [r[0] for r in staged] == [BIG + i for i in range(1, 6)], name
    versions = [r[0] for r in staging_rows(pair, "stg_by_time", "stg_source_version", "stg_id")]
    suffix = "+00:00" if zoned else ""
    assert versions[-1] == f"2026-01-05T06:30:15.123457{suffix}|{BIG + 5}"
    amounts = [r[0] for r in staging_rows(pair, "stg_by_amount", "stg_source_version", "stg_id")]
    assert amounts[-1] == f"100.000005|{BIG + 5}"


def test_lag_leaves_rows_younger_than_the_lag_for_the_next_poll(db_factory, tmp_path):
    pair = make_pair(db_factory, "postgresql")
    table = sa.Table("reading", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("taken_at", sa.DateTime, nullable=False), schema=pair.mes_schema)
    mes = sa.create_engine(pair.mes_url)
    table.metadata.create_all(mes)
    with mes.begin() as conn:
        now = conn.execute(sa.text("SELECT LOCALTIMESTAMP")).scalar()
        conn.execute(table.insert(), [{"id": 1, "taken_at": now - dt.timedelta(minutes=30)},
                                      {"id": 2, "taken_at": now - dt.timedelta(seconds=5)}])
    mes.dispose()
    flow = {"source": "mes", "target": "erp", "table": table_name(pair, "reading"), "watermark": ["taken_at", "id"],
            "key": ["id"], "staging_table": "stg_reading", "columns": {"reading_id": "id"}, "lag": "10m"}
    config = write_config(tmp_path / "agent.yaml", pair, {"readings": flow})
    prepare_erp(config)
    assert cli("run", "-c", str(config), "--once").exit_code == 0
    assert [r[0] for r in staging_rows(pair, "stg_reading", "reading_id")] == [1]
    flow["lag"] = "1s"
    write_config(config, pair, {"readings": flow})
    assert cli("run", "-c", str(config), "--once").exit_code == 0
    assert [r[0] for r in staging_rows(pair, "stg_reading", "reading_id")] == [1, 2]

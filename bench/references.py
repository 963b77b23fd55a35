"""Hand-built reference pipelines the agent is measured against, on the same databases in the same run.

PostgreSQL: the COPY pipe (ceiling), a hand-written keyset loop with binary fetch + binary COPY + watermark update
per batch, the same loop with executemany, a hand keyset poll. MariaDB: a keyset loop into LOAD DATA LOCAL INFILE
and into multi-row inserts. SQLAlchemy's inspector for the catalog figures.
"""

from __future__ import annotations

import csv
import datetime as dt
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import sqlalchemy as sa

from common import SOURCE_COLUMNS

COLUMN_LIST = ", ".join(SOURCE_COLUMNS)
PG_TYPES = ["int4", "int4", "int4", "int4", "int2", "timestamp", "timestamp", "timestamp", "int2", "timestamp"]
TARGET_DDL = ("(work_order_id int, product_id int, order_qty int, stocked_qty int, scrapped_qty smallint, "
              "start_date timestamp{p}, end_date timestamp{p}, due_date timestamp{p}, scrap_reason_id smallint, "
              "modified_date timestamp{p})")
AFTER = "WHERE (modified_date, work_order_id) > (%s, %s) "
MYSQL_AFTER = "WHERE modified_date >= %s AND (modified_date > %s OR (modified_date = %s AND work_order_id > %s)) "


def libpq(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _pg_target(erp: psycopg.Connection, name: str) -> None:
    erp.execute(f"DROP TABLE IF EXISTS {name}")
    erp.execute(f"CREATE TABLE {name} {TARGET_DDL.format(p='')}")
    erp.execute("CREATE TABLE IF NOT EXISTS hand_watermark (flow text PRIMARY KEY, modified_date timestamp, work_order_id int)")
    erp.execute("DELETE FROM hand_watermark")
    erp.execute("INSERT INTO hand_watermark VALUES ('hand', NULL, NULL)")
    erp.commit()


def pg_copy_pipe(mes_url: str, erp_url: str) -> float:
    """COPY (SELECT ...) TO STDOUT piped into COPY FROM STDIN, binary, one transaction: the ceiling."""
    with psycopg.connect(libpq(erp_url)) as erp, psycopg.connect(libpq(mes_url)) as mes:
        _pg_target(erp, "ref_copy")
        started = time.perf_counter()
        read = f"COPY (SELECT {COLUMN_LIST} FROM production.work_order ORDER BY modified_date, work_order_id) TO STDOUT (FORMAT BINARY)"
        with mes.cursor().copy(read) as out, erp.cursor().copy(f"COPY ref_copy ({COLUMN_LIST}) FROM STDIN (FORMAT BINARY)") as into:
            for chunk in out:
                into.write(chunk)
        erp.commit()
        return time.perf_counter() - started


# The product path's mapping, as SQL (bench/common.py COLUMNS), for the COPY pipe into the agent's own tables.
_STAGING_SELECT = {
    "stg_batch_id": "'reference'", "stg_flow": "'work_orders'", "stg_source_key": "work_order_id::text",
    "stg_source_version": "modified_date::text || '|' || work_order_id", "stg_change": "'U'",
    "order_no": "work_order_id", "product_id": "product_id", "qty_planned": "order_qty", "qty_good": "stocked_qty",
    "qty_scrap": "scrapped_qty",
    "scrap_reason": "CASE scrap_reason_id WHEN 1 THEN 'BRKN' WHEN 2 THEN 'DRILL' ELSE 'OTHER' END",
    "started_at": "start_date", "finished_at": "end_date", "due_date": "due_date", "mes_modified_at": "modified_date",
}
_LEDGER_SELECT = {"flow": "'work_orders'", "source_key": "work_order_id::text",
                  "source_version": "modified_date::text || '|' || work_order_id", "batch_id": "'reference'",
                  "staged_at": "now()"}


def pg_copy_pipe_into_staging(mes_url: str, erp_url: str, schema: str) -> float:
    """The COPY pipe into the agent's own staging table and agent_ledger (their indexes, the mapping as SQL), one
    transaction: what the server must do for every row any exactly-once write into these tables does, at COPY speed."""
    with psycopg.connect(libpq(erp_url)) as erp, psycopg.connect(libpq(mes_url)) as mes:
        erp.execute(f"TRUNCATE {schema}.stg_work_order, {schema}.agent_ledger")
        erp.commit()
        started = time.perf_counter()
        for table, select in (("stg_work_order", _STAGING_SELECT), ("agent_ledger", _LEDGER_SELECT)):
            _copy_pipe(mes, erp, f"{schema}.{table}", select)
        erp.commit()
        seconds = time.perf_counter() - started
        erp.execute(f"TRUNCATE {schema}.stg_work_order, {schema}.agent_ledger")
        erp.commit()
        return seconds


def pg_copy_pipe_into_bare_staging(mes_url: str, erp_url: str, schema: str, unique_key: bool = False,
                                   ledger: bool = False) -> float:
    """The COPY pipe into a copy of the staging table that keeps only what the ERP import job needs (the identity
    primary key and the pending index): no unique key, no agent_ledger. The floor of any writer that keeps the
    import job's indexes, whatever it does about duplicates. `unique_key`: the copy keeps the staging table's unique
    key too (the floor under a ledger of one row per batch); `ledger`: agent_ledger is filled as well, with its
    indexes (the floor under staging tables without their own unique key, the ledger alone guarding)."""
    bare = f"{schema}.ref_bare_staging"
    with psycopg.connect(libpq(erp_url)) as erp, psycopg.connect(libpq(mes_url)) as mes:
        erp.execute(f"DROP TABLE IF EXISTS {bare}")
        erp.execute(f"CREATE TABLE {bare} (LIKE {schema}.stg_work_order INCLUDING DEFAULTS INCLUDING IDENTITY)")
        erp.execute(f"ALTER TABLE {bare} ADD PRIMARY KEY (stg_id)")
        if unique_key:
            erp.execute(f"ALTER TABLE {bare} ADD UNIQUE (stg_flow, stg_source_version, stg_source_key)")
        erp.execute(f"CREATE INDEX ON {bare} (stg_status, stg_loaded_at)")
        erp.execute(f"TRUNCATE {schema}.agent_ledger")
        erp.commit()
        started = time.perf_counter()
        _copy_pipe(mes, erp, bare, _STAGING_SELECT)
        if ledger:
            _copy_pipe(mes, erp, f"{schema}.agent_ledger", _LEDGER_SELECT)
        erp.commit()
        seconds = time.perf_counter() - started
        erp.execute(f"DROP TABLE {bare}")
        erp.execute(f"TRUNCATE {schema}.agent_ledger")
        erp.commit()
        return seconds


def _copy_pipe(mes: psycopg.Connection, erp: psycopg.Connection, table: str, select: dict[str, str]) -> None:
    types = dict(erp.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                             "WHERE attrelid = %s::regclass AND attnum > 0", [table]).fetchall())
    columns = ", ".join(f"CAST({expression} AS {types[name]}) AS c{i}" for i, (name, expression) in enumerate(select.items()))
    read = f"COPY (SELECT {columns} FROM production.work_order ORDER BY modified_date, work_order_id) TO STDOUT (FORMAT BINARY)"
    with mes.cursor().copy(read) as out, erp.cursor().copy(f"COPY {table} ({', '.join(select)}) FROM STDIN (FORMAT BINARY)") as into:
        for chunk in out:
            into.write(chunk)


def pg_keyset_loop(mes_url: str, erp_url: str, batch: int, bulk: str) -> float:
    """Keyset pages (binary fetch, prepared) -> binary COPY (`bulk="copy"`) or executemany, watermark per batch."""
    with psycopg.connect(libpq(erp_url)) as erp, psycopg.connect(libpq(mes_url)) as mes:
        _pg_target(erp, "ref_keyset")
        started = time.perf_counter()
        moved = _pg_catch_up(mes, erp, batch, bulk, None)
        assert moved > 0
        return time.perf_counter() - started


def _pg_catch_up(mes: psycopg.Connection, erp: psycopg.Connection, batch: int, bulk: str, after: Any) -> int:
    moved = 0
    cursor = mes.cursor(binary=True)
    insert = f"INSERT INTO ref_keyset ({COLUMN_LIST}) VALUES ({', '.join(['%s'] * len(SOURCE_COLUMNS))})"
    while True:
        where, params = (AFTER, [*after]) if after else ("", [])
        cursor.execute(f"SELECT {COLUMN_LIST} FROM production.work_order {where}ORDER BY modified_date, work_order_id "
                       "LIMIT %s", [*params, batch], prepare=True)
        rows = cursor.fetchall()
        mes.commit()
        if rows:
            with erp.cursor() as into:
                if bulk == "copy":
                    with into.copy(f"COPY ref_keyset ({COLUMN_LIST}) FROM STDIN (FORMAT BINARY)") as copy:
                        copy.set_types(PG_TYPES)
                        for row in rows:
                            copy.write_row(row)
                else:
                    into.executemany(insert, rows)
                after = (rows[-1][-1], rows[-1][0])
                into.execute("UPDATE hand_watermark SET modified_date = %s, work_order_id = %s WHERE flow = 'hand'", after)
            erp.commit()
            moved += len(rows)
        if len(rows) < batch:
            return moved


def pg_hand_poll(mes_url: str, erp_url: str, times: int, new_rows: Any = None) -> list[float]:
    """A hand keyset poll at the end of the table (prepared, binary): what a poll that finds nothing costs."""
    with psycopg.connect(libpq(erp_url)) as erp, psycopg.connect(libpq(mes_url)) as mes:
        _pg_target(erp, "ref_keyset")
        last = mes.execute("SELECT modified_date, work_order_id FROM production.work_order "
                           "ORDER BY modified_date DESC, work_order_id DESC LIMIT 1").fetchone()
        mes.commit()
        timings = []
        for _ in range(times + 3):
            started = time.perf_counter()
            _pg_catch_up(mes, erp, 10000, "copy", last)
            timings.append(time.perf_counter() - started)
        return timings[3:]


def pg_hand_poll_rows(mes_url: str, erp_url: str, rows: int) -> float:
    """A hand keyset poll moving the last `rows` rows of the table (binary COPY, watermark update)."""
    with psycopg.connect(libpq(erp_url)) as erp, psycopg.connect(libpq(mes_url)) as mes:
        _pg_target(erp, "ref_keyset")
        last = mes.execute(f"SELECT modified_date, work_order_id FROM production.work_order "
                           f"ORDER BY modified_date DESC, work_order_id DESC OFFSET {rows} LIMIT 1").fetchone()
        mes.commit()
        _pg_catch_up(mes, erp, 10000, "copy", last)  # warm: prepared statements, caches
        erp.execute("TRUNCATE ref_keyset")
        erp.commit()
        started = time.perf_counter()
        moved = _pg_catch_up(mes, erp, 10000, "copy", last)
        assert moved == rows, moved
        return time.perf_counter() - started


def mysql_keyset_loop(mes_url: str, erp_url: str, batch: int, bulk: str) -> float:
    """Keyset pages (pymysql) -> LOAD DATA LOCAL INFILE (`bulk="infile"`) or multi-row inserts, watermark per batch."""
    mes = _pymysql(mes_url)
    erp = _pymysql(erp_url, local_infile=True)
    try:
        with erp.cursor() as c:
            c.execute("DROP TABLE IF EXISTS ref_keyset")
            c.execute(f"CREATE TABLE ref_keyset {TARGET_DDL.format(p='(6)').replace('timestamp', 'datetime')}")
            c.execute("CREATE TABLE IF NOT EXISTS hand_watermark (flow varchar(20) PRIMARY KEY, modified_date datetime(6), "
                      "work_order_id int)")
            c.execute("REPLACE INTO hand_watermark VALUES ('hand', NULL, NULL)")
        erp.commit()
        started = time.perf_counter()
        after: tuple[Any, ...] | None = None
        insert = f"INSERT INTO ref_keyset ({COLUMN_LIST}) VALUES ({', '.join(['%s'] * len(SOURCE_COLUMNS))})"
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "batch.tsv"
            while True:
                with mes.cursor() as c:
                    where, params = (MYSQL_AFTER, [after[0], after[0], after[0], after[1]]) if after else ("", [])
                    c.execute(f"SELECT {COLUMN_LIST} FROM work_order {where}ORDER BY modified_date, work_order_id LIMIT %s",
                              [*params, batch])
                    rows = c.fetchall()
                mes.commit()
                if rows:
                    with erp.cursor() as c:
                        if bulk == "infile":
                            _write_tsv(path, rows)
                            c.execute(f"LOAD DATA LOCAL INFILE %s INTO TABLE ref_keyset ({COLUMN_LIST})", [str(path)])
                        else:
                            c.executemany(insert, rows)  # pymysql sends one multi-row INSERT per ~1 MB
                        after = (rows[-1][-1], rows[-1][0])
                        c.execute("UPDATE hand_watermark SET modified_date = %s, work_order_id = %s WHERE flow = 'hand'", after)
                    erp.commit()
                if len(rows) < batch:
                    return time.perf_counter() - started
    finally:
        mes.close()
        erp.close()


def _write_tsv(path: Path, rows: list[tuple[Any, ...]]) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_NONE, escapechar="\\")
        for row in rows:
            writer.writerow(["\\N" if v is None else (v.isoformat(sep=" ") if isinstance(v, dt.datetime) else v) for v in row])


def _pymysql(url: str, **extra: Any) -> pymysql.connections.Connection:
    u = sa.make_url(url)
    return pymysql.connect(host=u.host, port=u.port or 3306, user=u.username, password=u.password or "", database=u.database,
                           **extra)


def inspector_catalog(url: str, schema: str, tables: list[str]) -> tuple[float, float]:
    """SQLAlchemy's inspector on the same tables: per table (columns, keys, indexes, foreign keys), and get_multi_*."""
    engine = sa.create_engine(url)
    try:
        started = time.perf_counter()
        inspector = sa.inspect(engine)
        for table in tables:
            inspector.get_columns(table, schema)
            inspector.get_pk_constraint(table, schema)
            inspector.get_unique_constraints(table, schema)
            inspector.get_indexes(table, schema)
            inspector.get_foreign_keys(table, schema)
        per_table = time.perf_counter() - started
        started = time.perf_counter()
        inspector = sa.inspect(engine)
        for get in (inspector.get_multi_columns, inspector.get_multi_pk_constraint, inspector.get_multi_unique_constraints,
                    inspector.get_multi_indexes, inspector.get_multi_foreign_keys):
            get(schema, filter_names=tables)
        return per_table, time.perf_counter() - started
    finally:
        engine.dispose()

"""Throughput of the whole product path against a raw PostgreSQL COPY pipe, on the same rows.

    python bench/pipeline_throughput.py [--copies 4] [--batch-size 5000]

Loads the AdventureWorks work orders `--copies` times (ids offset per copy) into a scratch MES database
on the local PostgreSQL, then measures:
  1. raw COPY pipe: COPY (SELECT ...) TO STDOUT from the MES straight into COPY ... FROM STDIN on the ERP;
  2. the agent: `run --once` (keyset read, map/validate, COPY + INSERT ... ON CONFLICT, watermark, run row).
Prints rows/s for both and the agent's share of the raw pipe. Databases are dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
from pathlib import Path

import psycopg
import sqlalchemy as sa
import yaml

from agent import pipeline
from agent.config import load_config
from agent.connect import Systems
from agent.demo import adventureworks
from agent.staging import ddl_statements, staging_table_for
from agent.read import describe_source_table

ADMIN = os.environ.get("MEA_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
COLUMNS = {
    "order_no": "work_order_id", "product_id": "product_id", "qty_planned": "order_qty",
    "qty_good": {"from": "stocked_qty", "type": "decimal(18,3)"}, "qty_scrap": "scrapped_qty",
    "scrap_reason": {"from": "scrap_reason_id", "map": {"1": "BRKN", "2": "DRILL"}, "default": "OTHER"},
    "started_at": "start_date", "finished_at": "end_date", "due_date": {"from": "due_date", "required": True},
    "mes_modified_at": "modified_date",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=5000)
    args = parser.parse_args()
    suffix = secrets.token_hex(3)
    mes_db, erp_db = f"bench_mes_{suffix}", f"bench_erp_{suffix}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {mes_db}")
        admin.execute(f"CREATE DATABASE {erp_db}")
    try:
        rows = load_mes(mes_db, args.copies)
        raw = raw_copy_pipe(mes_db, erp_db)
        agent = agent_run(mes_db, erp_db, args.batch_size)
        print(f"rows                       {rows:>12,}")
        print(f"raw COPY pipe              {rows / raw:>12,.0f} rows/s  ({raw:.2f} s)")
        print(f"mes-erp-agent run --once   {rows / agent:>12,.0f} rows/s  ({agent:.2f} s, batch_size {args.batch_size})")
        print(f"agent / raw pipe           {raw / agent:>12.0%}")
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {mes_db} WITH (FORCE)")
            admin.execute(f"DROP DATABASE IF EXISTS {erp_db} WITH (FORCE)")


def url(database: str) -> str:
    return sa.make_url(ADMIN).set(drivername="postgresql+psycopg", database=database).render_as_string(False)


def load_mes(mes_db: str, copies: int) -> int:
    engine = sa.create_engine(url(mes_db))
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA production")
    adventureworks.create_and_load(engine, ["work_order"], schema="production")
    with engine.begin() as conn:
        for copy in range(1, copies):
            conn.exec_driver_sql(
                f"INSERT INTO production.work_order SELECT work_order_id + {copy * 1_000_000}, product_id, order_qty, "
                f"stocked_qty, scrapped_qty, start_date, end_date, due_date, scrap_reason_id, "
                f"modified_date + interval '{copy} second' FROM production.work_order WHERE work_order_id <= 72591"
            )
        conn.exec_driver_sql("ANALYZE production.work_order")
        count = conn.exec_driver_sql("SELECT count(*) FROM production.work_order").scalar()
    engine.dispose()
    return count


def raw_copy_pipe(mes_db: str, erp_db: str) -> float:
    columns = ("work_order_id, product_id, order_qty, stocked_qty, scrapped_qty, start_date, end_date, due_date, "
               "scrap_reason_id, modified_date")
    with psycopg.connect(url(erp_db).replace("+psycopg", "")) as erp, psycopg.connect(url(mes_db).replace("+psycopg", "")) as mes:
        erp.execute("CREATE TABLE raw_copy (work_order_id int, product_id int, order_qty int, stocked_qty int, "
                    "scrapped_qty smallint, start_date timestamp, end_date timestamp, due_date timestamp, "
                    "scrap_reason_id smallint, modified_date timestamp)")
        erp.commit()
        started = time.perf_counter()
        read = f"COPY (SELECT {columns} FROM production.work_order ORDER BY modified_date, work_order_id) TO STDOUT"
        with mes.cursor().copy(read) as out, erp.cursor().copy(f"COPY raw_copy ({columns}) FROM STDIN") as into:
            for chunk in out:
                into.write(chunk)
        erp.commit()
        return time.perf_counter() - started


def agent_run(mes_db: str, erp_db: str, batch_size: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        config_path = Path(folder) / "agent.yaml"
        config_path.write_text(yaml.safe_dump({
            "systems": {"mes": {"url": url(mes_db)}, "erp": {"url": url(erp_db), "staging_schema": "staging"}},
            "flows": {"work_orders": {
                "source": "mes", "target": "erp", "table": "production.work_order",
                "watermark": ["modified_date", "work_order_id"], "key": ["work_order_id"],
                "staging_table": "stg_work_order", "columns": COLUMNS, "batch_size": batch_size,
            }},
        }))
        config = load_config(config_path)
        systems = Systems(config)
        flow = config.model.flows["work_orders"]
        source = describe_source_table(systems.source("mes"), "production", "work_order")
        with systems.target("erp").begin() as conn:
            for statement in ddl_statements(systems.dialect("erp"), "staging", [staging_table_for(config, "work_orders", flow, source)]):
                conn.exec_driver_sql(statement)
        context = pipeline.prepare(config, systems, "work_orders")
        started = time.perf_counter()
        report = pipeline.run_flow(context)
        elapsed = time.perf_counter() - started
        systems.dispose()
        assert report.outcome == "ok", report.message
        return elapsed


if __name__ == "__main__":
    main()

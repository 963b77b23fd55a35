"""The staging table's unique key, key first (an earlier version's DDL) against version first (the agent's DDL now),
on the local PostgreSQL: the same rows inserted in watermark order, as the agent writes them, into the agent's own
staging table made both ways, batch by batch. Prints the seconds and rows/s of each, alternating, median of --runs.

    python bench/staging_key_order.py [--rows 1000000] [--runs 3] [--batch-size 10000]

The rows are the benchmark's work orders (bench/common.py: AdventureWorks copied with offset ids and shifted
times), so that, as in a plant, the keys of one batch are spread over the whole key range while their versions
(the watermark) only grow.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import psycopg

import common
from common import median
from references import libpq

ORDERS = {"key first": "stg_flow, stg_source_key, stg_source_version",
          "version first": "stg_flow, stg_source_version, stg_source_key"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=10_000)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    scratch = common.Scratch()
    try:
        with tempfile.TemporaryDirectory() as folder:
            mes_url = common.url_of(common.PG_ADMIN, scratch.database(common.PG_ADMIN, "mes"))
            erp_url = common.url_of(common.PG_ADMIN, scratch.database(common.PG_ADMIN, "erp"))
            rows = common.load_work_orders(mes_url, "production", args.rows)
            config = common.agent_config(
                Path(folder), {"mes": {"url": mes_url}, "erp": {"url": erp_url, "staging_schema": "staging"}},
                {"work_orders": common.work_order_flow("production.work_order", batch_size=args.batch_size)},
            )
            common.prepare_erp(config)
            seconds: dict[str, list[float]] = {order: [] for order in ORDERS}
            with psycopg.connect(libpq(mes_url)) as mes, psycopg.connect(libpq(erp_url)) as erp:
                source = _source_rows(mes)
                for _ in range(args.runs):
                    for order, columns in ORDERS.items():
                        _make_key(erp, columns)
                        seconds[order].append(_insert_batches(erp, source, args.batch_size))
    finally:
        scratch.drop_all()
    print(f"PostgreSQL: {rows:,} staging rows in watermark order, batches of {args.batch_size:,}, median of {args.runs}")
    for order, columns in ORDERS.items():
        taken = median(seconds[order])
        print(f"  unique key {order:<13} ({columns}): {taken:6.2f} s  {rows / taken:>9,.0f} rows/s")
    return 0


def _source_rows(mes: psycopg.Connection) -> list[tuple]:
    """(key, version) text of every work order, in watermark order, as the agent stages them."""
    return mes.execute("SELECT work_order_id::text, modified_date::text || '|' || work_order_id FROM production.work_order "
                       "ORDER BY modified_date, work_order_id").fetchall()


def _make_key(erp: psycopg.Connection, columns: str) -> None:
    erp.execute("TRUNCATE staging.stg_work_order")
    erp.execute("ALTER TABLE staging.stg_work_order DROP CONSTRAINT uq_stg_work_order_source, "
                f"ADD CONSTRAINT uq_stg_work_order_source UNIQUE ({columns})")
    erp.commit()
    erp.execute("CHECKPOINT")  # each run starts with the same dirty buffers and WAL position
    erp.commit()


def _insert_batches(erp: psycopg.Connection, source: list[tuple], batch_size: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(source), batch_size):
        batch = source[start:start + batch_size]
        with erp.cursor().copy("COPY staging.stg_work_order (stg_batch_id, stg_flow, stg_source_key, stg_source_version, "
                               "due_date) FROM STDIN") as copy:
            for key, version in batch:
                copy.write_row((f"b{start}", "work_orders", key, version, "2026-01-01"))
        erp.commit()
    return time.perf_counter() - started


if __name__ == "__main__":
    raise SystemExit(main())

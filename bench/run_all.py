"""Every performance figure of issue 12, each next to its reference measured in the same run.

    python bench/run_all.py [--rows 1000000] [--runs 3] [--mariadb-rows 200000] [--dlt-runs 1] [--skip-dlt]
                             [--skip-mariadb | --only-mariadb]

Makes its own databases on the local PostgreSQL and MariaDB ($MEA_BENCH_PG, $MEA_BENCH_MYSQL; dropped at the
end), loads the AdventureWorks work orders scaled up to --rows, and measures, --runs times each (medians):
  PG -> PG initial load: the COPY pipe (ceiling), the same pipe into the agent's staging table and agent_ledger
    with their own indexes and into a staging table with only the import job's indexes (the floors), a hand keyset
    loop with binary COPY, the same with executemany,
    dlt (if installed: pip install '.[bench]'), and the agent's product path (bench/agent_child.py, its own process:
    drift gate, mapping with type conversions and a code map, quarantine checks, ledger, staging insert,
    watermark commit per batch) with its peak RSS;
  steady state: a poll that finds nothing (drift gate included; agent CPU and wall, queries per system) and a
    poll moving 1,000 rows, against a hand keyset poll; the drift gate's catalog queries for 20 tables against
    SQLAlchemy's inspector; EXPLAIN ANALYZE of the watermark read;
  MariaDB -> MariaDB, native (PyMySQL) and through ODBC, against LOAD DATA LOCAL INFILE and multi-row inserts.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa

import common
import references
import steady
from common import median

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="work orders in the PostgreSQL MES")
    parser.add_argument("--mariadb-rows", type=int, default=200_000, help="work orders in the MariaDB MES")
    parser.add_argument("--runs", type=int, default=3, help="runs of each load (medians)")
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--skip-mariadb", action="store_true")
    parser.add_argument("--only-mariadb", action="store_true", help="only the MariaDB figures (skips PostgreSQL and dlt)")
    parser.add_argument("--dlt-runs", type=int, default=1, help="runs of each dlt load (dlt's defaults are slow)")
    parser.add_argument("--skip-dlt", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    scratch = common.Scratch()
    table: list[tuple[str, str, str, str]] = []  # figure, value, reference, ratio / target
    try:
        with tempfile.TemporaryDirectory() as folder:
            if not args.only_mariadb:
                postgresql(Path(folder), scratch, args, table)
            if not args.skip_mariadb or args.only_mariadb:
                mariadb(Path(folder), scratch, args, table)
    finally:
        scratch.drop_all()
    print_table(table)
    return 0


def postgresql(folder: Path, scratch: common.Scratch, args: argparse.Namespace, table: list) -> None:
    mes_url = common.url_of(common.PG_ADMIN, scratch.database(common.PG_ADMIN, "mes"))
    erp_url = common.url_of(common.PG_ADMIN, scratch.database(common.PG_ADMIN, "erp"))
    rows = common.load_work_orders(mes_url, "production", args.rows)
    print(f"PostgreSQL: {rows:,} work orders, {args.runs} runs each, batch size {args.batch_size}", flush=True)
    config = common.agent_config(
        folder, {"mes": {"url": mes_url}, "erp": {"url": erp_url, "staging_schema": "staging"}},
        {"work_orders": common.work_order_flow("production.work_order", batch_size=args.batch_size)},
    )
    common.prepare_erp(config)
    ceiling = median([references.pg_copy_pipe(mes_url, erp_url) for _ in range(args.runs)])
    indexed = median([references.pg_copy_pipe_into_staging(mes_url, erp_url, "staging") for _ in range(args.runs)])
    bare = median([references.pg_copy_pipe_into_bare_staging(mes_url, erp_url, "staging") for _ in range(args.runs)])
    keyed = median([references.pg_copy_pipe_into_bare_staging(mes_url, erp_url, "staging", unique_key=True)
                    for _ in range(args.runs)])
    keyless = median([references.pg_copy_pipe_into_bare_staging(mes_url, erp_url, "staging", ledger=True)
                      for _ in range(args.runs)])
    loop = median([references.pg_keyset_loop(mes_url, erp_url, args.batch_size, "copy") for _ in range(args.runs)])
    many = median([references.pg_keyset_loop(mes_url, erp_url, args.batch_size, "executemany") for _ in range(args.runs)])
    agent_runs = [agent_load(config, erp_url, "staging", "work_orders") for _ in range(args.runs)]
    agent = median([r["seconds"] for r in agent_runs])
    rss = max(r["rss_mb"] for r in agent_runs)
    rate = rows / ceiling
    table += [
        ("PG->PG COPY pipe, binary (ceiling)", f"{rate:,.0f} rows/s", "", ""),
        ("PG->PG COPY pipe into staging + agent_ledger", f"{rows / indexed:,.0f} rows/s", "ceiling",
         f"{ceiling / indexed:.0%} (their own indexes)"),
        ("PG->PG COPY pipe into staging: primary key + pending index only", f"{rows / bare:,.0f} rows/s", "ceiling",
         f"{ceiling / bare:.0%} (no ledger, no unique key)"),
        ("  ... + the staging unique key, no ledger", f"{rows / keyed:,.0f} rows/s", "ceiling",
         f"{ceiling / keyed:.0%} (the floor under a ledger per batch)"),
        ("  ... + agent_ledger, no staging unique key", f"{rows / keyless:,.0f} rows/s", "ceiling",
         f"{ceiling / keyless:.0%} (the floor under the ledger alone guarding)"),
        ("PG->PG hand keyset + binary COPY", f"{rows / loop:,.0f} rows/s", "ceiling", f"{ceiling / loop:.0%}"),
        ("PG->PG hand keyset + executemany", f"{rows / many:,.0f} rows/s", "ceiling", f"{ceiling / many:.0%}"),
        ("PG->PG mes-erp-agent product path", f"{rows / agent:,.0f} rows/s", "ceiling",
         f"{ceiling / agent:.0%} (target >= 40%)"),
        ("  against the pipe into its own tables", f"{rows / agent:,.0f} rows/s", "pipe into staging + ledger",
         f"{indexed / agent:.0%}"),
        ("  agent peak RSS", f"{rss:.0f} MB", f"{rows:,} rows", "target < 150 MB"),
    ]
    if not args.skip_dlt:
        table += dlt_figures(mes_url, scratch, rows, ceiling, args.dlt_runs)
    table += steady.figures(folder, config, mes_url, erp_url)


def agent_load(config: Path, erp_url: str, schema: str, flow: str) -> dict[str, Any]:
    """One initial load by the agent, in its own process, after emptying staging, ledger, watermark and runs."""
    engine = sa.create_engine(erp_url)
    with engine.begin() as conn:
        for name in ("stg_work_order", "agent_ledger", "agent_watermark", "agent_run", "agent_quarantine"):
            conn.exec_driver_sql(f"TRUNCATE TABLE {schema}.{name}")  # DELETE would leave dead index entries
    engine.dispose()
    done = subprocess.run([sys.executable, str(HERE / "agent_child.py"), str(config), flow], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"agent run failed:\n{done.stdout}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def dlt_figures(mes_url: str, scratch: common.Scratch, rows: int, ceiling: float, runs: int) -> list:
    try:
        import dlt_reference
    except ImportError as exc:
        print(f"dlt not measured ({exc}): pip install '.[bench]'", flush=True)
        return [("dlt", "not installed", "", "pip install '.[bench]'")]
    found = []
    for label, backend in (("defaults", "sqlalchemy"), ("fastest", "pyarrow")):
        seconds, poll_empty, poll_rows = dlt_reference.measure(mes_url, scratch, backend, runs)
        found += [(f"PG->PG dlt {label} ({backend})", f"{rows / seconds:,.0f} rows/s", "ceiling", f"{ceiling / seconds:.0%}")]
        if poll_empty is not None:
            found += [(f"  dlt {label} poll finding nothing", f"{poll_empty * 1000:.0f} ms", "", ""),
                      (f"  dlt {label} poll moving 1,000 rows", f"{poll_rows * 1000:.0f} ms", "", "")]
    return found


def mariadb(folder: Path, scratch: common.Scratch, args: argparse.Namespace, table: list) -> None:
    mes = scratch.database(common.MYSQL_ADMIN, "mes")
    mes_url = common.url_of(common.MYSQL_ADMIN, mes)
    rows = common.load_work_orders(mes_url, mes, args.mariadb_rows)
    print(f"MariaDB: {rows:,} work orders", flush=True)
    erp = scratch.database(common.MYSQL_ADMIN, "erp")
    erp_url = common.url_of(common.MYSQL_ADMIN, erp)
    infile = median([references.mysql_keyset_loop(mes_url, erp_url, args.batch_size, "infile") for _ in range(args.runs)])
    multi = median([references.mysql_keyset_loop(mes_url, erp_url, args.batch_size, "multirow") for _ in range(args.runs)])
    best = min(infile, multi)
    table += [
        ("MariaDB hand keyset + LOAD DATA LOCAL INFILE", f"{rows / infile:,.0f} rows/s", "", ""),
        ("MariaDB hand keyset + multi-row INSERT", f"{rows / multi:,.0f} rows/s", "", ""),
    ]
    for label, url_of in (("native (PyMySQL)", lambda db: common.url_of(common.MYSQL_ADMIN, db)), ("ODBC", common.odbc_url)):
        target, staging = (scratch.database(common.MYSQL_ADMIN, role) for role in ("erp", "stg"))
        sub = folder / label.split()[0].lower()
        sub.mkdir()
        config = common.agent_config(
            sub, {"mes": {"url": mes_url}, "erp": {"url": url_of(target), "staging_schema": staging}},
            {"work_orders": common.work_order_flow(f"{mes}.work_order", batch_size=args.batch_size)},
        )
        common.prepare_erp(config)
        seconds = median([agent_load(config, url_of(target), staging, "work_orders")["seconds"] for _ in range(args.runs)])
        table.append((f"MariaDB->MariaDB agent, {label}", f"{rows / seconds:,.0f} rows/s", "best hand path",
                      f"{best / seconds:.0%} (target >= 40%)"))


def print_table(table: list[tuple[str, str, str, str]]) -> None:
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    header = ("figure", "value", "reference", "ratio / target")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    line = "  ".join(f"{{:{w}}}" for w in widths)
    print()
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths)))
    for row in table:
        print(line.format(*row))


if __name__ == "__main__":
    sys.exit(main())

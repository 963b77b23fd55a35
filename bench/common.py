"""Shared helpers of the benchmarks: scratch databases, the scaled AdventureWorks work orders, the agent's
configuration, timing, query counting.

Every benchmark makes its own databases on the local servers (`$MEA_BENCH_PG`, `$MEA_BENCH_MYSQL`) and drops
them at the end; nothing else is touched.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from agent.cli import main as cli_main
from agent.demo import adventureworks

PG_ADMIN = os.environ.get("MEA_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
MYSQL_ADMIN = os.environ.get("MEA_BENCH_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/")
ODBC_DRIVER = "MariaDB Unicode"
BASE_ROWS = 72591  # AdventureWorks Production.WorkOrder
SOURCE_COLUMNS = ["work_order_id", "product_id", "order_qty", "stocked_qty", "scrapped_qty", "start_date", "end_date",
                  "due_date", "scrap_reason_id", "modified_date"]
# The product path: type conversions (decimal), a code map with a default, a required column.
COLUMNS = {
    "order_no": "work_order_id", "product_id": "product_id", "qty_planned": "order_qty",
    "qty_good": {"from": "stocked_qty", "type": "decimal(18,3)"}, "qty_scrap": "scrapped_qty",
    "scrap_reason": {"from": "scrap_reason_id", "map": {"1": "BRKN", "2": "DRILL"}, "default": "OTHER"},
    "started_at": "start_date", "finished_at": "end_date", "due_date": {"from": "due_date", "required": True},
    "mes_modified_at": "modified_date",
}


def url_of(admin: str, database: str) -> str:
    return sa.make_url(admin).set(database=database).render_as_string(hide_password=False)


def odbc_url(database: str) -> str:
    return f"mysql+pyodbc://root@127.0.0.1:3306/{database}?driver={ODBC_DRIVER.replace(' ', '+')}&charset=utf8mb4"


@dataclass
class Scratch:
    """Databases made for one benchmark run, dropped by `drop_all`."""

    made: list[tuple[str, str]] = field(default_factory=list)  # (admin url, database)

    def database(self, admin: str, role: str) -> str:
        name = f"mea_bench_{secrets.token_hex(3)}_{role}"
        engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        engine.dispose()
        self.made.append((admin, name))
        return name

    def drop_all(self) -> None:
        for admin, name in reversed(self.made):
            engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
            force = " WITH (FORCE)" if admin.startswith("postgresql") else ""
            with engine.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}{force}")
            engine.dispose()


def load_work_orders(url: str, schema: str | None, rows: int) -> int:
    """The AdventureWorks work orders, copied with offset ids and modified dates until `rows` (watermark index on
    (modified_date, work_order_id) from adventureworks.define_table). Returns the row count."""
    engine = sa.create_engine(url)
    postgres = engine.dialect.name == "postgresql"
    if postgres and schema:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    adventureworks.create_and_load(engine, ["work_order"], schema=schema, limit=min(rows, BASE_ROWS))
    table = f"{schema}.work_order" if schema else "work_order"
    with engine.begin() as conn:
        copies = -(-rows // BASE_ROWS)
        for copy in range(1, copies):
            shift = f"modified_date + interval '{copy}' second" if not postgres else f"modified_date + interval '{copy} second'"
            take = min(BASE_ROWS, rows - copy * BASE_ROWS)
            conn.exec_driver_sql(
                f"INSERT INTO {table} SELECT work_order_id + {copy * 1_000_000}, product_id, order_qty, stocked_qty, "
                f"scrapped_qty, start_date, end_date, due_date, scrap_reason_id, {shift} FROM {table} "
                f"WHERE work_order_id < 1000000 ORDER BY work_order_id LIMIT {take}"
            )
        conn.exec_driver_sql(f"ANALYZE {'' if postgres else 'TABLE '}{table}")
        count = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
    engine.dispose()
    return int(count)


def append_rows(url: str, table: str, count: int) -> None:
    """`count` new work orders after every existing one (new ids, later modified dates): what one poll moves."""
    engine = sa.create_engine(url)
    postgres = engine.dialect.name == "postgresql"
    later = "modified_date + interval '1 day'" if postgres else "modified_date + interval 1 day"
    with engine.begin() as conn:
        top_id, top_date = conn.execute(sa.text(f"SELECT max(work_order_id), max(modified_date) FROM {table}")).one()
        conn.execute(sa.text(
            f"INSERT INTO {table} SELECT work_order_id + {top_id}, product_id, order_qty, stocked_qty, scrapped_qty, "
            f"start_date, end_date, due_date, scrap_reason_id, :top + ({later} - modified_date) FROM {table} "
            f"WHERE work_order_id <= {top_id} ORDER BY work_order_id LIMIT {count}"
        ), {"top": top_date})
    engine.dispose()


def agent_config(folder: Path, systems: dict[str, dict[str, Any]], flows: dict[str, dict[str, Any]]) -> Path:
    path = folder / "agent.yaml"
    path.write_text(yaml.safe_dump({"systems": systems, "flows": flows, "alerts": {"dir": str(folder / "alerts")}},
                                   sort_keys=False))
    return path


def work_order_flow(table: str, staging_table: str = "stg_work_order", batch_size: int = 10000) -> dict[str, Any]:
    return {"source": "mes", "target": "erp", "table": table, "watermark": ["modified_date", "work_order_id"],
            "key": ["work_order_id"], "staging_table": staging_table, "columns": dict(COLUMNS), "batch_size": batch_size}


def cli(*args: str) -> None:
    result = CliRunner().invoke(cli_main, list(args), catch_exceptions=False)
    if result.exit_code != 0:
        raise SystemExit(f"mes-erp-agent {' '.join(args)} failed ({result.exit_code}):\n{result.output}")


def prepare_erp(config: Path) -> None:
    """What a DBA and an admin do before go-live: staging DDL, schema snapshots."""
    cli("sql", "ddl", "-c", str(config), "--system", "erp", "--apply")
    cli("snapshot", "-c", str(config), "--accept", "--yes")


class QueryCounter:
    """Statements sent to the server per engine (SQLAlchemy's before_cursor_execute)."""

    def __init__(self, engines: dict[str, sa.Engine]):
        self.counts = dict.fromkeys(engines, 0)
        self.engines = engines
        for name, engine in engines.items():
            sa.event.listen(engine, "before_cursor_execute", self._counter(name))

    def _counter(self, name: str) -> Callable[..., None]:
        def count(*_args: Any) -> None:
            self.counts[name] += 1
        return count

    @contextlib.contextmanager
    def measure(self) -> Iterator[dict[str, int]]:
        before = dict(self.counts)
        found: dict[str, int] = {}
        yield found
        found.update({name: self.counts[name] - before[name] for name in self.counts})


def timed(action: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def repeat(action: Callable[[], Any], times: int, warmup: int = 3) -> tuple[list[float], list[float]]:
    for _ in range(warmup):
        action()
    walls, cpus = [], []
    for _ in range(times):
        wall, cpu = timed(action)
        walls.append(wall)
        cpus.append(cpu)
    return walls, cpus


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("nan")

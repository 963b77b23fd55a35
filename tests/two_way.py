"""Two systems, each the source of one flow and the target of the other, on real databases.

The MES (work orders in its core schema `production`) is the source of `work_order_confirmations` and the target
of `released_orders`, into its inbound staging schema `mes_inbound`; the ERP (released production orders in its
core schema `planning`) is the source of `released_orders` and the target of `work_order_confirmations`, into its
staging schema `staging`. On MySQL/MariaDB each schema is a database of its own; on SQLite each staging schema is
an attached file and the core tables live in the main file.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from sqlalchemy.engine import make_url

from agent.contract import version_text
from agent.demo import adventureworks
from agent.demo.erp_schedule import create_schedule, define_production_order, released_order

WORK_ORDERS = 40  # AdventureWorks work orders in the MES before the agent starts
RELEASED_ORDERS = 30  # released production orders in the ERP before the agent starts
FIRST = 1_000_001  # the first ERP order number
ERP_BASE = dt.datetime(2030, 3, 2, 6, 0, 0, 1)  # the ERP writer's clock starts here (after AdventureWorks history)
RELEASED_COLUMNS: dict[str, Any] = {
    "order_no": "order_no",
    "product_id": "product_id",
    "qty": {"from": "order_qty", "type": "decimal(12,3)"},
    "scheduled_start": "scheduled_start",
    "due_date": {"from": "due_date", "required": True},
    "status": "status",
    "erp_modified_at": "modified_at",
}
CONFIRMATION_COLUMNS = {"order_no": "work_order_id", "qty_good": {"from": "stocked_qty", "type": "decimal(18,3)"},
                        "mes_modified_at": "modified_date"}


@dataclass(frozen=True)
class Side:
    """One system: its database URL (administrator), where its core tables live, its staging schema."""

    name: str
    url: str
    core: str | None  # schema (MySQL: database) of the core tables; None: SQLite's main file
    staging: str  # staging schema (MySQL: database; SQLite: attached name)
    attach: dict[str, str] = field(default_factory=dict)

    def table(self, name: str) -> str:
        return f"{self.core}.{name}" if self.core else name

    def engine(self) -> sa.Engine:
        """An administrator engine that sees the staging schema too (attached on SQLite)."""
        sqlite = self.url.startswith("sqlite")
        engine = sa.create_engine(self.url, connect_args={"timeout": 30} if sqlite else {})
        if self.attach:
            @sa.event.listens_for(engine, "connect")
            def _attach(dbapi_connection, _record):
                for schema, file in self.attach.items():
                    dbapi_connection.execute(f"ATTACH DATABASE '{file}' AS {schema}")
        return engine

    def rows(self, sql: str) -> list[sa.Row]:
        engine = self.engine()
        try:
            with engine.connect() as conn:
                return list(conn.execute(sa.text(sql)))
        finally:
            engine.dispose()

    def staged(self, table: str) -> list[tuple[str, str]]:
        """(stg_source_key, stg_source_version) of every staging row, in load order."""
        return [tuple(r) for r in self.rows(f"SELECT stg_source_key, stg_source_version FROM {self.staging}.{table} "
                                             "ORDER BY stg_id")]


@dataclass(frozen=True)
class Plant:
    kind: str
    mes: Side
    erp: Side


def make_plant(db_factory, kind: str, folder: Path, suffix: str = "") -> Plant:
    """Both databases with their core tables filled: AdventureWorks work orders, released production orders."""
    mes_url, erp_url = db_factory(kind, f"mes{suffix}"), db_factory(kind, f"erp{suffix}")
    if kind == "mysql":
        mes = Side("mes", mes_url, make_url(mes_url).database, make_url(db_factory(kind, f"inb{suffix}")).database)
        erp = Side("erp", erp_url, make_url(erp_url).database, make_url(db_factory(kind, f"stg{suffix}")).database)
    elif kind == "sqlite":
        mes = Side("mes", mes_url, None, "mes_inbound", {"mes_inbound": str(folder / f"mes_inbound{suffix}.db")})
        erp = Side("erp", erp_url, None, "staging", {"staging": str(folder / f"erp_staging{suffix}.db")})
    else:
        mes, erp = Side("mes", mes_url, "production", "mes_inbound"), Side("erp", erp_url, "planning", "staging")
        for side in (mes, erp):
            engine = sa.create_engine(side.url)
            with engine.begin() as conn:
                conn.exec_driver_sql(f"CREATE SCHEMA {side.core}")
            engine.dispose()
    engine = sa.create_engine(mes.url)
    adventureworks.create_and_load(engine, ["work_order"], schema=mes.core, limit=WORK_ORDERS)
    engine.dispose()
    engine = sa.create_engine(erp.url)
    create_schedule(engine, [released_order(FIRST + n, 700 + n % 7, 10 + n, ERP_BASE, 3 + n % 5,
                                            ERP_BASE - dt.timedelta(days=1, microseconds=n // 3))
                             for n in range(RELEASED_ORDERS)], schema=erp.core)  # ties: 3 orders per timestamp
    engine.dispose()
    return Plant(kind, mes, erp)



def flows(plant: Plant, batch_size: int = 4, every: str = "300ms") -> dict[str, dict[str, Any]]:
    return {
        "work_order_confirmations": {
            "source": "mes", "target": "erp", "table": plant.mes.table("work_order"),
            "watermark": ["modified_date", "work_order_id"], "key": ["work_order_id"],
            "staging_table": "stg_work_order", "columns": dict(CONFIRMATION_COLUMNS), "batch_size": batch_size,
            "schedule": {"every": every},
        },
        "released_orders": {
            "source": "erp", "target": "mes", "table": plant.erp.table("production_order"),
            "watermark": ["modified_at", "order_no"], "key": ["order_no"],
            "staging_table": "stg_released_order", "columns": dict(RELEASED_COLUMNS), "batch_size": batch_size,
            "schedule": {"every": every},
        },
    }


def write_config(path: Path, plant: Plant, flow_configs: dict[str, dict[str, Any]], **extra: Any) -> Path:
    systems: dict[str, Any] = {}
    for side in (plant.mes, plant.erp):
        system: dict[str, Any] = {"url": side.url, "staging_schema": side.staging}
        if side.attach:
            system["attach"] = side.attach
        systems[side.name] = system
    path.write_text(yaml.safe_dump({"systems": systems, "flows": flow_configs, **extra}, sort_keys=False),
                    encoding="utf-8")
    return path


def production_order(plant: Plant) -> sa.Table:
    return define_production_order(sa.MetaData(), plant.erp.core)


def work_order(plant: Plant) -> sa.Table:
    return adventureworks.define_table(sa.MetaData(), "work_order", plant.mes.core)


def versions_of(side: Side, table: sa.Table, watermark: tuple[str, ...], key: tuple[str, ...]) -> set[tuple[str, str]]:
    """(key, version) of every row of a source table now, as the agent writes them."""
    engine = side.engine()
    try:
        with engine.connect() as conn:
            rows = [r._mapping for r in conn.execute(sa.select(table))]
    finally:
        engine.dispose()
    return {(version_text(tuple(r[c] for c in key)), version_text(tuple(r[c] for c in watermark))) for r in rows}

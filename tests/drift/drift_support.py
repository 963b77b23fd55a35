"""Shared setup of the drift tests: an MES with work orders and scrap reasons, an ERP with staging tables,
two flows, snapshots taken; plus schema changes written the way each database needs them."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from agent.demo import adventureworks
from helpers import WORK_ORDER_COLUMNS, Pair, cli, make_pair, prepare_erp, staging_engine, table_name, write_config

WORK_ORDERS = 50  # rows loaded (limit=): enough to show what moved, fast to load
_NUMBERS = itertools.count(1)  # database name suffixes, unique within a test module


@dataclass
class Plant:
    """One test's MES and ERP with the agent configured and snapshots taken."""

    pair: Pair
    folder: Path
    config: Path

    @property
    def kind(self) -> str:
        return self.pair.kind

    def mes_table(self, table: str) -> str:
        return table_name(self.pair, table)

    def staging_table(self, table: str) -> str:
        return f"{self.pair.staging_schema}.{table}"

    def mes(self, *statements: str) -> None:
        engine = sa.create_engine(self.pair.mes_url)
        try:
            with engine.begin() as conn:
                for statement in statements:
                    conn.exec_driver_sql(statement)
        finally:
            engine.dispose()

    def erp(self, *statements: str) -> None:
        engine = staging_engine(self.pair)
        try:
            with engine.begin() as conn:
                for statement in statements:
                    conn.exec_driver_sql(statement)
        finally:
            engine.dispose()

    def erp_rows(self, sql: str) -> list[tuple[Any, ...]]:
        engine = staging_engine(self.pair)
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.exec_driver_sql(sql)]
        finally:
            engine.dispose()

    def run(self, *extra: str):
        return cli("run", "-c", str(self.config), "--once", *extra)

    def drift_json(self) -> tuple[int, dict[str, Any]]:
        result = cli("drift", "-c", str(self.config), "--json")
        return result.exit_code, json.loads(result.output)

    def diffs(self) -> list[tuple[Any, ...]]:
        """Every diff as (kind, table, column or constraint, was, now, {flow: breaking}), systems in name order."""
        _code, data = self.drift_json()
        return [
            (c["kind"], c["table"], c["column"] or c["constraint"], c["expected"], c["actual"],
             {i["flow"]: i["breaking"] for i in c["impacts"]})
            for system in data["systems"] for c in system["changes"]
        ]

    def staged(self, table: str) -> int:
        return self.erp_rows(f"SELECT COUNT(*) FROM {self.staging_table(table)}")[0][0]

    def watermark(self, flow: str) -> tuple[Any, ...] | None:
        rows = self.erp_rows(
            f"SELECT watermark_values, revision FROM {self.staging_table('agent_watermark')} WHERE flow = '{flow}'"
        )
        return rows[0] if rows else None

    def alerts(self) -> list[str]:
        """The drift report files (the folder also holds the alert outbox, incidents.state.json)."""
        folder = self.folder / "alerts"
        return sorted(p.name for p in folder.glob("drift-*")) if folder.is_dir() else []

    def touch_rows(self, table: str, key: str, keys: list[int], when: str = "2030-01-01 00:00:00") -> None:
        """An MES change: rows get a newer modified_date (past every watermark), so the next run moves them."""
        value = f"TIMESTAMP '{when}'" if self.kind == "postgresql" else f"'{when}.000000'" if self.kind == "sqlite" else f"'{when}'"
        self.mes(f"UPDATE {self.mes_table(table)} SET modified_date = {value} WHERE {key} IN ({', '.join(map(str, keys))})")


def flows(pair: Pair, **work_orders: Any) -> dict[str, dict[str, Any]]:
    return {
        "work_orders": {
            "source": "mes", "target": "erp", "table": table_name(pair, "work_order"),
            "watermark": ["modified_date", "work_order_id"], "key": ["work_order_id"],
            "staging_table": "stg_work_order", "columns": dict(WORK_ORDER_COLUMNS), **work_orders,
        },
        "scrap_reasons": {
            "source": "mes", "target": "erp", "table": table_name(pair, "scrap_reason"),
            "watermark": ["modified_date", "scrap_reason_id"], "key": ["scrap_reason_id"],
            "staging_table": "stg_scrap_reason", "columns": {"reason_id": "scrap_reason_id", "reason_name": "name"},
        },
    }


def new_plant(db_factory, kind: str, folder: Path, snapshot: bool = True, **work_orders: Any) -> Plant:
    """Fresh databases (one pair per test), loaded MES tables, staging tables, snapshots of both systems."""
    pair = make_pair(db_factory, kind, suffix=f"_{next(_NUMBERS)}")
    engine = sa.create_engine(pair.mes_url)
    adventureworks.create_and_load(engine, ["work_order"], schema=pair.mes_schema, limit=WORK_ORDERS)
    adventureworks.create_and_load(engine, ["scrap_reason"], schema=pair.mes_schema)
    engine.dispose()
    config = write_config(folder / "agent.yaml", pair, flows(pair, **work_orders))
    if snapshot:
        prepare_erp(config)
    else:
        result = cli("sql", "ddl", "-c", str(config), "--system", "erp", "--apply")
        assert result.exit_code == 0, result.output
    return Plant(pair, folder, config)


def sqlite_rebuild(plant: Plant, system: str, schema: str | None, table: str, edits: list[tuple[str, str]]) -> None:
    """SQLite cannot ALTER a column's type, NULL rule or the primary key: rebuild the table with its CREATE
    statement edited (the procedure of sqlite.org/lang_altertable.html), keeping rows and indexes."""
    run = plant.mes if system == "mes" else plant.erp
    engine = sa.create_engine(plant.pair.mes_url) if system == "mes" else staging_engine(plant.pair)
    master = f"{schema}.sqlite_master" if schema else "sqlite_master"
    with engine.connect() as conn:
        create = conn.exec_driver_sql(f"SELECT sql FROM {master} WHERE type = 'table' AND name = '{table}'").scalar_one()
        indexes = [r[0] for r in conn.exec_driver_sql(
            f"SELECT sql FROM {master} WHERE type = 'index' AND tbl_name = '{table}' AND sql IS NOT NULL")]
    engine.dispose()
    for old, new in edits:
        assert old in create, (old, create)
        create = create.replace(old, new)
    prefix = f'"{schema}".' if schema else ""
    qualified = f"{prefix}{table}"
    run(
        f"ALTER TABLE {qualified} RENAME TO {table}_old",
        re.sub(r"^CREATE TABLE ", f"CREATE TABLE {prefix}", create),
        f"INSERT INTO {qualified} SELECT * FROM {prefix}{table}_old",
        f"DROP TABLE {prefix}{table}_old",
        *[re.sub(r"^CREATE (UNIQUE )?INDEX ", lambda m: f"CREATE {m.group(1) or ''}INDEX {prefix}", sql) for sql in indexes],
    )

"""Shared test helpers: write a config for real databases, prepare the ERP side, call the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from click.testing import CliRunner, Result
from sqlalchemy.engine import make_url

from agent.cli import main

WORK_ORDER_COLUMNS = {
    "order_no": "work_order_id",
    "product_id": "product_id",
    "qty_planned": "order_qty",
    "qty_good": {"from": "stocked_qty", "type": "decimal(18,3)"},
    "qty_scrap": "scrapped_qty",
    "scrap_reason": {"from": "scrap_reason_id", "map": {"1": "BRKN", "2": "DRILL"}, "default": "OTHER"},
    "started_at": "start_date",
    "finished_at": "end_date",
    "due_date": {"from": "due_date", "required": True},
    "mes_modified_at": "modified_date",
}


@dataclass(frozen=True)
class Pair:
    """An MES database and an ERP database of one kind, plus where the MES tables and staging live."""

    kind: str
    mes_url: str
    erp_url: str
    mes_schema: str | None
    staging_schema: str
    attach: dict[str, str]


def make_pair(db_factory, kind: str, suffix: str = "") -> Pair:
    """Two fresh databases. MySQL has no schemas inside a database: there each schema is a database."""
    # Through ODBC only the ERP side: the MES is read natively, as in plants that reach SQL Server via ODBC.
    mes_url = db_factory("mysql" if kind == "mysql_odbc" else kind, f"mes{suffix}")
    erp_url = db_factory(kind, f"erp{suffix}")
    if kind.startswith("mysql"):
        staging_url = db_factory(kind, f"stg{suffix}")
        return Pair(kind, mes_url, erp_url, make_url(mes_url).database, make_url(staging_url).database, {})
    if kind == "sqlite":
        staging_file = str(Path(make_url(erp_url).database).with_name(f"staging{suffix}.db"))
        return Pair(kind, mes_url, erp_url, None, "staging", {"staging": staging_file})
    engine = sa.create_engine(mes_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA production")
    engine.dispose()
    return Pair(kind, mes_url, erp_url, "production", "staging", {})


def table_name(pair: Pair, table: str) -> str:
    return f"{pair.mes_schema}.{table}" if pair.mes_schema else table


def write_config(path: Path, pair: Pair, flows: dict[str, dict[str, Any]], **extra: Any) -> Path:
    erp: dict[str, Any] = {"url": pair.erp_url, "staging_schema": pair.staging_schema}
    if pair.attach:
        erp["attach"] = pair.attach
    document = {"systems": {"mes": {"url": pair.mes_url}, "erp": erp}, "flows": flows, **extra}
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def work_order_flow(pair: Pair, **overrides: Any) -> dict[str, Any]:
    flow = {
        "source": "mes",
        "target": "erp",
        "table": table_name(pair, "work_order"),
        "watermark": ["modified_date", "work_order_id"],
        "key": ["work_order_id"],
        "staging_table": "stg_work_order",
        "columns": dict(WORK_ORDER_COLUMNS),
        "batch_size": 5000,
    }
    flow.update(overrides)
    return flow


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def prepare_erp(config_path: Path, system: str = "erp") -> None:
    """What a DBA and an admin do before go-live: create the staging schema and tables, then take the
    schema snapshots of every system (the drift gate refuses to run without them)."""
    result = cli("sql", "ddl", "-c", str(config_path), "--system", system, "--apply")
    assert result.exit_code == 0, result.output
    result = cli("snapshot", "-c", str(config_path), "--accept", "--yes")
    assert result.exit_code == 0, result.output


def staging_engine(pair: Pair) -> sa.Engine:
    """An engine on the ERP database that sees the staging schema (attached file on SQLite)."""
    engine = sa.create_engine(pair.erp_url)
    if pair.attach:
        @sa.event.listens_for(engine, "connect")
        def _attach(dbapi_connection, _record):
            for schema, file in pair.attach.items():
                dbapi_connection.execute(f"ATTACH DATABASE '{file}' AS {schema}")
    return engine


def staging_rows(pair: Pair, table: str = "stg_work_order", columns: str = "*", order: str = "stg_id") -> list[sa.Row]:
    engine = staging_engine(pair)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(f"SELECT {columns} FROM {pair.staging_schema}.{table} ORDER BY {order}")))
    finally:
        engine.dispose()


def scalar(url: str, sql: str, pair: Pair | None = None) -> Any:
    engine = staging_engine(pair) if pair else sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql)).scalar()
    finally:
        engine.dispose()


def run_script(url: str, script: str, on_statement: Callable[[str], None] | None = None) -> None:
    """What a DBA does with a generated script: run it statement by statement as administrator."""
    from agent.dialects import for_url

    dialect = for_url(make_url(url))
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            cursor = conn.connection.driver_connection.cursor()
            for statement in dialect.split_script(script):
                cursor.execute(statement)
                if on_statement:
                    on_statement(statement)
            cursor.close()
    finally:
        engine.dispose()


def with_odbc_source(pair: Pair) -> Pair:
    """The same MariaDB pair with the MES read through ODBC too (make_pair reads it natively)."""
    import dbs
    from dataclasses import replace

    return replace(pair, mes_url=dbs.url_for("mysql_odbc", make_url(pair.mes_url).database))


def drop_login(kind: str, login: str, urls: list[str]) -> None:
    """Remove a login a test made from a grants script (PostgreSQL: its privileges in each database first)."""
    import dbs

    if kind == "postgresql":
        for url in urls:  # privileges live in each database; DROP ROLE needs them gone
            engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                conn.exec_driver_sql(f'DROP OWNED BY "{login}"')
            engine.dispose()
        admin_url = dbs.pg_admin_url()
        statement = f'DROP ROLE IF EXISTS "{login}"'
    elif kind.startswith("mysql"):
        admin_url = dbs.mysql_admin_url()
        statement = f"DROP USER IF EXISTS '{login}'@'%'"
    else:
        return
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(statement))  # not exec_driver_sql: pymysql would read the host's % as a format
    engine.dispose()

"""Steps 1 and 2: the MES and ERP databases, the demo configuration, the staging DDL and the schema snapshots.

Each is what a plant does with the real product: the MES and the ERP are given (here: AdventureWorks in SQLite,
and an ERP schedule of released production orders), the DBA runs `mes-erp-agent sql ddl --apply` on each
system that is a flow's target (the ERP's staging schema, the MES's inbound schema), an admin takes the
snapshots with `mes-erp-agent snapshot`.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import sqlalchemy as sa

from agent import pipeline
from agent.config import LoadedConfig, load_config
from agent.connect import Systems
from agent.demo import adventureworks
from agent.demo.erp_schedule import create_schedule, initial_schedule
from agent.demo.folder import CONFIG_NAME, ERP_FILE, INBOUND_FILE, MES_FILE, STAGING_FILE, mark_as_demo, shown
from agent.demo.screen import FlowStats, Printer, number, seconds_text
from agent.demo.shopfloor import RowIdentity
from agent.staging import ddl_statements

TEMPLATE_FOLDER_TEXT = "demo-run/demo.yaml"  # in demo.yaml's comments; replaced by the real path
DEFAULT_EVERY_SECONDS = 60.0  # a flow without `schedule:` (the scheduler's default)


@dataclass
class PreparedFlows:
    """Every flow of the demo configuration, its tables looked up, with what the view shows of it."""

    contexts: dict[str, pipeline.FlowContext]
    flows: dict[str, FlowStats]
    identities: dict[str, RowIdentity]  # per MES table: how its flow names a row (for the shop floor)


def build_mes(folder: Path, printer: Printer) -> dict[str, int]:
    """The MES database with the AdventureWorks Production tables; returns the rows loaded per table."""
    started = time.monotonic()
    printer.step(1, "MES database", f"{shown(folder / MES_FILE)}: loading the AdventureWorks Production tables")
    engine = sa.create_engine(f"sqlite:///{(folder / MES_FILE).resolve()}")
    try:
        counts = adventureworks.create_and_load(engine, adventureworks.TABLES)
    finally:
        engine.dispose()
    printer.detail(
        f"{number(counts['work_order'])} work orders (history: all closed), {number(counts['work_order_routing'])} "
        f"operations, {number(counts['product'])} products, {number(counts['scrap_reason'])} scrap reasons, "
        f"{number(counts['location'])} locations, in {seconds_text(time.monotonic() - started)}"
    )
    return counts


def write_config(folder: Path) -> LoadedConfig:
    """`demo.yaml` from the packaged template (its comments name the real folder), and the folder's marker."""
    path = folder / CONFIG_NAME
    template = resources.files("agent.demo").joinpath("demo.yaml").read_text(encoding="utf-8")
    text = template.replace(TEMPLATE_FOLDER_TEXT, shown(path))
    path.write_text(text, encoding="utf-8")
    mark_as_demo(folder, text)
    return load_config(path)


def build_erp_schedule(folder: Path) -> int:
    """The ERP's core table `production_order` in erp.db: the released production orders; returns how many."""
    engine = sa.create_engine(f"sqlite:///{(folder / ERP_FILE).resolve()}")
    try:
        rows = initial_schedule(dt.datetime.now())
        create_schedule(engine, rows)
    finally:
        engine.dispose()
    return len(rows)


def create_staging_tables(folder: Path, config: LoadedConfig, systems: Systems, printer: Printer,
                          released_orders: int) -> None:
    """Exactly what `mes-erp-agent sql ddl -c demo.yaml --system NAME --apply` runs, for each target system."""
    printer.step(2, "ERP staging tables", f"{shown(folder / ERP_FILE)} with the staging schema in "
                 f"{shown(folder / STAGING_FILE)}; the MES inbound schema in {shown(folder / INBOUND_FILE)}; "
                 f"configuration {shown(config.path)}")
    printer.detail(f"ERP schedule: {number(released_orders)} released production orders in {shown(folder / ERP_FILE)} "
                   "(table production_order), which the ERP -> MES flow reads")
    targets = list(dict.fromkeys(flow.target for flow in config.flows().values()))
    for system in sorted(targets):  # erp, then mes
        schema = config.model.systems[system].staging_schema
        assert schema is not None
        tables = pipeline.staging_tables_of(config, systems, system)
        statements = ddl_statements(systems.dialect(system), schema, tables)
        with systems.target(system).begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
        names = [f"{schema}.{t.name}" for t in tables] + [f"{schema}.agent_{n}" for n in ("watermark", "run", "quarantine")]
        printer.detail(f"{len(statements)} statements, as `{printer.command('sql ddl', '--system', system, '--apply')}`: "
                       + ", ".join(names))


def capture_schema_snapshots(config: LoadedConfig, systems: Systems) -> list[Path]:
    """Schema snapshots of every system the flows use, which the drift gate compares before each flow run.

    The demo's one step between the DDL and the first run; in a plant this is `mes-erp-agent snapshot`.
    """
    from agent.drift import capture_snapshots

    return capture_snapshots(config, systems)


def prepare_flows(config: LoadedConfig, systems: Systems) -> PreparedFlows:
    """Look up every flow's tables (raises SchemaMismatch when they do not match the configuration)."""
    prepared = PreparedFlows({}, {}, {})
    for name, flow in config.flows().items():
        ctx = pipeline.prepare(config, systems, name)
        prepared.contexts[name] = ctx
        every = flow.schedule.every.total_seconds() if flow.schedule and flow.schedule.every else DEFAULT_EVERY_SECONDS
        assert flow.table is not None, "demo flows read tables"
        prepared.flows[name] = FlowStats(name, flow.table, f"{ctx.staging.schema}.{ctx.staging.name}", every,
                                         flow.lag.total_seconds(), source=flow.source, target=flow.target)
        prepared.identities[flow.table] = RowIdentity(tuple(flow.key), tuple(flow.watermark))
    return prepared

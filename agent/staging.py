"""The staging contract: each flow's staging table (control columns + mapped columns) and its DDL.

Two layouts: `agent` (the default), a table `sql ddl` creates with the stg_* control columns before the mapped
ones; `vendor`, an ERP vendor's interface table (Oracle EBS MTL_TRANSACTIONS_INTERFACE, ...) the agent fills
with the mapped columns only, creating nothing and keeping its control data in agent_ledger.

The DDL is rendered from `sql/<dialect>/ddl_*.sql`; the running agent never issues it (a DBA does, or
`sql ddl --apply` in demos and tests).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from agent.config import FlowConfig, LoadedConfig
from agent.dialects import Dialect
from agent.contract import (
    ALL_CONTROL_COLUMNS, CONTROL_COLUMNS, CONTROL_TYPES, LAYOUT_AGENT, LAYOUT_VENDOR, QUARANTINE_TABLE, ControlTables,
)
from agent.mapping import staging_type
from agent.read import SourceColumn, describe_source_table
from agent.types import ColumnType, to_sqlalchemy

REPLAYED_AT = "replayed_at"  # the first of agent_quarantine's replay columns (`quarantine replay`)


@dataclass(frozen=True)
class StagingColumn:
    name: str
    column_type: ColumnType
    nullable: bool
    native: str | None = None  # the live column's type as the database spells it (with_live_types), else None


@dataclass(frozen=True)
class StagingTable:
    """One flow's staging table: where it is and what the agent writes into it."""

    flow: str
    schema: str
    name: str
    columns: tuple[StagingColumn, ...]
    layout: str = LAYOUT_AGENT
    reference: str | None = None  # vendor layout: the column that gets the agent_ledger entry_id
    outcome_columns: tuple[str, ...] = ()  # vendor layout: columns the import outcome is read from

    @property
    def vendor(self) -> bool:
        return self.layout == LAYOUT_VENDOR

    @property
    def insert_columns(self) -> list[str]:
        """Columns of a staging row as mapped (control columns, then mapped columns): the batch table's columns."""
        return [*CONTROL_COLUMNS, *(c.name for c in self.columns)]

    @property
    def written_columns(self) -> list[str]:
        """Columns the agent writes into the staging table (the rest have database defaults or are the ERP's)."""
        mapped = [c.name for c in self.columns]
        if self.vendor:
            return [*mapped, *([self.reference] if self.reference else [])]
        return [*CONTROL_COLUMNS, *mapped]

    def bind_types(self) -> dict[str, sa.types.TypeEngine]:
        return {**CONTROL_TYPES, **{c.name: to_sqlalchemy(c.column_type) for c in self.columns}}

    def native_types(self) -> dict[str, str | None]:
        """The mapped columns' live types as the database spells them (None where not read from the catalog)."""
        return {c.name: c.native for c in self.columns}

    def types(self) -> dict[str, ColumnType]:
        return {c.name: c.column_type for c in self.columns}


def staging_table_for(config: LoadedConfig, flow_name: str, flow: FlowConfig, source: dict[str, SourceColumn]) -> StagingTable:
    schema = config.model.systems[flow.target].staging_schema
    assert schema is not None, "check-config guarantees a staging schema for every target"
    columns = []
    for name, mapping in flow.columns.items():
        source_type = source[mapping.source].column_type if mapping.source else None
        columns.append(StagingColumn(name, staging_type(mapping, source_type), nullable=not mapping.required))
    return staging_table(flow_name, flow, schema, tuple(columns))


def staging_table(flow_name: str, flow: FlowConfig, schema: str, columns: tuple[StagingColumn, ...]) -> StagingTable:
    """The flow's staging table with these columns, in the flow's layout."""
    outcome = flow.import_outcome
    return StagingTable(flow_name, schema, flow.staging_table_name, columns, flow.layout, flow.reference,
                        tuple(outcome.columns) if outcome and flow.vendor_layout else ())


def with_live_types(table: StagingTable, live: dict[str, SourceColumn], dialect: Dialect) -> StagingTable:
    """The staging table typed as the database has it: what a DBA created is what can be written."""
    columns = tuple(_with_live_type(c, live[c.name], dialect) for c in table.columns)
    return replace(table, columns=columns)


def _with_live_type(column: StagingColumn, live: SourceColumn, dialect: Dialect) -> StagingColumn:
    if live.column_type is None:
        return column
    return replace(column, column_type=dialect.stored_type(live.column_type), native=live.native)


def unbounded_decimal_problems(config: LoadedConfig, dialect: Dialect, tables: list[StagingTable]) -> list[str]:
    """Staging columns typed as an unbounded decimal in a database without an exact type for one, for a person."""
    if dialect.holds_unbounded_decimal:
        return []
    problems = []
    for table in tables:
        flow = config.model.flows[table.flow]
        for column in table.columns:
            if column.column_type.family != "decimal" or column.column_type.precision is not None:
                continue
            mapping = flow.columns[column.name]
            origin = f"its `type: {mapping.type}` gives" if mapping.type else "its source column gives"
            problems.append(
                f"{config.where('flows', table.flow, 'columns', column.name)}: flow {table.flow}: staging column "
                f"{column.name!r} (source column {mapping.source!r}) is a decimal without precision ({origin} none), "
                f"and {dialect.name} has no exact type that holds every such value; give the column a "
                f"`type: decimal(P,S)` that fits the source's values"
            )
    return problems


def vendor_table_notes(tables: list[StagingTable]) -> list[str]:
    """What `sql ddl` says instead of DDL for each vendor-defined interface table."""
    return [
        f"-- flow {t.flow}: {t.schema}.{t.name} is the ERP vendor's interface table (layout: vendor): the agent "
        f"creates no DDL for it and adds no columns to it; it writes only the mapped columns"
        f"{f' and {t.reference}' if t.reference else ''}, and keeps its control data in agent_ledger."
        for t in tables if t.vendor
    ]


def ddl_statements(dialect: Dialect, schema: str, tables: list[StagingTable],
                   quarantine_upgrade: bool | None = False) -> list[str]:
    """CREATE statements for the staging schema, the control tables and each agent-layout staging table, in order
    (vendor-layout tables are the vendor's: `vendor_table_notes` says so). `quarantine_upgrade`: True adds the replay
    columns to an agent_quarantine made before them (`needs_quarantine_upgrade`); None (not known: no connection)
    prints that ALTER as a note."""
    statements = []
    schema_sql = dialect.render("ddl_schema", schema=dialect.quote(schema), schema_name=schema)
    if schema_sql:
        statements.append(schema_sql)
    control = ControlTables.in_schema(dialect, schema)
    statements += dialect.split_script(
        dialect.render(
            "ddl_control_tables",
            schema=dialect.quote(schema),
            watermark_table=control.watermark,
            run_table=control.run,
            quarantine_table=control.quarantine,
            ledger_table=control.ledger,
            holder_table=control.holder,
            holder_name=f"{schema}.agent_holder",
            watermark_name=f"{schema}.agent_watermark",
            run_name=f"{schema}.agent_run",
            quarantine_name=f"{schema}.agent_quarantine",
            ledger_name=f"{schema}.agent_ledger",
            run_table_unqualified=dialect.quote("agent_run"),
            ledger_table_unqualified=dialect.quote("agent_ledger"),
            run_index=dialect.quote("ix_agent_run_flow"),
            quarantine_unique=dialect.quote("uq_agent_quarantine_source"),
            ledger_unique=dialect.quote("uq_agent_ledger_source"),
            ledger_index=dialect.quote("ix_agent_ledger_flow_staged"),
        )
    )
    if quarantine_upgrade is not False:
        upgrade = dialect.render("ddl_quarantine_upgrade", quarantine_table=control.quarantine)
        if quarantine_upgrade:
            statements += dialect.split_script(upgrade)
        else:
            statements.append("\n".join(
                [f"-- Upgrade: if {schema}.{QUARANTINE_TABLE} was made by a version before `quarantine replay` (it has no "
                 "replayed_at column), run once:"] + [f"--   {line}" for line in upgrade.splitlines()]))
    for table in tables:
        if table.vendor:
            continue
        statements += dialect.split_script(
            dialect.render(
                "ddl_staging_table",
                schema=dialect.quote(schema),
                staging_table=dialect.table(schema, table.name),
                staging_table_unqualified=dialect.quote(table.name),
                staging_name=f"{schema}.{table.name}",
                unique_name=dialect.quote(f"uq_{table.name}_source"),
                pending_index=dialect.quote(f"ix_{table.name}_pending"),
                pending_index_name=f"ix_{table.name}_pending",
                columns=[
                    {"name": dialect.quote(c.name), "type": dialect.render_type(c.column_type), "nullable": c.nullable}
                    for c in table.columns
                ],
            )
        )
        statements.append(dialect.render(
            "ddl_ledger_seed", ledger_table=control.ledger, staging_table=dialect.table(schema, table.name),
            staging_name=f"{schema}.{table.name}",
        ))
    return statements


def needs_quarantine_upgrade(engine: Engine, schema: str) -> bool:
    """True when the live agent_quarantine exists without the replay columns (made before `quarantine replay`)."""
    live = describe_source_table(engine, schema, QUARANTINE_TABLE)
    return bool(live) and REPLAYED_AT not in live


def check_staging_columns(table: StagingTable, live: dict[str, SourceColumn], system: str) -> list[str]:
    """Problems with the live staging table against the configuration, for a person."""
    where = f"{table.schema}.{table.name} on system {system}"
    if not live:
        return [
            f"flow {table.flow}: staging table {where} does not exist; have the DBA run "
            f"`mes-erp-agent sql ddl -c <config> --system {system}`"
        ]
    if table.vendor:
        expected = [*table.written_columns, *table.outcome_columns]
        whose = "the vendor's interface table"
    else:
        expected = [*ALL_CONTROL_COLUMNS, *(c.name for c in table.columns)]
        whose = "staging table"
    return [
        f"flow {table.flow}: column {name!r} does not exist in {whose} {where}"
        for name in dict.fromkeys(expected)
        if name not in live
    ]

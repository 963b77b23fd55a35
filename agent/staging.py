"""The staging contract: each flow's staging table (control columns + mapped columns) and its DDL.

The DDL is rendered from `sql/<dialect>/ddl_*.sql`; the running agent never issues it (a DBA does, or
`sql ddl --apply` in demos and tests).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import sqlalchemy as sa

from agent.config import FlowConfig, LoadedConfig
from agent.dialects import Dialect
from agent.contract import ALL_CONTROL_COLUMNS, CONTROL_COLUMNS, CONTROL_TYPES, ControlTables
from agent.mapping import staging_type
from agent.read import SourceColumn
from agent.types import ColumnType, to_sqlalchemy



@dataclass(frozen=True)
class StagingColumn:
    name: str
    column_type: ColumnType
    nullable: bool


@dataclass(frozen=True)
class StagingTable:
    """One flow's staging table: where it is and what the agent writes into it."""

    flow: str
    schema: str
    name: str
    columns: tuple[StagingColumn, ...]

    @property
    def insert_columns(self) -> list[str]:
        """Columns the agent writes, in staging-row order (the rest have database defaults)."""
        return [*CONTROL_COLUMNS, *(c.name for c in self.columns)]

    def bind_types(self) -> dict[str, sa.types.TypeEngine]:
        return {**CONTROL_TYPES, **{c.name: to_sqlalchemy(c.column_type) for c in self.columns}}

    def types(self) -> dict[str, ColumnType]:
        return {c.name: c.column_type for c in self.columns}


def staging_table_for(config: LoadedConfig, flow_name: str, flow: FlowConfig, source: dict[str, SourceColumn]) -> StagingTable:
    schema = config.model.systems[flow.target].staging_schema
    assert schema is not None, "check-config guarantees a staging schema for every target"
    columns = []
    for name, mapping in flow.columns.items():
        source_type = source[mapping.source].column_type if mapping.source else None
        columns.append(StagingColumn(name, staging_type(mapping, source_type), nullable=not mapping.required))
    return StagingTable(flow_name, schema, flow.staging_table_name, tuple(columns))


def with_live_types(table: StagingTable, live: dict[str, SourceColumn], dialect: Dialect) -> StagingTable:
    """The staging table typed as the database has it: what a DBA created is what can be written."""
    columns = tuple(_with_live_type(c, live[c.name].column_type, dialect) for c in table.columns)
    return replace(table, columns=columns)


def _with_live_type(column: StagingColumn, live_type: ColumnType | None, dialect: Dialect) -> StagingColumn:
    return replace(column, column_type=dialect.stored_type(live_type)) if live_type is not None else column


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


def ddl_statements(dialect: Dialect, schema: str, tables: list[StagingTable]) -> list[str]:
    """CREATE statements for the staging schema, the control tables and each staging table, in order."""
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
            watermark_name=f"{schema}.agent_watermark",
            run_name=f"{schema}.agent_run",
            quarantine_name=f"{schema}.agent_quarantine",
            run_table_unqualified=dialect.quote("agent_run"),
            run_index=dialect.quote("ix_agent_run_flow"),
            quarantine_unique=dialect.quote("uq_agent_quarantine_source"),
        )
    )
    for table in tables:
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
    return statements


def check_staging_columns(table: StagingTable, live: dict[str, SourceColumn], system: str) -> list[str]:
    """Problems with the live staging table against the configuration, for a person."""
    where = f"{table.schema}.{table.name} on system {system}"
    if not live:
        return [
            f"flow {table.flow}: staging table {where} does not exist; have the DBA run "
            f"`mes-erp-agent sql ddl -c <config> --system {system}`"
        ]
    expected = [*ALL_CONTROL_COLUMNS, *(c.name for c in table.columns)]
    return [
        f"flow {table.flow}: column {name!r} does not exist in staging table {where}"
        for name in expected
        if name not in live
    ]

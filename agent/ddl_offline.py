"""`sql ddl --dialect`: the staging DDL in any dialect without connecting, typed from `type:` or the source
system's schema snapshot."""

from __future__ import annotations

from sqlalchemy.engine import make_url

from agent import dialects, source_query
from agent.config import FlowConfig, LoadedConfig
from agent.dialects import Dialect
from agent.errors import ConfigError, SchemaMismatch
from agent.mapping import staging_type
from agent.staging import (
    StagingColumn, StagingTable, ddl_statements, staging_table, unbounded_decimal_problems, vendor_table_notes,
)
from agent.types import ColumnType


def system_dialect(config: LoadedConfig, system: str) -> Dialect:
    """The dialect of a system's URL, without connecting (and without reading its password file)."""
    return dialects.for_url(make_url(config.model.systems[system].url))


# --- `sql ddl --dialect`: staging types without a live source ------------------------------------------
def offline_staging_tables(config: LoadedConfig, system: str) -> list[StagingTable]:
    """Staging tables of a system's flows, typed from `type:` or the source system's schema snapshot."""
    tables, problems = [], []
    schema = config.model.systems[system].staging_schema or ""
    for name, flow in config.model.flows.items():
        if flow.target != system:
            continue
        if flow.vendor_layout:  # the vendor's table: no DDL, so no types needed
            tables.append(staging_table(name, flow, schema, ()))
            continue
        types, where = snapshot_types(config, flow)
        columns = []
        for staging, mapping in flow.columns.items():
            source_type = types.get(mapping.source) if mapping.source else None
            if mapping.column_type is None and mapping.map is None and source_type is None:
                problems.append(
                    f"{config.where('flows', name, 'columns', staging)}: flow {name}: staging column {staging!r} takes "
                    f"the type of source column {mapping.source!r}, which is known only from the live database or a "
                    f"schema snapshot ({where}); give it a `type:` to print the DDL without connecting"
                )
                continue
            columns.append(StagingColumn(staging, staging_type(mapping, source_type), nullable=not mapping.required))
        tables.append(staging_table(name, flow, schema, tuple(columns)))
    if problems:
        raise SchemaMismatch("\n".join(problems))
    return tables


def snapshot_types(config: LoadedConfig, flow: FlowConfig) -> tuple[dict[str, ColumnType], str]:
    """Source column -> type from `schema_snapshots/<source>.yaml` (empty when there is none)."""
    from agent.drift import snapshot

    path = snapshot.snapshot_path(config, flow.source)
    try:
        tables = snapshot.read(path, flow.source, config.path).tables
    except ConfigError:
        return {}, f"{path} is missing or unreadable"
    dialect = system_dialect(config, flow.source)
    if flow.query is None:
        found = tables.get(flow.table or "")
        return ({c.name: c.type for c in found.columns} if found else {}), str(path)
    types = {}
    for output in source_query.load(flow.query, dialect).outputs:
        if output.origin is not None:
            schema, table, column = output.origin
            found = tables.get(f"{schema}.{table}" if schema else table)
            match = next((c for c in found.columns if dialect.same_column(c.name, column)), None) if found else None
            if match is not None:
                types[output.name] = match.type
    return types, str(path)


def ddl_for_dialect(config: LoadedConfig, system: str, dialect_name: str) -> list[str]:
    schema = config.model.systems[system].staging_schema or ""
    dialect, tables = dialects.for_name(dialect_name), offline_staging_tables(config, system)
    problems = unbounded_decimal_problems(config, dialect, tables)
    if problems:
        raise SchemaMismatch("\n".join(problems))
    return ddl_statements(dialect, schema, tables, quarantine_upgrade=None) + vendor_table_notes(tables)

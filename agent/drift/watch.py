"""Which tables the drift gate watches, and how each flow uses them.

A flow reads its source table (or the tables its custom query names) on its source system, and writes
its staging table plus the agent's control tables (agent_watermark, agent_run, agent_quarantine) in the
staging schema of its target system. How a flow uses a column decides whether a change is breaking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agent.config import FlowConfig, LoadedConfig
from agent.mapping import CONTROL_COLUMNS
from agent.read import needed_source_columns
from agent.staging import ALL_CONTROL_COLUMNS

CONTROL_TABLES = ("agent_watermark", "agent_run", "agent_quarantine")
Role = Literal["source table", "staging table", "control table"]


@dataclass(frozen=True)
class WatchedTable:
    system: str
    schema: str | None
    table: str

    @property
    def key(self) -> str:
        return f"{self.schema}.{self.table}" if self.schema else self.table


@dataclass(frozen=True)
class TableUse:
    """One flow's use of one watched table."""

    flow: str
    on_drift: str
    role: Role
    columns: frozenset[str] | None  # columns the flow reads or writes; None: every column (control tables)
    needs_value: frozenset[str] = frozenset()  # read: watermark, key and `required: true` columns
    writes: frozenset[str] = frozenset()  # write: columns the agent puts values in
    may_write_null: frozenset[str] = frozenset()  # write: columns the agent may leave NULL
    ordered_by: frozenset[str] = frozenset()  # watermark and key columns: compared and ordered in the database
    watermark: tuple[str, ...] = ()  # read: the keyset order

    @property
    def reads_only(self) -> bool:
        return self.role == "source table"

    def uses(self, column: str) -> bool:
        return self.columns is None or column in self.columns

    def verb(self, column: str | None = None) -> str:
        if self.role == "source table":
            if column in self.ordered_by:
                return "reads this column as its watermark or key"
            return "reads this column"
        return "writes this column" if self.role == "staging table" else "uses this column (agent control table)"


def uses_by_system(config: LoadedConfig, only: str | None = None) -> dict[str, dict[str, list[TableUse]]]:
    """system -> table key -> the uses of every (enabled, or the named) flow; keys sorted for stable output."""
    found: dict[str, dict[str, list[TableUse]]] = {}
    for name, flow in config.flows(only).items():
        for table, use in _flow_uses(config, name, flow):
            found.setdefault(table.system, {}).setdefault(table.key, []).append(use)
    return {system: dict(sorted(tables.items())) for system, tables in sorted(found.items())}


def watched_tables(config: LoadedConfig, system: str, only: str | None = None) -> list[WatchedTable]:
    tables: dict[str, WatchedTable] = {}
    for name, flow in config.flows(only).items():
        for table, _use in _flow_uses(config, name, flow):
            if table.system == system:
                tables[table.key] = table
    return [tables[key] for key in sorted(tables)]


def systems_of(config: LoadedConfig, only: str | None = None) -> list[str]:
    """Every system a flow reads or writes, in name order."""
    return sorted({s for flow in config.flows(only).values() for s in (flow.source, flow.target)})


def _flow_uses(config: LoadedConfig, name: str, flow: FlowConfig) -> list[tuple[WatchedTable, TableUse]]:
    ordered_by = frozenset(flow.watermark + flow.key)
    read_columns = frozenset(needed_source_columns(flow))
    required = frozenset(m.source for m in flow.columns.values() if m.source and m.required)
    read = TableUse(name, flow.on_drift, "source table", read_columns, needs_value=ordered_by | required,
                    ordered_by=ordered_by, watermark=tuple(flow.watermark))
    uses = [(table, read) for table in _source_tables(config, name, flow)]
    schema = config.model.systems[flow.target].staging_schema
    mapped = frozenset(flow.columns)
    nullable_mapped = frozenset(c for c, m in flow.columns.items() if not m.required)
    staging = TableUse(
        name, flow.on_drift, "staging table", frozenset(ALL_CONTROL_COLUMNS) | mapped,
        writes=frozenset(CONTROL_COLUMNS) | mapped, may_write_null=nullable_mapped,
        ordered_by=frozenset(("stg_flow", "stg_source_key", "stg_source_version")),
    )
    uses.append((WatchedTable(flow.target, schema, flow.staging_table_name), staging))
    control = TableUse(name, flow.on_drift, "control table", None)
    uses += [(WatchedTable(flow.target, schema, table), control) for table in CONTROL_TABLES]
    return uses


def _source_tables(config: LoadedConfig, name: str, flow: FlowConfig) -> list[WatchedTable]:
    """The source table, or every table the flow's custom query reads (checked when the config loaded)."""
    from agent import dialects, source_query

    dialect = dialects.for_url(config.configured_url(flow.source))
    tables = source_query.query_tables(flow.query, (flow.source_schema, flow.source_table or ""), dialect)
    return [WatchedTable(flow.source, schema, table) for schema, table in tables]

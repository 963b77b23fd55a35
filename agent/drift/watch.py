"""Which tables the drift gate watches, and how each flow uses them.

A flow reads its source table (or the tables its custom query names) on its source system, and writes
its staging table plus the agent's control tables (agent_watermark, agent_run, agent_quarantine) in the
staging schema of its target system. How a flow uses a column decides whether a change is breaking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agent.config import FlowConfig, LoadedConfig
from agent.contract import ALL_CONTROL_COLUMNS, CONTROL_COLUMNS, CONTROL_TABLES, STAGING_UNIQUE_KEY
from agent.catalog.query import WatchedTable
from agent.catalog.keyset import Guarantee, keyset_guarantees, makes_unique
from agent.catalog.model import TableSnapshot
from agent.read import needed_source_columns

Role = Literal["source table", "staging table", "control table"]


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
    # read: (column, length) where the configuration sizes the column's staging column (`type:`; None: unbounded
    # or a code map); other columns' staging columns were sized from the source column when it was reviewed.
    staging_lengths: tuple[tuple[str, int | None], ...] = ()

    @property
    def reads_only(self) -> bool:
        return self.role == "source table"

    def relies_on(self, key: Guarantee | None) -> bool:
        """The key makes this flow's keyset (its watermark columns) unique: the reads skip no row because of it."""
        return key is not None and self.reads_only and makes_unique(key.columns, self.watermark)

    def keyset_guarantees(self, table: TableSnapshot) -> list[Guarantee]:
        """The table's keys that make this flow's keyset unique (none on tables the flow does not read)."""
        return keyset_guarantees(table, self.watermark) if self.reads_only else []

    def uses(self, column: str) -> bool:
        return self.columns is None or column in self.columns

    def staging_length(self, column: str, reviewed: int | None) -> int | None:
        """Characters the staging column of a source column holds (`reviewed`: the source's reviewed length)."""
        return dict(self.staging_lengths).get(column, reviewed)

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
                    ordered_by=ordered_by, watermark=tuple(flow.watermark), staging_lengths=_staging_lengths(flow))
    uses = [(table, read) for table in _source_tables(config, name, flow)]
    schema = config.model.systems[flow.target].staging_schema
    mapped = frozenset(flow.columns)
    nullable_mapped = frozenset(c for c, m in flow.columns.items() if not m.required)
    if flow.vendor_layout:  # the vendor's interface table: only what the agent writes and the outcome it reads
        written = mapped | ({flow.reference} if flow.reference else set())
        outcome = flow.import_outcome
        staging = TableUse(
            name, flow.on_drift, "staging table", frozenset(written | set(outcome.columns if outcome else [])),
            writes=frozenset(written), may_write_null=nullable_mapped,
        )
    else:
        staging = TableUse(
            name, flow.on_drift, "staging table", frozenset(ALL_CONTROL_COLUMNS) | mapped,
            writes=frozenset(CONTROL_COLUMNS) | mapped, may_write_null=nullable_mapped,
            ordered_by=frozenset(STAGING_UNIQUE_KEY),
        )
    uses.append((WatchedTable(flow.target, schema, flow.staging_table_name), staging))
    control = TableUse(name, flow.on_drift, "control table", None)
    uses += [(WatchedTable(flow.target, schema, table), control) for table in CONTROL_TABLES]
    return uses


def _staging_lengths(flow: FlowConfig) -> tuple[tuple[str, int | None], ...]:
    sized: list[tuple[str, int | None]] = []
    for mapping in flow.columns.values():
        if mapping.source and mapping.map is not None:
            sized.append((mapping.source, None))  # codes are mapped: a label is never written as it is
        elif mapping.source and mapping.column_type is not None:
            text = mapping.column_type.family == "text"
            sized.append((mapping.source, mapping.column_type.length if text else None))
    return tuple(sized)


def _source_tables(config: LoadedConfig, name: str, flow: FlowConfig) -> list[WatchedTable]:
    """The source table, or every table the flow's custom query reads (checked when the config loaded)."""
    from agent import dialects, source_query

    dialect = dialects.for_url(config.configured_url(flow.source))
    tables = source_query.query_tables(flow.query, (flow.source_schema, flow.source_table or ""), dialect)
    return [WatchedTable(flow.source, schema, table) for schema, table in tables]

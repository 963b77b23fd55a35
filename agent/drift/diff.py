"""One difference between a snapshot and the live schema, and what it means for each flow.

A `Diff` is a value: the comparison modules (`compare/`) produce them, `render.py` formats them and the
gate decides with them. It never formats itself for people beyond the short `summary`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Kinds, in the order a report lists them within a table.
KINDS = (
    "table_missing",
    "column_renamed", "column_dropped", "column_added",
    "type_changed", "length_changed", "precision_changed", "enum_labels_changed",
    "nullable_changed", "default_changed", "identity_changed", "computed_changed", "collation_changed",
    "columns_reordered",
    "primary_key_changed", "unique_added", "unique_dropped", "unique_changed",
    "index_added", "index_dropped", "index_changed",
    "foreign_key_added", "foreign_key_dropped", "foreign_key_changed",
)

# What each kind says to a person.
TITLES = {
    "table_missing": "table no longer exists (or the agent's login can no longer see it)",
    "column_renamed": "column renamed",
    "column_dropped": "column removed",
    "column_added": "new column",
    "type_changed": "data type changed",
    "length_changed": "maximum length changed",
    "precision_changed": "precision or scale changed",
    "enum_labels_changed": "enum labels changed",
    "nullable_changed": "NULL rule changed",
    "default_changed": "default value changed",
    "identity_changed": "identity (generated values) changed",
    "computed_changed": "computed-column setting changed",
    "collation_changed": "collation changed",
    "columns_reordered": "column order changed",
    "primary_key_changed": "primary key changed",
    "unique_added": "new unique constraint",
    "unique_dropped": "unique constraint removed",
    "unique_changed": "unique constraint changed",
    "index_added": "new index",
    "index_dropped": "index removed",
    "index_changed": "index changed",
    "foreign_key_added": "new foreign key",
    "foreign_key_dropped": "foreign key removed",
    "foreign_key_changed": "foreign key changed",
}


@dataclass(frozen=True)
class Impact:
    """What a diff means for one flow that uses the table."""

    flow: str
    breaking: bool
    reason: str


@dataclass(frozen=True)
class Diff:
    kind: str
    system: str
    table: str
    column: str | None  # the column a column-level diff is about
    expected: str | None  # in the snapshot, as text for a person (None: absent)
    actual: str | None  # in the live database (None: absent)
    constraint: str | None = None  # the index or constraint a key-level diff is about
    impacts: tuple[Impact, ...] = ()

    @property
    def breaking(self) -> bool:
        return any(i.breaking for i in self.impacts)

    @property
    def title(self) -> str:
        return TITLES[self.kind]

    def impact_on(self, flow: str) -> Impact | None:
        return next((i for i in self.impacts if i.flow == flow), None)

    def identity(self) -> tuple[str | None, ...]:
        """What makes two diffs the same drift (used to report a drift once)."""
        return (self.system, self.table, self.kind, self.column, self.constraint, self.expected, self.actual)

    def where(self) -> str:
        """`production.work_order.scrapped_qty`, `production.work_order (index ix_x)` or the table."""
        if self.column:
            return f"{self.table}.{self.column}"
        if self.constraint:
            noun = "index" if self.kind.startswith("index") else "constraint"
            return f"{self.table} ({noun} {self.constraint})"
        return self.table

    def summary(self) -> str:
        """One line: `production.work_order.scrapped_qty: data type changed (smallint -> bigint)`."""
        if self.expected and self.actual:
            change = f" ({self.expected} -> {self.actual})"
        else:
            change = f" (now {self.actual})" if self.actual else f" (was {self.expected})" if self.expected else ""
        return f"{self.where()}: {self.title}{change}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "system": self.system, "table": self.table, "column": self.column,
            "constraint": self.constraint, "expected": self.expected, "actual": self.actual, "breaking": self.breaking,
            "impacts": [{"flow": i.flow, "breaking": i.breaking, "reason": i.reason} for i in self.impacts],
        }

"""What makes a flow's keyset unique: a primary key, unique constraint or unique index on watermark columns.

The keyset read `WHERE (w1, .., wn) > (:last) ORDER BY w1, .., wn` never returns a row whose watermark values
equal the last ones staged, so it relies on no two rows sharing (w1, .., wn). A unique key whose columns are
all watermark columns guarantees that (rows unique on a subset are unique on the whole). The drift gate calls
losing the last such key breaking (compare/keys.py); `run` warns about a flow that has none (pipeline.prepare).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agent.catalog.model import TableSnapshot


@dataclass(frozen=True)
class Guarantee:
    """A primary key, unique constraint or unique index, as a person names it."""

    kind: str  # "primary key", "unique constraint" or "unique index"
    name: str | None
    columns: tuple[str, ...]

    def describe(self) -> str:
        """`unique constraint item_x_key`, `the primary key (x)` (primary key names say little: PRIMARY, pkey)."""
        if self.kind == "primary key":
            return f"the primary key {_column_list(self.columns)}"
        return f"{self.kind} {self.name}"


def unique_keys(table: TableSnapshot) -> list[Guarantee]:
    """Every primary key, unique constraint and unique index of the table."""
    found = []
    if table.primary_key is not None:
        found.append(Guarantee("primary key", table.primary_key.name, table.primary_key.columns))
    found += [Guarantee("unique constraint", key.name, key.columns) for key in table.unique]
    found += [Guarantee("unique index", index.name, index.columns) for index in table.indexes if index.unique]
    return found


def makes_unique(columns: Sequence[str], keyset: Sequence[str]) -> bool:
    """Rows unique on `columns` are unique on `keyset` when every one of those columns is a keyset column."""
    return bool(columns) and set(columns) <= set(keyset)


def keyset_guarantees(table: TableSnapshot, keyset: Sequence[str]) -> list[Guarantee]:
    return [key for key in unique_keys(table) if makes_unique(key.columns, keyset)]


def rows_with_the_same(keyset: Sequence[str]) -> str:
    """`rows with the same x`, `rows with the same (modified_date, id)`."""
    return f"rows with the same {keyset[0] if len(keyset) == 1 else _column_list(keyset)}"


def missing_guarantee_warning(flow: str, system: str, keyset: Sequence[str], tables: Iterable[str],
                              live: dict[str, TableSnapshot]) -> str | None:
    """The start-up warning for a flow whose source tables have nothing that makes its keyset unique."""
    names = list(tables)
    if any(keyset_guarantees(live[name], keyset) for name in names if name in live):
        return None
    where = f"table {names[0]}" if len(names) == 1 else f"tables {', '.join(names)}"
    return (
        f"flow {flow}: no primary key, unique constraint or unique index on {where} (system {system}) makes the "
        f"flow's keyset {_column_list(keyset)} unique: {rows_with_the_same(keyset)} can be skipped at batch "
        "boundaries. Add one, or end the flow's watermark with a column that is unique per row; if the source "
        "guarantees it in a way the catalog cannot show (a view, a custom query), this warning can be ignored."
    )


def leads_with(columns: Sequence[str], keyset: Sequence[str]) -> bool:
    """An index on `columns` serves the keyset read's range and order when it starts with the keyset, in order."""
    return [c.lower() for c in columns[: len(keyset)]] == [c.lower() for c in keyset]


def missing_index_warning(flow: str, system: str, keyset: Sequence[str], table: str, live: TableSnapshot | None) -> str | None:
    """The start-up warning for a flow whose source table has no index that starts with its watermark columns:
    every keyset read then scans (and sorts) the whole table instead of one index range scan."""
    if live is None:
        return None
    keys = [*unique_keys(live), *(Guarantee("index", i.name, i.columns) for i in live.indexes if not i.unique)]
    if any(leads_with(key.columns, keyset) for key in keys):
        return None
    name = table.rpartition(".")[2]
    return (
        f"flow {flow}: no index on table {table} (system {system}) starts with the watermark columns "
        f"{_column_list(keyset)}: every read scans the whole table. Have the DBA create one, e.g. "
        f"CREATE INDEX ix_{name}_watermark ON {table} {_column_list(keyset)}"
    )


def _column_list(columns: Sequence[str]) -> str:
    return "(" + ", ".join(columns) + ")"

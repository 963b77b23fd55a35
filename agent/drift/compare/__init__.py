"""Comparison of a reviewed snapshot with the live schema, one module per object kind, run in order."""

from __future__ import annotations

from collections.abc import Callable

from agent.drift.compare import columns, keys, tables, types
from agent.drift.compare.base import TablePair
from agent.drift.diff import KINDS, Diff
from agent.catalog.model import SystemSnapshot, TableSnapshot
from agent.drift.watch import TableUse

COMPARISONS: tuple[Callable[[TablePair], list[Diff]], ...] = (tables.compare, columns.compare, types.compare, keys.compare)


def compare_system(
    expected: SystemSnapshot, live: dict[str, TableSnapshot], uses: dict[str, list[TableUse]]
) -> list[Diff]:
    """Every difference on the watched tables (`uses`: table -> the flows' uses), in report order."""
    diffs: list[Diff] = []
    for name, table_uses in sorted(uses.items()):
        reviewed = expected.tables.get(name)
        if reviewed is None:
            continue  # not in the snapshot: the gate refuses to start (SnapshotError), never a silent pass
        pair = TablePair(expected.system, name, reviewed, live.get(name), tuple(table_uses))
        found = [diff for compare in COMPARISONS for diff in compare(pair)]
        diffs += sorted(found, key=lambda d: KINDS.index(d.kind))
    return diffs


__all__ = ["COMPARISONS", "compare_system"]

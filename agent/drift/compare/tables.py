"""Tables: a watched table that no longer exists breaks every flow that uses it."""

from __future__ import annotations

from agent.drift.compare.base import TablePair
from agent.drift.diff import Diff


def compare(pair: TablePair) -> list[Diff]:
    if pair.actual is not None:
        return []
    return [pair.diff("table_missing", lambda use: (True, f"this is the flow's {use.role}"),
                      expected=f"table with {len(pair.expected.columns)} columns", actual=None)]

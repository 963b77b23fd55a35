"""What every comparison module shares: the table pair being compared and how a flow's impact is judged."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agent.drift.diff import Diff, Impact
from agent.catalog.model import ColumnSnapshot, TableSnapshot
from agent.drift.watch import TableUse

# A judge says, for one flow's use of the table, whether a diff breaks the flow and why.
Judge = Callable[[TableUse], tuple[bool, str]]


@dataclass(frozen=True)
class TablePair:
    system: str
    name: str
    expected: TableSnapshot  # the reviewed snapshot
    actual: TableSnapshot | None  # live; None when the table is gone
    uses: tuple[TableUse, ...]

    def diff(self, kind: str, judge: Judge, *, column: str | None = None, constraint: str | None = None,
             expected: str | None = None, actual: str | None = None) -> Diff:
        impacts = []
        for use in self.uses:
            breaking, reason = judge(use)
            impacts.append(Impact(use.flow, breaking, reason))
        return Diff(kind=kind, system=self.system, table=self.name, column=column, expected=expected, actual=actual,
                    constraint=constraint, impacts=tuple(impacts))


def always(breaking: bool, reason: str) -> Judge:
    return lambda use: (breaking, reason)


def if_used(column: str) -> Judge:
    """Breaking when the flow reads or writes the column."""
    def judge(use: TableUse) -> tuple[bool, str]:
        if use.uses(column):
            return True, f"the flow {use.verb(column)}"
        return False, "the flow does not use this column"
    return judge


def describe_column(column: ColumnSnapshot) -> str:
    """`smallint NOT NULL DEFAULT 0`, as a DBA would write it."""
    text = column.native + ("" if column.nullable else " NOT NULL")
    if column.default is not None:
        text += f" DEFAULT {column.default}"
    if column.identity:
        text += " (identity)"
    if column.computed:
        text += " (computed)"
    return text


def column_list(columns: tuple[str, ...] | list[str]) -> str:
    return "(" + ", ".join(columns) + ")"

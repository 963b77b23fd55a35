"""Column types: the normalized type (family, length, precision, scale, time zone) and the native text.

A changed type, length, precision or scale of a column the flow reads or writes is breaking: values may
no longer convert, fit or compare the way the mapping was reviewed for.
"""

from __future__ import annotations

from agent.drift.compare.base import TablePair, if_used
from agent.drift.diff import Diff
from agent.catalog.model import ColumnSnapshot


def same_type(before: ColumnSnapshot, after: ColumnSnapshot) -> bool:
    return before.type == after.type and before.native == after.native


def kind_of_change(before: ColumnSnapshot, after: ColumnSnapshot) -> str:
    old, new = before.type, after.type
    if (old.family, old.timezone) != (new.family, new.timezone) or old.family == "integer" and old.precision != new.precision:
        return "type_changed"
    if old.length != new.length:
        return "length_changed"
    if (old.precision, old.scale) != (new.precision, new.scale):
        return "precision_changed"
    return "type_changed"  # same meaning, other spelling (e.g. a domain or alias type): still a change


def compare(pair: TablePair) -> list[Diff]:
    if pair.actual is None:
        return []
    diffs = []
    for before in pair.expected.columns:
        after = pair.actual.column(before.name)
        if after is not None and not same_type(before, after):
            diffs.append(pair.diff(kind_of_change(before, after), if_used(before.name), column=before.name,
                                   expected=_text(before, after), actual=_text(after, before)))
    return diffs


def _text(column: ColumnSnapshot, other: ColumnSnapshot) -> str:
    """The native type; with the normalized type when the native texts alone look the same."""
    if column.native == other.native:
        return f"{column.native} ({column.type.describe()})"
    return column.native

"""Column types: the normalized type (family, length, precision, scale, time zone) and the native text.

A changed type, length, precision or scale of a column the flow reads or writes is breaking: values may
no longer convert, fit or compare the way the mapping was reviewed for. Changed enum labels are breaking
when a value may no longer fit: a source label longer than its staging column holds, or a label removed
from an enum the agent writes.
"""

from __future__ import annotations

from agent.drift.compare.base import Judge, TablePair, if_used
from agent.drift.diff import Diff
from agent.catalog.model import ColumnSnapshot
from agent.drift.watch import TableUse


def same_type(before: ColumnSnapshot, after: ColumnSnapshot) -> bool:
    return before.type == after.type and before.native == after.native and before.labels == after.labels


def kind_of_change(before: ColumnSnapshot, after: ColumnSnapshot) -> str:
    old, new = before.type, after.type
    if (old.family, old.timezone) != (new.family, new.timezone) or (old.family == "integer" and old.precision != new.precision):
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
        if after is None or same_type(before, after):
            continue
        if before.labels != after.labels and (before.labels or after.labels):
            diffs.append(pair.diff("enum_labels_changed", _labels(before, after), column=before.name,
                                   expected=_label_text(before), actual=_label_text(after)))
        else:
            diffs.append(pair.diff(kind_of_change(before, after), if_used(before.name), column=before.name,
                                   expected=_text(before, after), actual=_text(after, before)))
    return diffs


def _labels(before: ColumnSnapshot, after: ColumnSnapshot) -> Judge:
    """A label added must fit the staging column (sized for the reviewed labels unless `type:` sizes it)."""
    name = before.name
    added = [label for label in after.labels if label not in before.labels]
    removed = [label for label in before.labels if label not in after.labels]
    reviewed = max((len(label) for label in before.labels), default=0)

    def judge(use: TableUse) -> tuple[bool, str]:
        if not use.uses(name):
            return False, "the flow does not use this column"
        if not use.reads_only:
            if removed:
                return True, f"the agent writes this column and may write the removed label {removed[0]!r}"
            return False, "the agent writes this column; every label it was reviewed with is still there"
        room = use.staging_length(name, reviewed)
        too_long = [label for label in added if room is not None and len(label) > room]
        if too_long:
            return True, (f"the flow reads this column and the new label {too_long[0]!r} ({len(too_long[0])} characters) "
                          f"does not fit its staging column ({room} characters)")
        return False, "the flow reads this column; every label fits its staging column"
    return judge


def _label_text(column: ColumnSnapshot) -> str:
    return ", ".join(repr(label) for label in column.labels) or "(no labels)"


def _text(column: ColumnSnapshot, other: ColumnSnapshot) -> str:
    """The native type; with the normalized type when the native texts alone look the same."""
    if column.native == other.native:
        return f"{column.native} ({column.type.describe()})"
    return column.native

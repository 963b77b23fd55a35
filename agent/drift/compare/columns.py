"""Columns: added, removed, renamed, and the column attributes other than the type (see types.py).

Breaking when the flow cannot work as configured any more: a column it uses is gone or renamed; a column
it needs a value in may now be NULL; a column it writes may no longer take what it writes; or an insert
into a table it writes would now fail (a new NOT NULL column without a default).
"""

from __future__ import annotations

from agent.drift.compare.base import Judge, TablePair, describe_column, if_used
from agent.drift.compare.types import same_type
from agent.drift.diff import Diff
from agent.catalog.model import ColumnSnapshot
from agent.drift.watch import TableUse


def compare(pair: TablePair) -> list[Diff]:
    if pair.actual is None:
        return []
    expected = {c.name: c for c in pair.expected.columns}
    actual = {c.name: c for c in pair.actual.columns}
    dropped = [expected[n] for n in expected if n not in actual]
    added = [actual[n] for n in actual if n not in expected]
    diffs = []
    for old, new in _renames(dropped, added):
        dropped.remove(old)
        added.remove(new)
        diffs.append(pair.diff("column_renamed", if_used(old.name), column=old.name, expected=old.name, actual=new.name))
    for column in dropped:
        diffs.append(pair.diff("column_dropped", if_used(column.name), column=column.name,
                               expected=describe_column(column), actual=None))
    for column in added:
        diffs.append(pair.diff("column_added", _added(column), column=column.name, expected=None,
                               actual=describe_column(column)))
    for name, before in expected.items():
        if name in actual:
            diffs += _attributes(pair, before, actual[name])
    diffs += _order(pair, [c.name for c in pair.expected.columns if c.name in actual],
                    [c.name for c in pair.actual.columns if c.name in expected])
    return diffs


def _renames(dropped: list[ColumnSnapshot], added: list[ColumnSnapshot]) -> list[tuple[ColumnSnapshot, ColumnSnapshot]]:
    """A removed and a new column of the same type at the same position (or the only such pair) look renamed."""
    pairs: list[tuple[ColumnSnapshot, ColumnSnapshot]] = []
    for old in list(dropped):
        candidates = [new for new in added if same_type(old, new) and new not in (p[1] for p in pairs)]
        same_place = [new for new in candidates if new.position == old.position]
        if same_place:
            pairs.append((old, same_place[0]))
        elif len(candidates) == 1 and len(dropped) == 1 and len(added) == 1:
            pairs.append((old, candidates[0]))
    return pairs


def _added(column: ColumnSnapshot) -> Judge:
    def judge(use: TableUse) -> tuple[bool, str]:
        if use.reads_only:
            return False, "the flow does not read it"
        if column.needs_value_on_insert():
            return True, "it is NOT NULL without a default, and the agent does not write it: every insert would fail"
        return False, "the agent does not write it and the database fills it in"
    return judge


def _attributes(pair: TablePair, before: ColumnSnapshot, after: ColumnSnapshot) -> list[Diff]:
    name, diffs = before.name, []
    if before.nullable != after.nullable:
        diffs.append(pair.diff("nullable_changed", _nullable(before, after), column=name,
                               expected=_null_text(before), actual=_null_text(after)))
    if before.default != after.default:
        diffs.append(pair.diff("default_changed", _default(after), column=name,
                               expected=before.default or "(no default)", actual=after.default or "(no default)"))
    if before.identity != after.identity:
        diffs.append(pair.diff("identity_changed", _written(name), column=name,
                               expected=_flag(before.identity, "identity"), actual=_flag(after.identity, "identity")))
    if before.computed != after.computed:
        diffs.append(pair.diff("computed_changed", _written(name), column=name,
                               expected=_flag(before.computed, "computed"), actual=_flag(after.computed, "computed")))
    if before.collation != after.collation:
        diffs.append(pair.diff("collation_changed", _collation(name), column=name,
                               expected=before.collation or "(none)", actual=after.collation or "(none)"))
    return diffs


def _nullable(before: ColumnSnapshot, after: ColumnSnapshot) -> Judge:
    name = before.name

    def judge(use: TableUse) -> tuple[bool, str]:
        if after.nullable:
            if use.reads_only and name in use.needs_value:
                return True, "the flow needs a value in this column (watermark, key or `required: true`)"
            return False, "the flow does not need a value in this column"
        if use.reads_only or not use.uses(name):
            return False, "the flow does not write this column"
        if use.columns is None or name in use.may_write_null:
            return True, "the agent may write NULL into this column"
        if name not in use.writes and after.needs_value_on_insert():
            return True, "the agent does not write this column and it has no default: every insert would fail"
        return False, "the agent always writes a value into this column"
    return judge


def _default(after: ColumnSnapshot) -> Judge:
    def judge(use: TableUse) -> tuple[bool, str]:
        if not use.reads_only and use.columns is not None and after.needs_value_on_insert() and after.name not in use.writes:
            return True, "the agent does not write this column and it now has no default: every insert would fail"
        return False, "the agent does not rely on this default"
    return judge


def _written(name: str) -> Judge:
    def judge(use: TableUse) -> tuple[bool, str]:
        if not use.reads_only and use.uses(name):
            return True, "the agent writes this column"
        return False, "the agent does not write this column"
    return judge


def _collation(name: str) -> Judge:
    def judge(use: TableUse) -> tuple[bool, str]:
        if use.columns is None or name in use.ordered_by:
            return True, "the agent compares or orders by this column: a collation change changes which rows match"
        return False, "the agent does not compare or order by this column"
    return judge


def _order(pair: TablePair, before: list[str], after: list[str]) -> list[Diff]:
    if before == after:
        return []
    return [pair.diff("columns_reordered", lambda use: (False, "the agent names every column it uses"),
                      expected=", ".join(before), actual=", ".join(after))]


def _null_text(column: ColumnSnapshot) -> str:
    return "NULL allowed" if column.nullable else "NOT NULL"


def _flag(value: bool, word: str) -> str:
    return word if value else f"not {word}"

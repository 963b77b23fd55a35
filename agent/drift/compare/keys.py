"""Primary key, unique constraints, indexes and foreign keys (matched by name).

A changed primary key is breaking for every flow on the table. On tables the agent writes, constraints
decide what an insert may do (the staging unique key is what makes writes exactly-once), so changed or new
constraints there are breaking. Indexes never change results: new, removed or changed indexes are not
breaking, though a removed keyset index makes every poll scan the whole table (the report says so).
On a source table, the primary key, unique constraints and unique indexes whose columns are all watermark
columns make the flow's keyset unique (keyset.py): a change that takes away the last of them is breaking,
because the keyset reads would then skip rows that share the watermark values of the last row staged.
"""

from __future__ import annotations

from agent.drift.compare.base import Judge, TablePair, column_list
from agent.drift.diff import Diff
from agent.catalog.keyset import Guarantee, rows_with_the_same
from agent.catalog.model import ForeignKeySnapshot, IndexSnapshot, KeySnapshot
from agent.drift.watch import TableUse


def compare(pair: TablePair) -> list[Diff]:
    if pair.actual is None:
        return []
    return [*_primary_key(pair), *_unique(pair), *_indexes(pair), *_foreign_keys(pair)]


def _primary_key(pair: TablePair) -> list[Diff]:
    before, after = pair.expected.primary_key, pair.actual.primary_key  # type: ignore[union-attr]
    columns_before = before.columns if before else ()
    columns_after = after.columns if after else ()
    if columns_before == columns_after:
        return []

    def judge(use: TableUse) -> tuple[bool, str]:
        if use.reads_only:
            return True, "the flow identifies source rows by key; the key it was reviewed against changed"
        return True, "the agent's writes rely on this table's primary key"
    keyset = _keyset_or(pair, _guarantee("primary key", before), _guarantee("primary key", after), judge)
    return [pair.diff("primary_key_changed", keyset, expected=_key_text(before), actual=_key_text(after))]


def _unique(pair: TablePair) -> list[Diff]:
    before = {k.name or "": k for k in pair.expected.unique}
    after = {k.name or "": k for k in pair.actual.unique}  # type: ignore[union-attr]
    diffs = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        kind = "unique_added" if old is None else "unique_dropped" if new is None else "unique_changed"
        judge = _keyset_or(pair, _guarantee("unique constraint", old), _guarantee("unique constraint", new),
                           _constraint_on_writes("unique constraint"))
        diffs.append(pair.diff(kind, judge, constraint=name,
                               expected=_key_text(old), actual=_key_text(new)))
    return diffs


def _indexes(pair: TablePair) -> list[Diff]:
    before = {i.name: i for i in pair.expected.indexes}
    after = {i.name: i for i in pair.actual.indexes}  # type: ignore[union-attr]
    diffs = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        kind = "index_added" if old is None else "index_dropped" if new is None else "index_changed"
        judge = _keyset_or(pair, _unique_index(old), _unique_index(new), _index(old, new))
        diffs.append(pair.diff(kind, judge, constraint=name, expected=_index_text(old), actual=_index_text(new)))
    return diffs


def _foreign_keys(pair: TablePair) -> list[Diff]:
    before = {f.name: f for f in pair.expected.foreign_keys}
    after = {f.name: f for f in pair.actual.foreign_keys}  # type: ignore[union-attr]
    diffs = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        kind = "foreign_key_added" if old is None else "foreign_key_dropped" if new is None else "foreign_key_changed"
        judge = _constraint_on_writes("foreign key") if new is not None else _not_breaking("a removed foreign key rejects nothing")
        diffs.append(pair.diff(kind, judge, constraint=name, expected=_fk_text(old), actual=_fk_text(new)))
    return diffs


def _constraint_on_writes(what: str) -> Judge:
    def judge(use: TableUse) -> tuple[bool, str]:
        if use.reads_only:
            return False, f"the flow only reads this table; a {what} does not change what it reads"
        return True, f"the agent writes this table: a {what} decides which rows it accepts (exactly-once relies on it)"
    return judge


def _keyset_or(pair: TablePair, old: Guarantee | None, new: Guarantee | None, otherwise: Judge) -> Judge:
    """`otherwise`, unless the change takes away a key that made a flow's keyset unique: breaking when it was the
    last one (rows sharing watermark values would be skipped), not breaking when another one is left."""
    def judge(use: TableUse) -> tuple[bool, str]:
        if not use.relies_on(old) or use.relies_on(new):
            return otherwise(use)
        assert old is not None and pair.actual is not None, "relies_on() is False without a key; no diff without a table"
        keyset = column_list(use.watermark)
        remaining = use.keyset_guarantees(pair.actual)
        if not remaining:
            return True, (f"the flow's keyset {keyset} relied on {old.describe()}: without it "
                          f"{rows_with_the_same(use.watermark)} can be skipped at batch boundaries; restore it, or "
                          "end the flow's watermark with a column that is unique per row before accepting the snapshot")
        breaking, reason = otherwise(use)
        if breaking:
            return breaking, reason
        left = " and ".join(key.describe() for key in remaining)
        return False, f"the flow's keyset {keyset} relied on {old.describe()}, but {left} still makes it unique"
    return judge


def _guarantee(kind: str, key: KeySnapshot | None) -> Guarantee | None:
    return None if key is None else Guarantee(kind, key.name, key.columns)


def _unique_index(index: IndexSnapshot | None) -> Guarantee | None:
    return None if index is None or not index.unique else Guarantee("unique index", index.name, index.columns)


def _not_breaking(reason: str) -> Judge:
    return lambda use: (False, reason)


def _index(old: IndexSnapshot | None, new: IndexSnapshot | None) -> Judge:
    def judge(use: TableUse) -> tuple[bool, str]:
        if old is not None and _serves_keyset(old, use) and (new is None or new.columns != old.columns):
            return False, "this index served the flow's watermark reads: each poll may now scan the whole table"
        return False, "an index does not change what the agent reads or writes"
    return judge


def _serves_keyset(index: IndexSnapshot, use: TableUse) -> bool:
    return use.reads_only and index.columns[:len(use.watermark)] == use.watermark


def _key_text(key: KeySnapshot | None) -> str | None:
    return None if key is None else column_list(key.columns)


def _index_text(index: IndexSnapshot | None) -> str | None:
    if index is None:
        return None
    return ("UNIQUE " if index.unique else "") + column_list(index.columns)


def _fk_text(fk: ForeignKeySnapshot | None) -> str | None:
    if fk is None:
        return None
    return f"{column_list(fk.columns)} REFERENCES {fk.references} {column_list(fk.referenced_columns)}"

"""Defect 7: the key that makes a flow's keyset unique is part of what the flow relies on.

A flow on `item(x, v)` with `watermark: [x]` reads `WHERE x > :last ORDER BY x`: a row whose x equals the last
staged x is never read. Only a primary key, unique constraint or unique index on watermark columns rules such
rows out, so the drift gate calls losing the last of them breaking, on PostgreSQL, MariaDB and SQLite, and
`run` warns at start-up about a flow that has none. The rules themselves are checked on snapshot values at the
end of this file.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from agent.drift.compare import compare_system
from agent.catalog.model import ColumnSnapshot, IndexSnapshot, KeySnapshot, SystemSnapshot, TableSnapshot
from agent.drift.watch import TableUse
from agent.types import ColumnType
from drift_support import Plant, sqlite_rebuild
from helpers import cli, make_pair, prepare_erp, staging_rows, table_name, write_config

KINDS = ["postgresql", "mysql", "sqlite"]
FLOW = "items"
_NUMBERS = itertools.count(1)  # database name suffixes, unique within this module

CONSTRAINT = "CREATE TABLE {t} (x int NOT NULL, v text, CONSTRAINT item_x_key UNIQUE (x))"
PRIMARY_KEY = "CREATE TABLE {t} (x int NOT NULL, v text, CONSTRAINT item_pkey PRIMARY KEY (x))"
NO_KEY = "CREATE TABLE {t} (x int NOT NULL, v text)"
UNIQUE_INDEX = "CREATE UNIQUE INDEX ix_item_x ON {t} (x)"
WITHOUT_KEYSET_KEY = "CREATE TABLE {t} (x int NOT NULL, v text, CONSTRAINT item_xv_key UNIQUE (x, v))"
WILL_BE_SKIPPED = "rows with the same x can be skipped at batch boundaries"
WHAT_TO_DO = "restore it, or end the flow's watermark with a column that is unique per row before accepting the snapshot"


def new_item_plant(db_factory, kind: str, folder: Path, *create: str) -> Plant:
    """An MES with `item`, holding (1, 'first'); one flow `items` (watermark and key: x, on_drift:
    halt_on_breaking, so that only a breaking change halts it); staging tables and snapshots."""
    pair = make_pair(db_factory, kind, suffix=f"_{next(_NUMBERS)}")
    table = table_name(pair, "item")
    engine = sa.create_engine(pair.mes_url)
    try:
        with engine.begin() as conn:
            for statement in create:
                conn.exec_driver_sql(statement.format(t=table))
            conn.exec_driver_sql(f"INSERT INTO {table} (x, v) VALUES (1, 'first')")
    finally:
        engine.dispose()
    flow = {
        "source": "mes", "target": "erp", "table": table, "watermark": ["x"], "key": ["x"],
        "staging_table": "stg_item", "columns": {"x": "x", "v": "v"}, "on_drift": "halt_on_breaking",
    }
    config = write_config(folder / "agent.yaml", pair, {FLOW: flow})
    prepare_erp(config)
    return Plant(pair, folder, config)


def staged(plant: Plant) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in staging_rows(plant.pair, "stg_item", "stg_source_key, stg_source_version, x, v")]


def insert(plant: Plant, *rows: tuple[int, str]) -> None:
    plant.mes(*(f"INSERT INTO {plant.mes_table('item')} (x, v) VALUES ({x}, '{v}')" for x, v in rows))


def last_outcome(plant: Plant) -> tuple[str, str]:
    rows = plant.erp_rows(f"SELECT outcome, message FROM {plant.staging_table('agent_run')} "
                          f"WHERE flow = '{FLOW}' ORDER BY run_id DESC")
    return rows[0][0], rows[0][1]


def keyset_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "mes_erp_agent" and r.levelno == logging.WARNING and "makes the flow's keyset" in r.getMessage()]


def unique_constraint_name(plant: Plant) -> str:
    """SQLite ignores a table constraint's name: its catalog shows the unique index that enforces it."""
    return "sqlite_autoindex_item_1" if plant.kind == "sqlite" else "item_x_key"


# --- the schema changes, written the way each database needs them -------------------------------------------
def drop_unique_constraint(plant: Plant) -> None:
    if plant.kind == "sqlite":
        return sqlite_rebuild(plant, "mes", None, "item", [(", CONSTRAINT item_x_key UNIQUE (x)", "")])
    plant.mes(f"ALTER TABLE {plant.mes_table('item')} DROP CONSTRAINT item_x_key")


def drop_primary_key(plant: Plant) -> None:
    if plant.kind == "sqlite":
        return sqlite_rebuild(plant, "mes", None, "item", [(", CONSTRAINT item_pkey PRIMARY KEY (x)", "")])
    table = plant.mes_table("item")
    plant.mes(f"ALTER TABLE {table} DROP PRIMARY KEY" if plant.kind == "mysql" else f"ALTER TABLE {table} DROP CONSTRAINT item_pkey")


def _drop_index(plant: Plant) -> str:
    table = plant.mes_table("item")
    return {"postgresql": f"DROP INDEX {plant.pair.mes_schema}.ix_item_x", "mysql": f"DROP INDEX ix_item_x ON {table}",
            "sqlite": "DROP INDEX ix_item_x"}[plant.kind]


def drop_unique_index(plant: Plant) -> None:
    plant.mes(_drop_index(plant))


def make_index_not_unique(plant: Plant) -> None:
    plant.mes(_drop_index(plant), f"CREATE INDEX ix_item_x ON {plant.mes_table('item')} (x)")


# --- live: the last key that made the keyset unique is lost ------------------------------------------------
@dataclass(frozen=True)
class Lost:
    create: tuple[str, ...]
    change: Callable[[Plant], None]
    # (kind, column or constraint, was, now) of every diff, then the one whose impact is breaking and its text
    diffs: Callable[[Plant], list[tuple[str, str | None, str | None, str | None]]]
    heading: Callable[[Plant], str]  # how the text report names the breaking diff, after the table name
    relied_on: Callable[[Plant], str]


LOST = {
    # The exact scenario of the issue.
    "unique_constraint_dropped": Lost(
        (CONSTRAINT,), drop_unique_constraint,
        lambda p: [("unique_dropped", unique_constraint_name(p), "(x)", None)],
        lambda p: f", constraint {unique_constraint_name(p)}: unique constraint removed",
        lambda p: f"unique constraint {unique_constraint_name(p)}",
    ),
    # MariaDB keeps every unique index as a unique constraint (information_schema.TABLE_CONSTRAINTS).
    "unique_index_dropped": Lost(
        (NO_KEY, UNIQUE_INDEX), drop_unique_index,
        lambda p: [("unique_dropped", "ix_item_x", "(x)", None)] if p.kind == "mysql"
        else [("index_dropped", "ix_item_x", "UNIQUE (x)", None)],
        lambda p: ", constraint ix_item_x: unique constraint removed" if p.kind == "mysql" else ", index ix_item_x: index removed",
        lambda p: "unique constraint ix_item_x" if p.kind == "mysql" else "unique index ix_item_x",
    ),
    "unique_index_made_not_unique": Lost(
        (NO_KEY, UNIQUE_INDEX), make_index_not_unique,
        lambda p: [("unique_dropped", "ix_item_x", "(x)", None), ("index_added", "ix_item_x", None, "(x)")]
        if p.kind == "mysql" else [("index_changed", "ix_item_x", "UNIQUE (x)", "(x)")],
        lambda p: ", constraint ix_item_x: unique constraint removed" if p.kind == "mysql" else ", index ix_item_x: index changed",
        lambda p: "unique constraint ix_item_x" if p.kind == "mysql" else "unique index ix_item_x",
    ),
    "primary_key_dropped": Lost(
        (PRIMARY_KEY,), drop_primary_key,
        lambda p: [("primary_key_changed", None, "(x)", None)],
        lambda p: ": primary key changed",
        lambda p: "the primary key (x)",
    ),
}


@pytest.mark.parametrize("case", list(LOST))
@pytest.mark.parametrize("kind", KINDS)
def test_losing_the_last_key_that_makes_the_keyset_unique_is_breaking_and_halts_the_flow(
        kind, case, db_factory, tmp_path, caplog):
    spec = LOST[case]
    caplog.set_level(logging.WARNING, logger="mes_erp_agent")
    plant = new_item_plant(db_factory, kind, tmp_path, *spec.create)
    first = plant.run()
    assert first.exit_code == 0, first.output
    assert staged(plant) == [("1", "1", 1, "first")]
    assert keyset_warnings(caplog) == []  # the key makes (x) unique: nothing to warn about
    watermark = plant.watermark(FLOW)

    spec.change(plant)
    insert(plant, (1, "second"), (2, "third"))  # (1, 'second') is the row the keyset read would skip

    table = plant.mes_table("item")
    reason = f"the flow's keyset (x) relied on {spec.relied_on(plant)}: without it {WILL_BE_SKIPPED}; {WHAT_TO_DO}"
    found = plant.diffs()
    assert [d[:5] for d in found] == [(kind_, table, *rest) for kind_, *rest in spec.diffs(plant)]
    assert [d[5] for d in found] == [{FLOW: True}] + [{FLOW: False}] * (len(found) - 1)
    drift = cli("drift", "-c", str(plant.config))
    assert drift.exit_code == 3, drift.output
    assert (f"  1. {table}{spec.heading(plant)}\n"
            f"     was: {spec.diffs(plant)[0][2]}\n"
            f"     now: {spec.diffs(plant)[0][3] or '(none)'}\n"
            f"     flow {FLOW}: BREAKING, {reason}\n") in drift.output
    assert (f"Flows halted (they move no rows and keep their watermark until this is resolved):\n"
            f"  {FLOW} (on_drift: halt_on_breaking; {len(found)} change{'s' if len(found) > 1 else ''}, "
            "1 breaking for this flow)\n") in drift.output

    caplog.clear()
    halted = plant.run()
    assert halted.exit_code == 3, halted.output
    assert staged(plant) == [("1", "1", 1, "first")]  # moved nothing: not even (2, 'third')
    assert plant.watermark(FLOW) == watermark
    outcome, message = last_outcome(plant)
    assert outcome == "halted" and message.startswith("halted by schema drift on system mes"), message
    # Nothing makes (x) unique any more: `run` says so when it prepares the flow.
    assert keyset_warnings(caplog) == [
        f"flow {FLOW}: no primary key, unique constraint or unique index on table {table} (system mes) makes the "
        f"flow's keyset (x) unique: {WILL_BE_SKIPPED}. Add one, or end the flow's watermark with a column that is "
        "unique per row; if the source guarantees it in a way the catalog cannot show (a view, a custom query), this "
        "warning can be ignored."
    ]


# --- live: another key still makes the keyset unique -------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_losing_one_of_two_keys_that_make_the_keyset_unique_is_not_breaking(kind, db_factory, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="mes_erp_agent")
    plant = new_item_plant(db_factory, kind, tmp_path, CONSTRAINT, UNIQUE_INDEX)
    assert plant.run().exit_code == 0
    drop_unique_constraint(plant)
    insert(plant, (2, "second"))

    table, name = plant.mes_table("item"), unique_constraint_name(plant)
    left = "unique constraint ix_item_x" if kind == "mysql" else "unique index ix_item_x"
    reason = f"the flow's keyset (x) relied on unique constraint {name}, but {left} still makes it unique"
    assert plant.diffs() == [("unique_dropped", table, name, "(x)", None, {FLOW: False})]
    drift = cli("drift", "-c", str(plant.config))
    assert drift.exit_code == 3, drift.output  # a difference all the same: it is reported
    assert f"     flow {FLOW}: not breaking, {reason}\n" in drift.output
    assert ("No flow halted.\nFlows that keep running (their on_drift policy lets them):\n"
            f"  {FLOW} (on_drift: halt_on_breaking; 1 change, 0 breaking for this flow)\n") in drift.output

    moved = plant.run()
    assert moved.exit_code == 0, moved.output
    assert staged(plant) == [("1", "1", 1, "first"), ("2", "2", 2, "second")]
    assert keyset_warnings(caplog) == []


# --- live: the start-up warning ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_a_flow_whose_keyset_no_key_makes_unique_is_warned_about_when_prepared_but_runs(kind, db_factory, tmp_path,
                                                                                         caplog):
    """A unique key on (x, v) does not make (x) unique; without one, `run` warns and still moves the rows."""
    caplog.set_level(logging.WARNING, logger="mes_erp_agent")
    plant = new_item_plant(db_factory, kind, tmp_path, WITHOUT_KEYSET_KEY)
    result = plant.run()
    assert result.exit_code == 0, result.output
    assert staged(plant) == [("1", "1", 1, "first")]
    assert keyset_warnings(caplog) == [
        f"flow {FLOW}: no primary key, unique constraint or unique index on table {plant.mes_table('item')} (system "
        f"mes) makes the flow's keyset (x) unique: {WILL_BE_SKIPPED}. Add one, or end the flow's watermark with a "
        "column that is unique per row; if the source guarantees it in a way the catalog cannot show (a view, a "
        "custom query), this warning can be ignored."
    ]


# --- the rules, on snapshot values (no database) -----------------------------------------------------------
INT = ColumnType("integer", precision=32)
TS = ColumnType("timestamp", precision=6)
ORDERS = TableSnapshot(
    "mes.orders",
    (ColumnSnapshot("id", 1, INT, "integer", False), ColumnSnapshot("line", 2, INT, "integer", False),
     ColumnSnapshot("changed", 3, TS, "timestamp", False), ColumnSnapshot("note", 4, INT, "integer", True)),
    KeySnapshot("orders_pkey", ("id", "line")),
)
# watermark (changed, id, line), key (id, line): the primary key makes the keyset unique
READ = TableUse("orders", "halt", "source table", frozenset({"id", "line", "changed"}),
                needs_value=frozenset({"id", "line", "changed"}), ordered_by=frozenset({"id", "line", "changed"}),
                watermark=("changed", "id", "line"))
WRITE = TableUse("orders", "halt", "staging table", frozenset({"id", "line", "changed"}), writes=frozenset({"id"}))


def judged(use: TableUse, before: TableSnapshot, after: TableSnapshot) -> list[tuple[str, str | None, bool, str]]:
    reviewed = SystemSnapshot("mes", "postgresql", "1", {before.name: before})
    found = compare_system(reviewed, {after.name: after}, {before.name: [use]})
    return [(d.kind, d.constraint, d.impacts[0].breaking, d.impacts[0].reason) for d in found]


def test_a_key_on_some_of_the_watermark_columns_makes_the_keyset_unique():
    """A unique key on (id) (a subset of the watermark) still rules out two rows with the same (changed, id, line)."""
    with_uq = dataclasses.replace(ORDERS, unique=(KeySnapshot("uq_orders_id", ("id",)),))
    assert judged(READ, with_uq, dataclasses.replace(with_uq, primary_key=KeySnapshot("orders_pkey", ("id", "line", "changed")))) == [
        ("primary_key_changed", None, True, "the flow identifies source rows by key; the key it was reviewed against changed"),
    ]
    assert judged(READ, with_uq, dataclasses.replace(with_uq, primary_key=None)) == [
        ("primary_key_changed", None, True, "the flow identifies source rows by key; the key it was reviewed against changed"),
    ]


def test_a_primary_key_that_no_longer_makes_the_keyset_unique_says_why():
    after = dataclasses.replace(ORDERS, primary_key=KeySnapshot("orders_pkey", ("id",)))
    extended = dataclasses.replace(ORDERS, primary_key=KeySnapshot("orders_pkey", ("id", "line", "note")))
    assert judged(READ, ORDERS, after) == [("primary_key_changed", None, True, "the flow identifies source rows by key; "
                                            "the key it was reviewed against changed")]  # (id) still makes it unique
    assert judged(READ, ORDERS, extended) == [
        ("primary_key_changed", None, True,
         "the flow's keyset (changed, id, line) relied on the primary key (id, line): without it rows with the same "
         f"(changed, id, line) can be skipped at batch boundaries; {WHAT_TO_DO}"),
    ]


def test_a_unique_key_widened_past_the_watermark_columns_no_longer_makes_the_keyset_unique():
    before = dataclasses.replace(ORDERS, primary_key=None, indexes=(IndexSnapshot("ix_orders", ("id", "line"), True),))
    widened = dataclasses.replace(before, indexes=(IndexSnapshot("ix_orders", ("id", "line", "note"), True),))
    assert judged(READ, before, widened) == [
        ("index_changed", "ix_orders", True,
         "the flow's keyset (changed, id, line) relied on unique index ix_orders: without it rows with the same "
         f"(changed, id, line) can be skipped at batch boundaries; {WHAT_TO_DO}"),
    ]


def test_keys_that_never_made_the_keyset_unique_keep_their_rules():
    other = dataclasses.replace(ORDERS, unique=(KeySnapshot("uq_orders_line_note", ("line", "note")),))
    assert judged(READ, other, ORDERS) == [
        ("unique_dropped", "uq_orders_line_note", False,
         "the flow only reads this table; a unique constraint does not change what it reads"),
    ]
    assert judged(READ, ORDERS, other) == [
        ("unique_added", "uq_orders_line_note", False,
         "the flow only reads this table; a unique constraint does not change what it reads"),
    ]


def test_on_a_table_the_agent_writes_the_keyset_rule_does_not_apply():
    with_uq = dataclasses.replace(ORDERS, unique=(KeySnapshot("uq_orders_id", ("id",)),))
    assert judged(WRITE, with_uq, ORDERS) == [
        ("unique_dropped", "uq_orders_id", True,
         "the agent writes this table: a unique constraint decides which rows it accepts (exactly-once relies on it)"),
    ]

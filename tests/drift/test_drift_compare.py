"""The comparison rules and the snapshot format, on snapshot values (no database needed), and the catalog
templates of every dialect, including SQL Server's (compiled and parsed only: no server runs here)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
import sqlglot

from agent import dialects
from agent.dialects import templates
from agent.drift import snapshot as snapshot_files
from agent.catalog.query import FIELDS, CatalogQuery
from agent.drift.compare import compare_system
from agent.catalog.model import (
    ColumnSnapshot,
    ForeignKeySnapshot,
    IndexSnapshot,
    KeySnapshot,
    SystemSnapshot,
    TableSnapshot,
)
from agent.catalog.query import WatchedTable
from agent.drift.watch import TableUse
from agent.types import ColumnType

INT = ColumnType("integer", precision=32)
TEXT20 = ColumnType("text", length=20)
TS = ColumnType("timestamp", precision=6)


def col(name, position, type_=INT, native="integer", nullable=False, **extra) -> ColumnSnapshot:
    return ColumnSnapshot(name, position, type_, native, nullable, **extra)


SOURCE = TableSnapshot(
    "mes.orders",
    (col("id", 1), col("qty", 2), col("note", 3, TEXT20, "varchar(20)", True), col("changed", 4, TS, "timestamp")),
    KeySnapshot("orders_pkey", ("id",)),
    indexes=(IndexSnapshot("ix_orders_changed", ("changed", "id"), False),),
)
STAGING = TableSnapshot(
    "staging.stg_orders",
    (col("stg_id", 1, identity=True), col("stg_flow", 2, TEXT20, "varchar(20)"),
     col("stg_status", 3, TEXT20, "varchar(20)", default="'PENDING'"), col("qty", 4, INT, "integer", True)),
    KeySnapshot("stg_pkey", ("stg_id",)),
    unique=(KeySnapshot("uq_stg", ("stg_flow",)),),
)
READ = TableUse("orders", "halt", "source table", frozenset({"id", "qty", "changed"}), needs_value=frozenset({"id", "changed"}),
                ordered_by=frozenset({"id", "changed"}), watermark=("changed", "id"))
WRITE = TableUse("orders", "halt", "staging table", frozenset({"stg_id", "stg_flow", "stg_status", "qty"}),
                 writes=frozenset({"stg_flow", "qty"}), may_write_null=frozenset({"qty"}), ordered_by=frozenset({"stg_flow"}))


def diffs(table: TableSnapshot, use: TableUse, live: TableSnapshot | None):
    reviewed = SystemSnapshot("s", "postgresql", "1", {table.name: table})
    found = compare_system(reviewed, {} if live is None else {table.name: live}, {table.name: [use]})
    return [(d.kind, d.column or d.constraint, d.expected, d.actual, d.impacts[0].breaking, d.impacts[0].reason) for d in found]


def with_columns(table: TableSnapshot, *columns: ColumnSnapshot) -> TableSnapshot:
    return dataclasses.replace(table, columns=tuple(columns))


def test_no_difference_no_diff():
    assert diffs(SOURCE, READ, SOURCE) == []


def test_a_removed_and_a_new_column_of_the_same_type_in_the_same_place_is_a_rename():
    live = with_columns(SOURCE, SOURCE.columns[0], col("quantity", 2), *SOURCE.columns[2:])
    assert diffs(SOURCE, READ, live) == [
        ("column_renamed", "qty", "qty", "quantity", True, "the flow reads this column"),
    ]


def test_a_new_column_of_another_type_in_its_place_is_a_removal_and_an_addition():
    live = with_columns(SOURCE, SOURCE.columns[0], col("quantity", 2, TEXT20, "varchar(20)"), *SOURCE.columns[2:])
    assert diffs(SOURCE, READ, live) == [
        ("column_dropped", "qty", "integer NOT NULL", None, True, "the flow reads this column"),
        ("column_added", "quantity", None, "varchar(20) NOT NULL", False, "the flow does not read it"),
    ]


def test_changes_to_columns_the_flow_does_not_read_are_not_breaking():
    live = with_columns(SOURCE, *SOURCE.columns[:2], col("note", 3, ColumnType("text", length=40), "varchar(40)", True),
                        SOURCE.columns[3])
    assert diffs(SOURCE, READ, live) == [
        ("length_changed", "note", "varchar(20)", "varchar(40)", False, "the flow does not use this column"),
    ]


def test_a_watermark_column_that_may_become_null_is_breaking():
    live = with_columns(SOURCE, *SOURCE.columns[:3], col("changed", 4, TS, "timestamp", True))
    assert diffs(SOURCE, READ, live) == [
        ("nullable_changed", "changed", "NOT NULL", "NULL allowed", True,
         "the flow needs a value in this column (watermark, key or `required: true`)"),
    ]


def test_reordered_columns_are_reported_but_not_breaking():
    live = with_columns(SOURCE, SOURCE.columns[1], SOURCE.columns[0], *SOURCE.columns[2:])
    assert diffs(SOURCE, READ, live) == [
        ("columns_reordered", None, "id, qty, note, changed", "qty, id, note, changed", False,
         "the agent names every column it uses"),
    ]


def test_dropping_the_keyset_index_is_not_breaking_but_says_what_it_costs():
    assert diffs(SOURCE, READ, dataclasses.replace(SOURCE, indexes=())) == [
        ("index_dropped", "ix_orders_changed", "(changed, id)", None, False,
         "this index served the flow's watermark reads: each poll may now scan the whole table"),
    ]


def test_foreign_keys_matter_only_on_tables_the_agent_writes():
    fk = ForeignKeySnapshot("fk_x", ("qty",), "erp.items", ("id",))
    assert diffs(SOURCE, READ, dataclasses.replace(SOURCE, foreign_keys=(fk,)))[0][4] is False
    assert diffs(STAGING, WRITE, dataclasses.replace(STAGING, foreign_keys=(fk,))) == [
        ("foreign_key_added", "fk_x", None, "(qty) REFERENCES erp.items (id)", True,
         "the agent writes this table: a foreign key decides which rows it accepts (exactly-once relies on it)"),
    ]


def test_on_a_staging_table_new_required_columns_and_lost_constraints_are_breaking():
    live = dataclasses.replace(
        with_columns(STAGING, *STAGING.columns, col("erp_batch", 5, INT, "integer"), col("erp_note", 6, TEXT20, "varchar(20)", True)),
        unique=(),
    )
    assert diffs(STAGING, WRITE, live) == [
        ("column_added", "erp_batch", None, "integer NOT NULL", True,
         "it is NOT NULL without a default, and the agent does not write it: every insert would fail"),
        ("column_added", "erp_note", None, "varchar(20)", False, "the agent does not write it and the database fills it in"),
        ("unique_dropped", "uq_stg", "(stg_flow)", None, True,
         "the agent writes this table: a unique constraint decides which rows it accepts (exactly-once relies on it)"),
    ]


def test_on_a_staging_table_not_null_where_the_agent_may_write_null_is_breaking():
    live = with_columns(STAGING, *STAGING.columns[:3], col("qty", 4, INT, "integer", False),)
    assert diffs(STAGING, WRITE, live) == [
        ("nullable_changed", "qty", "NULL allowed", "NOT NULL", True, "the agent may write NULL into this column"),
    ]


def test_a_dropped_default_the_agent_relies_on_is_breaking():
    live = with_columns(STAGING, *STAGING.columns[:2], col("stg_status", 3, TEXT20, "varchar(20)"), STAGING.columns[3])
    assert diffs(STAGING, WRITE, live) == [
        ("default_changed", "stg_status", "'PENDING'", "(no default)", True,
         "the agent does not write this column and it now has no default: every insert would fail"),
    ]


def test_a_missing_table_breaks_every_flow_on_it():
    assert diffs(STAGING, WRITE, None) == [
        ("table_missing", None, "table with 4 columns", None, True, "this is the flow's staging table"),
    ]


def test_snapshot_files_round_trip_exactly(tmp_path):
    timestamp0 = col("at", 5, ColumnType("timestamp", precision=0), "datetime", collation="utf8mb4_bin")
    schema = SystemSnapshot("erp", "mysql", "10.11", {
        STAGING.name: with_columns(STAGING, *STAGING.columns, timestamp0),
        SOURCE.name: dataclasses.replace(SOURCE, foreign_keys=(ForeignKeySnapshot("fk", ("qty",), "a.b", ("c",)),)),
    })
    path = tmp_path / "erp.yaml"
    assert snapshot_files.write(path, schema) is True
    assert snapshot_files.write(path, schema) is False  # same bytes: nothing written
    loaded = snapshot_files.read(path, "erp")
    assert loaded.tables == dict(sorted(schema.tables.items())) and loaded.server_version == "10.11"
    assert "      type: {family: timestamp, precision: 0}\n" in path.read_text()
    assert "server_version: '10.11'\n" in path.read_text()


# --- the catalog templates -------------------------------------------------------------------------------
WATCHED = [WatchedTable("s", "production", "work_order"), WatchedTable("s", None, "scrap_reason")]


@pytest.mark.parametrize("name", sorted(dialects.DIALECTS))
def test_every_dialect_has_the_catalog_templates_with_the_same_parameters(name):
    dialect = dialects.for_name(name)
    query = CatalogQuery.build("s", dialect, WATCHED)
    sql = query.statement.text
    assert sorted(set(re.findall(r"(?<!:):([a-z]\w*)", sql))) == ["s0", "t0", "t1"]
    assert query.params == {"s0": "production", "t0": "work_order", "t1": "scrap_reason"}
    for template in ("catalog", "server_version"):
        assert templates.template_path(name, template).is_file()
    # Every dialect's statement parses and returns the same columns, in the order catalog.py reads them.
    assert sqlglot.parse_one(sql, read=dialect.sqlglot_name).named_selects == list(FIELDS)


def test_sql_server_catalog_compiles_for_the_mssql_dialect():
    """No SQL Server runs here: the statement is parsed as T-SQL and bound by SQLAlchemy's mssql dialect."""
    dialect = dialects.for_name("mssql")
    query = CatalogQuery.build("erp", dialect, WATCHED)
    assert sqlglot.parse_one(query.statement.text, read="tsql").named_selects == list(FIELDS)
    compiled = query.statement.compile(dialect=sa.dialects.registry.load("mssql.pyodbc")(paramstyle="qmark"))
    assert "SCHEMA_NAME() AS schema_name" in str(compiled) and "CAST(? AS sysname)" in str(compiled)
    assert compiled.positiontup == ["s0", "t0", "t1"]


@pytest.mark.parametrize("name, row, expected", [
    ("mssql", ("nvarchar", "nvarchar(50)", 50, None, None, None), ColumnType("text", length=50)),
    ("mssql", ("nvarchar", "nvarchar(max)", None, None, None, None), ColumnType("text")),
    ("mssql", ("datetimeoffset", "datetimeoffset(7)", None, None, None, 7), ColumnType("timestamp", precision=7, timezone=True)),
    ("mssql", ("decimal", "decimal(18,3)", None, 18, 3, None), ColumnType("decimal", precision=18, scale=3)),
    ("mssql", ("bit", "bit", None, None, None, None), ColumnType("boolean")),
    ("mssql", ("uniqueidentifier", "uniqueidentifier", None, None, None, None), ColumnType("other")),
    ("postgresql", ("timestamptz", "timestamp(3) with time zone", None, None, None, 3),
     ColumnType("timestamp", precision=3, timezone=True)),
    ("mysql", ("tinyint", "tinyint(1)", None, 3, 0, None), ColumnType("integer", precision=8)),
    ("sqlite", ("numeric(19, 4)", "NUMERIC(19, 4)", None, None, None, None), ColumnType("decimal", precision=19, scale=4)),
    ("sqlite", ("", "", None, None, None, None), ColumnType("other")),
])
def test_dialects_normalize_catalog_types(name, row, expected):
    assert dialects.for_name(name).catalog_type(*row) == expected


def test_catalog_templates_are_shipped_with_the_package():
    assert Path(templates.sql_folder(), "mssql", "catalog.sql").is_file()

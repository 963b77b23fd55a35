"""Every drift kind of issue 4 on PostgreSQL, MariaDB and SQLite: the exact diffs with their classification,
and what `run --once` does about them (the flow that uses the table halts, moves nothing and keeps its
watermark; the other flow runs; accepting the snapshot resumes the flow)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from drift_support import Plant, new_plant, sqlite_rebuild
from helpers import cli

KINDS = ["postgresql", "mysql", "sqlite"]
NATIVE = {  # the same type as each database spells it
    "varchar10": {"postgresql": "character varying(10)", "mysql": "varchar(10)", "sqlite": "varchar(10)"},  # as written
    "timestamp": {"postgresql": "timestamp without time zone", "mysql": "datetime(6)", "sqlite": "DATETIME"},
    "smallint": {"postgresql": "smallint", "mysql": "smallint(6)", "sqlite": "SMALLINT"},
    "int": {"postgresql": "integer", "mysql": "int(11)", "sqlite": "INTEGER"},
    "varchar50": {"postgresql": "character varying(50)", "mysql": "varchar(50)", "sqlite": "VARCHAR(50)"},
    "varchar100": {"postgresql": "character varying(100)", "mysql": "varchar(100)", "sqlite": "VARCHAR(100)"},
    "decimal18_3": {"postgresql": "numeric(18,3)", "mysql": "decimal(18,3)", "sqlite": "DECIMAL(18,3)"},
    "decimal18_2": {"postgresql": "numeric(18,2)", "mysql": "decimal(18,2)", "sqlite": "DECIMAL(18,2)"},
}
WO, SR = "work_orders", "scrap_reasons"


@dataclass(frozen=True)
class Case:
    change: Callable[[Plant], None]  # makes the schema change
    expected: Callable[[Plant], list[tuple[Any, ...]]]  # (kind, table, column or constraint, was, now, {flow: breaking})
    halts: str  # the flow that halts (the other one runs)
    after_accept: int  # exit code of `run --once` after `snapshot --accept`: 0 the flow resumes; 2 its
    # configuration names what is gone (a configuration error until `columns:` changes)


def native(plant: Plant, name: str) -> str:
    return NATIVE[name][plant.kind]


def alter(plant: Plant, sql: dict[str, str], table: str = "work_order") -> None:
    plant.mes(sql[plant.kind].format(t=plant.mes_table(table)))


def add_column(plant: Plant) -> None:
    alter(plant, dict.fromkeys(KINDS, "ALTER TABLE {t} ADD COLUMN shift_code varchar(10) NULL"))


def drop_column(plant: Plant) -> None:
    alter(plant, dict.fromkeys(KINDS, "ALTER TABLE {t} DROP COLUMN end_date"))


def rename_column(plant: Plant) -> None:
    alter(plant, dict.fromkeys(KINDS, "ALTER TABLE {t} RENAME COLUMN scrap_reason_id TO scrap_code"))


def change_type(plant: Plant) -> None:
    if plant.kind == "sqlite":
        return sqlite_rebuild(plant, "mes", None, "work_order", [("scrapped_qty SMALLINT", "scrapped_qty INTEGER")])
    alter(plant, {"postgresql": "ALTER TABLE {t} ALTER COLUMN scrapped_qty TYPE integer",
                  "mysql": "ALTER TABLE {t} MODIFY scrapped_qty int NOT NULL"})


def change_length(plant: Plant) -> None:
    if plant.kind == "sqlite":
        return sqlite_rebuild(plant, "mes", None, "scrap_reason", [("name VARCHAR(50)", "name VARCHAR(100)")])
    alter(plant, {"postgresql": "ALTER TABLE {t} ALTER COLUMN name TYPE varchar(100)",
                  "mysql": "ALTER TABLE {t} MODIFY name varchar(100) NOT NULL"}, "scrap_reason")


def change_scale(plant: Plant) -> None:
    """On the ERP side: the staging column qty_good decimal(18,3) becomes decimal(18,2)."""
    if plant.kind == "sqlite":
        return sqlite_rebuild(plant, "erp", "staging", "stg_work_order", [('"qty_good" DECIMAL(18,3)', '"qty_good" DECIMAL(18,2)')])
    table = plant.staging_table("stg_work_order")
    plant.erp({"postgresql": f"ALTER TABLE {table} ALTER COLUMN qty_good TYPE numeric(18,2)",
               "mysql": f"ALTER TABLE {table} MODIFY qty_good decimal(18,2) NULL"}[plant.kind])


def allow_nulls(plant: Plant) -> None:
    if plant.kind == "sqlite":
        return sqlite_rebuild(plant, "mes", None, "work_order", [
            ("due_date DATETIME NOT NULL", "due_date DATETIME"), ("scrapped_qty SMALLINT NOT NULL", "scrapped_qty SMALLINT"),
        ])
    alter(plant, {
        "postgresql": "ALTER TABLE {t} ALTER COLUMN due_date DROP NOT NULL, ALTER COLUMN scrapped_qty DROP NOT NULL",
        "mysql": "ALTER TABLE {t} MODIFY due_date datetime(6) NULL, MODIFY scrapped_qty smallint NULL",
    })


def change_primary_key(plant: Plant) -> None:
    if plant.kind == "sqlite":
        return sqlite_rebuild(plant, "mes", None, "work_order",
                              [("PRIMARY KEY (work_order_id)", "PRIMARY KEY (work_order_id, product_id)")])
    alter(plant, {
        "postgresql": "ALTER TABLE {t} DROP CONSTRAINT work_order_pkey, ADD PRIMARY KEY (work_order_id, product_id)",
        "mysql": "ALTER TABLE {t} DROP PRIMARY KEY, ADD PRIMARY KEY (work_order_id, product_id)",
    })


def drop_table(plant: Plant) -> None:
    alter(plant, dict.fromkeys(KINDS, "DROP TABLE {t}"), "scrap_reason")


def add_index(plant: Plant) -> None:
    table = plant.mes_table("work_order")
    if plant.kind == "sqlite":
        plant.mes("CREATE INDEX ix_work_order_due ON work_order (due_date)")
    else:
        plant.mes(f"CREATE INDEX ix_work_order_due ON {table} (due_date)")


CASES = {
    "add_column": Case(add_column, lambda p: [
        ("column_added", p.mes_table("work_order"), "shift_code", None, native(p, "varchar10"), {WO: False}),
    ], halts=WO, after_accept=0),
    "drop_column": Case(drop_column, lambda p: [
        ("column_dropped", p.mes_table("work_order"), "end_date", native(p, "timestamp"), None, {WO: True}),
    ], halts=WO, after_accept=2),
    "rename_column": Case(rename_column, lambda p: [
        ("column_renamed", p.mes_table("work_order"), "scrap_reason_id", "scrap_reason_id", "scrap_code", {WO: True}),
    ], halts=WO, after_accept=2),
    "type": Case(change_type, lambda p: [
        ("type_changed", p.mes_table("work_order"), "scrapped_qty", native(p, "smallint"), native(p, "int"), {WO: True}),
    ], halts=WO, after_accept=0),
    "length": Case(change_length, lambda p: [
        ("length_changed", p.mes_table("scrap_reason"), "name", native(p, "varchar50"), native(p, "varchar100"), {SR: True}),
    ], halts=SR, after_accept=0),
    "precision_scale": Case(change_scale, lambda p: [
        ("precision_changed", p.staging_table("stg_work_order"), "qty_good", native(p, "decimal18_3"),
         native(p, "decimal18_2"), {WO: True}),
    ], halts=WO, after_accept=0),
    "nullability": Case(allow_nulls, lambda p: [
        ("nullable_changed", p.mes_table("work_order"), "scrapped_qty", "NOT NULL", "NULL allowed", {WO: False}),
        ("nullable_changed", p.mes_table("work_order"), "due_date", "NOT NULL", "NULL allowed", {WO: True}),
    ], halts=WO, after_accept=0),
    "primary_key": Case(change_primary_key, lambda p: [
        *([("identity_changed", "work_order", "work_order_id", "identity", "not identity", {WO: False})]
          if p.kind == "sqlite" else []),  # an INTEGER PRIMARY KEY is SQLite's rowid: no longer so
        ("primary_key_changed", p.mes_table("work_order"), None, "(work_order_id)", "(work_order_id, product_id)", {WO: True}),
    ], halts=WO, after_accept=0),
    "table_dropped": Case(drop_table, lambda p: [
        ("table_missing", p.mes_table("scrap_reason"), None, "table with 3 columns", None, {SR: True}),
    ], halts=SR, after_accept=2),
    "new_index": Case(add_index, lambda p: [
        ("index_added", p.mes_table("work_order"), "ix_work_order_due", None, "(due_date)", {WO: False}),
    ], halts=WO, after_accept=0),
}
STAGING = {WO: "stg_work_order", SR: "stg_scrap_reason"}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("kind", KINDS)
def test_drift_is_classified_and_halts_only_the_flow_that_uses_the_table(kind, case, db_factory, tmp_path):
    spec = CASES[case]
    plant = new_plant(db_factory, kind, tmp_path)
    first = plant.run()
    assert first.exit_code == 0, first.output
    assert (plant.staged(STAGING[WO]), plant.staged(STAGING[SR])) == (50, 16)
    plant.touch_rows("work_order", "work_order_id", [3, 4, 5])
    if case != "table_dropped":
        plant.touch_rows("scrap_reason", "scrap_reason_id", [1, 2])
    runs = {WO: 3, SR: 2}
    watermarks = {flow: plant.watermark(flow) for flow in STAGING}

    spec.change(plant)
    assert plant.diffs() == spec.expected(plant)
    assert plant.drift_json()[0] == 3

    halted = plant.run()
    assert halted.exit_code == 3, halted.output
    other = SR if spec.halts == WO else WO
    # The halted flow wrote nothing and kept its watermark; the other flow moved its changed rows.
    assert plant.staged(STAGING[spec.halts]) == (50 if spec.halts == WO else 16)
    assert plant.watermark(spec.halts) == watermarks[spec.halts]
    assert plant.staged(STAGING[other]) == (50 if other == WO else 16) + runs[other]
    assert plant.watermark(other) != watermarks[other]
    outcome = plant.erp_rows(f"SELECT outcome, message FROM {plant.staging_table('agent_run')} "
                             f"WHERE flow = '{spec.halts}' ORDER BY run_id DESC")[0]
    assert outcome[0] == "halted" and outcome[1].startswith("halted by schema drift on system ")
    # Reported once: a second run halts again without a second report.
    assert plant.run().exit_code == 3
    assert [name.rsplit(".", 1)[1] for name in plant.alerts()] == ["json", "txt"]

    system = "erp" if case == "precision_scale" else "mes"
    accepted = cli("snapshot", "-c", str(plant.config), "--system", system, "--accept", "--yes")
    if case == "table_dropped":
        # A snapshot without a table a flow reads cannot be accepted: restore the table or drop the flow.
        assert accepted.exit_code == 2
        assert f"source table {plant.mes_table('scrap_reason')} of flow scrap_reasons does not exist" in accepted.output
        return
    assert accepted.exit_code == 0, accepted.output
    assert plant.drift_json()[0] == 0
    resumed = plant.run()
    assert resumed.exit_code == spec.after_accept, resumed.output
    if spec.after_accept == 0:
        assert plant.staged(STAGING[spec.halts]) == (50 if spec.halts == WO else 16) + runs[spec.halts]
    else:
        assert "no data was moved" in resumed.output
        assert plant.staged(STAGING[spec.halts]) == (50 if spec.halts == WO else 16)
    # The resolution is reported too: the incident's -resolved files sit next to its report.
    stem = plant.alerts()[2].removesuffix(".json")
    assert plant.alerts() == [f"{stem}-resolved.json", f"{stem}-resolved.txt", f"{stem}.json", f"{stem}.txt"]

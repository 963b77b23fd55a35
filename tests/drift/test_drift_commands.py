"""The `snapshot` and `drift` commands, the gate's rules and its state, on real databases."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from agent.cli import main
from agent.config import load_config
from agent.connect import Systems
from agent.drift import live_schema
from agent.drift import snapshot as snapshot_files
from agent.drift.gate import DriftGate
from agent.drift.watcher import SnapshotWatcher
from agent.schedule import FlowJob
import dbs
from drift_support import new_plant, sqlite_rebuild
from helpers import cli, write_config

KINDS = ["postgresql", "mysql", "sqlite"]


def answered(args: list[str], answer: str):
    """The CLI with `answer` typed at its prompt."""
    return CliRunner().invoke(main, args, input=answer, catch_exceptions=False)


def snapshot_bytes(plant) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((plant.folder / "schema_snapshots").glob("*.yaml"))}


@pytest.mark.parametrize("kind", KINDS)
def test_snapshot_of_an_unchanged_database_is_byte_identical_across_captures(kind, db_factory, tmp_path):
    plant = new_plant(db_factory, kind, tmp_path)
    first = snapshot_bytes(plant)
    assert sorted(first) == ["erp.yaml", "mes.yaml"]
    for path in (plant.folder / "schema_snapshots").glob("*.yaml"):
        path.unlink()
    again = cli("snapshot", "-c", str(plant.config))
    assert again.exit_code == 0, again.output
    assert snapshot_bytes(plant) == first
    assert all(b"\r" not in data and data.endswith(b"\n") for data in first.values())
    assert b"captured" not in first["mes.yaml"] and b"format: 1\n" in first["mes.yaml"]
    unchanged = cli("snapshot", "-c", str(plant.config))
    assert unchanged.output == (
        f"system erp: {plant.folder}/schema_snapshots/erp.yaml matches the live schema (7 tables)\n"
        f"system mes: {plant.folder}/schema_snapshots/mes.yaml matches the live schema (2 tables)\n"
    )


def test_snapshot_lists_what_the_issue_asks_for(db_factory, tmp_path):
    plant = new_plant(db_factory, "postgresql", tmp_path)
    document = yaml.safe_load((plant.folder / "schema_snapshots" / "mes.yaml").read_text())
    assert {k: document[k] for k in ("format", "system", "dialect")} == {"format": 1, "system": "mes", "dialect": "postgresql"}
    assert document["server_version"].startswith(("1", "2"))
    assert list(document["tables"]) == ["production.scrap_reason", "production.work_order"]
    work_order = document["tables"]["production.work_order"]
    assert work_order["columns"][4] == {
        "name": "scrapped_qty", "position": 5, "type": {"family": "integer", "precision": 16}, "native": "smallint",
        "nullable": False, "default": None, "identity": False, "computed": False, "collation": None,
    }
    assert work_order["primary_key"] == {"name": "work_order_pkey", "columns": ["work_order_id"]}
    assert work_order["indexes"] == [
        {"name": "ix_work_order_modified", "columns": ["modified_date", "work_order_id"], "unique": False}
    ]
    erp = yaml.safe_load((plant.folder / "schema_snapshots" / "erp.yaml").read_text())
    assert list(erp["tables"]) == [
        "staging.agent_holder", "staging.agent_ledger", "staging.agent_quarantine", "staging.agent_run",
        "staging.agent_watermark", "staging.stg_scrap_reason",
        "staging.stg_work_order",
    ]
    assert erp["tables"]["staging.stg_work_order"]["unique"] == [
        {"name": "uq_stg_work_order_source", "columns": ["stg_flow", "stg_source_version", "stg_source_key"]}
    ]


def test_drift_exit_codes_and_the_exact_report(db_factory, tmp_path):
    plant = new_plant(db_factory, "postgresql", tmp_path)
    snapshots = plant.folder / "schema_snapshots"
    clean = cli("drift", "-c", str(plant.config))
    assert clean.exit_code == 0
    assert clean.output == (
        f"No schema drift on system erp (postgresql): it matches {snapshots}/erp.yaml.\n\n"
        f"No schema drift on system mes (postgresql): it matches {snapshots}/mes.yaml.\n"
    )
    plant.mes("ALTER TABLE production.work_order ALTER COLUMN scrapped_qty TYPE numeric(9,2)")
    drifted = cli("drift", "-c", str(plant.config))
    assert drifted.exit_code == 3
    assert drifted.output == f"""\
No schema drift on system erp (postgresql): it matches {snapshots}/erp.yaml.

SCHEMA DRIFT on system mes (postgresql)
The live database no longer matches its reviewed snapshot {snapshots}/mes.yaml.

1 change:
  1. production.work_order, column scrapped_qty: data type changed
     was: smallint
     now: numeric(9,2)
     flow work_orders: BREAKING, the flow reads this column

Flows halted (they move no rows and keep their watermark until this is resolved):
  work_orders (on_drift: halt; 1 change, 1 breaking for this flow)

What to do:
  1. Find out who changed the database and why (for example a vendor update).
  2. Review the differences at any time with:
       mes-erp-agent drift -c {plant.config}
  3. If the change is intended and the flows' mappings still fit it, accept it:
       mes-erp-agent snapshot -c {plant.config} --system mes --accept
     Halted flows resume at their next poll; a running agent needs no restart.
     If the change is not intended, undo it in the database instead: halted flows
     resume by themselves once the schema matches the snapshot again.
"""
    code, data = plant.drift_json()
    assert code == 3 and data["drift"] is True
    mes = data["systems"][1]
    assert mes["event"] == "schema_drift" and mes["detected_at"] is None and len(mes["fingerprint"]) == 16
    assert mes["changes"] == [{
        "kind": "type_changed", "system": "mes", "table": "production.work_order", "column": "scrapped_qty",
        "constraint": None, "expected": "smallint", "actual": "numeric(9,2)", "breaking": True,
        "impacts": [{"flow": "work_orders", "breaking": True, "reason": "the flow reads this column"}],
    }]
    assert mes["flows"] == [{"flow": "work_orders", "on_drift": "halt", "action": "halt", "changes": 1, "breaking": 1}]
    assert mes["commands"]["accept"] == f"mes-erp-agent snapshot -c {plant.config} --system mes --accept"

    # The alert written by the run is the same report, with the time it was detected.
    assert plant.run().exit_code == 3
    report = (plant.folder / "alerts" / plant.alerts()[1]).read_text()
    assert report.startswith("SCHEMA DRIFT on system mes (postgresql)\n")
    assert "\nDetected 20" in report and "     now: numeric(9,2)\n" in report
    alert = json.loads((plant.folder / "alerts" / plant.alerts()[0]).read_text())
    assert alert["changes"] == mes["changes"] and alert["fingerprint"] == mes["fingerprint"]


def test_missing_snapshot_is_a_configuration_error_naming_the_command(db_factory, tmp_path):
    plant = new_plant(db_factory, "sqlite", tmp_path, snapshot=False)
    result = plant.run()
    assert result.exit_code == 2
    assert result.output == (
        f"{plant.config}: cannot check for schema drift; no data was moved:\n"
        f"no schema snapshot for system erp: {tmp_path}/schema_snapshots/erp.yaml does not exist. The agent compares "
        "each database with its reviewed snapshot before every run and will not run without one. Create it (after "
        "checking that the database is in its intended state) with:\n"
        f"    mes-erp-agent snapshot -c {plant.config} --system erp\n"
        f"no schema snapshot for system mes: {tmp_path}/schema_snapshots/mes.yaml does not exist. The agent compares "
        "each database with its reviewed snapshot before every run and will not run without one. Create it (after "
        "checking that the database is in its intended state) with:\n"
        f"    mes-erp-agent snapshot -c {plant.config} --system mes\n"
    )
    assert not (tmp_path / "schema_snapshots").exists()  # no silent first capture
    assert cli("drift", "-c", str(plant.config)).exit_code == 2
    assert cli("snapshot", "-c", str(plant.config), "--check").exit_code == 2
    assert plant.staged("stg_work_order") == 0


def test_snapshot_without_accept_never_overwrites_a_changed_schema(db_factory, tmp_path):
    plant = new_plant(db_factory, "sqlite", tmp_path)
    mes_file = tmp_path / "schema_snapshots" / "mes.yaml"
    reviewed = mes_file.read_bytes()
    plant.mes("CREATE INDEX ix_work_order_due ON work_order (due_date)")

    plain = cli("snapshot", "-c", str(plant.config), "--system", "mes")
    assert plain.exit_code == 3
    assert "+      - {name: ix_work_order_due, columns: [due_date], unique: false}\n" not in plain.output
    assert "+    - {name: ix_work_order_due, columns: [due_date], unique: false}\n" in plain.output
    assert plain.output.endswith(
        f"system mes: the live schema differs from {mes_file}; nothing written. After review, accept it with:\n"
        f"    mes-erp-agent snapshot -c {plant.config} --system mes --accept\n"
    )
    check = cli("snapshot", "-c", str(plant.config), "--check")
    assert check.exit_code == 3 and check.output.endswith(f"system mes: the live schema DIFFERS from {mes_file}\n")
    declined = answered(["snapshot", "-c", str(plant.config), "--system", "mes", "--accept"], "n\n")
    assert declined.exit_code == 1 and "not accepted; nothing written" in declined.output
    assert mes_file.read_bytes() == reviewed
    confirmed = answered(["snapshot", "-c", str(plant.config), "--system", "mes", "--accept"], "y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert "1. work_order, index ix_work_order_due: new index" in confirmed.output
    assert f"Accept this schema of system mes and rewrite {mes_file}? [y/N]: y\n" in confirmed.output
    assert mes_file.read_bytes() != reviewed
    assert cli("snapshot", "-c", str(plant.config), "--check").exit_code == 0


def test_a_hand_edited_snapshot_is_refused(db_factory, tmp_path):
    plant = new_plant(db_factory, "sqlite", tmp_path)
    mes_file = tmp_path / "schema_snapshots" / "mes.yaml"
    mes_file.write_text(mes_file.read_text().replace("native: SMALLINT", "native: INTEGER", 1))
    result = plant.run()
    assert result.exit_code == 2
    assert f"schema snapshot {mes_file} was edited by hand (its content_hash does not match its content)" in result.output
    assert cli("snapshot", "-c", str(plant.config), "--system", "mes", "--accept", "--yes").exit_code == 0
    assert plant.run().exit_code == 0


def test_a_flow_added_after_the_snapshot_needs_its_tables_accepted(db_factory, tmp_path):
    plant = new_plant(db_factory, "sqlite", tmp_path)
    document = yaml.safe_load(plant.config.read_text())
    document["flows"]["scrap_reasons_again"] = {**document["flows"]["scrap_reasons"], "staging_table": "stg_scrap_again"}
    plant.config.write_text(yaml.safe_dump(document, sort_keys=False))
    assert cli("sql", "ddl", "-c", str(plant.config), "--system", "erp", "--apply").exit_code == 0
    result = plant.run()
    assert result.exit_code == 2
    assert (f"schema snapshot {tmp_path}/schema_snapshots/erp.yaml has no entry for table staging.stg_scrap_again on "
            "system erp, used by flow scrap_reasons_again") in result.output
    assert f"mes-erp-agent snapshot -c {plant.config} --system erp --accept" in result.output


def test_on_drift_policies(db_factory, tmp_path):
    plant = new_plant(db_factory, "sqlite", tmp_path, on_drift="halt_on_breaking")
    assert plant.run().exit_code == 0
    plant.mes("CREATE INDEX ix_work_order_due ON work_order (due_date)")  # not breaking
    plant.touch_rows("work_order", "work_order_id", [7])
    result = plant.run()
    assert result.exit_code == 0, result.output
    assert plant.staged("stg_work_order") == 51
    report = (tmp_path / "alerts" / plant.alerts()[1]).read_text()
    assert "No flow halted.\nFlows that keep running (their on_drift policy lets them):\n" \
           "  work_orders (on_drift: halt_on_breaking; 1 change, 0 breaking for this flow)\n" in report

    sqlite_rebuild(plant, "mes", None, "work_order", [("due_date DATETIME NOT NULL", "due_date DATETIME")])  # breaking
    assert plant.run().exit_code == 3
    # The drift changed: the first incident is closed (-resolved files) and a new one is reported.
    assert len(plant.alerts()) == 6

    document = yaml.safe_load(plant.config.read_text())
    document["flows"]["work_orders"]["on_drift"] = "warn"
    plant.config.write_text(yaml.safe_dump(document, sort_keys=False))
    plant.touch_rows("work_order", "work_order_id", [8], when="2030-01-02 00:00:00")
    warned = plant.run()
    assert warned.exit_code == 0, warned.output  # warn: reported, never halted
    assert plant.staged("stg_work_order") == 52
    assert len(plant.alerts()) == 6  # the same drift: not reported again


def test_staging_and_control_tables_are_watched(db_factory, tmp_path):
    plant = new_plant(db_factory, "postgresql", tmp_path)
    assert plant.run().exit_code == 0
    plant.touch_rows("work_order", "work_order_id", [1])
    plant.erp(
        "ALTER TABLE staging.agent_run ADD COLUMN operator varchar(20) NOT NULL DEFAULT 'x'",
        "ALTER TABLE staging.agent_run ALTER COLUMN operator DROP DEFAULT",
        "ALTER TABLE staging.stg_work_order ALTER COLUMN stg_status SET DEFAULT 'NEW'",
        "ALTER TABLE staging.stg_scrap_reason ADD COLUMN erp_note text NULL",
    )
    never = "it is NOT NULL without a default, and the agent does not write it: every insert would fail"
    assert plant.diffs() == [
        ("column_added", "staging.agent_run", "operator", None, "character varying(20) NOT NULL",
         {"scrap_reasons": True, "work_orders": True}),
        ("column_added", "staging.stg_scrap_reason", "erp_note", None, "text", {"scrap_reasons": False}),
        ("default_changed", "staging.stg_work_order", "stg_status", "'PENDING'::character varying",
         "'NEW'::character varying", {"work_orders": False}),
    ]
    _code, data = plant.drift_json()
    assert data["systems"][0]["changes"][0]["impacts"][0]["reason"] == never
    assert plant.run().exit_code == 3  # both flows halted: every insert into agent_run would fail
    assert plant.staged("stg_work_order") == 50


def test_one_catalog_query_per_system_for_each_gate_call(db_factory, tmp_path):
    plant = new_plant(db_factory, "postgresql", tmp_path)
    config = load_config(plant.config)
    systems = Systems(config)
    try:
        gate = DriftGate(config, systems)
        assert gate("work_orders") is None
        statements: list[tuple[str, str]] = []

        def record(conn, _cursor, sql, *_args):
            statements.append((conn.engine.url.database, sql))

        sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
        try:
            assert gate("work_orders") is None
        finally:
            sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)
        assert sorted((db, sql.split()[:2]) for db, sql in statements) == [
            (sa.make_url(plant.pair.erp_url).database, ["WITH", "watched"]),
            (sa.make_url(plant.pair.mes_url).database, ["WITH", "watched"]),
        ]
        assert all("pg_catalog.pg_attribute" in sql for _db, sql in statements)
        gate.close()
    finally:
        systems.dispose()


def test_a_running_agent_resumes_after_accept_without_a_restart(db_factory, tmp_path):
    """The long-running mode's job with the watchdog: halted on drift, resumed by `snapshot --accept`."""
    plant = new_plant(db_factory, "sqlite", tmp_path)
    config = load_config(plant.config)
    systems = Systems(config)
    gate = DriftGate(config, systems)
    watcher = SnapshotWatcher(gate).start()
    try:
        job = FlowJob(config, systems, "work_orders", gate)
        job.prepare()
        assert job().outcome == "ok"
        sqlite_rebuild(plant, "mes", None, "work_order", [("scrapped_qty SMALLINT", "scrapped_qty INTEGER")])
        plant.touch_rows("work_order", "work_order_id", [9, 10])
        assert job().outcome == "halted"
        assert job().outcome == "halted"
        assert plant.staged("stg_work_order") == 50
        assert cli("snapshot", "-c", str(plant.config), "--system", "mes", "--accept", "--yes").exit_code == 0
        deadline = time.monotonic() + 10
        outcome = job()
        while outcome.outcome == "halted" and time.monotonic() < deadline:
            time.sleep(0.1)
            outcome = job()
        assert outcome.outcome == "ok" and outcome.rows_written == 2
        assert plant.staged("stg_work_order") == 52
        assert [name.split("-")[-1] for name in plant.alerts()][:2] == ["resolved.json", "resolved.txt"]
    finally:
        watcher.stop()
        systems.dispose()


def test_mariadb_through_odbc_reads_the_same_snapshot_as_pymysql(db_factory, tmp_path):
    dbs.skip_unless_available("mysql_odbc")
    plant = new_plant(db_factory, "mysql", tmp_path)
    native = load_config(plant.config)
    odbc_pair = dataclasses.replace(plant.pair, erp_url=dbs.url_for("mysql_odbc", sa.make_url(plant.pair.erp_url).database))
    odbc_config = load_config(write_config(tmp_path / "odbc.yaml", odbc_pair, yaml.safe_load(plant.config.read_text())["flows"]))
    native_systems, odbc_systems = Systems(native), Systems(odbc_config)
    try:
        assert snapshot_files.render(live_schema(odbc_config, odbc_systems, "erp")) == \
            snapshot_files.render(live_schema(native, native_systems, "erp"))
    finally:
        native_systems.dispose()
        odbc_systems.dispose()

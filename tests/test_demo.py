"""`mes-erp-agent demo`: the embedded demo builds its databases, moves every MES change exactly once, and says so.

One in-process run (3 s of shop floor) is checked against its databases: each MES row version the agent could
see is in staging exactly once with its mapped values, every simulated change arrived (staged, or quarantined
with its reason, as the simulator meant it), and nothing else is there. The other direction likewise: every
version of the ERP's released production orders (the initial schedule, then each change of the simulated
planner) is in the MES inbound table exactly once with the ERP's values, and the agent wrote nothing into either
system outside its staging schema. A second run goes through the command line with output piped (as in CI):
exit 0, plain text, and its "what to try next" commands work, an ERP reschedule by hand included.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from rich.console import Console

from agent.demo import adventureworks
from agent.demo.erp_schedule import FIRST_ORDER_NO, define_production_order
from agent.demo.run import (
    CONFIG_NAME, EDITED_CONFIG_NAME, MARKER_NAME, TRY_A_CHANGE_SQL, TRY_A_RESCHEDULE_SQL, Demo, DemoResult, run_demo,
)
from agent.demo.shopfloor import QUARANTINED, STAGED
from agent.contract import version_text

HISTORY = {"work_order": 72_591, "work_order_routing": 67_131, "production_order": 240}
MISSING_HOURS = "labor_hours: required, but source column actual_resource_hrs is NULL"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DemoResult, str]]:
    folder = tmp_path_factory.mktemp("demo") / "demo-run"
    out = io.StringIO()
    result = Demo(folder, 3, Console(file=out, width=200)).run()
    yield result, out.getvalue()


def engine(path: Path) -> sa.Engine:
    return sa.create_engine(f"sqlite:///{path}")


def staging_rows(folder: Path, table: str, columns: str, where: str = "1 = 1", file: str = "erp_staging.db") -> list[sa.Row]:
    with engine(folder / file).connect() as conn:
        return conn.execute(sa.text(f"SELECT {columns} FROM {table} WHERE {where} ORDER BY stg_id")).all()


def erp_orders(folder: Path) -> dict[str, dict]:
    """The ERP's released production orders now, typed, by stg_source_key."""
    table = define_production_order(sa.MetaData())
    with engine(folder / "erp.db").connect() as conn:
        return {version_text((r.order_no,)): dict(r._mapping) for r in conn.execute(sa.select(table))}


def mes_rows(folder: Path, name: str) -> list[dict]:
    """Current MES rows with typed values (datetimes), read with the loader's own table definitions."""
    table = adventureworks.define_table(sa.MetaData(), name, None)
    with engine(folder / "mes.db").connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(table))]


def test_demo_exits_0_and_leaves_its_files(demo: tuple[DemoResult, str]) -> None:
    result, output = demo
    assert result.exit_code == 0, output
    folder = result.folder
    for name in ("mes.db", "erp.db", "erp_staging.db", "mes_inbound.db", CONFIG_NAME, MARKER_NAME):
        assert (folder / name).is_file(), name
    assert result.mes_counts == {"work_order": 72_591, "work_order_routing": 67_131, "scrap_reason": 16,
                                 "location": 14, "product": 504}
    assert result.erp_counts == {"production_order": 240}
    for text in ("1/5 MES database", "2/5 ERP staging tables", "3/5 Initial load", "4/5 Shop floor, 3 s", "5/5 Summary",
                 "simulated MES changes arrived exactly once", "simulated ERP changes arrived exactly once",
                 "ERP -> MES: the production schedule in the MES inbound table",
                 "ERP schedule changes is in mes_inbound.stg_production_order exactly once, with the ERP's values",
                 "ERP (simulated planner): ", "What to try next", "mes-erp-agent status -c"):
        assert text in output
    assert "\x1b[" not in output  # a non-terminal console gets plain text


def test_initial_load_moved_all_history(demo: tuple[DemoResult, str]) -> None:
    result, _ = demo
    flows = {f.table: f for f in result.flows.values()}
    assert flows["work_order"].initial_rows == HISTORY["work_order"]
    assert flows["work_order_routing"].initial_rows == HISTORY["work_order_routing"]
    assert flows["work_order"].initial_batches == 15  # batch_size 5000
    assert flows["production_order"].initial_rows == HISTORY["production_order"]
    assert flows["production_order"].initial_batches == 3  # batch_size 100: one timestamp, ties across batches
    assert all(f.outcome == "ok" for f in result.flows.values())


def test_every_simulated_change_arrived_once_as_expected(demo: tuple[DemoResult, str]) -> None:
    result, _ = demo
    changes = result.changes
    tables = Counter(c.table for c in changes)
    assert tables["work_order"] >= 3 and tables["work_order_routing"] >= 1, tables  # the shop floor worked
    assert tables["production_order"] >= 3, tables  # and the ERP planner: one of each kind first
    assert [c.what.split(" ")[2] for c in changes if c.table == "production_order"][:3] == [
        "rescheduled:", "quantity", "released:"]
    assert [c for c in changes if c.arrived_at is None] == []
    assert [c for c in changes if c.outcome != c.expected] == []
    assert all(c.latency is not None and 0 < c.latency < 60 for c in changes)
    assert any(c.expected == QUARANTINED for c in changes)  # the first operation confirmation has no hours


def test_staging_holds_each_work_order_version_exactly_once(demo: tuple[DemoResult, str]) -> None:
    result, _ = demo
    folder = result.folder
    staged = staging_rows(folder, "stg_work_order", "stg_flow, stg_source_key, stg_source_version, stg_change, "
                          "stg_status, order_no, plant, product_id, qty_ordered, qty_good, qty_scrap, scrap_reason, due_date")
    versions = [(r.stg_source_key, r.stg_source_version) for r in staged]
    assert len(versions) == len(set(versions))
    simulated = {(c.key, c.version) for c in result.changes if c.table == "work_order"}
    current = {version_text((r["work_order_id"],)): r for r in mes_rows(folder, "work_order")}
    current_versions = {(k, version_text((r["modified_date"], r["work_order_id"]))) for k, r in current.items()}
    # History (one version per order) + every simulated version (started, completed): nothing more, nothing less.
    assert set(versions) == current_versions | simulated
    assert len(staged) == HISTORY["work_order"] + len(simulated)
    assert len(current) == HISTORY["work_order"] + len({key for key, _ in simulated})  # new orders, new ids
    scrap_codes = demo_config(folder)["flows"]["work_order_confirmations"]["columns"]["scrap_reason"]["map"]
    latest = {}
    for r in staged:
        latest[r.stg_source_key] = r  # rows are in stg_id order: the last one per key is the newest version
    for key, mes in current.items():
        row = latest[key]
        assert row.stg_source_version == version_text((mes["modified_date"], mes["work_order_id"]))
        assert (row.stg_flow, row.stg_change, row.stg_status, row.plant) == ("work_order_confirmations", "U", "PENDING", "1710")
        assert (row.order_no, row.product_id, row.qty_ordered) == (mes["work_order_id"], mes["product_id"], mes["order_qty"])
        assert float(row.qty_good) == mes["stocked_qty"] and float(row.qty_scrap) == mes["scrapped_qty"]
        expected_code = None if mes["scrap_reason_id"] is None else scrap_codes[str(mes["scrap_reason_id"])]
        assert row.scrap_reason == expected_code


def test_operations_staged_or_quarantined_with_reason(demo: tuple[DemoResult, str]) -> None:
    result, _ = demo
    folder = result.folder
    staged = staging_rows(folder, "stg_operation", "stg_source_key, stg_source_version, labor_hours")
    versions = [(r.stg_source_key, r.stg_source_version) for r in staged]
    assert len(versions) == len(set(versions))
    simulated = [c for c in result.changes if c.table == "work_order_routing"]
    assert len(staged) == HISTORY["work_order_routing"] + sum(1 for c in simulated if c.expected == STAGED)
    assert {(c.key, c.version) for c in simulated if c.expected == STAGED} <= set(versions)
    assert all(r.labor_hours is not None for r in staged)
    with engine(folder / "erp_staging.db").connect() as conn:
        held = conn.execute(sa.text("SELECT flow, source_key, source_version, source_row, reason FROM agent_quarantine")).all()
    assert sorted((r.flow, r.source_key, r.source_version, r.reason) for r in held) == sorted(
        ("operation_confirmations", c.key, c.version, MISSING_HOURS) for c in simulated if c.expected == QUARANTINED
    )
    for r in held:
        row = json.loads(r.source_row)
        assert row["actual_resource_hrs"] is None
        assert r.source_key == f"{row['work_order_id']}|{row['product_id']}|{row['operation_sequence']}"


def test_mes_inbound_holds_each_released_order_version_exactly_once(demo: tuple[DemoResult, str]) -> None:
    result, _ = demo
    folder = result.folder
    staged = staging_rows(folder, "stg_production_order", "stg_flow, stg_source_key, stg_source_version, stg_change, "
                          "stg_status, order_no, product_id, qty, scheduled_start, due_date, status, erp_modified_at",
                          file="mes_inbound.db")
    versions = [(r.stg_source_key, r.stg_source_version) for r in staged]
    assert len(versions) == len(set(versions))
    current = erp_orders(folder)
    simulated = {(c.key, c.version) for c in result.changes if c.table == "production_order"}
    # The initial schedule: one planning run released orders 1000001..1000240 with one modified_at.
    released_at = min(r["modified_at"] for r in current.values())
    history = {(str(n), version_text((released_at, n))) for n in range(FIRST_ORDER_NO, FIRST_ORDER_NO + 240)}
    assert set(versions) == history | simulated  # the ERP's every version, nothing more, nothing less
    assert len(staged) == HISTORY["production_order"] + len(simulated)
    latest = {r.stg_source_key: r for r in staged}  # stg_id order: the newest version of each order last
    assert set(latest) == set(current)  # new releases included
    for key, erp in current.items():
        row = latest[key]
        assert row.stg_source_version == version_text((erp["modified_at"], erp["order_no"]))
        assert tuple(row[:5]) == ("released_orders", key, row.stg_source_version, "U", "PENDING")
        assert (row.order_no, row.product_id, Decimal(str(row.qty)), row.status) == (
            erp["order_no"], erp["product_id"], erp["order_qty"], "RELEASED")
        assert dt.datetime.fromisoformat(row.scheduled_start) == erp["scheduled_start"]
        assert dt.date.fromisoformat(row.due_date) == erp["due_date"]
        assert dt.datetime.fromisoformat(row.erp_modified_at) == erp["modified_at"]


def test_each_system_was_written_only_in_its_staging_schema(demo: tuple[DemoResult, str]) -> None:
    """The agent's watermarks, runs and staging rows of each direction live in the target's staging file; the MES
    and ERP core files hold only their own tables."""
    folder = demo[0].folder

    def tables(file: str) -> list[str]:
        with engine(folder / file).connect() as conn:
            return [r[0] for r in conn.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' ORDER BY name")]

    assert tables("mes.db") == sorted(adventureworks.TABLES)
    assert tables("erp.db") == ["production_order"]
    inbound = tables("mes_inbound.db")  # the agent's control tables (agent_*) and the staging table, nothing else
    assert "stg_production_order" in inbound and {"agent_watermark", "agent_run", "agent_quarantine"} <= set(inbound)
    assert [t for t in inbound if not t.startswith(("agent_", "stg_"))] == []
    with engine(folder / "mes_inbound.db").connect() as conn:
        assert conn.exec_driver_sql("SELECT flow FROM agent_watermark").all() == [("released_orders",)]
    with engine(folder / "erp_staging.db").connect() as conn:
        assert sorted(conn.exec_driver_sql("SELECT flow FROM agent_watermark").all()) == [
            ("operation_confirmations",), ("work_order_confirmations",)]


def test_demo_config_maps_the_real_codes(demo: tuple[DemoResult, str]) -> None:
    result, _ = demo
    columns = demo_config(result.folder)["flows"]
    scrap_map = columns["work_order_confirmations"]["columns"]["scrap_reason"]["map"]
    work_centers = columns["operation_confirmations"]["columns"]["work_center"]["map"]
    assert set(scrap_map) == {str(r["scrap_reason_id"]) for r in adventureworks.iter_rows("scrap_reason")}
    assert set(work_centers) == {str(r["location_id"]) for r in adventureworks.iter_rows("work_order_routing")}
    assert {f["schedule"]["every"] for f in columns.values()} == {"1s", "2s"}  # each flow its own cadence


def demo_config(folder: Path) -> dict:
    return yaml.safe_load((folder / CONFIG_NAME).read_text(encoding="utf-8"))


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TERM")}
    return subprocess.run([sys.executable, "-m", "agent", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)


def test_command_line_demo_piped_then_what_to_try_next(tmp_path: Path) -> None:
    demo_run = run_cli("demo", "--dir", "demo-run", "--seconds", "2", cwd=tmp_path)
    assert demo_run.returncode == 0, demo_run.stdout + demo_run.stderr
    output = demo_run.stdout
    assert "\x1b[" not in output
    assert "5/5 Summary" in output and "simulated MES changes arrived exactly once" in output
    assert "mes-erp-agent run -c demo-run/demo.yaml --once" in output
    again = run_cli("--log-level", "DEBUG", "run", "-c", "demo-run/demo.yaml", "--once", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    # Nothing changed since the last poll (an empty poll logs at DEBUG only).
    assert "DEBUG mes_erp_agent: flow work_order_confirmations: 0 read, 0 written" in again.stderr
    assert TRY_A_CHANGE_SQL in output and TRY_A_RESCHEDULE_SQL in output
    with engine(tmp_path / "demo-run" / "mes.db").begin() as conn:  # what the suggested sqlite3 commands do
        conn.exec_driver_sql(TRY_A_CHANGE_SQL)
    due_before = erp_orders(tmp_path / "demo-run")["1000001"]["due_date"]
    with engine(tmp_path / "demo-run" / "erp.db").begin() as conn:
        conn.exec_driver_sql(TRY_A_RESCHEDULE_SQL)
    time.sleep(1.2)  # the flows' lag
    changed = run_cli("run", "-c", "demo-run/demo.yaml", "--once", cwd=tmp_path)
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert "flow work_order_confirmations: 1 read, 1 written" in changed.stderr
    assert "flow released_orders: 1 read, 1 written" in changed.stderr
    versions = staging_rows(tmp_path / "demo-run", "stg_work_order", "qty_scrap, scrap_reason", "stg_source_key = '72591'")
    assert [tuple(r) for r in versions] == [(0, None), (2, "HANDLING")]  # history, then the change: a new version
    rescheduled = staging_rows(tmp_path / "demo-run", "stg_production_order", "due_date", "stg_source_key = '1000001'",
                               file="mes_inbound.db")
    assert [dt.date.fromisoformat(r.due_date) for r in rescheduled][-1] == due_before + dt.timedelta(days=2)
    status = run_cli("status", "-c", "demo-run/demo.yaml", "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    flows = {s["flow"]: s for s in json.loads(status.stdout)}
    assert flows["work_order_confirmations"]["pending_rows"] >= HISTORY["work_order"]
    assert flows["released_orders"]["pending_rows"] >= HISTORY["production_order"] + 1
    assert flows["operation_confirmations"]["rows_quarantined"] >= 1


def test_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    out = io.StringIO()
    assert run_demo(folder, 1, Console(file=out, width=200)) == 2
    assert "was not made by `mes-erp-agent demo`" in out.getvalue()
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


def test_starting_over_replaces_a_previous_demo_and_keeps_edits(tmp_path: Path) -> None:
    folder = tmp_path / "demo-run"
    folder.mkdir()
    for name in ("mes.db", "erp.db", "erp_staging.db", "mes_inbound.db", "mes.db-journal"):
        (folder / name).write_text("old")
    (folder / CONFIG_NAME).write_text("# my edits\n")
    (folder / MARKER_NAME).write_text("made by the demo; demo.yaml as written (sha256): 0000\n")
    (folder / "notes.txt").write_text("not the demo's")
    note = Demo(folder, 0, Console(file=io.StringIO())).prepare_folder()
    assert note is not None and "starting over" in note and EDITED_CONFIG_NAME in note
    assert sorted(p.name for p in folder.iterdir()) == [EDITED_CONFIG_NAME, "notes.txt"]
    assert (folder / EDITED_CONFIG_NAME).read_text() == "# my edits\n"

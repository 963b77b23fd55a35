"""Reconciliation past the overlap window and hard-delete tombstones (`mes-erp-agent reconcile`), live on PostgreSQL
and MariaDB: a late commit the polls cannot see is staged exactly once with one incident; a consistent flow (with
updated and quarantined rows) fixes and raises nothing; each hard delete gets exactly one tombstone.

The audit trigger of test_import_job copies every row the staging table receives, so a (key, version) staged twice
is seen. Timestamps are fixed (not now): the buckets compared, and so the report, are the same on every run.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import time
import zlib
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.contract import split_text, version_text
from agent.recovery.buckets import Bucket, child
from helpers import Pair, cli, make_pair, prepare_erp, write_config
from service_support import wait_until
from test_import_job import STAGING, add_audit_trigger, audited, create_mes_table, flow, query, start_agent, version

DAY = dt.datetime(2026, 3, 10, 8, 0, 0)
LATER = dt.datetime(2026, 3, 12, 9, 30, 0, 1)


def at(seconds: float) -> dt.datetime:
    return DAY + dt.timedelta(seconds=seconds, microseconds=123456 if seconds == int(seconds) else 0)


@pytest.fixture(params=["postgresql", "mysql"])
def plant(request, db_factory, tmp_path):
    kind = request.param
    pair = make_pair(db_factory, kind, suffix=f"_{kind}_{zlib.crc32(request.node.name.encode()) % 10**6}")
    return pair, create_mes_table(pair), tmp_path


def write(pair: Pair, table: sa.Table, rows: list[dict], delete: tuple[int, ...] = ()) -> None:
    engine = sa.create_engine(pair.mes_url)
    with engine.begin() as conn:
        for row in rows:
            if conn.execute(sa.select(table.c.wo_id).where(table.c.wo_id == row["wo_id"])).first():
                conn.execute(table.update().where(table.c.wo_id == row["wo_id"]).values(**row))
            else:
                conn.execute(table.insert().values(**row))
        if delete:
            conn.execute(table.delete().where(table.c.wo_id.in_(delete)))
    engine.dispose()


def source_pairs(pair: Pair, table: sa.Table) -> set[tuple[str, str]]:
    engine = sa.create_engine(pair.mes_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table.c.wo_id, table.c.updated_at)).all()
    engine.dispose()
    return {version(wo_id, updated_at) for wo_id, updated_at in rows}


def staged_pairs(pair: Pair, change: str = "U") -> set[tuple[str, str]]:
    return set(query(pair, f"SELECT stg_source_key, stg_source_version FROM {pair.staging_schema}.{STAGING} "
                           "WHERE stg_change = :c", c=change))


def live_watermark(pair: Pair) -> list[tuple]:
    return query(pair, f"SELECT flow, watermark_values, revision, updated_at FROM {pair.staging_schema}.agent_watermark "
                       "WHERE flow = 'wo'")


def run_once(config: Path) -> None:
    result = cli("run", "-c", str(config), "--once")
    assert result.exit_code == 0, result.output


def reconcile(config: Path, *args: str) -> list[str]:
    result = cli("reconcile", "-c", str(config), *args)
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def incident_files(folder: Path) -> list[str]:
    return sorted(p.name for p in (folder / "alerts").glob("*.txt")) if (folder / "alerts").exists() else []


def t(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="microseconds")


# --- a late commit past the overlap window -------------------------------------------------------------
def test_a_late_commit_past_the_overlap_window_is_recovered_exactly_once_with_one_incident(plant):
    pair, table, folder = plant
    config = write_config(folder / "agent.yaml", pair, {"wo": flow(pair, batch_size=2, reconcile={"every": "1h", "window": "7d"})},
                          alerts={"dir": "alerts"})
    write(pair, table, [{"wo_id": i, "qty": i, "updated_at": at(i)} for i in range(1, 11)])
    prepare_erp(config)
    add_audit_trigger(pair)
    run_once(config)
    write(pair, table, [{"wo_id": 12, "qty": 12, "updated_at": LATER}])
    run_once(config)  # the watermark moves two days past the first rows
    # A transaction that stamped updated_at between rows 2 and 3 commits now, long after overlap (5m) passed it.
    write(pair, table, [{"wo_id": 11, "qty": 11, "updated_at": at(2.5)}])
    run_once(config)
    assert version(11, at(2.5)) not in staged_pairs(pair)  # no poll reads that far back
    before = live_watermark(pair)

    upper = LATER - dt.timedelta(minutes=5)
    assert reconcile(config) == [
        # year, month, day, hour and minute each hold 11 source rows against 10 staged; the minute's seconds then
        # 10 buckets, of which :02 differs (batch_size 2 makes every level narrow further)
        f"flow wo: reconcile updated_at [{t(upper - dt.timedelta(days=7))}, {t(upper)}): 15 buckets compared, 6 differed; "
        "rows missing: 1, staged: 1, quarantined: 0",
        "flow wo: incident late_rows:wo raised: overlap (5m) is too short for this MES",
    ]
    assert staged_pairs(pair) == source_pairs(pair, table)
    assert audited(pair) == Counter(dict.fromkeys(source_pairs(pair, table), 1))
    assert live_watermark(pair) == before  # the live watermark did not move
    assert query(pair, f"SELECT rows_read, rows_written, message FROM {pair.staging_schema}.agent_run "
                       "WHERE message LIKE 'reconcile%'") == [(1, 1, "reconcile: rows the polls missed (committed after "
                                                              "the overlap window)")]
    [report] = incident_files(folder)
    body = (folder / "alerts" / report).read_text(encoding="utf-8")
    assert re.sub(r"at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", "at <now>", body) == (
        "LATE ROWS RECOVERED: wo\n"
        f"Reconciliation found 1 row of flow wo ({table.fullname} on system mes) that no poll had staged, at <now>; "
        f"1 staged into {pair.staging_schema}.{STAGING}, 0 quarantined.\n"
        f"Their updated_at values ({t(at(2.5))} .. {t(at(2.5))}) were already more than overlap = 5m behind the flow's "
        "watermark when they committed: the MES committed them later than the overlap window allows, so the\n"
        "overlap is too short for this MES.\n"
        "\n"
        "What to do:\n"
        "  1. Raise `overlap:` of flow wo above the longest time an MES transaction runs between stamping updated_at "
        "and committing.\n"
        "  2. Keep `reconcile:` on for the flow: it catches what the overlap misses. Run a pass by hand with:\n"
        f"       mes-erp-agent reconcile -c {config} --flow wo\n"
        "  3. Nothing was lost or staged twice; this incident resolves when a reconcile pass finds nothing missing.\n"
    )

    # Again: consistent now. Nothing staged twice, the incident resolves.
    assert reconcile(config, "--flow", "wo") == [
        f"flow wo: reconcile updated_at [{t(upper - dt.timedelta(days=7))}, {t(upper)}): 1 buckets compared, 0 differed; "
        "rows missing: 0, staged: 0, quarantined: 0",
    ]
    assert audited(pair) == Counter(dict.fromkeys(source_pairs(pair, table), 1))
    assert [name for name in incident_files(folder) if name != report] == [report.replace(".txt", "-resolved.txt")]
    state = json.loads((folder / "alerts" / "incidents.state.json").read_text(encoding="utf-8"))
    assert [r["incident"]["kind"] for r in state["incidents"] if r["resolution"] is None] == []


def test_a_consistent_flow_with_updated_and_quarantined_rows_fixes_nothing_and_raises_nothing(plant):
    pair, table, folder = plant
    columns = {"order_no": "wo_id", "qty": "qty", "band": {"from": "qty", "map": {"10": "TEN", "20": "TWENTY"}}}
    config = write_config(folder / "agent.yaml", pair, {"wo": flow(pair, columns=columns, overlap="0s")},
                          alerts={"dir": "alerts"})
    write(pair, table, [{"wo_id": i, "qty": 10 if i % 2 else 30, "updated_at": at(i)} for i in range(1, 7)])
    prepare_erp(config)
    add_audit_trigger(pair)
    run_once(config)  # 2, 4, 6 are quarantined (qty 30 has no band)
    write(pair, table, [{"wo_id": 4, "qty": 20, "updated_at": at(20)},  # quarantined, then fixed: staged
                        {"wo_id": 5, "qty": 30, "updated_at": at(21)},  # staged, then quarantined
                        {"wo_id": 3, "qty": 20, "updated_at": at(22)}])  # staged twice
    run_once(config)
    write(pair, table, [{"wo_id": 7, "qty": 10, "updated_at": LATER}])
    run_once(config)
    quarantined = set(query(pair, f"SELECT source_key, source_version FROM {pair.staging_schema}.agent_quarantine"))
    assert quarantined == {version(2, at(2)), version(4, at(4)), version(6, at(6)), version(5, at(21))}

    assert reconcile(config, "--since", "2026-03-01") == [
        f"flow wo: reconcile updated_at [2026-03-01T00:00:00.000000, {t(LATER)}): 1 buckets compared, 0 differed; "
        "rows missing: 0, staged: 0, quarantined: 0",
    ]
    assert incident_files(folder) == []
    assert staged_pairs(pair) | quarantined >= source_pairs(pair, table)
    assert audited(pair) == Counter(dict.fromkeys(staged_pairs(pair), 1))


# --- hard deletes ---------------------------------------------------------------------------------------
def test_each_hard_delete_gets_exactly_one_tombstone_across_repeated_passes(plant):
    pair, table, folder = plant
    config = write_config(folder / "agent.yaml", pair, {"wo": flow(pair, batch_size=2, deletes={"detect": True})},
                          alerts={"dir": "alerts"})
    write(pair, table, [{"wo_id": i, "qty": i, "updated_at": at(i)} for i in range(1, 7)])
    prepare_erp(config)
    add_audit_trigger(pair)
    run_once(config)
    write(pair, table, [], delete=(2, 5))
    lines = reconcile(config)
    assert lines[1] == (f"flow wo: deletes updated_at [{t(at(1))}, {t(at(6) + dt.timedelta(microseconds=1))}): "
                        "11 buckets compared, 7 differed; keys gone: 2, tombstones staged: 2")
    tombstones = {("2", "D|" + version(2, at(2))[1]), ("5", "D|" + version(5, at(5))[1])}
    assert staged_pairs(pair, "D") == tombstones
    assert query(pair, f"SELECT order_no, qty FROM {pair.staging_schema}.{STAGING} WHERE stg_change = 'D' "
                       "ORDER BY order_no") == [(2, None), (5, None)]
    for _ in range(2):  # the ledger knows the tombstones: no pass writes them again
        assert reconcile(config)[1] == (f"flow wo: deletes updated_at [{t(at(1))}, {t(at(6) + dt.timedelta(microseconds=1))}): "
                                        "1 buckets compared, 0 differed; keys gone: 0, tombstones staged: 0")
    # Key 2 comes back, is staged, and is deleted again: a second deletion, a second tombstone (of the new version).
    write(pair, table, [{"wo_id": 2, "qty": 22, "updated_at": at(8)}])
    run_once(config)
    write(pair, table, [], delete=(2,))
    reconcile(config)
    reconcile(config)
    tombstones.add(("2", "D|" + version(2, at(8))[1]))
    assert staged_pairs(pair, "D") == tombstones
    assert staged_pairs(pair, "U") - source_pairs(pair, table) == {version(2, at(2)), version(5, at(5)), version(2, at(8))}
    assert audited(pair) == Counter(dict.fromkeys(staged_pairs(pair, "U") | tombstones, 1))
    assert incident_files(folder) == []  # deletions are not late rows


# --- configuration -------------------------------------------------------------------------------------
def test_check_config_wants_a_vendor_delete_mapping_and_a_ledger_covering_the_window(tmp_path):
    pair = Pair("postgresql", "postgresql+psycopg://agent@db/mes", "postgresql+psycopg://agent@db/erp", "production",
                "staging", {})
    vendor = flow(pair, layout="vendor", deletes={"detect": True}, columns={"QTY": "qty"})
    path = write_config(tmp_path / "agent.yaml", pair, {"wo": vendor, "w2": flow(pair, reconcile={"window": "29d"})})
    result = cli("check-config", "-c", str(path))
    assert result.exit_code == 2
    problems = [line.strip() for line in result.output.splitlines()[1:]]
    assert problems == [
        f"{path}:1: `ledger: {{keep: ...}}` (30 days, 0:00:00) must be longer than flow w2's reconcile window plus "
        "overlap plus lag plus a day's margin for the MES clock (30 days, 0:05:00), or rows the reconcile pass compares "
        "would no longer be known as staged and would be staged again; raise `keep:` or shorten `reconcile: {window: ...}`",
        f"{path}:22: flow wo writes the ERP vendor's interface table (layout: vendor), which has no stg_change column "
        "to mark a deletion: say how its import job recognises one with `deletes: {detect: true, constants: "
        "{COLUMN: value}}` (e.g. a transaction type), or remove `detect: true`",
    ]
    vendor["deletes"] = {"detect": True, "constants": {"TRANSACTION_TYPE_ID": 99}}
    path = write_config(tmp_path / "agent.yaml", pair, {"wo": vendor})
    result = cli("check-config", "-c", str(path))
    assert result.exit_code == 2
    assert [line.strip() for line in result.output.splitlines()[1:]] == [
        f"{path}:25: `TRANSACTION_TYPE_ID` is not a staging column under flow wo's `columns:`; a tombstone writes only those",
    ]
    vendor["columns"] = {"QTY": "qty", "TRANSACTION_TYPE_ID": {"const": 1, "type": "int"}}
    path = write_config(tmp_path / "agent.yaml", pair, {"wo": vendor})
    assert cli("check-config", "-c", str(path)).exit_code == 0
    required = flow(pair, deletes={"detect": True}, columns={"order_no": "wo_id", "qty": {"from": "qty", "required": True}})
    path = write_config(tmp_path / "agent.yaml", pair, {"wo": required})
    result = cli("check-config", "-c", str(path))
    assert [line.strip() for line in result.output.splitlines()[1:]] == [
        f"{path}:24: flow wo's tombstones fill only the columns that come from the key, constants and defaults, but "
        "staging column `qty` is `required: true` (NOT NULL); give it a `default:` or a value under "
        "`deletes: {constants: {qty: ...}}`",
    ]



# --- the running agent's scheduled passes --------------------------------------------------------------
def test_the_running_agent_reconciles_and_detects_deletes_on_schedule(plant):
    pair, table, folder = plant
    config = write_config(folder / "agent.yaml", pair, {"wo": flow(pair, schedule={"every": "250ms"},
                                                                 reconcile={"every": "1s", "window": "7d"},
                                                                 deletes={"detect": True, "every": "1s"})},
                          alerts={"dir": "alerts", "check_every": "1s"})
    write(pair, table, [{"wo_id": i, "qty": i, "updated_at": at(i)} for i in range(1, 7)])
    write(pair, table, [{"wo_id": 12, "qty": 12, "updated_at": LATER}])
    prepare_erp(config)
    add_audit_trigger(pair)
    run_once(config)
    agent = start_agent(config, folder / "agent.log")
    try:
        write(pair, table, [{"wo_id": 11, "qty": 11, "updated_at": at(2.5)}], delete=(4,))
        wait_until(lambda: version(11, at(2.5)) in staged_pairs(pair) and staged_pairs(pair, "D"), 30,
                   "the late row staged and the deleted key's tombstone")
        wait_until(lambda: any("late_rows" in name for name in incident_files(folder)), 10, "the late_rows incident")
        time.sleep(2.5)  # more passes: nothing twice
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=60)
    assert agent.returncode == 0, (folder / "agent.log").read_text()
    assert staged_pairs(pair, "D") == {("4", "D|" + version(4, at(4))[1])}
    assert staged_pairs(pair) - {version(4, at(4))} == source_pairs(pair, table)
    assert audited(pair) == Counter(dict.fromkeys(staged_pairs(pair) | staged_pairs(pair, "D"), 1))
    assert len([n for n in incident_files(folder) if "late_rows" in n and "resolved" not in n]) == 1


# --- the pieces, without a database --------------------------------------------------------------------
@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(alphabet=st.sampled_from("ab|\\N ")), st.integers()), min_size=1, max_size=4))
def test_a_key_text_splits_back_into_its_values(values):
    assert split_text(version_text(tuple(values))) == [None if v is None else str(v) for v in values]


def test_buckets_nest_from_a_year_down_to_a_second_and_clip_to_their_parent():
    whole = Bucket("", dt.datetime(2025, 12, 30, 12), dt.datetime(2026, 1, 2))
    assert child("2025", "timestamp", whole) == Bucket("2025", dt.datetime(2025, 12, 30, 12), dt.datetime(2026, 1, 1))
    december = child("2025-12", "timestamp", Bucket("", dt.datetime(2025, 1, 1), dt.datetime(2027, 1, 1)))
    assert (december.lower, december.upper) == (dt.datetime(2025, 12, 1), dt.datetime(2026, 1, 1))
    second = child("2026-01-01T23:59:59", "timestamp", whole)
    assert (second.lower_text, second.upper_text) == ("2026-01-01T23:59:59.000000", "2026-01-02T00:00:00.000000")
    day = child("2026-02", "date", Bucket("", dt.date(2026, 1, 1), dt.date(2027, 1, 1)))
    assert (day.lower, day.upper) == (dt.date(2026, 2, 1), dt.date(2026, 3, 1))

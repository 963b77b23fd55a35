"""`quarantine list` and `quarantine replay`, live on PostgreSQL and MariaDB.

Rows quarantined for a code missing from a code map are replayed once the map is fixed in the configuration: staged
exactly once (an audit trigger on the staging table sees every insert), with exactly the values they were read with,
marked replayed; a second replay does nothing; rows that still fail keep their (updated) reason; the live watermark
does not move; `status` and the running agent's quarantine incident count only rows not replayed.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import make_url

from agent import pipeline, quarantine, row_json
from agent.alerts import IncidentBook
from agent.config import load_config
from agent.connect import Systems
from agent.health import FlowHealth
from agent.monitor import Monitor
from helpers import Pair, cli, make_pair, prepare_erp, staging_engine, table_name, write_config

FLOW, STAGING = "quality_results", "stg_quality"
T0 = dt.datetime(2026, 3, 2, 6, 0, 0)
MAP = {"SCR": "SCRATCH", "DNT": "DENT"}
FIXED_MAP = {**MAP, "XYZ": "OTHER", "QQQ": "QUALITYHOLD"}  # QUALITYHOLD: longer than the staging column (7)
# result_id -> (lot_no, defect_code, measured, line)
ROWS = {
    1: ("LOT-A1", "SCR", Decimal("12.5000"), "L1"),
    2: ("LOT-A2", "XYZ", Decimal("3.2500"), "L1"),  # missing code: replayed once XYZ is mapped
    3: ("LOT-A3", "XYZ", Decimal("1.2000"), "L2"),  # the same; its stored JSON is made the pre-`$types` format
    4: ("LOT-A4", "QQQ", Decimal("0.1000"), "L2"),  # mapped by the fix to a value too long: a new reason
    5: ("LOT-A5", "XYZ", Decimal("7.0000"), None),  # mapped by the fix, but line is required: a new reason
    6: ("LOT-A6", "DNT", Decimal("2.2000"), "L3"),
    7: ("LOT-A7", None, Decimal("1.2340"), "L1"),  # too many decimal places: the same reason after the fix
}
SUPERSEDED_ROWS = {8: ("LOT-A8", "XYZ", Decimal("1.0000"), "L1"), 9: ("LOT-A9", "XYZ", Decimal("2.0000"), "L1"),
                   10: ("LOT-A10", "XYZ", Decimal("3.0000"), "L1")}
MANY = {i: (f"LOT-{i}", "XYZ", Decimal(i), "L1") for i in range(20, 60)}
DATA = {**ROWS, **SUPERSEDED_ROWS, **MANY}
MISSING = "defect: code {!r} from defect_code is not in the column's map and it has no default"
TOO_FINE = "measured_mm: has more than 2 decimal places (decimal(8,2)) (source column measured, value '1.2340')"
TOO_LONG = "defect: 11 characters, the staging column holds at most 7 (source column defect_code, value 'QUALITYHOLD')"
NO_LINE = "line: required, but source column line is NULL"


def at(result_id: int, version: int = 0) -> dt.datetime:
    return T0 + dt.timedelta(minutes=result_id, seconds=version, microseconds=result_id * 1001 + version)


def version(result_id: int, v: int = 0) -> str:
    return f"{at(result_id, v).isoformat(timespec='microseconds')}|{result_id}"


def qc_table(schema: str | None) -> sa.Table:
    return sa.Table(
        "qc_result", sa.MetaData(), sa.Column("result_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("lot_no", sa.String(40), nullable=False), sa.Column("defect_code", sa.String(10)),
        sa.Column("measured", sa.Numeric(10, 4), nullable=False), sa.Column("line", sa.String(10)),
        sa.Column("modified_at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql"), nullable=False),
        sa.Index("ix_qc_modified", "modified_at", "result_id"), schema=schema,
    )


def flow(pair: Pair, code_map: dict[str, str], **extra) -> dict:
    return {
        "source": "mes", "target": "erp", "table": table_name(pair, "qc_result"), "watermark": ["modified_at", "result_id"],
        "key": ["result_id"], "staging_table": STAGING, "batch_size": 3, "overlap": "1h",
        "columns": {
            "result_no": "result_id",
            "lot": {"from": "lot_no", "type": "varchar(12)"},
            "defect": {"from": "defect_code", "map": code_map},
            "measured_mm": {"from": "measured", "type": "decimal(8,2)"},
            "line": {"from": "line", "required": True},
            "measured_at": "modified_at",
            "plant": {"const": "P01", "type": "varchar(4)"},
        },
        **extra,
    }


def write_mes(pair: Pair, rows: dict[int, tuple], v: int = 0) -> None:
    table = qc_table(pair.mes_schema)
    engine = sa.create_engine(pair.mes_url)
    with engine.begin() as conn:
        for result_id, (lot, code, measured, line) in rows.items():
            values = {"lot_no": lot, "defect_code": code, "measured": measured, "line": line,
                      "modified_at": at(result_id, v)}
            if conn.execute(sa.select(table.c.result_id).where(table.c.result_id == result_id)).first():
                conn.execute(table.update().where(table.c.result_id == result_id).values(**values))
            else:
                conn.execute(table.insert().values(result_id=result_id, **values))
    engine.dispose()


def add_audit_trigger(pair: Pair) -> None:
    """Every row inserted into the staging table is copied into stg_audit, which nothing deletes."""
    s = pair.staging_schema
    statements = [f"CREATE TABLE {s}.stg_audit (source_key varchar(256), source_version varchar(128))"]
    if pair.kind == "postgresql":
        statements += [
            f"CREATE FUNCTION {s}.audit_stg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"INSERT INTO {s}.stg_audit VALUES (NEW.stg_source_key, NEW.stg_source_version); RETURN NEW; END $$",
            f"CREATE TRIGGER audit_stg AFTER INSERT ON {s}.{STAGING} FOR EACH ROW EXECUTE FUNCTION {s}.audit_stg()",
        ]
    else:
        statements.append(f"CREATE TRIGGER {s}.audit_stg AFTER INSERT ON {s}.{STAGING} FOR EACH ROW "
                          f"INSERT INTO {s}.stg_audit VALUES (NEW.stg_source_key, NEW.stg_source_version)")
    execute(pair, *statements)


def execute(pair: Pair, *statements: str, **params) -> None:
    engine = staging_engine(pair)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement), params)
    engine.dispose()


def query(pair: Pair, sql: str, **params) -> list[tuple]:
    engine = staging_engine(pair)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql.format(s=pair.staging_schema)), params)]
    finally:
        engine.dispose()


def audited(pair: Pair) -> Counter:
    return Counter(query(pair, "SELECT source_key, source_version FROM {s}.stg_audit"))


def utc_text(value) -> str | None:
    """A control-table timestamp as `list`/`status` show it."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return f"{value:%Y-%m-%d %H:%M:%S}Z"


def quarantine_table(pair: Pair) -> list[tuple]:
    return query(pair, "SELECT quarantine_id, source_key, source_version, quarantined_at, reason, replayed_at, "
                       "replay_batch_id, replay_outcome FROM {s}.agent_quarantine ORDER BY quarantine_id")


def listed(pair: Pair) -> str:
    """What `quarantine list` must print, piped, from agent_quarantine as it is."""
    lines = ["flow\tsource key\tversion\tquarantined (UTC)\treplayed\treason"]
    for _qid, key, ver, quarantined_at, reason, replayed_at, _batch, outcome in quarantine_table(pair):
        replayed = f"{outcome} {utc_text(replayed_at)}" if replayed_at else "no"
        lines.append(f"{FLOW}\t{key}\t{ver}\t{utc_text(quarantined_at)}\t{replayed}\t{reason}")
    return "\n".join(lines) + "\n"


def watermark_row(pair: Pair) -> list[tuple]:
    return query(pair, "SELECT flow, watermark_values, revision, updated_at FROM {s}.agent_watermark")


def replay_runs(pair: Pair) -> list[tuple]:
    return query(pair, "SELECT batch_id, rows_read, rows_written, rows_duplicate, rows_quarantined, outcome, message "
                       "FROM {s}.agent_run WHERE message LIKE 'quarantine replay%' ORDER BY run_id")


def staged(pair: Pair) -> list[tuple]:
    rows = query(pair, "SELECT stg_batch_id, stg_source_key, stg_source_version, stg_status, result_no, lot, defect, "
                       "measured_mm, line, measured_at, plant FROM {s}." + STAGING + " ORDER BY stg_id")
    return [(*r[:7], Decimal(str(r[7])), *r[8:]) for r in rows]


def expected_staged(batch: str, result_id: int, defect: str, v: int = 0) -> tuple:
    lot, _code, measured, line = DATA[result_id]
    return (batch, str(result_id), version(result_id, v), "PENDING", result_id, lot, defect, measured.quantize(Decimal("0.01")),
            line, at(result_id, v), "P01")


def lines(result) -> list[str]:
    """Standard output, line by line (a last "" for the final newline)."""
    return result.stdout.split("\n")


def status_of(config: Path) -> dict:
    result = cli("status", "-c", str(config), "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)[0]


def quarantine_incident_open(config_path: Path, folder: Path) -> bool:
    """The running agent's periodic check (Monitor.check), with a real incident book and the live databases."""
    config = load_config(config_path)
    systems = Systems(config)
    try:
        book = IncidentBook(folder, [])
        Monitor(config, book, FlowHealth.for_config(config)).check({FLOW: pipeline.prepare(config, systems, FLOW)})
        return book.current(f"quarantine:{FLOW}") is not None
    finally:
        systems.dispose()


@pytest.fixture(params=["postgresql", "mysql"])
def plant(request, db_factory, tmp_path):
    """MES rows with 5 quarantined (codes XYZ and QQQ, a NULL line, a too fine measurement), staged by `run --once`."""
    kind = request.param
    pair = make_pair(db_factory, kind, suffix=f"_{kind}_{request.node.name[5:14]}")
    engine = sa.create_engine(pair.mes_url)
    qc_table(pair.mes_schema).metadata.create_all(engine)
    engine.dispose()
    return pair, tmp_path


def first_run(pair: Pair, folder: Path, rows: dict[int, tuple], **alerts) -> Path:
    write_mes(pair, rows)
    config = write_config(folder / "agent.yaml", pair, {FLOW: flow(pair, MAP)}, **alerts)
    prepare_erp(config)
    add_audit_trigger(pair)
    result = cli("run", "-c", str(config), "--once")
    assert result.exit_code == 0, result.output
    return config


# --- the issue's own steps ---------------------------------------------------------------------------
def test_replay_after_the_code_map_is_fixed_stages_each_row_exactly_once(plant):
    pair, folder = plant
    config = first_run(pair, folder, ROWS, alerts={"dir": str(folder / "alerts"), "quarantine": {"max_rows": 3}})
    assert [r[1] for r in staged(pair)] == ["1", "6"]
    before = quarantine_table(pair)
    assert [(r[1], r[2], r[4], r[5:]) for r in before] == [
        ("2", version(2), MISSING.format("XYZ"), (None, None, None)),
        ("3", version(3), MISSING.format("XYZ"), (None, None, None)),
        ("4", version(4), MISSING.format("QQQ"), (None, None, None)),
        ("5", version(5), MISSING.format("XYZ"), (None, None, None)),
        ("7", version(7), TOO_FINE, (None, None, None)),
    ]
    listing = cli("quarantine", "list", "-c", str(config))
    assert (listing.exit_code, listing.stdout) == (0, listed(pair))
    assert listing.stdout.splitlines()[1] == (
        f"{FLOW}\t2\t{version(2)}\t{utc_text(before[0][3])}\tno\t{MISSING.format('XYZ')}")
    assert status_of(config)["quarantine_rows"] == 5
    assert quarantine_incident_open(config, folder / "alerts")  # 5 rows > alerts.quarantine.max_rows = 3

    # Row 3's stored source row as a version before `$types` wrote it: read back by the source columns' types.
    (source_row,) = query(pair, "SELECT source_row FROM {s}.agent_quarantine WHERE source_key = '3'")[0]
    legacy = json.loads(source_row)
    assert legacy.pop("$types") == {"measured": "decimal", "modified_at": "datetime"}
    execute(pair, f"UPDATE {pair.staging_schema}.agent_quarantine SET source_row = :row WHERE source_key = '3'",
            row=json.dumps(legacy))
    watermark = watermark_row(pair)
    runs = len(query(pair, "SELECT run_id FROM {s}.agent_run"))

    write_config(config, pair, {FLOW: flow(pair, FIXED_MAP)},
                 alerts={"dir": str(folder / "alerts"), "quarantine": {"max_rows": 3}})  # the admin fixes the map
    dry = cli("quarantine", "replay", "-c", str(config), "--dry-run")
    assert dry.exit_code == 1, dry.output
    assert lines(dry) == [
        f"flow {FLOW} (dry run: nothing written): 5 quarantined rows not replayed yet",
        f"  would stage: key 2, version {version(2)}",
        f"  would stage: key 3, version {version(3)}",
        f"  still failing: key 4, version {version(4)}: {TOO_LONG}",
        f"  still failing: key 5, version {version(5)}: {NO_LINE}",
        f"  still failing: key 7, version {version(7)}: {TOO_FINE}",
        f"flow {FLOW} (dry run: nothing written): 2 would be staged, 0 superseded, 3 still failing",
        "",
    ]
    assert quarantine_table(pair) == before and audited(pair) == Counter({("1", version(1)): 1, ("6", version(6)): 1})

    replay = cli("quarantine", "replay", "-c", str(config))
    runs_after = replay_runs(pair)
    batches = [r[0] for r in runs_after]
    assert replay.exit_code == 1, replay.output  # 1: some rows still fail
    assert lines(replay) == [
        f"flow {FLOW}: 5 quarantined rows not replayed yet",
        f"  staged: key 2, version {version(2)}",
        f"  staged: key 3, version {version(3)}",
        f"  still failing: key 4, version {version(4)}: {TOO_LONG}",
        f"  still failing: key 5, version {version(5)}: {NO_LINE}",
        f"  still failing: key 7, version {version(7)}: {TOO_FINE}",
        f"flow {FLOW}: 2 staged, 0 superseded, 3 still failing; batches {batches[0]}, {batches[1]}",
        "",
    ]
    # Pages of batch_size 3: rows 2, 3, 4 (two staged, a new reason), then 5 and 7 (a new reason for 5).
    assert runs_after == [(batches[0], 3, 2, 0, 0, "ok", "quarantine replay: 2 staged, 0 superseded, 1 still failing"),
                          (batches[1], 2, 0, 0, 0, "ok", "quarantine replay: 0 staged, 0 superseded, 2 still failing")]
    assert staged(pair)[2:] == [expected_staged(batches[0], 2, "OTHER"), expected_staged(batches[0], 3, "OTHER")]
    assert audited(pair) == Counter({("1", version(1)): 1, ("6", version(6)): 1, ("2", version(2)): 1, ("3", version(3)): 1})
    assert set(query(pair, "SELECT source_key, source_version, batch_id FROM {s}.agent_ledger WHERE source_key IN ('2', '3')")) \
        == {("2", version(2), batches[0]), ("3", version(3), batches[0])}
    after = quarantine_table(pair)
    assert [(r[0], r[1], r[2], r[3], r[4], r[6], r[7]) for r in after] == [
        (*before[0][:4], MISSING.format("XYZ"), batches[0], "staged"),
        (*before[1][:4], MISSING.format("XYZ"), batches[0], "staged"),
        (*before[2][:4], TOO_LONG, None, None),
        (*before[3][:4], NO_LINE, None, None),
        (*before[4][:4], TOO_FINE, None, None),
    ]
    assert [r[5] is not None for r in after] == [True, True, False, False, False]
    assert watermark_row(pair) == watermark  # never moved
    listing = cli("quarantine", "list", "-c", str(config))
    assert (listing.exit_code, listing.stdout) == (0, listed(pair))
    assert listing.stdout.splitlines()[1] == (
        f"{FLOW}\t2\t{version(2)}\t{utc_text(before[0][3])}\tstaged {utc_text(after[0][5])}\t{MISSING.format('XYZ')}")
    assert json.loads(cli("quarantine", "list", "-c", str(config), "--json").stdout)[0] == {
        "flow": FLOW, "quarantine_id": before[0][0], "source_key": "2", "source_version": version(2),
        "quarantined_at": utc_text(before[0][3]), "reason": MISSING.format("XYZ"), "replayed_at": utc_text(after[0][5]),
        "replay_batch_id": batches[0], "replay_outcome": "staged", "replayed": True,
    }
    status = status_of(config)
    assert (status["quarantine_rows"], status["rows_quarantined"], status["rows_moved"]) == (3, 5, 4)
    assert not quarantine_incident_open(config, folder / "alerts")  # 3 rows left: within the limit, resolved

    # A second replay does nothing: no staging row, no agent_run row, no quarantine change.
    again = cli("quarantine", "replay", "-c", str(config))
    assert again.exit_code == 1, again.output
    assert lines(again) == [
        f"flow {FLOW}: 3 quarantined rows not replayed yet",
        f"  still failing: key 4, version {version(4)}: {TOO_LONG}",
        f"  still failing: key 5, version {version(5)}: {NO_LINE}",
        f"  still failing: key 7, version {version(7)}: {TOO_FINE}",
        f"flow {FLOW}: 0 staged, 0 superseded, 3 still failing",
        "",
    ]
    assert quarantine_table(pair) == after and len(query(pair, "SELECT run_id FROM {s}.agent_run")) == runs + 2
    assert len(staged(pair)) == 4 and watermark_row(pair) == watermark

    # The running agent's next poll re-reads the overlap window with the fixed map: nothing is staged again.
    assert cli("run", "-c", str(config), "--once").exit_code == 0
    assert len(staged(pair)) == 4 and sum(audited(pair).values()) == 4


def test_an_older_version_is_not_staged_after_a_newer_one(plant):
    pair, folder = plant
    config = first_run(pair, folder, SUPERSEDED_ROWS)
    # Row 8 is corrected in the MES (a new version, staged); row 9 changes and fails again (a second quarantined
    # version); row 10 stays as it is.
    write_mes(pair, {8: ("LOT-A8", "SCR", Decimal("1.0000"), "L1"), 9: ("LOT-A9", "XYZ", Decimal("2.0000"), "L1")}, v=1)
    assert cli("run", "-c", str(config), "--once").exit_code == 0
    assert [(r[1], r[2]) for r in staged(pair)] == [("8", version(8, 1))]
    write_config(config, pair, {FLOW: flow(pair, FIXED_MAP, batch_size=4)})  # one page: both versions of row 9

    replay = cli("quarantine", "replay", "-c", str(config))
    (batch,) = [r[0] for r in replay_runs(pair)]
    newer = "an older version staged after it would overwrite it in the ERP"
    assert replay.exit_code == 0, replay.output
    assert lines(replay) == [
        f"flow {FLOW}: 4 quarantined rows not replayed yet",
        f"  superseded: key 8, version {version(8)}: version {version(8, 1)} of this key is staged; {newer}",
        f"  staged: key 9, version {version(9)}",
        f"  staged: key 10, version {version(10)}",
        f"  staged: key 9, version {version(9, 1)}",
        f"flow {FLOW}: 3 staged, 1 superseded, 0 still failing; batches {batch}",
        "",
    ]
    # Both versions of row 9 are staged, the older first (a later stg_id for the newer); row 8's old one is not.
    rows = staged(pair)
    assert rows[0][1:3] == ("8", version(8, 1))
    assert sorted(rows[1:3]) == [expected_staged(batch, 10, "OTHER"), expected_staged(batch, 9, "OTHER")]
    assert rows[3] == expected_staged(batch, 9, "OTHER", v=1)
    assert audited(pair) == Counter({("8", version(8, 1)): 1, ("9", version(9)): 1, ("10", version(10)): 1,
                                     ("9", version(9, 1)): 1})
    assert [(r[1], r[2], r[6], r[7]) for r in quarantine_table(pair)] == [
        ("8", version(8), batch, "superseded"), ("9", version(9), batch, "staged"), ("10", version(10), batch, "staged"),
        ("9", version(9, 1), batch, "staged"),
    ]
    assert status_of(config)["quarantine_rows"] == 0
    again = cli("quarantine", "replay", "-c", str(config))
    assert (again.exit_code, again.stdout) == (0, f"flow {FLOW}: nothing to replay\n")
    listing = cli("quarantine", "list", "-c", str(config)).stdout
    assert listing == listed(pair) and [line.split("\t")[4].split()[0] for line in listing.splitlines()[1:]] == [
        "superseded", "staged", "staged", "staged"]


def test_replays_running_at_once_and_the_running_agent_stage_each_row_once(plant):
    pair, folder = plant
    rows = MANY
    config = first_run(pair, folder, rows)
    assert len(quarantine_table(pair)) == 40
    write_config(config, pair, {FLOW: flow(pair, FIXED_MAP, batch_size=4)})
    loaded = load_config(config)
    reports, failures = [], []

    def replay() -> None:
        systems = Systems(loaded)
        try:
            reports.append(quarantine.replay_flow(pipeline.prepare(loaded, systems, FLOW)))
        except Exception as exc:  # the assertion below shows it
            failures.append(exc)
        finally:
            systems.dispose()

    def run_agent() -> None:  # the running agent: the overlap window re-reads every row, with the fixed map
        systems = Systems(loaded)
        try:
            for _ in range(5):  # a batch that lost a race for a ledger entry fails; the next poll retries it
                if pipeline.run_once(loaded, systems, FLOW)[0].outcome == "ok":
                    return
            failures.append(AssertionError("the agent's run never succeeded"))
        finally:
            systems.dispose()

    threads = [threading.Thread(target=replay), threading.Thread(target=replay), threading.Thread(target=run_agent)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == [] and len(reports) == 2
    expected = {(str(i), version(i)) for i in rows}
    assert audited(pair) == Counter(dict.fromkeys(expected, 1))
    assert set(query(pair, "SELECT source_key, source_version FROM {s}.agent_ledger")) == expected
    assert {(r[1], r[7]) for r in quarantine_table(pair)} == {(str(i), "staged") for i in rows}
    assert all(r[5] is not None and r[6] is not None for r in quarantine_table(pair))
    assert status_of(config)["quarantine_rows"] == 0


def test_exit_codes_for_an_unknown_flow_and_a_database_that_is_down(plant):
    pair, folder = plant
    config = first_run(pair, folder, {2: ROWS[2]})
    for command in ("list", "replay"):
        result = cli("quarantine", command, "-c", str(config), "--flow", "nope")
        assert result.exit_code == 2, result.output
    down = make_url(pair.erp_url).set(port=9)  # nothing listens on the discard port
    down_pair = Pair(pair.kind, pair.mes_url, down.render_as_string(hide_password=False), pair.mes_schema,
                     pair.staging_schema, pair.attach)
    down_config = write_config(folder / "down.yaml", down_pair, {FLOW: flow(pair, FIXED_MAP)})
    for command in ("list", "replay"):
        result = cli("quarantine", command, "-c", str(down_config))
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith(f"flow {FLOW}: agent_quarantine on system erp ("), result.stderr
    assert [r[7] for r in quarantine_table(pair)] == [None]


def test_an_installation_from_before_replay_gets_the_columns_from_sql_ddl(plant):
    pair, folder = plant
    config = first_run(pair, folder, {2: ROWS[2]})
    table = f"{pair.staging_schema}.agent_quarantine"
    execute(pair, f"ALTER TABLE {table} DROP COLUMN replayed_at, DROP COLUMN replay_batch_id, DROP COLUMN replay_outcome")
    q = '"' if pair.kind == "postgresql" else "`"
    quoted = f"{q}{pair.staging_schema}{q}.{q}agent_quarantine{q}"
    timestamp = "timestamp(6) with time zone" if pair.kind == "postgresql" else "datetime(6)"
    alter = (f"ALTER TABLE {quoted}\n    ADD COLUMN replayed_at {timestamp} NULL,\n    ADD COLUMN replay_batch_id "
             "varchar(40) NULL,\n    ADD COLUMN replay_outcome varchar(16) NULL;")
    printed = cli("sql", "ddl", "-c", str(config), "--system", "erp")
    assert printed.exit_code == 0 and alter in printed.stdout.split("\n\n"), printed.stdout
    assert cli("sql", "ddl", "-c", str(config), "--system", "erp", "--apply").exit_code == 0
    assert [r[5:] for r in quarantine_table(pair)] == [(None, None, None)]
    again = cli("sql", "ddl", "-c", str(config), "--system", "erp")
    assert again.exit_code == 0 and "ALTER TABLE" not in again.stdout  # nothing left to upgrade
    offline = cli("sql", "ddl", "-c", str(config), "--system", "erp", "--dialect", "postgresql")
    assert ("-- Upgrade: if staging.agent_quarantine was made by a version before `quarantine replay` (it has no "
            "replayed_at column), run once:\n--   ALTER TABLE \"staging\".\"agent_quarantine\"\n"
            "--       ADD COLUMN replayed_at timestamp(6) with time zone NULL,\n") in offline.stdout.replace(
                pair.staging_schema, "staging")
    replay = cli("quarantine", "replay", "-c", str(write_config(config, pair, {FLOW: flow(pair, FIXED_MAP)})))
    assert replay.exit_code == 0, replay.output
    assert [r[7] for r in quarantine_table(pair)] == ["staged"]


# --- the stored source row reads back with its types ------------------------------------------------
def test_the_stored_source_row_round_trips_every_type_exactly():
    zone = dt.timezone(dt.timedelta(hours=-5, minutes=-30))
    values = ["text", 7, 2**70, 1.25, True, None, Decimal("12.3400"), Decimal("-0.000001"),
              dt.datetime(2026, 3, 2, 6, 0, 0, 123456), dt.datetime(2026, 10, 25, 2, 30, 0, 1, tzinfo=zone),
              dt.date(2026, 3, 2), dt.time(23, 59, 59, 999999), b"\x00\xff", uuid.UUID(int=5), dt.timedelta(days=-1, seconds=5)]
    columns = [f"c{i}" for i in range(len(values))]
    text = row_json.encode(columns, values)
    decoded = row_json.decode(text)
    assert list(decoded) == columns
    assert [(v, type(v)) for v in decoded.values()] == [(v, type(v)) for v in values]
    assert decoded["c9"].utcoffset() == zone.utcoffset(None)
    plain = json.loads(text)  # still the plain object a DBA reads, plus the types of what JSON has no type for
    assert (plain["c0"], plain["c6"], plain["c8"], plain["c12"]) == ("text", "12.3400", "2026-03-02T06:00:00.123456", "0x00FF")
    assert plain["$types"] == {"c6": "decimal", "c7": "decimal", "c8": "datetime", "c9": "datetime", "c10": "date",
                               "c11": "time", "c12": "bytes", "c13": "uuid", "c14": "interval"}

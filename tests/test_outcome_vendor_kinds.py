"""Two more shapes of a vendor import outcome, live on PostgreSQL, MariaDB and SQLite:
- WIP Mass Load (WIP_JOB_SCHEDULE_INTERFACE): `done: [4]`, so a status in no list counts as pending; the messages
  of a rejected row are rows of WIP_INTERFACE_ERRORS, joined by INTERFACE_ID; resubmit touches the interface
  table only. At prepare time a missing error table (or column of it) is a configuration error naming table and flow.
- SAP-IDoc-like text statuses (64 ready, 53 posted, 51 error) written in the configuration as YAML numbers: bound
  as the text the status column holds.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from agent.alerts.model import utc
from health_support import _allow_connections
from helpers import Pair, cli, make_pair, prepare_erp, staging_engine, table_name, write_config
from outcome_support import FLOW, Plant, completion_table, spelled, version

KINDS = ["postgresql", "mysql", "sqlite"]


def wip_tables(n: Callable[[str], str], schema: str) -> tuple[sa.Table, sa.Table]:
    metadata = sa.MetaData()
    interface = sa.Table(
        n("WIP_JOB_SCHEDULE_INTERFACE"), metadata, sa.Column(n("INTERFACE_ID"), sa.BigInteger),
        sa.Column(n("SOURCE_LINE_ID"), sa.BigInteger), sa.Column(n("SOURCE_CODE"), sa.String(30)),
        sa.Column(n("GROUP_ID"), sa.Integer), sa.Column(n("LOAD_TYPE"), sa.Integer), sa.Column(n("PROCESS_PHASE"), sa.Integer),
        sa.Column(n("PROCESS_STATUS"), sa.Integer), sa.Column(n("JOB_NAME"), sa.String(240)),
        sa.Column(n("START_QUANTITY"), sa.Numeric(18, 3)), schema=schema)
    errors = sa.Table(n("WIP_INTERFACE_ERRORS"), metadata, sa.Column(n("INTERFACE_ID"), sa.BigInteger),
                      sa.Column(n("ERROR_TYPE"), sa.Integer), sa.Column(n("ERROR"), sa.String(500)), schema=schema)
    return interface, errors


def wip_flow(pair: Pair, n: Callable[[str], str]) -> dict[str, Any]:
    """examples/oracle_ebs_wip_job.yaml's flow, on the test's tables."""
    return {
        "source": "mes", "target": "erp", "table": table_name(pair, "completion"), "watermark": ["updated_at", "completion_id"],
        "key": ["completion_id"], "staging_table": n("WIP_JOB_SCHEDULE_INTERFACE"), "layout": "vendor",
        "reference": n("SOURCE_LINE_ID"),
        "columns": {n("SOURCE_CODE"): {"const": "MES", "type": "varchar(30)"}, n("INTERFACE_ID"): {"from": "completion_id", "type": "int"},
                    n("GROUP_ID"): {"const": 1, "type": "int"}, n("LOAD_TYPE"): {"const": 3, "type": "int"},
                    n("PROCESS_PHASE"): {"const": 2, "type": "int"}, n("PROCESS_STATUS"): {"const": 1, "type": "int"},
                    n("JOB_NAME"): {"from": "work_order_id", "type": "varchar(240)"}, n("START_QUANTITY"): "qty_good"},
        "outcome": {"status_column": n("PROCESS_STATUS"), "pending": [1, 2], "error": [3], "done": [4],
                    "error_table": {"table": n("WIP_INTERFACE_ERRORS"), "link": n("INTERFACE_ID"), "text": [n("ERROR_TYPE"), n("ERROR")]},
                    "resubmit": {n("PROCESS_PHASE"): 2, n("PROCESS_STATUS"): 1}},
    }


def plant_with(db_factory, tmp_path, kind: str, suffix: str, tables: list[sa.Table], flow: Callable[[Pair], dict[str, Any]],
               n: Callable[[str], str]) -> Plant:
    pair = make_pair(db_factory, kind, suffix=f"_{suffix}_{kind[:2]}")
    mes = sa.create_engine(pair.mes_url)
    completion_table(pair.mes_schema).metadata.create_all(mes)
    mes.dispose()
    engine = staging_engine(pair)
    if kind == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE SCHEMA staging")
    for table in tables:
        table.to_metadata(sa.MetaData(), schema=pair.staging_schema).create(engine)
    engine.dispose()
    folder = tmp_path / "plant"
    folder.mkdir()
    write_config(folder / "agent.yaml", pair, {FLOW: flow(pair)}, alerts={"backlog": {"max_pending_age": "1h"}})
    prepare_erp(folder / "agent.yaml")
    return Plant(kind, pair, folder, True, n, tables[0].to_metadata(sa.MetaData(), schema=pair.staging_schema))


def erp(plant: Plant, *statements: Any) -> None:
    engine = plant.engine()
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(statement)
    engine.dispose()


@pytest.mark.parametrize("kind", KINDS)
def test_wip_messages_come_from_the_error_table_and_a_status_in_no_list_is_pending(db_factory, tmp_path, kind):
    n = spelled(kind)
    interface, errors = wip_tables(n, "staging")
    plant = plant_with(db_factory, tmp_path, kind, "wip", [interface, errors], lambda pair: wip_flow(pair, n), n)
    t, e = plant.staging, errors.to_metadata(sa.MetaData(), schema=plant.pair.staging_schema)
    table, config = plant.table, plant.config
    plant.commit([(i, f"ITEM-{i}", str(i), i) for i in range(1, 6)])
    plant.run_once()
    link = t.c[n("INTERFACE_ID")]
    erp(plant, t.update().where(link == 1).values({n("PROCESS_STATUS"): 4}),  # complete
        t.update().where(link == 2).values({n("PROCESS_STATUS"): 3}),  # rejected, two messages
        e.insert().values([{n("INTERFACE_ID"): 2, n("ERROR_TYPE"): 2, n("ERROR"): "Start quantity exceeds the job's quantity"},
                           {n("INTERFACE_ID"): 2, n("ERROR_TYPE"): 1, n("ERROR"): "Job 102 does not exist"}]),
        t.update().where(link == 3).values({n("PROCESS_STATUS"): 5}),  # a status in no list: pending
        t.delete().where(link == 4))  # loaded and deleted: done
    entry_2, staged_2 = plant.entry(2, 2)
    source = table_name(plant.pair, "completion")
    message = "1: Job 102 does not exist; 2: Start quantity exceeds the job's quantity"
    listed = cli("outcomes", "-c", str(config))
    assert (listed.exit_code, listed.output) == (0, f"""\
flow {FLOW}: 1 row in error in {table} on system erp ({n('PROCESS_STATUS')} 3); 2 pending, 2 done
  MES row {source} on system mes: completion_id = 2, version {version(2, 2)} (staged {utc(staged_2)[:-4]} UTC, \
{n('SOURCE_LINE_ID')} {entry_2})
    ERP message: {message}
""")
    watch = plant.monitor()
    try:
        assert watch.check(2) == [("opened", f"ERP import error on {table}: flow {FLOW}, key 2: {message}")]
        _entry, staged_1 = plant.entry(1, 1)
        watch.clock.now = (staged_1 + dt.timedelta(hours=2, seconds=30)).replace(microsecond=0)
        told = watch.check(2)
        assert told[1][1].startswith(f"ERP backlog on {table}: 2 rows pending ({n('PROCESS_STATUS')} not 4, 3) since ")
        status_name, reference = n("PROCESS_STATUS"), n("SOURCE_LINE_ID")
        assert watch.channel.messages[1].body.splitlines()[6:9] == [
            "  2. Look at the waiting rows:",
            f"       SELECT {reference}, {status_name} FROM {table}",
            f"       WHERE ({status_name} IS NULL OR {status_name} NOT IN (4, 3)) ORDER BY {reference};"]
    finally:
        watch.close()
    resubmitted = cli("outcomes", "-c", str(config), "--flow", FLOW, "--resubmit", "2")
    assert resubmitted.exit_code == 0, resubmitted.output
    assert resubmitted.output.splitlines()[0] == (f"flow {FLOW}: resubmitted 1 row in error in {table} on system erp: "
                                                  f"set {n('PROCESS_PHASE')} = 2, {n('PROCESS_STATUS')} = 1")
    assert plant.rows("INTERFACE_ID", "PROCESS_PHASE", "PROCESS_STATUS") == [(1, 2, 4), (2, 2, 1), (3, 2, 5), (5, 2, 1)]
    engine = plant.engine()
    with engine.connect() as conn:  # the ERP's own messages are the ERP's: resubmit changes the interface table only
        kept = conn.execute(sa.select(e.c[n("ERROR_TYPE")], e.c[n("ERROR")]).order_by(e.c[n("ERROR_TYPE")])).all()
    engine.dispose()
    assert [tuple(r) for r in kept] == [(1, "Job 102 does not exist"), (2, "Start quantity exceeds the job's quantity")]
    counts = json.loads(cli("status", "-c", str(config), "--json").output)[0]
    assert {k: counts[k] for k in ("pending_rows", "error_rows", "done_rows")} == {
        "pending_rows": 3, "error_rows": 0, "done_rows": 2}


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_prepare_refuses_a_missing_error_table_naming_table_and_flow(db_factory, tmp_path, kind):
    n = spelled(kind)
    interface, errors = wip_tables(n, "staging")
    plant = plant_with(db_factory, tmp_path, kind, "noet", [interface], lambda pair: wip_flow(pair, n), n)
    where = f"staging.{n('WIP_INTERFACE_ERRORS')} on system erp"
    refused = cli("run", "-c", str(plant.config), "--once")
    assert (refused.exit_code, refused.output) == (2, (
        f"{plant.config}: configuration does not match the databases; no data was moved:\n"
        f"flow {FLOW}: error table {where} (outcome.error_table) does not exist; the ERP keeps the messages of rejected "
        "rows there: name the table as the ERP has it (schema.table outside the staging schema), and grant the agent's "
        "login SELECT on it\n"))
    partial = sa.Table(errors.name, sa.MetaData(), sa.Column(n("INTERFACE_ID"), sa.BigInteger),
                       sa.Column(n("ERROR_TYPE"), sa.Integer), schema=plant.pair.staging_schema)
    engine = plant.engine()
    partial.create(engine)
    engine.dispose()
    refused = cli("run", "-c", str(plant.config), "--once")
    assert refused.exit_code == 2 and refused.output.splitlines()[1:] == [
        f"flow {FLOW}: column '{n('ERROR')}' (outcome.error_table.text) does not exist in error table {where}"]
    grants = cli("sql", "grants", "-c", str(plant.config), "--system", "erp", "--dialect", "postgresql",
                 "--login", "erp_agent")
    assert grants.output.splitlines()[-1] == f'GRANT SELECT ON TABLE "staging"."{n("WIP_INTERFACE_ERRORS")}" TO "erp_agent";'


def idoc_table(n: Callable[[str], str]) -> sa.Table:
    return sa.Table(n("IDOC_INBOUND"), sa.MetaData(), sa.Column(n("DOCREF"), sa.BigInteger),
                    sa.Column(n("STATUS"), sa.String(2), nullable=False), sa.Column(n("STATUS_TEXT"), sa.String(200)),
                    sa.Column(n("MATNR"), sa.String(40)), sa.Column(n("MENGE"), sa.Numeric(18, 3)), schema="staging")


def idoc_flow(pair: Pair, n: Callable[[str], str]) -> dict[str, Any]:
    return {
        "source": "mes", "target": "erp", "table": table_name(pair, "completion"), "watermark": ["updated_at", "completion_id"],
        "key": ["completion_id"], "staging_table": n("IDOC_INBOUND"), "layout": "vendor", "reference": n("DOCREF"),
        "columns": {n("STATUS"): {"const": "64", "type": "varchar(2)"}, n("MATNR"): "item_no", n("MENGE"): "qty_good"},
        "outcome": {"status_column": n("STATUS"), "pending": [64], "error": [51], "done": [53],
                    "error_text": [n("STATUS_TEXT")], "resubmit": {n("STATUS"): 64, n("STATUS_TEXT"): None}},
    }


@pytest.mark.parametrize("kind", KINDS)
def test_numeric_statuses_in_the_configuration_match_a_text_status_column(db_factory, tmp_path, kind):
    n = spelled(kind)
    plant = plant_with(db_factory, tmp_path, kind, "idoc", [idoc_table(n)], lambda pair: idoc_flow(pair, n), n)
    plant.commit([(1, "ITEM-1", "1", 1), (2, "ITEM-2", "2", 2), (3, "ITEM-3", "3", 3)])
    plant.run_once()
    t = plant.staging
    entry = {key: plant.entry(key, key)[0] for key in (1, 2, 3)}
    erp(plant, t.update().where(t.c[n("DOCREF")] == entry[1]).values({n("STATUS"): "53"}),
        t.update().where(t.c[n("DOCREF")] == entry[2]).values({n("STATUS"): "51", n("STATUS_TEXT"): "Material ITEM-2 not found"}))
    counts = json.loads(cli("status", "-c", str(plant.config), "--json").output)[0]
    assert {k: counts[k] for k in ("pending_rows", "error_rows", "done_rows")} == {
        "pending_rows": 1, "error_rows": 1, "done_rows": 1}
    listed = cli("outcomes", "-c", str(plant.config))
    assert listed.output.splitlines()[2] == "    ERP message: Material ITEM-2 not found"
    assert cli("outcomes", "-c", str(plant.config), "--flow", FLOW, "--resubmit", "2").exit_code == 0
    assert plant.rows("DOCREF", "STATUS", "STATUS_TEXT", "MATNR", "MENGE") == [
        (entry[1], "53", None, "ITEM-1", Decimal("1.000")), (entry[2], "64", None, "ITEM-2", Decimal("2.000")),
        (entry[3], "64", None, "ITEM-3", Decimal("3.000"))]


def rename_column(plant: Plant, table: sa.Table, old: str, new: str) -> None:
    """A vendor update renames a column (the same statement on PostgreSQL, MariaDB and SQLite)."""
    engine = plant.engine()
    with engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE {plant.pair.staging_schema}.{table.name} RENAME COLUMN {old} TO {new}")
    engine.dispose()


@pytest.mark.parametrize("kind", KINDS)
def test_an_outcome_query_the_erp_refuses_is_an_incident_not_silence(db_factory, tmp_path, kind):
    """A vendor update renames the message column of WIP_INTERFACE_ERRORS while a row is in error: the import job's
    rejections can no longer be read, and the check says so once (naming flow, tables, columns and the driver's
    error) instead of logging it at DEBUG and reporting nothing. When the column is back, it resolves, and the
    rejected row's incident opens. A renamed status column in the interface table (the counts' query) is the same.
    (A restarted agent refuses the flow at prepare time instead: a configuration that does not match the databases.)"""
    n = spelled(kind)
    interface, errors = wip_tables(n, "staging")
    plant = plant_with(db_factory, tmp_path, kind, "unread", [interface, errors], lambda pair: wip_flow(pair, n), n)
    t, e = plant.staging, errors.to_metadata(sa.MetaData(), schema=plant.pair.staging_schema)
    plant.commit([(i, f"ITEM-{i}", str(i), i) for i in (1, 2)])
    plant.run_once()
    erp(plant, t.update().where(t.c[n("INTERFACE_ID")] == 2).values({n("PROCESS_STATUS"): 3}),
        e.insert().values({n("INTERFACE_ID"): 2, n("ERROR_TYPE"): 1, n("ERROR"): "Job 102 does not exist"}))
    schema = plant.pair.staging_schema
    interface_name, errors_name = f"{schema}.{n('WIP_JOB_SCHEDULE_INTERFACE')}", f"{schema}.{n('WIP_INTERFACE_ERRORS')}"
    watch = plant.monitor()  # the running agent: its flow was prepared before the vendor update
    try:
        rename_column(plant, e, n("ERROR"), n("ERROR_MESSAGE"))
        told = watch.check(3)  # three checks, one incident
        assert len(told) == 1 and told[0][0] == "opened", told
        prefix = f"Import outcomes of flow {FLOW} unreadable on system erp: database error ("
        assert told[0][1].startswith(prefix), told
        body = watch.channel.messages[0].body.splitlines()
        error = body[2].strip()
        assert error.startswith("database error (") and n("ERROR") in error, body
        config = plant.config
        assert body[:2] + body[3:] == [
            f"IMPORT OUTCOMES UNREADABLE: {FLOW}",
            f"The agent cannot read what the import job made of the rows of flow {FLOW} in {interface_name} and "
            f"{errors_name} on system erp, since {utc(watch.clock.now)}:",
            "",
            "Until it can, rows the import job rejects raise no incident and the flow's backlog is not measured. The",
            "flow itself goes on staging rows: only the import outcome's queries fail.",
            "",
            "What to do:",
            f"  1. A vendor update or a DBA may have changed {interface_name} and {errors_name}: compare their columns "
            "with the flow's",
            f"     `outcome:` in {config} ({n('PROCESS_STATUS')}, {n('INTERFACE_ID')}, {n('WIP_INTERFACE_ERRORS')}."
            f"{n('INTERFACE_ID')}, {n('WIP_INTERFACE_ERRORS')}.{n('ERROR_TYPE')}, {n('WIP_INTERFACE_ERRORS')}.{n('ERROR')}), "
            "and the agent's grants with",
            f"       mes-erp-agent sql grants -c {config} --system erp",
            "  2. The same query, with its error, by hand:",
            f"       mes-erp-agent outcomes -c {config} --flow {FLOW}",
            "  3. Fix the table, the grants or the configuration (the running agent reloads a changed configuration by",
            "     itself). A message follows when the import outcome is read again.",
        ]
        rename_column(plant, e, n("ERROR_MESSAGE"), n("ERROR"))  # the ERP team puts it back
        assert watch.check()[1:] == [  # the rejection read at last, and then the check's verdict
            ("opened", f"ERP import error on {interface_name}: flow {FLOW}, key 2: 1: Job 102 does not exist"),
            ("resolved", f"Import outcomes of flow {FLOW} readable again"),
        ]
        rename_column(plant, t, n("PROCESS_STATUS"), n("PROCESS_STATE"))  # the counts' query is refused too
        told = watch.check(2)[3:]
        assert len(told) == 1 and told[0][0] == "opened" and told[0][1].startswith(prefix), told
        assert n("PROCESS_STATUS") in watch.channel.messages[3].body.splitlines()[2]
    finally:
        watch.close()


def test_an_erp_that_refuses_connections_is_no_outcome_incident(db_factory, tmp_path):
    """An outage is the flow's polls' to report (`flow_failing`): the check that cannot connect, or whose session the
    server ended, opens no `outcome_unreadable`."""
    n = spelled("postgresql")
    interface, errors = wip_tables(n, "staging")
    plant = plant_with(db_factory, tmp_path, "postgresql", "down", [interface, errors], lambda pair: wip_flow(pair, n), n)
    plant.commit([(1, "ITEM-1", "1", 1)])
    plant.run_once()
    watch = plant.monitor()
    try:
        assert watch.check() == []  # a session in the pool, then ended by the server, then refused
        database = sa.make_url(plant.pair.erp_url).database
        _allow_connections(database, False)
        try:
            assert watch.check(2) == []
        finally:
            _allow_connections(database, True)
        assert watch.check() == []
    finally:
        watch.close()

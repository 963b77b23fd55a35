"""Each system both a source and a target (PostgreSQL and MariaDB, live): each login gets exactly its two roles.

The plant of tests/two_way.py (MES -> ERP confirmations, ERP -> MES released orders into `mes_inbound`), plus a
core table `item` in each system that no flow reads. The DBA creates both staging schemas as administrator and
runs both `sql grants` scripts, one login per system; the agent then runs both flows under those logins with
`--strict-privileges`. Each script holds SELECT on exactly the source columns its system's flows read and
INSERT only on its own staging schema's tables; each login can write no core table, read no column it was not
granted, and only append to staging. And the source session of a system that is also a target is read-only:
the ERP login may update agent_watermark in its staging schema, yet the same statement through the session
the ERP -> MES flow reads with is refused.

Behaviour change: the scripts named their sections "MES reads" and "ERP staging writes" whatever the system
(wrong for an ERP that is a source, or an MES that is a target); they now say "Source reads" and "Staging
writes". The rest is new coverage of what the agent already did for a system in both roles.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from agent import privileges
from agent.config import load_config
from agent.connect import Systems, create_engine
from helpers import cli, drop_login, run_script
from two_way import RELEASED_ORDERS, WORK_ORDERS, Plant, Side, flows, make_plant, write_config

DENIED = {"postgresql": ("42501",), "mysql": (1142, 1143, 1044)}
READ_ONLY = {"postgresql": ("25006",), "mysql": (1792,)}


@dataclass(frozen=True)
class Setup:
    kind: str
    plant: Plant  # administrator URLs
    agent: Plant  # the same databases, each system as its own granted login
    logins: dict[str, str]
    agent_config: Path
    scripts: dict[str, str]
    first: object  # the first `run --once --strict-privileges` under the logins


def as_login(side: Side, kind: str, login: str, password: str) -> Side:
    url = make_url(side.url).set(username=login, password=password)
    if kind == "mysql":  # a schema is a database: the URL names the staging database, where the login writes
        url = url.set(database=side.staging)
    return replace(side, url=url.render_as_string(hide_password=False))


@pytest.fixture(scope="module", params=["postgresql", "mysql"])
def setup(request, db_factory, tmp_path_factory):
    kind = request.param
    folder = tmp_path_factory.mktemp(f"two_way_{kind}")
    plant = make_plant(db_factory, kind, folder, suffix=f"_{kind[:2]}")
    for side in (plant.mes, plant.erp):
        engine = sa.create_engine(side.url)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE TABLE {side.table('item')} (item_id int PRIMARY KEY, name varchar(20))")
            conn.exec_driver_sql(f"INSERT INTO {side.table('item')} VALUES (1, 'bolt')")
        engine.dispose()
    token = secrets.token_hex(3)
    logins = {"mes": f"mea_tw_mes_{token}", "erp": f"mea_tw_erp_{token}"}
    password = "Pw-" + secrets.token_hex(8)
    (folder / "admin").mkdir()
    (folder / "agent").mkdir()
    admin_config = write_config(folder / "admin" / "agent.yaml", plant, flows(plant, batch_size=7))
    scripts: dict[str, str] = {}
    try:
        for side in (plant.mes, plant.erp):
            result = cli("sql", "ddl", "-c", str(admin_config), "--system", side.name, "--apply")
            assert result.exit_code == 0, result.output
        for side in (plant.mes, plant.erp):
            result = cli("sql", "grants", "-c", str(admin_config), "--system", side.name, "--login", logins[side.name],
                         "--password-placeholder", password)
            assert result.exit_code == 0, result.output
            scripts[side.name] = result.output
            run_script(side.url, result.output)
        agent = replace(plant, mes=as_login(plant.mes, kind, logins["mes"], password),
                        erp=as_login(plant.erp, kind, logins["erp"], password))
        agent_config = write_config(folder / "agent" / "agent.yaml", agent, flows(plant, batch_size=7))
        snapshot = cli("snapshot", "-c", str(agent_config))  # as the agent's logins (MySQL shows them their columns)
        assert snapshot.exit_code == 0, snapshot.output
        first = cli("run", "-c", str(agent_config), "--once", "--strict-privileges")
        yield Setup(kind, plant, agent, logins, agent_config, scripts, first)
    finally:
        for side in (plant.mes, plant.erp):
            if side.name in scripts:
                drop_login(kind, logins[side.name], [side.url])


def refused(kind: str, url: str, statement: str, codes: dict) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError) as error:
            conn.execute(sa.text(statement))
            conn.commit()
    finally:
        engine.dispose()
    code = error.value.orig.sqlstate if kind == "postgresql" else error.value.orig.args[0]
    assert code in codes[kind], error.value.orig


def count(side: Side, table: str) -> int:
    return side.rows(f"SELECT COUNT(*) FROM {table}")[0][0]


def test_both_directions_move_every_row_under_the_granted_logins(setup):
    plant = setup.plant
    assert setup.first.exit_code == 0, setup.first.output
    assert count(plant.mes, f"{plant.mes.staging}.stg_released_order") == RELEASED_ORDERS
    assert count(plant.erp, f"{plant.erp.staging}.stg_work_order") == WORK_ORDERS
    again = cli("run", "-c", str(setup.agent_config), "--once", "--strict-privileges")
    assert again.exit_code == 0, again.output
    assert count(plant.mes, f"{plant.mes.staging}.stg_released_order") == RELEASED_ORDERS


def test_each_script_reads_exactly_the_source_columns_and_inserts_only_in_its_own_staging_schema(setup):
    kind, plant = setup.kind, setup.plant
    q = '"' if kind == "postgresql" else "`"

    def name(*parts: str) -> str:
        return ".".join(f"{q}{p}{q}" for p in parts)

    def columns(*names: str) -> str:
        return ", ".join(name(c) for c in names)

    expected = {}
    for side, source, read, staging_table, flow_in, flow_out in (
        (plant.mes, "work_order", ("modified_date", "work_order_id", "stocked_qty"), "stg_released_order",
         "work_order_confirmations", "released_orders"),
        (plant.erp, "production_order", ("modified_at", "order_no", "product_id", "order_qty", "scheduled_start",
                                         "due_date", "status"), "stg_work_order", "released_orders",
         "work_order_confirmations"),
    ):
        if kind == "postgresql":
            login, on, database = f'"{setup.logins[side.name]}"', "ON TABLE ", make_url(side.url).database
            head = [f'GRANT CONNECT ON DATABASE "{database}" TO {login};',
                    f"-- Source reads (flows: {flow_in})", f"GRANT USAGE ON SCHEMA {name(side.core)} TO {login};"]
            writes = [f'GRANT TEMPORARY ON DATABASE "{database}" TO {login};',
                      f"GRANT USAGE ON SCHEMA {name(side.staging)} TO {login};"]
        else:
            login, on = f"'{setup.logins[side.name]}'@'%'", "ON "
            head = [f"-- Source reads (flows: {flow_in})"]
            writes = [f"GRANT CREATE TEMPORARY TABLES ON {name(side.staging)}.* TO {login};"]
        expected[side.name] = [
            *head,
            f"GRANT SELECT ({columns(*read)}) {on}{name(side.core, source)} TO {login};",
            f"-- Staging writes (flows: {flow_out})",
            *writes,
            f"GRANT SELECT, INSERT {on}{name(side.staging, staging_table)} TO {login};",
            f"GRANT SELECT, INSERT, UPDATE {on}{name(side.staging, 'agent_watermark')} TO {login};",
            f"GRANT SELECT, INSERT {on}{name(side.staging, 'agent_run')} TO {login};",
            f"GRANT SELECT, INSERT {on}{name(side.staging, 'agent_quarantine')} TO {login};",
            "GRANT UPDATE (reason, replayed_at, replay_batch_id, replay_outcome) "
            f"{on}{name(side.staging, 'agent_quarantine')} TO {login};",
            f"GRANT SELECT, INSERT, DELETE {on}{name(side.staging, 'agent_ledger')} TO {login};",
            f"GRANT SELECT, INSERT, UPDATE, DELETE {on}{name(side.staging, 'agent_holder')} TO {login};",
        ]
    for system, script in setup.scripts.items():
        lines = [line for line in script.splitlines() if line.startswith("GRANT") or "(flows: " in line]
        assert lines == expected[system], system


def test_no_login_can_write_a_core_table_or_read_what_it_was_not_granted(setup):
    kind, agent, plant = setup.kind, setup.agent, setup.plant
    for side, table, unread in ((agent.mes, agent.mes.table("work_order"), "product_id"),
                                (agent.erp, agent.erp.table("production_order"), None)):
        refused(kind, side.url, f"INSERT INTO {table} SELECT * FROM {table}", DENIED)
        refused(kind, side.url, f"UPDATE {table} SET modified_{'date' if side.name == 'mes' else 'at'} = NULL", DENIED)
        refused(kind, side.url, f"DELETE FROM {table}", DENIED)
        refused(kind, side.url, f"SELECT name FROM {side.table('item')}", DENIED)  # a core table no flow reads
        refused(kind, side.url, f"INSERT INTO {side.table('item')} VALUES (2, 'nut')", DENIED)
        if unread:
            refused(kind, side.url, f"SELECT {unread} FROM {table}", DENIED)  # a column no flow reads
    assert count(plant.erp, plant.erp.table("production_order")) == RELEASED_ORDERS
    assert count(plant.mes, plant.mes.table("work_order")) == WORK_ORDERS
    assert count(plant.mes, plant.mes.table("item")) == count(plant.erp, plant.erp.table("item")) == 1


def test_each_login_only_appends_to_its_staging_schema(setup):
    kind, agent = setup.kind, setup.agent
    for side, table in ((agent.mes, "stg_released_order"), (agent.erp, "stg_work_order")):
        refused(kind, side.url, f"DELETE FROM {side.staging}.{table}", DENIED)
        refused(kind, side.url, f"UPDATE {side.staging}.{table} SET stg_status = 'DONE'", DENIED)
        refused(kind, side.url, f"UPDATE {side.staging}.agent_run SET outcome = 'x'", DENIED)
        refused(kind, side.url, f"CREATE TABLE {side.staging}.made_by_agent (id int)", DENIED)


def test_the_source_session_of_a_system_that_is_also_a_target_is_read_only(setup):
    kind, agent = setup.kind, setup.agent
    config = load_config(setup.agent_config)
    update = sa.text(f"UPDATE {agent.erp.staging}.agent_watermark SET revision = revision + 1 "
                     "WHERE flow = 'work_order_confirmations'")
    def revision() -> int:
        return setup.plant.erp.rows(f"SELECT revision FROM {agent.erp.staging}.agent_watermark "
                                    "WHERE flow = 'work_order_confirmations'")[0][0]

    before = revision()
    target = create_engine(config, "erp", "target")  # the login may do this: the grants allow it ...
    with target.connect() as conn:
        assert conn.execute(update).rowcount == 1
        conn.rollback()
    target.dispose()
    source = create_engine(config, "erp", "source")  # ... but not through the session the ERP -> MES flow reads with
    with source.connect() as conn, pytest.raises(sa.exc.DBAPIError) as error:
        conn.execute(update)
    source.dispose()
    code = error.value.orig.sqlstate if kind == "postgresql" else error.value.orig.args[0]
    assert code in READ_ONLY[kind], error.value.orig
    assert revision() == before


def test_the_privilege_check_finds_nothing_beyond_either_role(setup):
    config = load_config(setup.agent_config)
    systems = Systems(config)
    try:
        results = privileges.check(config, systems)
    finally:
        systems.dispose()
    assert [(r.system, r.writes, r.staging_schema, r.findings, r.error) for r in results] == [
        ("erp", True, setup.plant.erp.staging, (), None), ("mes", True, setup.plant.mes.staging, (), None)]

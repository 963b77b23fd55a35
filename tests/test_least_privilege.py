"""The login `sql grants` creates moves data and can do nothing else (PostgreSQL and MariaDB, live).

Per database kind: an MES with work orders and scrap reasons, an ERP with a core table (`item`), staging
created by the DBA (`sql ddl --apply` as administrator), the grants scripts run as administrator, then the
agent runs under the new login with `--strict-privileges`: a table flow and a custom-query flow move every
row, and the login can neither read nor write the core table, nor change MES data, nor delete or alter in
staging. The privilege check finds nothing for it and finds the administrator's rights.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from agent import privileges
from agent.exit_codes import ExitCode
from agent.config import load_config
from agent.connect import Systems
from agent.demo import adventureworks
from helpers import Pair, cli, drop_login, make_pair, run_script, table_name, work_order_flow, write_config

ROWS = 300
QUERY = """\
-- Work orders with the name of their scrap reason (a join the plant wrote).
SELECT wo.work_order_id, wo.modified_date, wo.stocked_qty, sr.name AS scrap_name
FROM {work_order} wo
LEFT JOIN {scrap_reason} sr ON sr.scrap_reason_id = wo.scrap_reason_id
WHERE wo.order_qty > 0
"""
# What each database answers when the agent's login touches what it was not granted.
DENIED = {"postgresql": "42501", "mysql": (1142, 1143, 1044)}


@dataclass(frozen=True)
class Setup:
    kind: str
    pair: Pair  # administrator URLs
    agent: Pair  # the same databases as the granted login
    login: str
    admin_config: object
    agent_config: object
    scripts: dict
    first: object  # the first `run --once --strict-privileges` under the login


def flows(pair: Pair) -> dict:
    return {
        "work_orders": work_order_flow(pair),
        "scrap_view": {
            "source": "mes", "target": "erp", "query": "sql/flows/work_orders.sql",
            "watermark": ["modified_date", "work_order_id"], "key": ["work_order_id"], "staging_table": "stg_scrap_view",
            "columns": {"order_no": "work_order_id", "qty": "stocked_qty", "scrap": "scrap_name"}, "batch_size": 70,
        },
    }


def as_login(url: str, login: str, password: str, database: str | None = None) -> str:
    parsed = make_url(url).set(username=login, password=password)
    return parsed.set(database=database).render_as_string(hide_password=False) if database else \
        parsed.render_as_string(hide_password=False)


@pytest.fixture(scope="module", params=["postgresql", "mysql"])
def setup(request, db_factory, tmp_path_factory):
    kind = request.param
    pair = make_pair(db_factory, kind, suffix=f"_{kind}")
    mes = sa.create_engine(pair.mes_url)
    adventureworks.create_and_load(mes, ["work_order", "scrap_reason"], schema=pair.mes_schema, limit=ROWS)
    mes.dispose()
    erp = sa.create_engine(pair.erp_url)
    with erp.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE item (item_id int PRIMARY KEY, name varchar(20))")
        conn.exec_driver_sql("INSERT INTO item VALUES (1, 'bolt')")
    erp.dispose()

    login = f"mea_lp_{kind[:2]}_{secrets.token_hex(3)}"
    password = "Pw-" + secrets.token_hex(8)
    admin_dir, agent_dir = tmp_path_factory.mktemp(f"admin_{kind}"), tmp_path_factory.mktemp(f"agent_{kind}")
    for folder in (admin_dir, agent_dir):
        (folder / "sql" / "flows").mkdir(parents=True)
        (folder / "sql" / "flows" / "work_orders.sql").write_text(QUERY.format(
            work_order=table_name(pair, "work_order"), scrap_reason=table_name(pair, "scrap_reason")))
    admin_config = write_config(admin_dir / "agent.yaml", pair, flows(pair))
    assert cli("sql", "ddl", "-c", str(admin_config), "--system", "erp", "--apply").exit_code == 0
    scripts = {}
    for system, url in (("mes", pair.mes_url), ("erp", pair.erp_url)):
        result = cli("sql", "grants", "-c", str(admin_config), "--system", system, "--login", login,
                     "--password-placeholder", password)
        assert result.exit_code == 0, result.output
        scripts[system] = result.output
        run_script(url, result.output)
    # On MySQL/MariaDB a schema is a database: the agent's ERP connection names the staging database, the
    # only one it holds rights in (the core database `erp` would refuse the connection).
    agent_pair = Pair(kind, as_login(pair.mes_url, login, password),
                      as_login(pair.erp_url, login, password, pair.staging_schema if kind == "mysql" else None),
                      pair.mes_schema, pair.staging_schema, pair.attach)
    agent_config = write_config(agent_dir / "agent.yaml", agent_pair, flows(pair))
    snapshot = cli("snapshot", "-c", str(agent_config))
    assert snapshot.exit_code == 0, snapshot.output
    first = cli("run", "-c", str(agent_config), "--once", "--strict-privileges")
    yield Setup(kind, pair, agent_pair, login, admin_config, agent_config, scripts, first)
    drop_login(kind, login, [pair.mes_url, pair.erp_url])


def denied(kind: str, url: str, statement: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError) as refused:
            conn.execute(sa.text(statement))
            conn.commit()
    finally:
        engine.dispose()
    if kind == "postgresql":
        assert refused.value.orig.sqlstate == DENIED["postgresql"], refused.value.orig
    else:
        assert refused.value.orig.args[0] in DENIED["mysql"], refused.value.orig


def count(url: str, table: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
    finally:
        engine.dispose()


def test_a_run_under_the_granted_login_moves_every_row(setup):
    pair, agent_config = setup.pair, setup.agent_config
    assert setup.first.exit_code == 0, setup.first.output
    assert count(pair.erp_url, f"{pair.staging_schema}.stg_work_order") == ROWS
    assert count(pair.erp_url, f"{pair.staging_schema}.stg_scrap_view") == ROWS
    second = cli("run", "-c", str(agent_config), "--once", "--strict-privileges")
    assert second.exit_code == 0, second.output
    assert count(pair.erp_url, f"{pair.staging_schema}.stg_work_order") == ROWS
    status = cli("status", "-c", str(agent_config), "--json")
    assert status.exit_code == 0 and '"rows_moved": 300' in status.output


def test_the_login_cannot_touch_an_erp_core_table(setup):
    kind, pair, agent_pair = setup.kind, setup.pair, setup.agent
    core = "item" if kind == "postgresql" else f"{make_url(pair.erp_url).database}.item"
    denied(kind, agent_pair.erp_url, f"SELECT name FROM {core}")
    denied(kind, agent_pair.erp_url, f"INSERT INTO {core} (item_id, name) VALUES (2, 'nut')")
    denied(kind, agent_pair.erp_url, f"UPDATE {core} SET name = 'x'")
    denied(kind, agent_pair.erp_url, f"DELETE FROM {core}")
    assert count(pair.erp_url, "item") == 1


def test_the_login_only_appends_to_staging(setup):
    kind, pair, agent_pair = setup.kind, setup.pair, setup.agent
    staging = f"{pair.staging_schema}.stg_work_order"
    denied(kind, agent_pair.erp_url, f"DELETE FROM {staging}")
    denied(kind, agent_pair.erp_url, f"UPDATE {staging} SET stg_status = 'DONE'")
    denied(kind, agent_pair.erp_url, f"UPDATE {pair.staging_schema}.agent_run SET outcome = 'x'")
    denied(kind, agent_pair.erp_url, f"CREATE TABLE {pair.staging_schema}.made_by_agent (id int)")
    denied(kind, agent_pair.erp_url, f"DROP TABLE {staging}")
    assert count(pair.erp_url, staging) == ROWS


def test_the_login_reads_only_the_granted_mes_columns_and_writes_nothing(setup):
    kind, pair, agent_pair = setup.kind, setup.pair, setup.agent
    work_order, scrap_reason = table_name(pair, "work_order"), table_name(pair, "scrap_reason")
    engine = sa.create_engine(agent_pair.mes_url)  # a plain session: only the grants stop it here
    with engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT COUNT(work_order_id) FROM {work_order}")).scalar_one() == ROWS
    engine.dispose()
    denied(kind, agent_pair.mes_url, f"SELECT modified_date FROM {scrap_reason}")  # a column no flow reads
    denied(kind, agent_pair.mes_url, f"UPDATE {work_order} SET order_qty = 0")
    denied(kind, agent_pair.mes_url, f"DELETE FROM {work_order}")
    denied(kind, agent_pair.mes_url, f"INSERT INTO {scrap_reason} (scrap_reason_id, name, modified_date) "
                                     "VALUES (99, 'x', '2026-01-01')")


def test_the_privilege_check_finds_nothing_for_the_login_and_flags_the_administrator(setup):
    kind, admin_config, agent_config = setup.kind, setup.admin_config, setup.agent_config
    config = load_config(agent_config)
    systems = Systems(config)
    try:
        results = privileges.check(config, systems)
    finally:
        systems.dispose()
    assert [(r.system, r.writes, r.findings, r.error) for r in results] == [("erp", True, (), None), ("mes", False, (), None)]

    config = load_config(admin_config)
    systems = Systems(config)
    try:
        results = privileges.check(config, systems)
    finally:
        systems.dispose()
    expected = ("superuser", "postgres") if kind == "postgresql" else ("global privilege", "DELETE")
    for result in results:
        assert (expected[0], expected[1]) in {(f.finding, f.object_name) for f in result.findings}
    refused = cli("run", "-c", str(admin_config), "--once", "--strict-privileges")
    assert refused.exit_code == ExitCode.PRIVILEGES == 4
    assert refused.output.startswith(f"{admin_config}: not starting (--strict-privileges): a login can do more than "
                                     "the agent's grants.\n")
    assert f"  - {expected[0]}: " in refused.output


def test_the_grants_hold_exactly_the_columns_the_flows_read(setup):
    kind, pair = setup.kind, setup.pair
    q = '"' if kind == "postgresql" else "`"
    login = f'"{setup.login}"' if kind == "postgresql" else f"'{setup.login}'@'%'"
    work_order, scrap_reason = (
        f"{q}{pair.mes_schema}{q}.{q}{t}{q}" for t in ("work_order", "scrap_reason")
    )
    columns = ["modified_date", "work_order_id", "product_id", "order_qty", "stocked_qty", "scrapped_qty",
               "scrap_reason_id", "start_date", "end_date", "due_date"]
    listed = ", ".join(f"{q}{c}{q}" for c in columns)
    on = "ON TABLE " if kind == "postgresql" else "ON "
    # The table flow's columns, then what the query adds (order_qty in its WHERE, the scrap reason's name and key).
    assert [line for line in setup.scripts["mes"].splitlines() if line.startswith("GRANT SELECT")] == [
        f"GRANT SELECT ({listed}) {on}{work_order} TO {login};",
        f"GRANT SELECT ({q}name{q}, {q}scrap_reason_id{q}) {on}{scrap_reason} TO {login};",
    ]
    assert not [line for line in setup.scripts["erp"].splitlines() if "item" in line]


def test_no_script_holds_a_real_password(setup):
    agent_pair, agent_config = setup.agent, setup.agent_config
    real = make_url(agent_pair.erp_url).password
    result = cli("sql", "grants", "-c", str(agent_config), "--system", "erp", "--password-placeholder", real)
    assert result.exit_code == 2
    assert real not in result.output
    assert "the password placeholder is the login's real password" in result.output
    result = cli("sql", "grants", "-c", str(agent_config), "--system", "erp")
    assert result.exit_code == 0 and real not in result.output and "CHANGE_ME" in result.output


def test_the_privilege_check_allows_update_only_on_the_quarantine_replay_columns(setup):
    kind, pair = setup.kind, setup.pair
    quarantine = f"{pair.staging_schema}.agent_quarantine"
    login = f'"{setup.login}"' if kind == "postgresql" else f"'{setup.login}'@'%'"
    q = '"' if kind == "postgresql" else "`"
    on = "ON TABLE " if kind == "postgresql" else "ON "
    assert (f"GRANT UPDATE (reason, replayed_at, replay_batch_id, replay_outcome) {on}{q}{pair.staging_schema}{q}."
            f"{q}agent_quarantine{q} TO {login};") in setup.scripts["erp"].splitlines()
    run_script(pair.erp_url, f"GRANT UPDATE (source_row) {on}{quarantine} TO {login}")
    try:
        config = load_config(setup.agent_config)
        systems = Systems(config)
        try:
            (erp,) = [r for r in privileges.check(config, systems) if r.system == "erp"]
        finally:
            systems.dispose()
    finally:
        run_script(pair.erp_url, f"REVOKE UPDATE (source_row) {on}{quarantine} FROM {login}")
    expected = (("may delete, truncate or update in the staging schema", quarantine) if kind == "postgresql"
                else ("column privilege", f"{quarantine}.source_row: UPDATE"))
    assert [(f.finding, f.object_name) for f in erp.findings] == [expected]

"""Outages survived, for real: while `mes-erp-agent run` runs two flows (one on PostgreSQL, one on MariaDB) at a
1 s cadence, each of the four databases refuses connections for 30 s in turn: the PostgreSQL ERP, the MariaDB
MES, the PostgreSQL MES (ALLOW_CONNECTIONS false and the agent's sessions terminated) and the MariaDB ERP (the
agent's login locked and its connections killed).

Each time: the other flow keeps polling (its new rows arrive during the outage), the affected flow resumes by
itself, staging holds every source (key, version) exactly once, /healthz is 503 during and 200 after, the log
says once that the flow is failing and once that it recovered, and each channel (webhook, e-mail) gets exactly
one failing and one recovery alert. A password that appears nowhere else never shows in any of it.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import make_url

import dbs
from agent.demo import adventureworks
from helpers import cli, make_pair
from service_support import Service, SmtpServer, WebhookServer, free_port, subject, wait_until

OUTAGE_SECONDS = 30
ROWS = 20
COLUMNS = {"order_no": "work_order_id", "qty_planned": "order_qty", "mes_modified_at": "modified_date"}


@dataclass
class Plant:
    folder: Path
    config: Path
    pg_mes: str
    pg_erp: str
    my_mes_admin: str  # root, for the test's own inserts and for locking the agent's login
    my_mes_db: str
    my_erp: str
    my_staging: str
    login: str
    password: str  # the MariaDB MES login's: it appears in the password file only
    erp_login: str
    erp_password: str  # the MariaDB ERP login's, likewise

    def insert(self, system: str, first_id: int, count: int) -> None:
        url, table = (self.pg_mes, "production.work_order") if system == "pg" else \
            (self.my_mes_admin, f"{self.my_mes_db}.work_order")
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            for n in range(first_id, first_id + count):
                conn.execute(sa.text(
                    f"INSERT INTO {table} (work_order_id, product_id, order_qty, stocked_qty, scrapped_qty, start_date, "
                    "end_date, due_date, scrap_reason_id, modified_date) VALUES (:id, 1, 5, 5, 0, :at, NULL, :at, NULL, :at)"
                ), {"id": n, "at": dt.datetime(2030, 1, 1) + dt.timedelta(seconds=n, microseconds=n)})
        engine.dispose()

    def source_versions(self, system: str) -> set[tuple[str, str]]:
        url, table = (self.pg_mes, "production.work_order") if system == "pg" else \
            (self.my_mes_admin, f"{self.my_mes_db}.work_order")
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT work_order_id, modified_date FROM {table}")).all()
        engine.dispose()
        return {(str(i), f"{at.isoformat(timespec='microseconds')}|{i}") for i, at in rows}

    def staged(self, system: str) -> list[tuple[str, str]]:
        url, table = (self.pg_erp, "staging.stg_work_order") if system == "pg" else \
            (self.my_erp, f"{self.my_staging}.stg_work_order")
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT stg_source_key, stg_source_version FROM {table}")).all()
        engine.dispose()
        return [tuple(r) for r in rows]


def admin(url: str, *statements: str) -> None:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    engine.dispose()


def pg_refuse(database: str, refuse: bool) -> None:
    if refuse:
        admin(dbs.pg_admin_url(), f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false',
              f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}' AND pid <> pg_backend_pid()")
    else:
        admin(dbs.pg_admin_url(), f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true')


def mysql_refuse(login: str, refuse: bool) -> None:
    if not refuse:
        admin(dbs.mysql_admin_url(), f"ALTER USER '{login}'@'%' ACCOUNT UNLOCK")
        return
    admin(dbs.mysql_admin_url(), f"ALTER USER '{login}'@'%' ACCOUNT LOCK")
    engine = sa.create_engine(dbs.mysql_admin_url(), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        ids = conn.execute(sa.text("SELECT id FROM information_schema.processlist WHERE user = :u"), {"u": login}).scalars()
        for session in list(ids):
            conn.exec_driver_sql(f"KILL CONNECTION {int(session)}")
    engine.dispose()


@pytest.fixture(scope="module")
def plant(db_factory, tmp_path_factory) -> Iterator[Plant]:
    folder = tmp_path_factory.mktemp("outages")
    pg, my = make_pair(db_factory, "postgresql", "_pg"), make_pair(db_factory, "mysql", "_my")
    for pair in (pg, my):
        engine = sa.create_engine(pair.mes_url)
        adventureworks.create_and_load(engine, ["work_order"], schema=pair.mes_schema, limit=ROWS)
        engine.dispose()
    login, password = f"mea_out_{secrets.token_hex(3)}", "Pw9" + secrets.token_hex(12)
    admin(dbs.mysql_admin_url(), f"CREATE USER '{login}'@'%' IDENTIFIED BY '{password}'",
          f"GRANT SELECT ON `{my.mes_schema}`.* TO '{login}'@'%'")
    (folder / "mes.password").write_text(password + "\n", encoding="utf-8")
    erp_login, erp_password = f"mea_oe_{secrets.token_hex(3)}", "Pw8" + secrets.token_hex(12)
    admin(dbs.mysql_admin_url(), f"CREATE USER '{erp_login}'@'%' IDENTIFIED BY '{erp_password}'",
          f"GRANT ALL ON `{make_url(my.erp_url).database}`.* TO '{erp_login}'@'%'",
          f"GRANT ALL ON `{my.staging_schema}`.* TO '{erp_login}'@'%'")
    (folder / "erp.password").write_text(erp_password + "\n", encoding="utf-8")
    made = Plant(folder, folder / "agent.yaml", pg.mes_url, pg.erp_url, my.mes_url, str(my.mes_schema), my.erp_url,
                 my.staging_schema, login, password, erp_login, erp_password)
    try:
        yield made
    finally:
        admin(dbs.mysql_admin_url(), f"DROP USER IF EXISTS '{login}'@'%'", f"DROP USER IF EXISTS '{erp_login}'@'%'")


def write_agent_config(plant: Plant, webhook: WebhookServer, smtp: SmtpServer, http_port: int) -> None:
    def flow(source: str, target: str, table: str) -> dict:
        return {"source": source, "target": target, "table": table, "watermark": ["modified_date", "work_order_id"],
                "key": ["work_order_id"], "staging_table": "stg_work_order", "columns": dict(COLUMNS),
                "schedule": {"every": "1s"}}

    my_mes = make_url(plant.my_mes_admin).set(username=plant.login).render_as_string(hide_password=False)
    my_erp = make_url(plant.my_erp).set(username=plant.erp_login).render_as_string(hide_password=False)
    document = {
        "systems": {
            "pg_mes": {"url": plant.pg_mes},
            "pg_erp": {"url": plant.pg_erp, "staging_schema": "staging"},
            "my_mes": {"url": my_mes, "password_file": "mes.password"},
            "my_erp": {"url": my_erp, "password_file": "erp.password", "staging_schema": plant.my_staging},
        },
        "flows": {"pg_orders": flow("pg_mes", "pg_erp", "production.work_order"),
                  "my_orders": flow("my_mes", "my_erp", f"{plant.my_mes_db}.work_order")},
        "alerts": {"webhook": {"url": webhook.url()},
                   "email": {"host": "127.0.0.1", "port": smtp.port, "starttls": False, "from": "agent@plant.local",
                             "to": ["it@plant.local"]},
                   "failing_for": "5s", "check_every": "1s", "retry": {"first_wait": "100ms", "max_wait": "500ms"}},
        "retry": {"first_wait": "500ms", "max_wait": "3s"},
        "http": {"bind": f"127.0.0.1:{http_port}"},
    }
    plant.config.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    for system in ("pg_erp", "my_erp"):
        result = cli("sql", "ddl", "-c", str(plant.config), "--system", system, "--apply")
        assert result.exit_code == 0, result.output
    result = cli("snapshot", "-c", str(plant.config), "--accept", "--yes")
    assert result.exit_code == 0, result.output


def flow_state(service: Service, flow: str) -> str:
    return next(f["state"] for f in service.healthz_body()["flows"] if f["flow"] == flow)


def outage(plant: Plant, service: Service, down: str, refuse, other: str, next_id: int, mes_down: bool,
           writable_during: bool = True) -> dict:
    """One 30 s outage of the system of flow `down`; rows go into both sources meanwhile (into the down flow's
    source once it is back, when the outage refuses the test's own connections too). Returns what was seen."""
    seen: dict = {}
    started = time.monotonic()
    refuse(True)
    try:
        if writable_during:
            plant.insert(down[:2], next_id, 5)
        plant.insert(other[:2], next_id, 5)
        wait_until(lambda: service.healthz() == 503, 15, f"/healthz 503 while {down} fails")
        seen["other_rows_during"] = wait_until(lambda: len(plant.staged(other[:2])) == ROWS + next_id // 1000 * 5, 15,
                                               f"{other}'s new rows arriving during the outage")
        seen["state_during"] = flow_state(service, down)
        seen["status_during"] = cli("status", "-c", str(plant.config), "--json").output
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - started)))
        if mes_down:  # the ERP is readable in an MES outage: nothing of this outage's rows yet
            assert len(plant.staged(down[:2])) == ROWS + (next_id // 1000 - 1) * 5
        seen["restored_at"] = time.monotonic()
    finally:
        refuse(False)
    if not writable_during:
        plant.insert(down[:2], next_id, 5)
    seen["resumed"] = wait_until(lambda: len(plant.staged(down[:2])) == ROWS + next_id // 1000 * 5, 20,
                                 f"{down} resuming by itself")
    wait_until(lambda: service.healthz() == 200, 15, "/healthz 200 after the recovery")
    return seen


def test_the_erp_and_then_the_mes_refuse_connections_for_30s_and_the_flows_resume_by_themselves(plant):
    webhook, smtp = WebhookServer().start(), SmtpServer(free_port()).start()
    service = Service(plant.config, free_port())
    try:
        write_agent_config(plant, webhook, smtp, service.http_port)
        service.start()
        wait_until(lambda: len(plant.staged("pg")) == ROWS and len(plant.staged("my")) == ROWS, 60, "the initial rows")
        wait_until(lambda: service.healthz() == 200, 15, "/healthz 200 once both flows caught up")

        erp = outage(plant, service, "pg_orders", lambda r: pg_refuse(make_url(plant.pg_erp).database, r), "my_orders",
                     1000, mes_down=False)
        wait_until(lambda: len(webhook.posts) == 2 and len(smtp.mails) == 2, 20, "the ERP outage's two alerts")
        mes = outage(plant, service, "my_orders", lambda r: mysql_refuse(plant.login, r), "pg_orders", 2000,
                     mes_down=True)
        wait_until(lambda: len(webhook.posts) == 4 and len(smtp.mails) == 4, 20, "the MES outage's two alerts")
        pg_mes = outage(plant, service, "pg_orders", lambda r: pg_refuse(make_url(plant.pg_mes).database, r),
                        "my_orders", 3000, mes_down=True, writable_during=False)
        wait_until(lambda: len(webhook.posts) == 6 and len(smtp.mails) == 6, 20, "the PostgreSQL MES outage's alerts")
        my_erp = outage(plant, service, "my_orders", lambda r: mysql_refuse(plant.erp_login, r), "pg_orders", 4000,
                        mes_down=False)
        wait_until(lambda: len(webhook.posts) == 8 and len(smtp.mails) == 8, 20, "the MariaDB ERP outage's alerts")
        metrics = service.metrics()
        status_running = cli("status", "-c", str(plant.config), "--json").output
    finally:
        code = service.stop() if service.process else None
        webhook.stop()
        smtp.stop()
    assert code == 0, service.log[-3000:]

    for seen in (erp, mes, pg_mes, my_erp):
        assert seen["state_during"] == "failing"
        assert seen["other_rows_during"] < seen["restored_at"]  # the other flow kept polling during the outage
    erp_status = {s["flow"]: s for s in json.loads(erp["status_during"])}
    assert erp_status["pg_orders"]["error"].startswith("connection failed: ")  # the ERP figures cannot be read
    assert erp_status["pg_orders"]["state"] == "failing" and erp_status["pg_orders"]["agent_running"] is True
    assert erp_status["pg_orders"]["failing_since"] is not None
    assert erp_status["my_orders"]["state"] == "ok" and erp_status["my_orders"]["rows_moved"] == ROWS + 5

    for system in ("pg", "my"):  # every source (key, version) exactly once
        staged = plant.staged(system)
        assert len(staged) == len(set(staged)) == ROWS + 20
        assert set(staged) == plant.source_versions(system)

    titles = [b["title"] for b in webhook.bodies()]
    pg_erp, my_mes = "system pg_erp", "system my_mes"
    assert [t.split(":")[0] for t in titles] == [
        f"Flow pg_orders failing on {pg_erp}", "Flow pg_orders recovered",
        f"Flow my_orders failing on {my_mes}", "Flow my_orders recovered",
        "Flow pg_orders failing on system pg_mes", "Flow pg_orders recovered",
        "Flow my_orders failing on system my_erp", "Flow my_orders recovered",
    ]
    assert [subject(m) for m in smtp.mails] == titles
    database = make_url(plant.pg_erp).database
    error = (f'database error (OperationalError): connection failed: connection to server at "127.0.0.1", port 5432 '
             f'failed: FATAL:  database "{database}" is not currently accepting connections')
    assert titles[0] == f"Flow pg_orders failing on {pg_erp}: {error[:119]}…"  # a subject line; the body has it all
    assert f"Last error, on {pg_erp}: {error}\n" in smtp.mails[0].get_content().replace("\r\n", "\n")
    assert titles[2] == "Flow my_orders failing on system my_mes: database error (OperationalError): (4151, 'Access denied, " \
                        "this account is locked')"
    body = smtp.mails[0].get_content().replace("\r\n", "\n")
    assert body.startswith("FLOW FAILING: pg_orders\nFlow pg_orders (production.work_order) has failed every poll since ")
    assert "What to do:\n" in body

    log = service.log.splitlines()
    for flow, systems in (("pg_orders", ("pg_erp", "pg_mes")), ("my_orders", ("my_mes", "my_erp"))):
        failing = [line for line in log if f"flow {flow} is failing" in line]  # once per outage, not per retry
        recovered = [line for line in log if f"flow {flow} recovered after" in line]
        assert len(failing) == 2 and all(" ERROR " in line for line in failing), failing
        assert [f"on system {s}: database error" in line for s, line in zip(systems, failing)] == [True, True], failing
        assert len(recovered) == 2 and all(" INFO " in line for line in recovered), recovered
    # A poll that waits on a reconnect can outlast these flows' 1 s cadence: its next times are skipped, and said so
    # once (the agent's line; APScheduler's own is dropped), as is a periodic check that outlasts its interval. Any other
    # warning is a finding.
    skipped = ("its scheduled polls are skipped until it ends", "this run was skipped", "was missed by")
    assert not [line for line in log if " WARNING " in line and "PRIVILEGES" not in line and line.startswith("20")
                and not any(text in line for text in skipped)], log

    status_stopped = cli("status", "-c", str(plant.config))
    assert "The agent is not running (last seen " in status_stopped.output
    everything = [service.log, metrics, status_running, status_stopped.output, erp["status_during"], mes["status_during"],
                  json.dumps(webhook.bodies()), *(m.as_string() for m in smtp.mails),
                  *(p.read_text() for p in (plant.folder / "alerts").iterdir())]
    assert [i for i, text in enumerate(everything) if plant.password in text or plant.erp_password in text] == []

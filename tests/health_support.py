"""Real flows for the monitoring tests: an MES with work orders, a prepared ERP, a FlowJob fed into FlowHealth,
and the ways a flow goes wrong for real (its source database refuses connections, its table drifts)."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

import dbs
from agent import pipeline
from agent.config import LoadedConfig, load_config
from agent.connect import Systems
from agent.demo import adventureworks
from agent.drift.gate import DriftGate
from agent.health import FlowHealth
from agent.report import BatchReport, FlowReport
from agent.schedule import FlowJob
from helpers import Pair, cli, drop_login, make_pair, prepare_erp, run_script, table_name, work_order_flow, write_config

FLOW = "work_orders"
ROWS = 120
BATCH = 50
T0 = dt.datetime(2026, 3, 1, 6, 0, tzinfo=dt.timezone.utc)


class Clock:
    """FlowHealth's clock, moved by the test: exact `failing_since` and `last_success_at`."""

    def __init__(self, now: dt.datetime = T0):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> dt.datetime:
        self.now += dt.timedelta(seconds=seconds)
        return self.now


@dataclass
class Agent:
    """One flow run as the scheduler runs it (FlowJob: drift gate, then the pipeline), feeding FlowHealth."""

    pair: Pair
    config: LoadedConfig
    systems: Systems
    gate: DriftGate
    job: FlowJob
    health: FlowHealth
    clock: Clock
    states_after_batches: list[str] = field(default_factory=list)

    def poll(self) -> FlowReport:
        if self.job.context is None:
            self.job.prepare()
        assert self.job.context is not None
        report = pipeline.run_flow(self.job.context, self.gate, on_batch=self._batch_done)
        self.health.record(report)
        return report

    def _batch_done(self, batch: BatchReport) -> None:
        self.health.batch_done(batch)
        self.states_after_batches.append(self.flow_health()["state"])

    def flow_health(self) -> dict[str, Any]:
        return next(f for f in self.health.snapshot() if f["flow"] == FLOW)

    def mes(self, sql: str, **params: Any) -> None:
        engine = sa.create_engine(self.pair.mes_url)
        with engine.begin() as conn:
            conn.execute(sa.text(sql), params)
        engine.dispose()

    def close(self) -> None:
        self.gate.close()
        self.systems.dispose()


def new_pair(db_factory, kind: str, suffix: str, rows: int = ROWS) -> Pair:
    pair = make_pair(db_factory, kind, suffix=f"_{suffix}")
    mes = sa.create_engine(pair.mes_url)
    adventureworks.create_and_load(mes, ["work_order"], schema=pair.mes_schema, limit=rows)
    mes.dispose()
    return pair


def flow_config(pair: Pair, **overrides: Any) -> dict[str, Any]:
    # scrap_reason without a default: work orders with another scrap reason than 1 or 2 are quarantined.
    columns = {"order_no": "work_order_id", "qty_good": {"from": "stocked_qty", "type": "decimal(18,3)"},
               "scrap_reason": {"from": "scrap_reason_id", "map": {"1": "BRKN", "2": "DRILL"}},
               "mes_modified_at": "modified_date"}
    return work_order_flow(pair, columns=columns, batch_size=BATCH, **overrides)


def new_agent(pair: Pair, folder: Path, **extra: Any) -> Agent:
    """Configuration in `folder`, staging tables and schema snapshots made as before go-live."""
    folder.mkdir(parents=True, exist_ok=True)
    path = write_config(folder / "agent.yaml", pair, {FLOW: flow_config(pair)}, **extra)
    prepare_erp(path)
    return agent_for(path, pair)


def agent_for(path: Path, admin_pair: Pair) -> Agent:
    """The agent of configuration `path`; `admin_pair` is how the test itself changes the MES."""
    config = load_config(path)
    clock = Clock()
    systems = Systems(config)
    gate = DriftGate(config, systems)
    health = FlowHealth.for_config(config, clock=clock)
    return Agent(admin_pair, config, systems, gate, FlowJob(config, systems, FLOW, gate), health, clock)


def quarantined_in_source(pair: Pair) -> int:
    """Work orders the flow's code map rejects (a scrap reason other than 1 and 2), counted in the MES."""
    engine = sa.create_engine(pair.mes_url)
    with engine.connect() as conn:
        count = conn.execute(sa.text(f"SELECT COUNT(*) FROM {table_name(pair, 'work_order')} "
                                     "WHERE scrap_reason_id IS NOT NULL AND scrap_reason_id NOT IN (1, 2)")).scalar()
    engine.dispose()
    return int(count)


def newest_source_change(pair: Pair) -> dt.datetime:
    engine = sa.create_engine(pair.mes_url)
    with engine.connect() as conn:
        value = conn.execute(sa.text(f"SELECT MAX(modified_date) FROM {table_name(pair, 'work_order')}")).scalar()
    engine.dispose()
    return dt.datetime.fromisoformat(value) if isinstance(value, str) else value


# --- a source database that refuses connections, for real ------------------------------------------------
@contextmanager
def source_down(agent: Agent) -> Iterator[str]:
    """The MES refuses connections (PostgreSQL: ALLOW_CONNECTIONS false and its sessions ended; SQLite: the
    file is gone and the agent's open handles closed). Yields the first line of the error the flow reports."""
    pair = agent.pair
    if pair.kind == "postgresql":
        database = make_url(pair.mes_url).database
        _allow_connections(database, False)
        try:
            yield (f'database error (OperationalError): connection failed: connection to server at "127.0.0.1", port '
                   f'5432 failed: FATAL:  database "{database}" is not currently accepting connections')
        finally:
            _allow_connections(database, True)
    else:
        file = Path(make_url(pair.mes_url).database)
        moved = file.with_name(file.name + ".away")
        file.rename(moved)
        # An open SQLite handle keeps reading a renamed file: end the agent's sessions, as the server does above.
        agent.systems.source("mes").dispose()
        for engine in agent.gate._engines.values():
            engine.dispose()
        try:
            yield "database error (OperationalError): unable to open database file"
        finally:
            moved.rename(file)


def _allow_connections(database: str, allow: bool) -> None:
    admin = sa.create_engine(dbs.pg_admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS {str(allow).lower()}')
        if not allow:
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": database})
    admin.dispose()


# --- the agent's own PostgreSQL login, with a password ---------------------------------------------------
@dataclass(frozen=True)
class Login:
    name: str
    password: str
    pair: Pair  # the agent's URLs: the login, no password in them (it is in password_file)


@contextmanager
def agent_login(pair: Pair, admin_folder: Path) -> Iterator[Login]:
    """A least-privilege login made by running `sql grants` as the DBA does, with a password."""
    login, password = f"mea_health_{secrets.token_hex(3)}", "Pw-" + secrets.token_hex(12)
    admin_folder.mkdir(parents=True, exist_ok=True)
    admin = write_config(admin_folder / "agent.yaml", pair, {FLOW: flow_config(pair)})
    result = cli("sql", "ddl", "-c", str(admin), "--system", "erp", "--apply")
    assert result.exit_code == 0, result.output
    try:
        for system, url in (("mes", pair.mes_url), ("erp", pair.erp_url)):
            script = cli("sql", "grants", "-c", str(admin), "--system", system, "--login", login,
                         "--password-placeholder", password)
            assert script.exit_code == 0, script.output
            run_script(url, script.output)
        as_login = {k: make_url(getattr(pair, k)).set(username=login).render_as_string(hide_password=False)
                    for k in ("mes_url", "erp_url")}
        yield Login(login, password, Pair(pair.kind, as_login["mes_url"], as_login["erp_url"], pair.mes_schema,
                                          pair.staging_schema, pair.attach))
    finally:
        drop_login("postgresql", login, [pair.mes_url, pair.erp_url])


def password_config(login: Login, folder: Path, **extra: Any) -> Path:
    """The agent's configuration: URLs without the password, which is in password_file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "db.password").write_text(login.password + "\n", encoding="utf-8")
    path = write_config(folder / "agent.yaml", login.pair, {FLOW: flow_config(login.pair)}, **extra)
    document = path.read_text(encoding="utf-8")
    assert login.password not in document
    import yaml

    data = yaml.safe_load(document)
    for system in data["systems"].values():
        system["password_file"] = "db.password"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path

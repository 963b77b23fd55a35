"""Shared by the fault-injection suite (tests/faults/): an MES work-order table with microsecond timestamps, the
agent configured against a fresh ERP, an audit trigger that proves no (key, version) is staged twice, MES writer
threads that remember every version they committed, the agent as a real process, and the checks every scenario
ends with: exact set equality of source and staging, never counts alone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from sqlalchemy.engine import make_url

from agent import pipeline
from agent.config import load_config
from agent.connect import Systems
from agent.report import FlowReport
from helpers import Pair, cli, prepare_erp, staging_engine, table_name

KINDS = ["postgresql", "mysql"]
COLUMNS = {"order_no": "wo_id", "qty": "qty", "mes_updated_at": "updated_at"}
NAIVE = {"postgresql": "timestamp(6)", "mysql": "datetime(6)"}  # the usual MES column: local or UTC wall-clock time
Version = tuple[str, str]  # (stg_source_key, stg_source_version)


@dataclass
class Plant:
    """One scenario: its MES table `wo_<name>` (wo_id, qty, updated_at, the keyset index), its flow `<name>` into
    staging table `stg_<name>`, with the agent configured by `configure`."""

    pair: Pair
    folder: Path
    name: str
    settings: dict[str, Any] = field(default_factory=dict)  # this flow's own configuration keys (see configure)
    config: Path = Path()

    @property
    def kind(self) -> str:
        return self.pair.kind

    @property
    def table(self) -> str:
        return table_name(self.pair, f"wo_{self.name}")

    @property
    def staging(self) -> str:
        return f"{self.pair.staging_schema}.stg_{self.name}"

    def control(self, table: str) -> str:
        return f"{self.pair.staging_schema}.{table}"

    def mes(self) -> sa.Engine:
        return sa.create_engine(self.pair.mes_url)

    def erp_database(self) -> str:
        database = make_url(self.pair.erp_url).database
        assert database
        return database


class Sites:
    """Per test module: one ERP per database kind (MariaDB: with its staging database) and MES databases, shared
    by the module's scenarios (each has its own tables and flow), so that a scenario costs tables, not databases."""

    def __init__(self, db_factory: Any):
        self.db_factory = db_factory
        self.erps: dict[str, tuple[str, str]] = {}
        self.mes_databases: dict[tuple[str, str | None], tuple[str, str | None]] = {}

    def _erp(self, kind: str) -> tuple[str, str]:
        if kind not in self.erps:
            url = self.db_factory(kind, f"erp_{kind[:2]}")
            if kind == "mysql":
                staging = make_url(self.db_factory(kind, f"stg_{kind[:2]}")).database
                assert staging
                self.erps[kind] = (url, staging)
            else:
                admin(url, "CREATE SCHEMA staging")  # `sql ddl` would too; made here so that tests can look early
                self.erps[kind] = (url, "staging")
        return self.erps[kind]

    def _mes(self, kind: str, time_zone: str | None) -> tuple[str, str | None]:
        """PostgreSQL: a database per MES time zone (its TimeZone setting). MariaDB: one database; a time zone is each
        session's time_zone, set by the connection's init_command, as the server's default_time_zone would."""
        key = (kind, time_zone if kind == "postgresql" else None)
        if key not in self.mes_databases:
            url = self.db_factory(kind, f"mes{len(self.mes_databases)}_{kind[:2]}")
            if kind == "postgresql":
                admin(url, "CREATE SCHEMA production")
                if time_zone:
                    admin(url, f"ALTER DATABASE \"{make_url(url).database}\" SET timezone = '{time_zone}'")
                self.mes_databases[key] = (url, "production")
            else:
                self.mes_databases[key] = (url, make_url(url).database)
        url, schema = self.mes_databases[key]
        if time_zone and kind == "mysql":
            url = make_url(url).update_query_dict({"init_command": f"SET time_zone = '{time_zone}'"}).render_as_string(
                hide_password=False)
        return url, schema

    def plant(self, kind: str, name: str, folder: Path, column_type: str | None = None,
              mes_time_zone: str | None = None, extra_column: str | None = None, **settings: Any) -> Plant:
        erp_url, staging_schema = self._erp(kind)
        mes_url, mes_schema = self._mes(kind, mes_time_zone)
        plant = Plant(Pair(kind, mes_url, erp_url, mes_schema, staging_schema, {}), folder, name, settings)
        column = column_type or NAIVE[kind]
        if kind == "mysql" and column.startswith("timestamp"):  # no implicit ON UPDATE CURRENT_TIMESTAMP
            column += " DEFAULT '2000-01-01 00:00:00'"
        engine = plant.mes()
        with engine.begin() as conn:
            extra = f"{extra_column}, " if extra_column else ""
            conn.exec_driver_sql(f"CREATE TABLE {plant.table} (wo_id integer PRIMARY KEY, {extra}qty integer NOT NULL, "
                                 f"updated_at {column} NOT NULL)")
            conn.exec_driver_sql(f"CREATE INDEX ix_{name}_updated ON {plant.table} (updated_at, wo_id)")
        engine.dispose()
        return plant


def flow(plant: Plant, **overrides: Any) -> dict[str, Any]:
    return {"source": f"mes_{plant.name}", "target": "erp", "table": plant.table, "watermark": ["updated_at", "wo_id"],
            "key": ["wo_id"], "staging_table": f"stg_{plant.name}", "columns": dict(COLUMNS), **overrides}


def configure(*plants: Plant, **settings: Any) -> Path:
    """One configuration for the plants (each its flow, from its own MES system `mes_<name>`: MES time zones may
    differ), with `settings` for every flow and each plant's own `settings` on top; then the staging and control
    tables, the snapshots and the audit triggers, as for a go-live."""
    extra = {key: settings.pop(key) for key in ("alerts", "retry", "ledger", "stop_timeout", "locks") if key in settings}
    first = plants[0]
    systems: dict[str, Any] = {"erp": {"url": first.pair.erp_url, "staging_schema": first.pair.staging_schema}}
    systems.update({f"mes_{p.name}": {"url": p.pair.mes_url} for p in plants})
    flows = {p.name: flow(p, **{**settings, **p.settings}) for p in plants}
    config = first.folder / "agent.yaml"
    config.write_text(yaml.safe_dump({"systems": systems, "flows": flows, **extra}, sort_keys=False), encoding="utf-8")
    prepare_erp(config)
    for plant in plants:
        plant.config = config
        add_audit_trigger(plant)
    return config


def admin(url: str, *statements: str) -> None:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
    engine.dispose()


def add_audit_trigger(plant: Plant) -> None:
    """Every row inserted into the staging table is copied into audit_<name>, which nothing deletes: a (key, version)
    staged twice shows there even if the import job (or the test) had removed the first staging row."""
    audit, n = plant.control(f"audit_{plant.name}"), plant.name
    statements = {
        "postgresql": [
            f"CREATE TABLE {audit} (source_key varchar(256), source_version varchar(128))",
            f"CREATE FUNCTION {plant.control(f'audit_{n}_fn')}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"INSERT INTO {audit} VALUES (NEW.stg_source_key, NEW.stg_source_version); RETURN NEW; END $$",
            f"CREATE TRIGGER audit_{n} AFTER INSERT ON {plant.staging} FOR EACH ROW EXECUTE FUNCTION "
            f"{plant.control(f'audit_{n}_fn')}()",
        ],
        "mysql": [
            f"CREATE TABLE {audit} (source_key varchar(256), source_version varchar(128))",
            f"CREATE TRIGGER {plant.control(f'audit_{n}_tr')} AFTER INSERT ON {plant.staging} FOR EACH ROW "
            f"INSERT INTO {audit} VALUES (NEW.stg_source_key, NEW.stg_source_version)",
        ],
    }[plant.kind]
    engine = staging_engine(plant.pair)
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
    engine.dispose()


# --- what is where ------------------------------------------------------------------------------------
def version(wo_id: int, at: dt.datetime) -> Version:
    """The staging contract's key and version text, written out independently of agent/contract.py."""
    return str(wo_id), f"{at.isoformat(timespec='microseconds')}|{wo_id}"


_ENGINES: dict[str, sa.Engine] = {}  # the tests' own lookups, one pool per URL; Sites.close() disposes them


def engine_for(url: str) -> sa.Engine:
    if url not in _ENGINES:
        _ENGINES[url] = sa.create_engine(url)
    return _ENGINES[url]


def dispose_engines() -> None:
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()


def erp_rows(plant: Plant, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with engine_for(plant.pair.erp_url).connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), params)]


def mes_rows(plant: Plant, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with engine_for(plant.pair.mes_url).connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), params)]


def source_versions(plant: Plant) -> set[Version]:
    """The MES as it is now: each key's current (key, version), read as the agent's driver reads it."""
    return {version(i, at) for i, at in mes_rows(plant, f"SELECT wo_id, updated_at FROM {plant.table}")}


def staged(plant: Plant) -> list[Version]:
    """Staging rows in load order."""
    return [(k, v) for k, v in erp_rows(plant, f"SELECT stg_source_key, stg_source_version FROM {plant.staging} ORDER BY stg_id")]


def latest_staged(plant: Plant) -> set[Version]:
    """Per key, the version staged last: what the ERP ends up with when it applies the event log in order."""
    last: dict[str, str] = {}
    for key, text in staged(plant):
        last[key] = text
    return set(last.items())


def audited(plant: Plant) -> Counter[Version]:
    return Counter(erp_rows(plant, f"SELECT source_key, source_version FROM {plant.control(f'audit_{plant.name}')}"))


def ledger(plant: Plant) -> set[Version]:
    return set(erp_rows(plant, f"SELECT source_key, source_version FROM {plant.control('agent_ledger')} WHERE flow = :f",
                        f=plant.name))


def assert_staged_once(plant: Plant) -> Counter[Version]:
    """No (key, version) ever reached the staging table twice, and the ledger records exactly what it received."""
    audit = audited(plant)
    twice = {kv: n for kv, n in audit.items() if n != 1}
    assert twice == {}, f"staged more than once: {sorted(twice.items())[:5]}"
    assert set(audit) == ledger(plant)
    return audit


def assert_staging_equals_source(plant: Plant) -> None:
    """No writer since the last run: staging's latest version per key is exactly the source, and each once."""
    source = source_versions(plant)
    audit = assert_staged_once(plant)
    assert latest_staged(plant) == source, _difference(source, latest_staged(plant))
    assert source <= set(audit)


def _difference(expected: set[Version], found: set[Version]) -> str:
    return f"missing {sorted(expected - found)[:5]}, unexpected {sorted(found - expected)[:5]}"


def consistent_counts(plant: Plant) -> tuple[int, int, int]:
    """(staging rows, ledger entries, SUM(agent_run.rows_written)) from one snapshot of the ERP."""
    flow_name = {"f": plant.name}
    with engine_for(plant.pair.erp_url).connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            staged_rows = conn.execute(sa.text(f"SELECT COUNT(*) FROM {plant.staging}")).scalar_one()
            entries = conn.execute(sa.text(f"SELECT COUNT(*) FROM {plant.control('agent_ledger')} WHERE flow = :f"),
                                   flow_name).scalar_one()
            written = conn.execute(sa.text(f"SELECT COALESCE(SUM(rows_written), 0) FROM {plant.control('agent_run')} "
                                           "WHERE flow = :f"), flow_name).scalar_one()
    return int(staged_rows), int(entries), int(written)


def run_once(config: Path) -> str:
    """`mes-erp-agent run --once`, the command (privilege check, drift gate, every flow)."""
    result = cli("run", "-c", str(config), "--once")
    assert result.exit_code == 0, result.output
    return result.output


class Poller:
    """The pipeline as the long-running agent drives it: the flow prepared once, then one `run_flow` per poll (no
    drift gate: it is not what these tests are about, and it would cost a catalog query per poll)."""

    def __init__(self, plant: Plant, **settings: Any):
        self.config = load_config(plant.config)
        if settings:  # e.g. another batch_size for the same flow, without another staging table
            flows = {**self.config.model.flows}
            flows[plant.name] = flows[plant.name].model_copy(update=settings)
            self.config = dataclasses.replace(self.config, model=self.config.model.model_copy(update={"flows": flows}))
        self.systems = Systems(self.config)
        self.context = pipeline.prepare(self.config, self.systems, plant.name)

    def poll(self) -> FlowReport:
        found = pipeline.run_flow(self.context)
        assert found.outcome == "ok", found.message
        return found

    def close(self) -> None:
        self.systems.dispose()


def utc_now() -> dt.datetime:
    """Naive UTC, as the test databases' sessions (server time zone UTC) compare it."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)

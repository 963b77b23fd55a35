"""A plant for the import-outcome tests: an MES table of completions, an ERP staging target that is either an
Oracle-EBS-like inventory interface table built here (MTL_TRANSACTIONS_INTERFACE: PROCESS_FLAG, LOCK_FLAG,
TRANSACTION_MODE, ERROR_CODE, ERROR_EXPLANATION, SOURCE_LINE_ID as the agent's reference, no stg_* columns) or a
default-layout table `sql ddl` creates, the ERP's import job (it consumes rows, rejects others with a message), and
the agent's Monitor driven directly with a real IncidentBook.

PostgreSQL folds unquoted names to lower case: there the vendor table and its columns are spelled in lower case (as
an ERP installed there has them); in MariaDB and SQLite in upper case, as Oracle spells them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from agent import pipeline
from agent.alerts import IncidentBook, Message
from agent.config import load_config
from agent.connect import Systems
from agent.health import FlowHealth
from agent.monitor import Monitor
from helpers import Pair, cli, make_pair, prepare_erp, staging_engine, table_name, write_config

FLOW = "completions"
T0 = dt.datetime(2026, 3, 1, 6, 0, 0)
MES_COLUMNS = ("completion_id", "work_order_id", "item_no", "qty_good", "uom", "completed_at", "updated_at")


def as_utc(value: Any) -> dt.datetime:
    """A timestamp of a control table (naive UTC; text in SQLite) as an aware UTC datetime."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


def version(key: int, minutes: int) -> str:
    """stg_source_version / agent_ledger.source_version of a completion changed `minutes` after T0."""
    return f"{(T0 + dt.timedelta(minutes=minutes)).isoformat(timespec='microseconds')}|{key}"


def spelled(kind: str) -> Callable[[str], str]:
    """How the ERP spells a vendor name: lower case in PostgreSQL (unquoted names fold), else as Oracle does."""
    return str.lower if kind == "postgresql" else str.upper


def completion_table(schema: str | None) -> sa.Table:
    return sa.Table(
        "completion", sa.MetaData(),
        sa.Column("completion_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("work_order_id", sa.Integer, nullable=False), sa.Column("item_no", sa.String(40), nullable=False),
        sa.Column("qty_good", sa.Numeric(18, 3), nullable=False), sa.Column("uom", sa.String(3), nullable=False),
        sa.Column("completed_at", sa.DateTime, nullable=False), sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("updated_at", "completion_id"), schema=schema,
    )


def interface_table(n: Callable[[str], str], schema: str) -> sa.Table:
    """The vendor's inventory interface table, as the ERP has it (the agent creates no DDL for it)."""
    identity = sa.BigInteger().with_variant(sa.Integer, "sqlite")
    return sa.Table(
        n("MTL_TRANSACTIONS_INTERFACE"), sa.MetaData(),
        sa.Column(n("TRANSACTION_INTERFACE_ID"), identity, primary_key=True, autoincrement=True),
        sa.Column(n("SOURCE_CODE"), sa.String(30), nullable=False),
        sa.Column(n("SOURCE_LINE_ID"), sa.BigInteger),  # the agent's reference: its agent_ledger entry id
        sa.Column(n("SOURCE_HEADER_ID"), sa.BigInteger),
        sa.Column(n("PROCESS_FLAG"), sa.Integer, nullable=False),
        sa.Column(n("LOCK_FLAG"), sa.Integer), sa.Column(n("TRANSACTION_MODE"), sa.Integer),
        sa.Column(n("ITEM_SEGMENT1"), sa.String(40)), sa.Column(n("TRANSACTION_QUANTITY"), sa.Numeric(18, 3)),
        sa.Column(n("TRANSACTION_UOM"), sa.String(3)), sa.Column(n("TRANSACTION_DATE"), sa.DateTime),
        sa.Column(n("TRANSACTION_REFERENCE"), sa.String(240)),
        sa.Column(n("ERROR_CODE"), sa.String(240)), sa.Column(n("ERROR_EXPLANATION"), sa.String(240)),
        schema=schema,
    )


def vendor_flow(pair: Pair, n: Callable[[str], str], **overrides: Any) -> dict[str, Any]:
    """examples/oracle_ebs_inventory.yaml's flow, on the test's tables."""
    flow: dict[str, Any] = {
        "source": "mes", "target": "erp", "table": table_name(pair, "completion"),
        "watermark": ["updated_at", "completion_id"], "key": ["completion_id"],
        "staging_table": n("MTL_TRANSACTIONS_INTERFACE"), "layout": "vendor", "reference": n("SOURCE_LINE_ID"),
        "columns": {
            n("SOURCE_CODE"): {"const": "MES", "type": "varchar(30)"},
            n("SOURCE_HEADER_ID"): "work_order_id",
            n("PROCESS_FLAG"): {"const": 1, "type": "int"},
            n("LOCK_FLAG"): {"const": 2, "type": "int"},
            n("TRANSACTION_MODE"): {"const": 3, "type": "int"},
            n("ITEM_SEGMENT1"): {"from": "item_no", "required": True},
            n("TRANSACTION_QUANTITY"): "qty_good",
            n("TRANSACTION_UOM"): "uom",
            n("TRANSACTION_DATE"): "completed_at",
            n("TRANSACTION_REFERENCE"): {"from": "completion_id", "type": "varchar(240)"},
        },
        "outcome": {
            "status_column": n("PROCESS_FLAG"), "pending": [1, 2], "error": [3], "done": "row_gone",
            "error_text": [n("ERROR_CODE"), n("ERROR_EXPLANATION")],
            "resubmit": {n("PROCESS_FLAG"): 1, n("LOCK_FLAG"): 2, n("TRANSACTION_MODE"): 3, n("ERROR_CODE"): None,
                         n("ERROR_EXPLANATION"): None},
        },
        "overlap": "5m", "schedule": {"every": "1s"}, "batch_size": 3,
    }
    flow.update(overrides)
    return flow


DEFAULT_OUTCOME = {"status_column": "stg_status", "pending": ["PENDING"], "error": ["ERROR"], "error_text": ["stg_error"],
                   "resubmit": {"stg_status": "PENDING", "stg_error": None}}


def default_flow(pair: Pair, **overrides: Any) -> dict[str, Any]:
    """examples/default_layout.yaml's flow (stg_* layout), on the test's tables."""
    flow: dict[str, Any] = {
        "source": "mes", "target": "erp", "table": table_name(pair, "completion"),
        "watermark": ["updated_at", "completion_id"], "key": ["completion_id"], "staging_table": "stg_completion",
        "columns": {"work_order": "work_order_id", "item": "item_no", "qty": {"from": "qty_good", "type": "decimal(18,3)"},
                    "uom": "uom", "completed_at": "completed_at"},
        "overlap": "5m", "schedule": {"every": "1s"}, "batch_size": 3, "outcome": DEFAULT_OUTCOME,
    }
    flow.update(overrides)
    return flow


class Recorded:
    """A local alert channel that keeps what it is told (the IncidentBook writes it in the caller's thread)."""

    name, local = "recorded", True

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def describe(self) -> str:
        return "recorded"

    def send(self, message: Message) -> None:
        self.messages.append(message)

    def told(self) -> list[tuple[str, str]]:
        return [(m.event, m.title) for m in self.messages]


@dataclass
class Plant:
    kind: str
    pair: Pair
    folder: Path
    vendor: bool
    n: Callable[[str], str]
    staging: sa.Table  # the interface table (vendor) or a lightweight view of stg_completion (default)
    versions: dict[tuple[str, str], tuple[str, Decimal]] = field(default_factory=dict)  # committed: -> (item, qty)
    consumed: set[tuple[str, str]] = field(default_factory=set)  # (key, version) the import job deleted

    @property
    def config(self) -> Path:
        return self.folder / "agent.yaml"

    @property
    def table(self) -> str:
        """The staging table as the agent's messages name it."""
        return f"{self.pair.staging_schema}.{self.staging.name}"

    def engine(self) -> sa.Engine:
        return staging_engine(self.pair)

    # --- the MES ---------------------------------------------------------------------------------
    def commit(self, rows: list[tuple[int, str, str, int]]) -> None:
        """(completion_id, item_no, qty_good, minutes after T0) inserted or updated, each one MES transaction."""
        table = completion_table(self.pair.mes_schema)
        mes = sa.create_engine(self.pair.mes_url)
        with mes.begin() as conn:
            for completion_id, item, qty, minutes in rows:
                at = T0 + dt.timedelta(minutes=minutes)
                values = {"item_no": item, "qty_good": Decimal(qty), "updated_at": at}
                if conn.execute(sa.select(table.c.completion_id).where(table.c.completion_id == completion_id)).first():
                    conn.execute(table.update().where(table.c.completion_id == completion_id).values(**values))
                else:
                    conn.execute(table.insert().values(completion_id=completion_id, work_order_id=100 + completion_id,
                                                       uom="EA", completed_at=at, **values))
                self.versions[(str(completion_id), version(completion_id, minutes))] = (item, Decimal(qty))
        mes.dispose()

    def run_once(self) -> None:
        result = cli("run", "-c", str(self.config), "--once")
        assert result.exit_code == 0, result.output

    # --- the ERP ---------------------------------------------------------------------------------
    def ledger(self) -> dict[int, tuple[str, str]]:
        """entry_id -> (source_key, source_version) of the flow's agent_ledger entries."""
        engine = self.engine()
        with engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT entry_id, source_key, source_version FROM {self.pair.staging_schema}"
                                        ".agent_ledger WHERE flow = :flow"), {"flow": FLOW}).all()
        engine.dispose()
        return {int(r[0]): (r[1], r[2]) for r in rows}

    def entry(self, key: int, minutes: int) -> tuple[int, dt.datetime]:
        """The agent_ledger entry id and staging time (UTC) of one version."""
        engine = self.engine()
        with engine.connect() as conn:
            row = conn.execute(sa.text(f"SELECT entry_id, staged_at FROM {self.pair.staging_schema}.agent_ledger "
                                       "WHERE flow = :flow AND source_version = :version"),
                               {"flow": FLOW, "version": version(key, minutes)}).one()
        engine.dispose()
        return int(row[0]), as_utc(row[1])

    def rows(self, *columns: str) -> list[tuple[Any, ...]]:
        engine = self.engine()
        t = self.staging
        with engine.connect() as conn:
            found = conn.execute(sa.select(*(t.c[self.n(c)] for c in columns)).order_by(*(t.c[self.n(c)] for c in columns)))
            result = [tuple(r) for r in found]
        engine.dispose()
        return result

    def import_job(self, consume: tuple[int, ...] = (), fail: dict[int, tuple[str, str]] | None = None,
                   done: tuple[int, ...] = ()) -> None:
        """What the ERP's import job does to pending rows: consume (delete) some, reject others with its message
        (PROCESS_FLAG 3 and ERROR_CODE / ERROR_EXPLANATION; stg_status ERROR and stg_error), mark some done."""
        t, n = self.staging, self.n
        key_column = t.c[n("TRANSACTION_REFERENCE")] if self.vendor else t.c.stg_source_key
        status = t.c[n("PROCESS_FLAG")] if self.vendor else t.c.stg_status
        pending = status.in_([1, 2]) if self.vendor else status == "PENDING"
        engine = self.engine()
        with engine.begin() as conn:
            for key in consume:
                for version in self._pending_versions(conn, key_column, pending, key):
                    self.consumed.add((str(key), version))
                conn.execute(t.delete().where(key_column == str(key), pending))
            for key, (code, text) in (fail or {}).items():
                if self.vendor:
                    values = {n("PROCESS_FLAG"): 3, n("ERROR_CODE"): code, n("ERROR_EXPLANATION"): text}
                else:
                    values = {"stg_status": "ERROR", "stg_error": f"{code}: {text}"}
                conn.execute(t.update().where(key_column == str(key), pending).values(**values))
            for key in done:
                conn.execute(t.update().where(key_column == str(key), pending).values(stg_status="DONE"))
        engine.dispose()

    def _pending_versions(self, conn: sa.Connection, key_column: Any, pending: Any, key: int) -> list[str]:
        t = self.staging
        if not self.vendor:
            return [r[0] for r in conn.execute(sa.select(t.c.stg_source_version).where(key_column == str(key), pending))]
        ledger = sa.table("agent_ledger", sa.column("entry_id"), sa.column("source_version"), schema=self.pair.staging_schema)
        query = sa.select(ledger.c.source_version).where(ledger.c.entry_id.in_(
            sa.select(t.c[self.n("SOURCE_LINE_ID")]).where(key_column == str(key), pending)))
        return [r[0] for r in conn.execute(query)]

    # --- the agent's monitor ----------------------------------------------------------------------
    def monitor(self, offset: dt.timedelta = dt.timedelta(0)) -> Watch:
        config = load_config(self.config)
        systems = Systems(config)
        channel = Recorded()
        book = IncidentBook(self.folder / "alerts", [channel])
        health = FlowHealth.for_config(config)
        clock = Clock(dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + offset)
        monitor = Monitor(config, book, health, clock=clock)
        return Watch(monitor, book, channel, health, systems, clock, pipeline.prepare(config, systems, FLOW))


class Clock:
    def __init__(self, now: dt.datetime):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@dataclass
class Watch:
    """The running agent's periodic check, run by the test: `check()` is one `alerts.check_every`."""

    monitor: Monitor
    book: IncidentBook
    channel: Recorded
    health: FlowHealth
    systems: Systems
    clock: Clock
    context: pipeline.FlowContext

    def check(self, times: int = 1) -> list[tuple[str, str]]:
        for _ in range(times):
            self.monitor.check({FLOW: self.context})
        return self.channel.told()

    def close(self) -> None:
        self.book.close(wait=0)
        self.systems.dispose()


def new_plant(db_factory, kind: str, folder: Path, vendor: bool, suffix: str, alerts: dict[str, Any] | None = None,
              **extra: Any) -> Plant:
    """MES and ERP databases, the MES table, the vendor interface table (vendor) or `sql ddl --apply` (default
    layout), the schema snapshots: the plant as it is before go-live."""
    pair = make_pair(db_factory, kind, suffix=f"_{suffix}")
    mes = sa.create_engine(pair.mes_url)
    completion_table(pair.mes_schema).metadata.create_all(mes)
    mes.dispose()
    n = spelled(kind) if vendor else str
    if vendor:
        staging = interface_table(n, pair.staging_schema)
        if kind == "postgresql":
            engine = sa.create_engine(pair.erp_url)
            with engine.begin() as conn:
                conn.exec_driver_sql(f"CREATE SCHEMA {pair.staging_schema}")
            engine.dispose()
        engine = staging_engine(pair)
        staging.metadata.create_all(engine)
        engine.dispose()
    else:
        staging = sa.Table("stg_completion", sa.MetaData(), sa.Column("stg_id", sa.BigInteger, primary_key=True),
                           *(sa.Column(c) for c in ("stg_source_key", "stg_source_version", "stg_status", "stg_error",
                                                    "stg_loaded_at", "item", "qty", "stg_flow")), schema=pair.staging_schema)
    folder.mkdir(parents=True, exist_ok=True)
    flow = vendor_flow(pair, n) if vendor else default_flow(pair)
    write_config(folder / "agent.yaml", pair, {FLOW: flow}, alerts={"backlog": {"max_pending_age": "1h"}, **(alerts or {})},
                 **extra)
    prepare_erp(folder / "agent.yaml")
    return Plant(kind, pair, folder, vendor, n, staging)

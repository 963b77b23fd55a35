"""agent_holder, the table that shows who holds each flow's lock (`status`; agent/locks.py keeps it): its rows as
`Holder`s, and the clock they are written in (naive UTC)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from agent.config import LoadedConfig
from agent.connect import Systems
from agent.contract import ControlTables

TIMES: dict[str, sa.types.TypeEngine[Any]] = {"since": sa.DateTime(), "heartbeat_at": sa.DateTime()}


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def naive_utc(value: Any) -> dt.datetime | None:
    """A timestamp read from agent_holder as naive UTC (PostgreSQL returns it zoned, SQLite as text)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


@dataclass(frozen=True)
class Holder:
    """One agent_holder row."""

    flow: str
    agent_id: str
    host: str
    pid: int
    session_id: str | None
    since: dt.datetime
    heartbeat_at: dt.datetime

    def describe(self) -> str:
        return f"agent on host {self.host} (pid {self.pid}) since {self.since:%Y-%m-%d %H:%M:%S}Z"


def read_holders(config: LoadedConfig, systems: Systems, system: str) -> list[Holder]:
    """Every agent_holder row of one target system (newest heartbeat first per flow). Raises on a database error."""
    dialect, schema = systems.dialect(system), config.model.systems[system].staging_schema or ""
    control = ControlTables.in_schema(dialect, schema)
    with systems.target(system).connect() as conn:
        rows = conn.execute(dialect.statement("holder_select", result_types=dict(TIMES), holder_table=control.holder)).all()
        conn.rollback()
    return [Holder(str(r.flow), str(r.agent_id), str(r.host), int(r.pid), None if r.session_id is None else str(r.session_id),
                   naive_utc(r.since) or utc_now(), naive_utc(r.heartbeat_at) or utc_now()) for r in rows]

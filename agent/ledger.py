"""agent_ledger: what each flow has staged, and its retention.

Entries are written with the staging rows (write.py, one transaction). This module prunes them: an entry older
than `ledger.keep`, counted back from the flow's newest entry, is forgotten. Counting from the newest entry
rather than from now keeps the entries of a quiet MES, whose overlap window still re-reads rows staged long ago.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from agent.contract import ControlTables
from agent.dialects import Dialect

log = logging.getLogger("mes_erp_agent")
_TIMESTAMP: sa.types.TypeEngine[Any] = sa.DateTime()


def prune(engine: Engine, dialect: Dialect, control: ControlTables, flow: str, keep: dt.timedelta) -> int:
    """Delete the flow's entries staged more than `keep` before its newest one; returns how many."""
    with engine.begin() as conn:
        newest = conn.execute(
            dialect.statement("ledger_newest", result_types={"newest": _TIMESTAMP}, ledger_table=control.ledger),
            {"flow": flow},
        ).scalar()
        if newest is None:
            return 0
        cutoff = naive_utc(newest) - keep
        deleted = conn.execute(
            dialect.statement("ledger_prune", {"cutoff": _TIMESTAMP}, ledger_table=control.ledger),
            {"flow": flow, "cutoff": cutoff},
        ).rowcount
    if deleted:
        log.info("flow %s: pruned %d agent_ledger entries staged before %s UTC (ledger.keep %s)", flow, deleted,
                 cutoff.isoformat(sep=" ", timespec="seconds"), keep)
    return int(deleted)


def naive_utc(value: Any) -> dt.datetime:
    """A timestamp read from a control table as naive UTC (PostgreSQL returns it zoned, SQLite as text)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value

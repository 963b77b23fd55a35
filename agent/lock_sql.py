"""What `render-sql` lists of a flow's lock (agent/locks.py): the lock session's statements on the flow's target
system, and agent_holder's. SQLite holds the lock as a file lock: its lock templates are comments, and not listed.
"""

from __future__ import annotations

import re

from sqlalchemy.engine import make_url

from agent.config import LoadedConfig, duration_text
from agent.contract import ControlTables
from agent import dialects
from agent.dialects.locking import lock_name

_BIND = re.compile(r"(?<![:\w\\]):(\w+)")
# (system, dialect, template, purpose, sql, ((parameter, what it holds), ...))
LockStatement = tuple[str, str, str, str, str, tuple[tuple[str, str], ...]]


def lock_statements(config: LoadedConfig, name: str) -> list[LockStatement]:
    """The flow's lock (one agent per flow, agent/locks.py): on the agent's lock session of the target system, and
    agent_holder (who holds it, for `status`). SQLite holds the lock as a file lock: no statement."""
    flow = config.model.flows[name]
    target = dialects.for_url(make_url(config.model.systems[flow.target].url))  # without connecting
    schema = config.model.systems[flow.target].staging_schema or ""
    holder = ControlTables.in_schema(target, schema).holder
    every = duration_text(config.model.locks.check_every)
    meanings = {
        "lock_name": repr(lock_name(schema, name)),
        "flow": f"{name!r}, or '*' (the agent's own row)",
        "agent_id": "this agent: host:pid:random, new at each start",
        "host": "the agent's host name",
        "pid": "the agent's process id",
        "session_id": "the lock session's id (flow_lock_session; NULL on SQLite)",
        "since": "when the agent took the flow (UTC; its start for '*')",
        "heartbeat_at": "now (UTC)",
        "stale_before": f"now minus twice locks.stale_after ({duration_text(config.model.locks.stale_bound)}) (UTC)",
    }
    found: list[LockStatement] = []
    for template, purpose, sql in (
        ("flow_lock_session", f"lock session: when it connects and every lock round (locks.check_every {every})",
         target.render("flow_lock_session")),
        ("flow_lock_take", "lock session, every lock round while another agent holds the flow (and `run --once`): "
         "take the flow's lock, not waiting", target.render("flow_lock_take")),
        ("flow_lock_release", "lock session: hand the flow back (stop, flow removed, fair share)",
         target.render("flow_lock_release")),
        ("holder_upsert", f"on taking the flow and every lock round ({every}): this agent holds it (heartbeat)",
         target.render("holder_upsert", holder_table=holder)),
        ("holder_release", "on releasing the flow, and at the agent's stop", target.render("holder_release", holder_table=holder)),
        ("holder_prune", "every lock round: forget agents that stopped writing their heartbeat",
         target.render("holder_prune", holder_table=holder)),
        ("holder_select", "every lock round (counting the live agents) and `status`: who holds which flow",
         target.render("holder_select", holder_table=holder)),
    ):
        if sql:
            params = tuple((p, meanings.get(p, "see the template")) for p in dict.fromkeys(_BIND.findall(sql)))
            found.append((flow.target, target.name, template, purpose, sql, params))
    return found


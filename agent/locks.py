"""One active agent per flow: several agents may run on one configuration (a standby for failover, or several
sharing the flows); each flow is moved only by the agent holding its lock in the flow's target database.

`FlowLocks` keeps, per target system, one lock session (agent/dialects/locking.py: an advisory lock, GET_LOCK or
sp_getapplock on a dedicated connection; a file lock on SQLite). Every `locks.check_every` (a lock round) it checks
each session with a cheap query (an error: the flows held there are dropped at once and the session reconnects),
writes its heartbeat into agent_holder, and tries the free flows. A flow the agent does not hold is in `standby`:
its polls and passes return at once, touching no database.

Sharing: with N live agents (fresh heartbeats in agent_holder, each agent's own `*` row) the fair share is
flows / N. Below floor(flows / N) an agent takes a free flow at once; below ceil(flows / N) it leaves it to the peers
for one round, above for two, and takes it itself when nobody did. An agent holding two flows more than the live
agent with fewest hands one back every other round (only between polls: `guard(flow)` is the flow's poll lock). A
flow whose holder died (its session ended) is taken within three rounds at most. The lock is the truth;
agent_holder only shows it (`status`) and counts the agents.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import secrets
import socket
import threading
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from agent import log_context
from agent.config import LoadedConfig
from agent.connect import Systems
from agent.contract import HOLDER_AGENT_ROW, ControlTables
from agent.dialects.locking import LockSession, lock_name
from agent.lock_holders import TIMES, Holder, read_holders, utc_now

log = logging.getLogger("mes_erp_agent")
REBALANCE_ROUNDS = 2  # rounds between two flows handed back to peers
_STALE: dict[str, sa.types.TypeEngine[Any]] = {"stale_before": sa.DateTime()}


@dataclass(frozen=True)
class LockedFlow:
    flow: str
    system: str  # the flow's target system: its lock lives there
    schema: str
    name: str  # the lock's name (lock_name)


def flow_specs(config: LoadedConfig, only: str | None = None) -> dict[str, LockedFlow]:
    found = {}
    for name, flow in config.flows(only).items():
        schema = config.model.systems[flow.target].staging_schema or ""
        found[name] = LockedFlow(name, flow.target, schema, lock_name(schema, name))
    return found


class FlowLocks:
    """The flow locks of one agent. `holds(flow)` from any thread; `round()` from one (the lock thread, or `run --once`).
    `on_change(flow, held)` is told when the agent takes or loses a flow; `guard(flow)` gives the flow's poll lock."""

    def __init__(self, config: LoadedConfig, systems: Systems, only: str | None = None,
                 on_change: Callable[[str, bool], None] | None = None,
                 guard: Callable[[str], threading.Lock | None] | None = None,
                 clock: Callable[[], dt.datetime] = utc_now, share: bool = True):
        self.config, self.systems, self.only = config, systems, only
        self.on_change, self.guard, self.clock, self.share = on_change, guard, clock, share
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.agent_id = f"{self.host[:60]}:{self.pid}:{secrets.token_hex(4)}"
        self.started_at = clock()
        self.specs = flow_specs(config, only)
        self._held: dict[str, dt.datetime] = {}  # flow -> since when
        self._sessions: dict[str, LockSession] = {}
        self._session_ids: dict[str, str | None] = {}
        self._waited: dict[str, int] = {}  # free flows left to the peers: rounds waited so far
        self._since_handback = REBALANCE_ROUNDS
        self._warned: set[str] = set()
        self._errors: dict[str, BaseException] = {}  # per system without a lock session: why it failed last
        self._round_lock = threading.RLock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.holders: dict[str, list[Holder]] = {}  # per target system, as the last round read them

    # --- what the flows ask ---------------------------------------------------------------------------
    def holds(self, flow: str) -> bool:
        return flow in self._held

    def held(self) -> list[str]:
        return sorted(self._held)

    def unreachable(self, flow: str) -> BaseException | None:
        """Why this agent cannot even ask for the flow's lock: the target's lock session failed and has not been opened
        again (the database is down or refuses connections). None while the flow is held here, or is in standby
        because the lock session works and another agent holds it. Such a flow is failing, not in standby."""
        spec = self.specs.get(flow)
        if spec is None or flow in self._held or spec.system in self._sessions:
            return None
        return self._errors.get(spec.system)

    def holder_of(self, flow: str) -> Holder | None:
        """Who else holds the flow, as agent_holder shows it (None when no fresh row names one)."""
        spec = self.specs.get(flow)
        if spec is None:
            return None
        rows = [h for h in self.holders.get(spec.system, []) if h.flow == flow and h.agent_id != self.agent_id]
        return max(rows, key=lambda h: h.heartbeat_at) if rows else None

    # --- the long-running agent ------------------------------------------------------------------------
    def start(self) -> FlowLocks:
        """The first round now (the agent holds what it can before it reports ready), then one every check_every."""
        self.round()
        self._thread = threading.Thread(target=self._loop, name="flow-locks", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        every = self.config.model.locks.check_every.total_seconds()
        while not self._done.wait(every):
            try:
                self.round()
            except Exception as exc:  # never let the lock thread die: the next round tries again
                log.warning("flow locks: lock round failed (next round in %gs): %s", every, _first_line(exc))

    def update(self, config: LoadedConfig, systems: Systems) -> None:
        """After a reload: removed flows (and flows whose target moved) are released; added ones are tried now."""
        with self._round_lock:
            new = flow_specs(config, self.only)
            moved = {s for s in self._sessions if config.model.systems.get(s) != self.config.model.systems.get(s)}
            for flow in [f for f in self._held if f not in new or new[f] != self.specs[f] or self.specs[f].system in moved]:
                self._release(flow)
            for system in moved:
                self._close_session(system)
            self.config, self.systems, self.specs = config, systems, new
        self.round()

    def close(self) -> None:
        """At the stop, after the batches in flight: release every lock and remove this agent's agent_holder rows."""
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._round_lock:
            for flow in list(self._held):
                self._release(flow)
            for system in {s.system for s in self.specs.values()}:
                self._write(system, lambda conn, d, c: conn.execute(d.statement("holder_release", holder_table=c.holder),
                                                                     {"flow": HOLDER_AGENT_ROW, "agent_id": self.agent_id}))
            for system in list(self._sessions):
                self._close_session(system)

    # --- a lock round -----------------------------------------------------------------------------------
    def round(self) -> None:
        with self._round_lock:
            for system in list(self._sessions):
                try:
                    self._session_ids[system] = self._sessions[system].check()
                except Exception as exc:
                    self._lose(system, exc)
            now = self.clock()
            stale_before = now - self.config.model.locks.stale_bound
            live = {self.agent_id}
            for system in sorted({s.system for s in self.specs.values()}):
                self.holders[system] = rows = self._beat(system, now)
                live |= {h.agent_id for h in rows if h.flow == HOLDER_AGENT_ROW and h.heartbeat_at >= stale_before}
            low, share = len(self.specs) // len(live), math.ceil(len(self.specs) / len(live))
            for flow in self._order():
                if flow in self._held:
                    continue
                # Rounds to leave a free flow to the peers first: none below the fair share, more the more it holds.
                need = 0 if not self.share or len(self._held) < low else 1 if len(self._held) < share else 2
                if self._waited.get(flow, 0) < need:
                    self._waited[flow] = self._waited.get(flow, 0) + 1
                    continue
                self._waited.pop(flow, None)  # taken, or held elsewhere: when it is free again, the wait starts over
                self._try(flow, now)
            self._since_handback += 1
            if self.share and self._since_handback >= REBALANCE_ROUNDS and self._uneven(live, stale_before):
                self._hand_back()

    def _uneven(self, live: set[str], stale_before: dt.datetime) -> bool:
        """This agent holds two flows more than the live agent holding fewest (agent_holder's fresh rows say)."""
        counts = dict.fromkeys(live, 0)
        for rows in self.holders.values():
            for h in rows:
                if h.flow != HOLDER_AGENT_ROW and h.agent_id in counts and h.agent_id != self.agent_id \
                        and h.heartbeat_at >= stale_before:
                    counts[h.agent_id] += 1
        counts[self.agent_id] = len(self._held)
        return len(self._held) >= min(counts.values()) + 2

    def take_all(self, flows: Iterable[str]) -> tuple[list[str], dict[str, str]]:
        """`run --once`: take each flow's lock now (no sharing). Returns the flows another agent holds, and those whose
        lock could not be asked for (the lock session failed: flow -> the error)."""
        now, wanted = self.clock(), list(flows)
        for system in sorted({self.specs[f].system for f in wanted}):
            self.holders[system] = self._read(system)
        elsewhere, failed = [], {}
        for flow in wanted:
            if self._try(flow, now):
                continue
            system = self.specs[flow].system
            if system in self._sessions:
                elsewhere.append(flow)
            else:
                error = self._errors.get(system)
                failed[flow] = f"cannot take the flow's lock on system {system}: {_first_line(error) if error else 'no session'}"
        return elsewhere, failed

    def _order(self) -> list[str]:
        """The flows in an order of this agent's own, so that agents starting together try different flows first."""
        return sorted(self.specs, key=lambda f: zlib.crc32(f"{self.agent_id}|{f}".encode()))

    def _try(self, flow: str, now: dt.datetime) -> bool:
        spec = self.specs[flow]
        session = self._session(spec.system)
        if session is None:
            return False
        try:
            taken = session.take(flow, spec.name)
        except Exception as exc:
            self._lose(spec.system, exc)
            return False
        if not taken:
            return False
        self._held[flow] = now
        self._write(spec.system, lambda conn, d, c: self._upsert(conn, d, c, spec.system, flow, now, now))
        # In the long-running agent after its first round (which the runner sums up in one line); quiet in `run --once`.
        with log_context.flow(flow):
            log.log(logging.INFO if self._thread is not None else logging.DEBUG,
                    "flow %s: this agent (host %s, pid %d) holds it now (lock %s on system %s)", flow, self.host, self.pid,
                    spec.name, spec.system)
        if self.on_change is not None:
            self.on_change(flow, True)
        return True

    def _hand_back(self) -> None:
        """One flow back to the peers (above this agent's share), between two of its polls."""
        for flow in reversed([f for f in self._order() if f in self._held]):
            poll_lock = self.guard(flow) if self.guard is not None else None
            if poll_lock is not None and not poll_lock.acquire(blocking=False):
                continue  # polling now: another flow, or the next round
            try:
                self._release(flow)
                self._waited[flow] = -1  # one round more than the peers before taking it back
                log.info("flow %s: handed to another agent (this one held more than its share)", flow)
            finally:
                if poll_lock is not None:
                    poll_lock.release()
            self._since_handback = 0
            return

    def _release(self, flow: str) -> None:
        spec = self.specs[flow]
        self._held.pop(flow, None)
        session = self._sessions.get(spec.system)
        if session is not None:
            try:
                session.release(flow, spec.name)
            except Exception as exc:
                self._lose(spec.system, exc)
        self._write(spec.system, lambda conn, d, c: conn.execute(d.statement("holder_release", holder_table=c.holder),
                                                                 {"flow": flow, "agent_id": self.agent_id}))
        if self.on_change is not None:
            self.on_change(flow, False)

    def _lose(self, system: str, exc: BaseException) -> None:
        """The lock session failed: every flow held there is released now (another agent may take it); until a session
        opens again, the flows of this system fail (`unreachable`)."""
        lost = [f for f in self._held if self.specs[f].system == system]
        self._errors[system] = exc
        for flow in lost:
            del self._held[flow]
            if self.on_change is not None:
                self.on_change(flow, False)
        self._close_session(system)
        # INFO: when the database is down, each flow's own failure (ERROR, and the flow_failing alert) tells the admin.
        log.info("flow locks: the lock session on system %s failed: %s; %s, and the next round (in %gs) connects "
                 "again", system, _first_line(exc), f"flows {', '.join(sorted(lost))} are released (this agent moves "
                 "them again once it holds their locks; another agent may take them first)" if lost
                 else "no flow was held there", self.config.model.locks.check_every.total_seconds())

    def _session(self, system: str) -> LockSession | None:
        if system in self._sessions:
            return self._sessions[system]
        session = self.systems.dialect(system).flow_locks(self.systems.target(system))
        try:
            self._session_ids[system] = session.open()
        except Exception as exc:
            self._errors[system] = exc
            if f"session:{system}" not in self._warned:
                log.info("flow locks: cannot open a lock session on system %s (%s); its flows fail (their polls say why) "
                         "until the next round, every %gs, opens one", system, _first_line(exc),
                         self.config.model.locks.check_every.total_seconds())
                self._warned.add(f"session:{system}")
            return None
        self._warned.discard(f"session:{system}")
        self._errors.pop(system, None)
        self._sessions[system] = session
        return session

    def _close_session(self, system: str) -> None:
        session = self._sessions.pop(system, None)
        self._session_ids.pop(system, None)
        if session is not None:
            try:
                session.close()
            except Exception as exc:  # the session is gone anyway: its locks with it
                log.debug("flow locks: closing the lock session on system %s: %s", system, _first_line(exc))

    # --- agent_holder -------------------------------------------------------------------------------------
    def _upsert(self, conn: sa.Connection, dialect: Any, control: ControlTables, system: str, flow: str,
                since: dt.datetime, now: dt.datetime) -> None:
        conn.execute(dialect.statement("holder_upsert", dict(TIMES), holder_table=control.holder), {
            "flow": flow, "agent_id": self.agent_id, "host": self.host[:255], "pid": self.pid,
            "session_id": self._session_ids.get(system), "since": since, "heartbeat_at": now})

    def _beat(self, system: str, now: dt.datetime) -> list[Holder]:
        """The heartbeat: this agent's own row and each flow it holds there; stale rows pruned; every row read back."""
        def write(conn: sa.Connection, dialect: Any, control: ControlTables) -> None:
            self._upsert(conn, dialect, control, system, HOLDER_AGENT_ROW, self.started_at, now)
            for flow, since in list(self._held.items()):
                if self.specs[flow].system == system:
                    self._upsert(conn, dialect, control, system, flow, since, now)
            conn.execute(dialect.statement("holder_prune", dict(_STALE), holder_table=control.holder),
                         {"stale_before": now - 2 * self.config.model.locks.stale_bound})

        if not self._write(system, write):
            return []
        return self._read(system)

    def _read(self, system: str) -> list[Holder]:
        try:
            return read_holders(self.config, self.systems, system)
        except Exception as exc:
            self._warn_holder(system, exc)
            return []

    def _write(self, system: str, action: Callable[[sa.Connection, Any, ControlTables], Any]) -> bool:
        """Run `action` in a transaction of its own on the system's pool; agent_holder is for display, so a failure
        is a warning (once per outage), never a reason to drop a lock."""
        dialect = self.systems.dialect(system)
        control = ControlTables.in_schema(dialect, self.config.model.systems[system].staging_schema or "")
        try:
            with self.systems.target(system).begin() as conn:
                action(conn, dialect, control)
        except Exception as exc:
            self._warn_holder(system, exc)
            return False
        self._warned.discard(f"holder:{system}")
        return True

    def _warn_holder(self, system: str, exc: BaseException) -> None:
        if system not in self._sessions:  # the database is unreachable: the flows' failures report the outage
            log.debug("flow locks: agent_holder on system %s not written: %s", system, _first_line(exc))
            return
        if f"holder:{system}" not in self._warned:
            log.warning("flow locks: cannot write or read agent_holder on system %s (%s): the locks still keep one agent "
                        "per flow, but `status` cannot show who holds it and flows are not shared fairly; have the DBA "
                        "run `mes-erp-agent sql ddl` and `sql grants` again", system, _first_line(exc))
            self._warned.add(f"holder:{system}")


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

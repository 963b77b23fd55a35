"""Several agents on one configuration (issue 10), on PostgreSQL and MariaDB: three agent processes, four flows.

Sampled all along: the database shows every flow's lock held by one session at most (pg_locks, IS_USED_LOCK), and
that session is a live agent's (agent_holder maps the session ids to agents); once all three are up the flows are
spread: they hold 2, 1 and 1. MES writers insert and update rows meanwhile. SIGKILL of the agent holding flows:
another agent holds each of them within 10 s (measured). Afterwards staging equals the source exactly, each (key,
version) staged once (the audit trigger sees every insert), for every flow.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from agent.dialects.locking import lock_name
from fault_actors import Looker, Writer, Writers, generate, sigkill, start_agent, stop_agent, wait_until
from fault_support import KINDS, Plant, assert_staging_equals_source, configure, engine_for, ledger

FLOWS = ("la", "lb", "lc", "ld")
TAKEOVER = 10.0  # seconds: the bound


class LockView:
    """Who holds each flow's lock, as the database says (session ids), mapped to agent pids through agent_holder."""

    def __init__(self, plants: list[Plant]):
        self.plants = plants
        self.kind = plants[0].kind
        self.url = plants[0].pair.erp_url
        self.schema = plants[0].pair.staging_schema
        self.names = {p.name: lock_name(self.schema, p.name) for p in plants}
        self.keys: dict[str, tuple[int, int]] = {}
        if self.kind == "postgresql":
            with engine_for(self.url).connect() as conn:
                for flow, name in self.names.items():
                    key = conn.execute(sa.text("SELECT hashtextextended(:n, 0)"), {"n": name}).scalar_one()
                    self.keys[flow] = ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF)

    def sessions(self) -> dict[str, list[str]]:
        """flow -> the sessions holding its lock."""
        with engine_for(self.url).connect() as conn:
            if self.kind == "postgresql":
                rows = conn.execute(sa.text("SELECT classid::bigint, objid::bigint, pid FROM pg_locks WHERE "
                                            "locktype = 'advisory' AND granted AND objsubid = 1")).all()
                return {f: [str(pid) for c, o, pid in rows if (c, o) == key] for f, key in self.keys.items()}
            found = {}
            for flow, name in self.names.items():
                holder = conn.execute(sa.text("SELECT IS_USED_LOCK(:n)"), {"n": name}).scalar()
                found[flow] = [] if holder is None else [str(holder)]
            return found

    def agents(self) -> dict[str, int]:
        """session id -> agent pid (each agent's own row, flow '*', names its lock session)."""
        with engine_for(self.url).connect() as conn:
            rows = conn.execute(sa.text(f"SELECT session_id, pid FROM {self.schema}.agent_holder WHERE flow = '*'")).all()
        return {str(s): int(p) for s, p in rows if s is not None}

    def holders(self) -> dict[str, list[int | str]]:
        """flow -> the agent pids holding it (a session agent_holder does not name yet shows as `?<session>`)."""
        sessions, agents = self.sessions(), self.agents()
        return {f: [agents.get(s, f"?{s}") for s in found] for f, found in sessions.items()}


class Sampler(Looker):
    """Who holds each flow's lock, every 0.1 s: (when, flow -> the agent pids holding it)."""

    every = 0.1

    def __init__(self, view: LockView):
        super().__init__()
        self.view = view
        self.samples: list[tuple[float, dict[str, list[Any]]]] = []

    def look(self) -> None:
        self.samples.append((time.monotonic(), self.view.holders()))


@pytest.mark.parametrize("kind", KINDS)
def test_three_agents_four_flows_one_holder_each_and_sigkill_takeover(kind, sites, tmp_path: Path):
    plants = [sites.plant(kind, f"{name}_{kind[:2]}", tmp_path) for name in FLOWS]
    for plant in plants:
        generate(plant, 200)
    configure(*plants, batch_size=25, schedule={"every": "250ms"}, lag="300ms", overlap="5s",
              retry={"first_wait": "200ms", "max_wait": "1s"})
    view = LockView(plants)
    logs = [tmp_path / f"agent{n}.log" for n in range(3)]
    agents = {}
    for log in logs:  # one after another, as on three servers started by hand
        process = start_agent(plants[0].config, log)
        agents[process.pid] = process
        time.sleep(0.7)
    sampler = Sampler(view)
    sampler.start()
    writers = Writers([Writer(plant, 7 + n, seconds=9, first=1001, pause=0.05, updates=0.5)
                       for n, plant in enumerate(plants)])
    writers.start()
    try:
        def spread() -> bool:
            held = view.holders()
            counts = Counter(pid for pids in held.values() for pid in pids)
            return all(len(p) == 1 and p[0] in agents for p in held.values()) and sorted(counts.values()) == [1, 1, 2]

        wait_until(spread, 30, "every flow held by one agent, the agents holding 2, 1 and 1", every=0.2)
        spread_at = time.monotonic()
        time.sleep(2)
        held = view.holders()
        victim = Counter(pids[0] for pids in held.values()).most_common(1)[0][0]
        victim_flows = sorted(f for f, pids in held.items() if pids == [victim])
        assert isinstance(victim, int) and victim_flows, held
        killed_at = time.monotonic()
        sigkill(agents.pop(victim))

        def taken_over() -> bool:
            now = view.holders()
            return all(len(now[f]) == 1 and now[f][0] in agents for f in victim_flows)

        wait_until(taken_over, 30, f"flows {victim_flows} of the killed agent {victim} taken over", every=0.05)
        takeover = time.monotonic() - killed_at
        assert takeover <= TAKEOVER, f"takeover took {takeover:.1f}s"
        writers.join(timeout=60)
        for writer in writers:
            latest = set(writer.latest.values())
            wait_until(lambda w=writer, v=latest: v <= ledger(w.plant), 60, f"flow {writer.plant.name} caught up",
                       every=0.3)
    finally:
        sampler.finish()
        codes = {pid: stop_agent(process) for pid, process in agents.items()}
    assert all(code == 0 for code in codes.values()), (codes, [log.read_text()[-2000:] for log in logs])

    # At every sample: at most one session per flow's lock, and it was an agent's (never two agents on a flow).
    doubled = [(at, held) for at, held in sampler.samples if any(len(p) > 1 for p in held.values())]
    assert doubled == [], doubled[:3]
    after = [held for at, held in sampler.samples if at >= spread_at and at < killed_at]
    assert after and all(all(len(p) == 1 for p in held.values()) for held in after)
    assert all(max(Counter(p[0] for p in held.values()).values()) < len(FLOWS) for held in after)
    for plant in plants:
        assert_staging_equals_source(plant)  # each row arrived once; staging equals the source exactly
    print(f"{kind}: takeover of {victim_flows} in {takeover:.2f}s; {len(sampler.samples)} samples")


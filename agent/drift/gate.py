"""The drift gate: before each run of a flow, its systems' live schemas are compared with their snapshots.

`DriftGate(flow) -> None | reason` is `pipeline.Gate`. Per call it runs one catalog query on each of the
flow's two systems (both at once), covering every watched table of that system. When the rows are the
ones it saw last time and the snapshot has not changed, it reuses the last comparison: a poll that finds
nothing costs one small query per system. Flows asking at the same moment share one check (shared.py).
Drift opens an incident (reported once); a clean check closes
it (reported too). Snapshot files are read at start and again after `invalidate` (see watcher.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from agent import alerts, connect
from agent.config import LoadedConfig
from agent.connect import Systems
from agent.drift import snapshot as snapshot_files
from agent.catalog.query import CatalogQuery, Row
from agent.drift.compare import compare_system
from agent.drift.diff import Diff
from agent.drift.incidents import IncidentLog, fingerprint
from agent.catalog.model import SystemSnapshot
from agent.drift.policy import decide, decision_for
from agent.drift.render import DriftReport
from agent.drift.shared import SharedCheck
from agent.drift.watch import TableUse, systems_of, uses_by_system, watched_tables
from agent.errors import SnapshotError, mark_system

log = logging.getLogger("mes_erp_agent")


@dataclass(frozen=True)
class SystemCheck:
    system: str
    diffs: tuple[Diff, ...]
    report_file: Path | None = None
    problem: str | None = None  # the snapshot cannot be used (deleted or edited by hand since start)


class DriftGate:
    """Raises SnapshotError (a configuration error, exit 2) when a system has no usable snapshot."""

    def __init__(self, config: LoadedConfig, systems: Systems, only: str | None = None,
                 book: alerts.IncidentBook | None = None):
        """`book`: the agent's IncidentBook when it has one (the caller closes it); else the gate makes and closes its own."""
        self.config = config
        self.systems = systems
        self.flows = config.flows(only)
        self.uses: dict[str, dict[str, list[TableUse]]] = uses_by_system(config, only)
        self.queries = {
            system: CatalogQuery.build(system, systems.dialect(system), watched_tables(config, system, only))
            for system in systems_of(config, only)
        }
        self.snapshots: dict[str, SystemSnapshot] = {}
        self.problems: dict[str, str] = {}
        errors = []
        for system in self.queries:
            try:
                self.snapshots[system] = self._load(system)
            except SnapshotError as exc:
                errors.append(str(exc))
        if errors:
            raise SnapshotError("\n".join(errors))
        self.generations = dict.fromkeys(self.queries, 0)
        self.paths = {system: snapshot_files.snapshot_path(config, system) for system in self.queries}
        # The gate's own read-only connections: other stages end their transactions with a rollback, which
        # would discard the prepared catalog statement before every poll.
        self._engines = {system: connect.create_engine(config, system, "source") for system in self.queries}
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="drift-gate")
        weakref.finalize(self, _dispose, list(self._engines.values()), self._pool)
        self._own_book = book is None
        self.incidents = IncidentLog(config.resolve(config.model.alerts.dir), book or alerts.book_for(config))
        self._dirty: set[str] = set()
        self._last: dict[str, tuple[int, Sequence[Row], tuple[Diff, ...]]] = {}
        self._locks = {system: threading.Lock() for system in self.queries}
        self._cycle: dict[str, SystemCheck] | None = None  # inside `cycle()`: each system's check so far
        self._shared = {
            system: SharedCheck(functools.partial(self._check, system), self._locks[system],
                                frozenset(name for name, flow in self.flows.items() if system in (flow.source, flow.target)))
            for system in self.queries
        }

    # --- pipeline.Gate ---------------------------------------------------------------------------
    def __call__(self, flow: str) -> str | None:
        config = self.flows[flow]
        reasons = []
        # Asked now, in this thread, on both systems: the target's check runs on the gate's pool, whose threads may be
        # busy with other flows' checks, and the two systems are different servers, checked at the same time.
        source, target = self._ask(config.source, flow), self._ask(config.target, flow)
        pending = self._pool.submit(target)
        for check in (source(), pending.result()):
            system = check.system
            if check.problem:
                reasons.append(check.problem)
                continue
            decision = decision_for(flow, check.diffs, config.on_drift)
            if decision is None:
                continue
            if decision.halts:
                reasons.append(self._halt_reason(flow, system, check))
            else:
                log.debug("flow %s keeps running despite drift on %s (on_drift: %s)", flow, system, config.on_drift)
        return "\n".join(reasons) or None

    def generation(self, flow: str) -> tuple[int, int]:
        """Changes when a snapshot of the flow's systems is reloaded (a scheduler re-prepares the flow then).
        Reloads changed snapshot files first, so the answer holds for the poll about to run."""
        config = self.flows[flow]
        for system in (config.source, config.target):
            with self._locks[system]:
                self._reload_if_dirty(system)
        return self.generations[config.source], self.generations[config.target]

    def close(self) -> None:
        """Close the gate's connections (also done when the gate is garbage-collected or at exit), and give its
        own IncidentBook `alerts.exit_wait` to deliver what is still being sent."""
        _dispose(list(self._engines.values()), self._pool)
        if self._own_book:
            self.incidents.book.close()

    def invalidate(self, system: str | None = None) -> None:
        """Reload the snapshot of `system` (all when None) before its next check. Thread-safe."""
        self._dirty.update([system] if system else self.queries)

    # --- checking --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def cycle(self) -> Iterator[None]:
        """One poll cycle over many flows (`run --once`): each system's catalog is read once, by the first flow's check,
        and that check answers for every other flow of the cycle, whatever the number of flows and tables."""
        self._cycle = {}
        try:
            yield
        finally:
            self._cycle = None

    def check(self, system: str, flow: str | None = None) -> SystemCheck:
        """One catalog query; diffs against the snapshot; open or close the system's incident. Shared with the other
        flows asking at the same moment, and always begun after this ask (shared.py)."""
        return self._ask(system, flow)()

    def _ask(self, system: str, flow: str | None) -> Callable[[], SystemCheck]:
        """Ask for a check of `system` now; the returned call waits for its answer."""
        if self._cycle is not None:
            return functools.partial(self._in_cycle, system)
        shared = self._shared[system]
        return functools.partial(shared.answer, shared.ask(flow))

    def _in_cycle(self, system: str) -> SystemCheck:
        """`run --once` checks its flows one after another: the first check of each system, begun at once, answers all."""
        cycle = self._cycle
        if cycle is not None and system in cycle:
            return cycle[system]
        shared = self._shared[system]
        checked = shared.answer(shared.ask(), wait=False)
        if cycle is not None:
            cycle[system] = checked
        return checked

    def _check(self, system: str) -> SystemCheck:
        self._reload_if_dirty(system)
        if system in self.problems:
            return SystemCheck(system, (), problem=self.problems[system])
        try:
            diffs = self.compare(system)
        except Exception as exc:  # the system is unreachable: the failing flow's log line and alert name it
            mark_system(exc, system)
            raise
        return self._record(system, diffs)

    def compare(self, system: str) -> tuple[Diff, ...]:
        """The differences between the live schema and the snapshot (one catalog query; nothing recorded)."""
        query = self.queries[system]
        with self._engines[system].connect() as conn:
            rows = query.fetch(conn)
            # Commit, not roll back, the read-only transaction: psycopg drops its prepared statements on a
            # rollback, and re-planning this catalog query costs more than running it.
            conn.commit()
        generation = self.generations[system]
        last = self._last.get(system)
        if last is not None and last[0] == generation and last[1] == rows:
            return last[2]
        diffs = tuple(compare_system(self.snapshots[system], query.tables_from(rows), self.uses[system]))
        self._last[system] = (generation, rows, diffs)
        return diffs

    def report(self, system: str, diffs: tuple[Diff, ...], detected_at: dt.datetime | None = None) -> DriftReport:
        return drift_report(self.config, system, self.queries[system].dialect.name, diffs, detected_at)

    def _record(self, system: str, diffs: tuple[Diff, ...]) -> SystemCheck:
        if not diffs:
            self.incidents.resolve(system, self.queries[system].dialect.name, self.paths[system])
            return SystemCheck(system, diffs)
        incident = self.incidents.report(self.report(system, diffs, _now()))
        return SystemCheck(system, diffs, incident.text_path(self.incidents.folder))

    def _halt_reason(self, flow: str, system: str, check: SystemCheck) -> str:
        mine = [(diff, impact) for diff in check.diffs if (impact := diff.impact_on(flow)) is not None]
        breaking = sum(1 for _, impact in mine if impact.breaking)
        listed = "; ".join(diff.summary() for diff, _ in mine[:3]) + ("; ..." if len(mine) > 3 else "")
        changes = f"{len(mine)} change{'s' if len(mine) != 1 else ''}"
        return (
            f"halted by schema drift on system {system} ({changes}, {breaking} breaking for this flow): {listed}. "
            f"Report: {check.report_file}. Review: mes-erp-agent drift -c {self.config.path}; after review accept with: "
            f"mes-erp-agent snapshot -c {self.config.path} --system {system} --accept"
        )

    # --- snapshots -------------------------------------------------------------------------------
    def _load(self, system: str) -> SystemSnapshot:
        path = snapshot_files.snapshot_path(self.config, system)
        loaded = snapshot_files.read(path, system, self.config.path)  # raises SnapshotError
        missing = [name for name in self.uses[system] if name not in loaded.tables]
        if missing:
            flows = sorted({use.flow for name in missing for use in self.uses[system][name]})
            raise SnapshotError(
                f"schema snapshot {path} has no entry for table{'s' if len(missing) != 1 else ''} "
                f"{', '.join(missing)} on system {system}, used by flow{'s' if len(flows) != 1 else ''} "
                f"{', '.join(flows)} (added to the configuration after the snapshot was taken?). Review and add "
                f"{'them' if len(missing) != 1 else 'it'} with:\n    mes-erp-agent snapshot -c {self.config.path} "
                f"--system {system} --accept"
            )
        return loaded

    def _reload_if_dirty(self, system: str) -> None:
        if system not in self._dirty:
            return
        self._dirty.discard(system)
        try:
            reloaded = self._load(system)
        except SnapshotError as exc:
            if self.problems.get(system) != str(exc):
                log.error("flows on system %s are halted: %s", system, exc)
            self.problems[system] = f"halted: {exc}"
            return
        self.problems.pop(system, None)
        if reloaded != self.snapshots.get(system):
            self.snapshots[system] = reloaded
            self.generations[system] += 1
            log.info("schema snapshot of system %s reloaded (%s)", system, self.paths[system])


def drift_report(
    config: LoadedConfig, system: str, dialect: str, diffs: tuple[Diff, ...], detected_at: dt.datetime | None = None
) -> DriftReport:
    return DriftReport(
        system=system,
        dialect=dialect,
        snapshot=snapshot_files.snapshot_path(config, system),
        config=config.path,
        diffs=diffs,
        flows=tuple(decide(diffs, {name: flow.on_drift for name, flow in config.model.flows.items()})),
        detected_at=detected_at,
        fingerprint=fingerprint(diffs) if diffs else "",
    )


def _dispose(engines: list, pool: ThreadPoolExecutor) -> None:
    pool.shutdown(wait=False)
    for engine in engines:
        engine.dispose()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)

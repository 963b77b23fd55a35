"""The long-running agent (`mes-erp-agent run`): start every flow, reload a changed configuration, stop cleanly.

Start: the drift gate, the flows' jobs (each flow prepared: its tables looked up), /healthz and /metrics, the
snapshot and configuration watchers; then the scheduler.

Reload (the configuration file changes, or SIGHUP / systemd's ExecReload): the new file is validated fully
first (check-config's checks, the drift gate's snapshots, every added or changed flow prepared against the
databases). An invalid one is rejected with a `config_rejected` incident naming file:line, and the running
configuration stays in force. A valid one is applied without a restart: flows added, removed, rescheduled,
remapped; a flow whose configuration changed finishes the batch in flight on the old one first. Changes to
`alerts:`, `http:`, `retry:` and `ledger:` take effect at the next start (the log says so).

Stop (SIGTERM, SIGINT, the Windows service's stop): no new poll starts, every flow finishes its batch in
flight, and the agent exits 0 within `stop_timeout` (default 30 s). A batch still being written at that bound
is rolled back by the database when the process closes its connections; the next run re-reads it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from apscheduler.schedulers.base import BaseScheduler
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from agent import alerts, recovery
from agent.alerts import kinds
from agent.config import LoadedConfig, load_config
from agent.connect import Systems
from agent.drift.gate import DriftGate
from agent.drift.watcher import SnapshotWatcher, changes_content
from agent.errors import ConfigError, SchemaMismatch, SnapshotError
from agent.exit_codes import ExitCode
from agent.health import FlowHealth, HealthServer, HttpBindError
from agent.lifecycle import Lifecycle
from agent.locks import FlowLocks
from agent.monitor import Monitor
from agent.runtime import StatusFile, status_path
from agent.schedule import FlowJob, build_scheduler
from agent.stopping import InFlight, StopRequest

log = logging.getLogger("mes_erp_agent")
RESTART_ONLY = ("alerts", "http", "retry", "ledger", "snapshots", "stop_timeout")
DEBOUNCE_SECONDS = 0.5  # an editor saves in several steps; reload once they are done


class Runner:
    """One long-running agent. `run()` returns the exit code; `request_stop` and `reload` may come from any thread."""

    def __init__(self, config: LoadedConfig, only: str | None = None, lifecycle: Lifecycle | None = None):
        self.config, self.only = config, only
        # Who is told of ready, heartbeats, reloads and the stop: systemd's notify socket, the Windows service, or nobody.
        self.lifecycle = lifecycle or Lifecycle.from_environment()
        self._reload_reason = "SIGHUP"
        self.started_model = config.model  # its RESTART_ONLY settings stay in force until a restart
        self.systems = Systems(config)
        self.book = alerts.book_for(config)  # one book: drift, failing flows, backlog, rejected configs share its outbox
        self.health = FlowHealth.for_config(config, only)
        self.status = StatusFile(status_path(config.resolve(config.model.alerts.dir)), self.health.snapshot)
        self.monitor = Monitor(config, self.book, self.health, self.status)
        self.stop = StopRequest()
        self.in_flight = InFlight()
        self._reload_lock = threading.Lock()  # one reload request at a time
        self._apply_lock = threading.Lock()
        self.gate: DriftGate | None = None
        self.scheduler: BaseScheduler | None = None
        self.server: HealthServer | None = None
        self.snapshot_watcher: SnapshotWatcher | None = None
        self.config_watcher: ConfigWatcher | None = None
        # Several agents on one configuration: each flow is moved by the one holding its lock (agent/locks.py).
        self.locks = FlowLocks(config, self.systems, only, on_change=self._lock_changed, guard=self._poll_lock)

    # --- lifecycle -------------------------------------------------------------------------------
    def run(self) -> ExitCode:
        if not self._start():
            return ExitCode.CONFIG
        log.info("mes-erp-agent running %d flows; stop with Ctrl+C or SIGTERM, reload with SIGHUP",
                 len(self.config.flows(self.only)))
        self.status.update(force=True)
        assert self.scheduler is not None
        try:
            self.scheduler.start()  # returns once a stop shut it down
        except (KeyboardInterrupt, SystemExit):
            self.stop.request("interrupted")
        return self._finish()

    def _start(self) -> bool:
        try:
            self.gate = DriftGate(self.config, self.systems, self.only, book=self.book)
            self.scheduler = build_scheduler(self.config, self.systems, self.only, self.gate, monitor=self.monitor,
                                             stop=self.stop, in_flight=self.in_flight, locks=self.locks)
            self.server = HealthServer(self.health, self.config.model.http).start() if self.config.model.http else None
        except (SnapshotError, SchemaMismatch, HttpBindError) as exc:
            what = "cannot check for schema drift" if isinstance(exc, SnapshotError) else (
                "cannot serve /healthz and /metrics" if isinstance(exc, HttpBindError)
                else "configuration does not match the databases")
            log.error("%s; not starting:\n%s", what, exc)
            if self.gate is not None:
                self.gate.close()
            self.book.close()
            self.systems.dispose()
            return False
        for name in self.locks.specs:  # every flow in standby until its lock is taken (the first round, now)
            self.health.set_standby(name, True)
        self.locks.start()
        log.info("flow locks: this agent holds %s; the others stay in standby while another agent holds them",
                 ", ".join(self.locks.held()) or "no flow")
        self.snapshot_watcher = SnapshotWatcher(self.gate).start()  # an accepted snapshot resumes halted flows
        self.config_watcher = ConfigWatcher(self.config.path, lambda: self._request_reload("the file changed")).start()
        # Every stop path meets here: SIGTERM/SIGINT (StopRequest) and the service manager (Lifecycle) tell each other.
        self.stop.on_stop(self.lifecycle.request_stop)
        self.stop.on_stop(self._shut_down_scheduler)
        self.lifecycle.on_stop(lambda: self.stop.request("service stop"))
        self.lifecycle.on_reload(self._reload_for_lifecycle)
        self.lifecycle.watch(self.scheduler, self._running_text())  # READY=1 as the scheduler starts, WATCHDOG=1
        self.stop.install_signal_handlers()
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda *_: self._request_reload("SIGHUP"))
        return True

    def _running_text(self) -> str:
        return f"running {len(self.config.flows(self.only))} flows"

    def _request_reload(self, reason: str) -> None:
        """Off the signal handler and the watcher: RELOADING=1, the reload, READY=1 (agent/lifecycle)."""
        def reload() -> None:
            with self._reload_lock:
                self._reload_reason = reason
                self.lifecycle.request_reload()

        threading.Thread(target=reload, name="config-reload", daemon=True).start()

    def _reload_for_lifecycle(self) -> str:
        self.reload(self._reload_reason)
        return self._running_text()

    def request_stop(self, reason: str = "service stop") -> None:
        """What SIGTERM does; the Windows service's stop calls it too."""
        self.stop.request(reason)

    def _lock_changed(self, flow: str, held: bool) -> None:
        """Took a flow: it polls now. Lost one: standby (a run in flight ends after its batch)."""
        self.health.set_standby(flow, not held)
        scheduler = self.scheduler
        if held and scheduler is not None and scheduler.running and not self.stop.is_set():
            with contextlib.suppress(LookupError):  # removed by a reload meanwhile
                scheduler.modify_job(flow, next_run_time=dt.datetime.now(scheduler.timezone))
        self.status.update()

    def _poll_lock(self, flow: str) -> threading.Lock | None:
        job = self.scheduler.get_job(flow) if self.scheduler is not None else None
        return job.func.poll_lock if job is not None and isinstance(job.func, FlowJob) else None

    def _shut_down_scheduler(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)  # no new poll; polls in flight go on in their threads

    def _finish(self) -> ExitCode:
        """Wait for the batches in flight (bounded), close everything, exit 0."""
        deadline = time.monotonic() + self.config.model.stop_timeout.total_seconds()
        exit_wait = self.config.model.alerts.exit_wait.total_seconds()
        # Leave time within the bound for the alert outbox and for closing connections.
        flows_wait = max(1.0, deadline - time.monotonic() - min(exit_wait, 5.0) - 1.0)
        finished = self.in_flight.wait_idle(flows_wait)
        if not finished:
            log.warning("stopping: %d flow run(s) still writing after %.0fs; their batch in flight is rolled back by "
                        "the database as the agent exits, and the next run re-reads it", self.in_flight.running,
                        flows_wait)
        for watcher in (self.config_watcher, self.snapshot_watcher):
            if watcher is not None:
                watcher.stop()
        if finished:
            self.locks.close()  # released, and this agent's agent_holder rows removed: a peer takes the flows now
        if self.server is not None:
            self.server.stop()
        if self.gate is not None:
            self.gate.close()
        self.book.close(max(0.0, min(exit_wait, deadline - time.monotonic() - 1.0)))
        self.status.stopped()
        self.lifecycle.stopped()
        if not finished:  # a worker thread is inside a batch: end the process, the database rolls it back
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(int(ExitCode.OK))
        self.systems.dispose()
        log.info("mes-erp-agent stopped (%s)", self.stop.reason)
        return ExitCode.OK

    # --- reload ----------------------------------------------------------------------------------
    def reload(self, reason: str) -> bool:
        """Validate the configuration file again and apply it; False (and an incident) when it is rejected."""
        if self.stop.is_set() or self.scheduler is None:
            return False
        with self._apply_lock:
            log.info("configuration %s: reloading (%s)", self.config.path, reason)
            try:
                new = load_config(self.config.path)
                plan = self._plan(new)
            except ConfigError as exc:
                return self._reject(exc.problems)
            except (SnapshotError, SchemaMismatch) as exc:
                return self._reject(str(exc).splitlines() or [type(exc).__name__])
            self._apply(new, plan)
            resolved = self.book.current("config_rejected")
            if resolved is not None:
                at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
                self.book.resolve("config_rejected", f"Configuration loaded: {self.config.path.name}",
                                  f"The running agent loaded {self.config.path} at {at:%Y-%m-%d %H:%M:%SZ}.",
                                  {"event": "resolved", "kind": "config_rejected", "config": str(self.config.path)}, at)
            return True

    def _reject(self, problems: list[str]) -> bool:
        log.error("configuration %s rejected; the agent keeps running on the configuration it loaded before:\n%s",
                  self.config.path, "\n".join(problems))
        if self.book.current("config_rejected") is None:
            self.book.open(kinds.config_rejected(self.config.path, problems,
                                                 dt.datetime.now(dt.timezone.utc).replace(microsecond=0)))
        return False

    def _plan(self, new: LoadedConfig) -> ReloadPlan:
        """Everything the new configuration needs, built and checked before anything changes."""
        old_flows, new_flows = self.config.flows(self.only), new.flows(self.only)
        systems_changed = new.model.systems != self.config.model.systems
        systems = Systems(new) if systems_changed else self.systems
        try:
            gate = DriftGate(new, systems, self.only, book=self.book)
        except BaseException:
            if systems_changed:
                systems.dispose()
            raise
        jobs, problems = {}, []
        for name, flow in new_flows.items():
            if not systems_changed and old_flows.get(name) == flow:
                continue
            job = FlowJob(new, systems, name, gate, monitor=self.monitor, stop=self.stop, in_flight=self.in_flight,
                          locks=self.locks)
            try:
                job.prepare()
            except SchemaMismatch as exc:
                if not gate(name):  # drift halts the flow as at start; anything else is a configuration error
                    problems.append(str(exc))
            jobs[name] = job
        if problems:
            gate.close()
            if systems_changed:
                systems.dispose()
            raise SchemaMismatch("\n".join(problems))
        return ReloadPlan(gate, systems, jobs, [n for n in old_flows if n not in new_flows], systems_changed)

    def _apply(self, new: LoadedConfig, plan: ReloadPlan) -> None:
        assert self.scheduler is not None and self.gate is not None
        for name in [*plan.removed, *plan.jobs]:
            old = self.scheduler.get_job(name)
            if old is not None and isinstance(old.func, FlowJob):
                old.func.retired = True  # a run in flight ends after the batch it is writing
        for name in plan.removed:
            self.scheduler.remove_job(name)
            log.info("flow %s removed from the configuration: it no longer polls", name)
        for name, job in plan.jobs.items():
            if self.scheduler.get_job(name) is None:
                self.scheduler.add_job(job, job.trigger, id=name, name=f"flow {name}", next_run_time=dt.datetime.now(
                    self.scheduler.timezone))
                log.info("flow %s added: it starts polling now", name)
            else:  # a run in flight finishes on the old configuration (one instance per flow), the next is the new one
                self.scheduler.modify_job(name, func=job)
                self.scheduler.reschedule_job(name, trigger=job.trigger)
                log.info("flow %s changed: its next poll runs on the new configuration", name)
        for job in self.scheduler.get_jobs():
            if isinstance(job.func, FlowJob) and job.id not in plan.jobs:
                job.func.gate = plan.gate  # unchanged flows: the new gate watches the new set of tables
        self.health.set_flows({name: flow.batch_size for name, flow in new.flows(self.only).items()})
        for name in plan.jobs:
            if not self.locks.holds(name):
                self.health.set_standby(name, True)
        self.locks.update(new, plan.systems)  # removed flows released, added ones tried now
        recovery.sync_jobs(self.scheduler, new.flows(self.only), self.book)  # `reconcile:`/`deletes:` pass jobs
        old_gate, old_systems = self.gate, self.systems
        self.gate, self.systems, self.config, self.monitor.config = plan.gate, plan.systems, new, new
        if self.snapshot_watcher is not None:
            self.snapshot_watcher.stop()
        self.snapshot_watcher = SnapshotWatcher(plan.gate).start()
        old_gate.close()
        if plan.systems_changed:
            threading.Thread(target=_dispose_when_idle, args=(old_systems, self.in_flight), daemon=True).start()
        ignored = [key for key in RESTART_ONLY if getattr(new.model, key) != getattr(self.started_model, key)]
        if ignored:
            log.warning("configuration %s: changes to %s take effect at the next start of the agent", new.path,
                        ", ".join(f"`{k}:`" for k in ignored))
        log.info("configuration %s loaded: %d flows", new.path, len(new.flows(self.only)))


class ReloadPlan:
    def __init__(self, gate: DriftGate, systems: Systems, jobs: dict[str, FlowJob], removed: list[str],
                 systems_changed: bool):
        self.gate, self.systems, self.jobs, self.removed, self.systems_changed = gate, systems, jobs, removed, systems_changed


def _dispose_when_idle(systems: Systems, in_flight: InFlight) -> None:
    in_flight.wait_idle(3600)
    systems.dispose()


class _ConfigEvents(FileSystemEventHandler):
    def __init__(self, path: Path, changed: threading.Event):
        self.path, self.changed = path, changed

    def on_any_event(self, event: FileSystemEvent) -> None:
        if not changes_content(event):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if raw and Path(raw if isinstance(raw, str) else raw.decode()).resolve() == self.path:
                self.changed.set()


class ConfigWatcher:
    """Calls `reload` once an edit of the configuration file has settled (watchdog on its folder)."""

    def __init__(self, path: Path, reload: Callable[[], object]):
        self.path = path.resolve()
        self.reload = reload
        self.changed = threading.Event()
        self.done = threading.Event()
        self.observer = Observer()
        self.observer.daemon = True
        self.observer.schedule(_ConfigEvents(self.path, self.changed), str(self.path.parent), recursive=False)
        self.thread = threading.Thread(target=self._loop, name="config-watcher", daemon=True)

    def start(self) -> ConfigWatcher:
        self.observer.start()
        self.thread.start()
        return self

    def _loop(self) -> None:
        while not self.done.is_set():
            if not self.changed.wait(0.5):
                continue
            while self.changed.is_set():  # debounce: wait until the file stopped changing
                self.changed.clear()
                if self.done.wait(DEBOUNCE_SECONDS):
                    return
            self.reload()

    def stop(self) -> None:
        self.done.set()
        self.observer.stop()
        self.observer.join(timeout=5)


def run_forever(config: LoadedConfig, only: str | None = None, lifecycle: Lifecycle | None = None) -> ExitCode:
    """Run until SIGTERM/SIGINT (or `lifecycle.request_stop()`: the Windows service's stop). Returns the exit code."""
    # APScheduler logs every job run at INFO: 86,400 lines a day per flow at a 1 s cadence. Its warnings stay.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))
    return Runner(config, only, lifecycle).run()

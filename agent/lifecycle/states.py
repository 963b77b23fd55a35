"""The running agent's lifecycle: starting -> ready -> (reloading -> ready)* -> stopping -> stopped.

The same on every platform; only the service manager that is told differs (systemd's notify socket, the
Windows service control manager, or nobody). `run_forever` drives it:
- `watch(scheduler, status)`: ready once the scheduler starts (every flow is prepared by then), watchdog
  heartbeats from a job of that scheduler, and the scheduler shut down when a stop is requested;
- `request_stop()`: what SIGTERM, SIGINT and the Windows service's stop all call; the first call counts;
- `request_reload()`: what SIGHUP (systemd's ExecReload=) calls; it runs the `on_reload` hook between RELOADING=1
  and READY=1, or, with no hook installed (this version), says that a restart applies a changed configuration.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from apscheduler.events import EVENT_SCHEDULER_STARTED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.interval import IntervalTrigger

from agent.lifecycle import notify

log = logging.getLogger("mes_erp_agent")
STARTING, READY, RELOADING, STOPPING, STOPPED = "starting", "ready", "reloading", "stopping", "stopped"
HEARTBEAT_JOB = "service_watchdog"
HEARTBEAT_EXECUTOR = "service_watchdog"  # its own thread: busy flows never delay the heartbeat


class ServiceManager(Protocol):
    """Who is told about the lifecycle: systemd (agent/lifecycle/notify.py), the Windows SCM, or nobody."""

    def ready(self, status: str) -> None: ...

    def status(self, text: str) -> None: ...

    def heartbeat(self) -> None: ...

    def reloading(self, monotonic_usec: int) -> None: ...

    def stopping(self) -> None: ...


class Lifecycle:
    """Thread-safe; `request_stop` may be called from a signal handler or from the Windows service's control thread.

    `heartbeat_every` (seconds) turns the watchdog heartbeat on; `history` is every state with the clock's time."""

    def __init__(self, manager: ServiceManager | None = None, heartbeat_every: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.manager: ServiceManager = manager or notify.NoServiceManager()
        self.heartbeat_every = heartbeat_every
        self.clock = clock
        self.history: list[tuple[str, float]] = [(STARTING, clock())]
        self._stop_callbacks: list[Callable[[], None]] = []
        self._reload: Callable[[], str] | None = None
        self._status = ""
        self._lock = threading.RLock()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Lifecycle:
        """systemd's when the agent runs under a `Type=notify` unit (NOTIFY_SOCKET, WATCHDOG_USEC), else silent."""
        env = os.environ if environ is None else environ
        return cls(notify.from_environment(env), notify.watchdog_interval(env))

    @property
    def state(self) -> str:
        return self.history[-1][0]

    @property
    def stop_requested(self) -> bool:
        return self.state in (STOPPING, STOPPED)

    def ready(self, status: str) -> None:
        """Every flow is prepared and the scheduler runs (again, after a reload)."""
        with self._lock:
            if self.state not in (STARTING, RELOADING):
                return
            self._enter(READY)
            self._status = status
            self.manager.ready(status)

    def status(self, text: str) -> None:
        self.manager.status(text)

    def heartbeat(self) -> None:
        """The scheduler loop is alive: told only while ready or reloading (not before ready, not while stopping)."""
        if self.state in (READY, RELOADING):
            self.manager.heartbeat()

    def on_reload(self, reload: Callable[[], str]) -> None:
        """`reload()` applies a changed configuration and returns the new status text (e.g. `running 5 flows`)."""
        self._reload = reload

    def request_reload(self) -> None:
        """Reload the configuration through the `on_reload` hook; RELOADING=1 before, READY=1 after (also when it failed:
        the agent runs on with the configuration it had)."""
        if self._reload is None:
            log.warning("reload requested (SIGHUP): this version applies a changed configuration at a restart only "
                        "(systemctl restart); the agent runs on with the configuration it started with")
            return
        with self._lock:
            if self.state != READY:
                return
            self._enter(RELOADING)
        self.manager.reloading(int(self.clock() * 1_000_000))
        status = self._status
        try:
            status = self._reload()
        finally:
            with self._lock:
                if self.state == RELOADING:
                    self._enter(READY)
                    self._status = status
                    self.manager.ready(status)

    def handle_reload_signal(self) -> None:
        """SIGHUP calls `request_reload` (from the main thread only; Windows has no SIGHUP)."""
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda *_: self.request_reload())

    def on_stop(self, callback: Callable[[], None]) -> None:
        """`callback` runs at the first `request_stop` (at once when that has happened already)."""
        with self._lock:
            if not self.stop_requested:
                self._stop_callbacks.append(callback)
                return
        callback()

    def request_stop(self) -> None:
        """Stop the agent: tell the service manager, then run the stop callbacks. Later calls do nothing."""
        with self._lock:
            if self.stop_requested:
                return
            self._enter(STOPPING)
            callbacks, self._stop_callbacks = self._stop_callbacks, []
        self.manager.stopping()
        for callback in callbacks:
            callback()

    def stopped(self) -> None:
        """The agent has let go of everything (its scheduler, alerts, connections)."""
        self.request_stop()
        with self._lock:
            if self.state != STOPPED:
                self._enter(STOPPED)

    def since(self, state: str) -> float | None:
        """When the lifecycle last entered `state`, on its clock."""
        return next((at for name, at in reversed(self.history) if name == state), None)

    def watch(self, scheduler: BaseScheduler, status: str) -> None:
        """Ready when `scheduler` starts, heartbeats from it, and its shutdown at the stop request."""
        def started(_event: Any) -> None:
            if self.stop_requested:  # stopped while the flows were being prepared
                scheduler.shutdown(wait=False)
            else:
                self.ready(status)

        def shutdown() -> None:
            if scheduler.running:
                scheduler.shutdown(wait=False)

        scheduler.add_listener(started, EVENT_SCHEDULER_STARTED)
        if self.heartbeat_every:
            scheduler.add_executor(ThreadPoolExecutor(1), HEARTBEAT_EXECUTOR)
            scheduler.add_job(self.heartbeat, IntervalTrigger(seconds=self.heartbeat_every), id=HEARTBEAT_JOB,
                              name="watchdog heartbeat", executor=HEARTBEAT_EXECUTOR, misfire_grace_time=None)
        self.on_stop(shutdown)

    def _enter(self, state: str) -> None:
        self.history.append((state, self.clock()))
        log.debug("service lifecycle: %s", state)

"""A clean stop: SIGTERM, SIGINT (and the Windows service's stop) ask every flow to stop after its batch in flight.

A flow checks `StopRequest.is_set()` before it reads its next page, so the batch being written commits (or,
if the process must end before it does, is rolled back by the database when the connection closes): nothing
half-written is ever committed, and the next run resumes from the committed watermark.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

log = logging.getLogger("mes_erp_agent")
STOP_SIGNALS = ("SIGTERM", "SIGINT")


class StopRequest:
    """Set once; `on_stop` callbacks (e.g. the scheduler's shutdown) run in the thread that asked."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        self.reason: str | None = None

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def on_stop(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def request(self, reason: str) -> None:
        if self._event.is_set():
            return
        self.reason = reason
        self._event.set()
        log.info("stopping (%s): each flow finishes the batch in flight, then the agent exits", reason)
        for callback in self._callbacks:
            callback()

    def install_signal_handlers(self) -> Callable[[], None]:
        """SIGTERM and SIGINT request a stop (only from the main thread, where Python delivers signals).
        Returns what puts the previous handlers back."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {}
        for name in STOP_SIGNALS:
            number = getattr(signal, name)
            previous[number] = signal.signal(number, lambda signum, _frame: self.request(signal.Signals(signum).name))

        def restore() -> None:
            for number, handler in previous.items():
                signal.signal(number, handler)

        return restore


class InFlight:
    """How many flow runs are executing now, to wait for them at a stop."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition()

    def __enter__(self) -> InFlight:
        with self._idle:
            self._count += 1
        return self

    def __exit__(self, *_exc: object) -> None:
        with self._idle:
            self._count -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """True when no run is executing within `timeout` seconds."""
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout)

    @property
    def running(self) -> int:
        return self._count

"""Flows that poll at the same moment share one catalog read per system, and each poll is still answered by a read
that began after it asked: a schema change committed before a poll started always stops that poll.

The long-running mode fires every flow of one cadence in the same scheduler tick, so their asks arrive within a few
milliseconds of each other. Without a wait, the first ask begins a read at once and the others, asking a moment
later, cannot take its answer (it began before they asked) and need a second read. So an ask that finds no round
open opens one and its read waits a short coalescing window: it begins when every flow of the system has asked,
when no flow has asked for `QUIET` seconds, or `WINDOW` seconds after the round opened, whichever comes first.
Every flow that asks before the read begins joins that round; a flow asking later opens the next round, whose read
begins after the running one ends. A burst of polls costs one catalog query per system.

The wait is wall time (a sleep, no CPU), paid once per round: a poll costs at most `QUIET` more when it is alone,
nothing more when all the system's flows ask together, at most `WINDOW` more when a long stream of asks keeps coming.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

# The coalescing window. A burst's asks are microseconds apart when the machine is idle, and a few milliseconds apart
# when it is busy (Python switches threads every 5 ms when one computes): a QUIET of 5 ms is longer than the gap
# between two asks of one burst, and short beside any cadence (the shortest is 0.1 s). WINDOW caps what a steady
# stream of asks can add to the first one's poll, so rounds keep coming at least every 25 ms plus one read.
QUIET = 0.005
WINDOW = 0.025


class Round(Generic[T]):
    """One catalog read and the asks it answers: every ask joined before the read began."""

    def __init__(self, now: float):
        self.opened = self.last_ask = now
        self.flows: set[str] = set()
        self.done = threading.Event()
        self.answer: T | None = None
        self.error: BaseException | None = None

    def begins_at(self, expected: frozenset[str]) -> float:
        if expected and self.flows >= expected:
            return self.last_ask  # every flow of the system asked: nobody else to wait for
        return min(self.last_ask + QUIET, self.opened + WINDOW)


class SharedCheck(Generic[T]):
    """One system's checks. `ask` joins the round whose read has not begun (or opens one); `answer` waits for the
    round's answer, running its read itself when the window has passed and no other asker has begun it yet.

    `run` is called with `lock` held (the lock also guards what the read touches); `flows`: the system's flows."""

    def __init__(self, run: Callable[[], T], lock: threading.Lock, flows: frozenset[str]):
        self._run, self._lock, self._flows = run, lock, flows
        self._state = threading.Lock()  # guards `_open`: held for microseconds, never while a read runs
        self._open: Round[T] | None = None

    def ask(self, flow: str | None = None) -> Round[T]:
        with self._state:
            now = time.monotonic()
            turn = self._open
            if turn is None:
                turn = self._open = Round(now)
            turn.last_ask = now
            if flow is not None:
                turn.flows.add(flow)
            return turn

    def asking(self) -> frozenset[str]:
        """The flows that asked for the read that has not begun yet."""
        with self._state:
            return frozenset(self._open.flows) if self._open is not None else frozenset()

    def answer(self, turn: Round[T], wait: bool = True) -> T:
        """`wait=False`: begin the read without the window (a caller that knows no other ask is coming)."""
        while not turn.done.is_set():
            with self._state:
                delay = turn.begins_at(self._flows) - time.monotonic() if wait else 0.0
            if delay > 0:
                turn.done.wait(delay)  # woken early when another asker has run the read
                continue
            with self._lock:  # after the read running now, if any: it began before some of this round's asks
                if turn.done.is_set():
                    break
                with self._state:
                    if self._open is turn:
                        self._open = None  # the read begins: later asks open the next round
                try:
                    turn.answer = self._run()
                except BaseException as exc:  # every asker of the round gets it, as Future.result() does
                    turn.error = exc
                finally:
                    turn.done.set()
        if turn.error is not None:
            raise turn.error
        return turn.answer  # type: ignore[return-value]  # set by the read, which did not raise

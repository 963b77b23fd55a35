"""Flows that poll at the same moment share one catalog read per system, and each poll is still answered by a read
that began after it asked: a schema change committed before a poll started always stops that poll.

When the scheduler fires many flows in one tick (the long-running mode: schedule.CadenceTrigger fires the flows of
one cadence together), their asks arrive within a few milliseconds of each other. Without a wait, the first ask
begins a read at once and the others, asking a moment later, cannot take its answer (it began before they asked)
and need a second read. So an ask that finds no round
open opens one and its read waits a short coalescing window: it begins when every flow of the system has asked,
when no flow has asked for `QUIET` seconds, or `WINDOW` seconds after the round opened, whichever comes first.
Every flow that asks before the read begins joins that round; a flow asking later opens the next round, whose read
begins after the running one ends. A burst of polls costs one catalog query per system.

The wait is wall time (LOOKS wake-ups of one thread, no other CPU), paid once per round: a poll costs about `QUIET`
more when it is alone, nothing more when all the system's flows ask together, at most `WINDOW` more when a long
stream of asks keeps coming.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

# The coalescing window. The asks of flows fired in one scheduler tick are microseconds apart when the machine is
# idle, and up to ~5 ms apart when it is busy (Python hands the GIL to a waiting thread only every 5 ms while another
# computes; measured with 20 flows at 1 s fired together: largest gap 4.3 ms).
# A QUIET of twice that keeps a burst in one round and is short beside any cadence (the shortest is 0.1 s); most
# bursts do not wait for it, since a round begins as soon as every flow of the system has asked. Quiet is counted in
# looks, QUIET / LOOKS apart, that saw no new ask, not in wall time: when the whole process stalls (a garbage
# collection, a busy machine) the late asks it held back still join. WINDOW caps what a steady stream of asks can
# add to the first one's poll, so a read begins at least every 50 ms while asks keep coming.
QUIET = 0.010
LOOKS = 4
WINDOW = 0.050


class Round(Generic[T]):
    """One catalog read and the asks it answers: every ask joined before the read began."""

    def __init__(self, now: float):
        self.opened = now
        self.asks = 0
        self.flows: set[str] = set()
        self.watched = False  # one asker watches the window (the others wait for the answer)
        self.done = threading.Event()
        self.answer: T | None = None
        self.error: BaseException | None = None


class SharedCheck(Generic[T]):
    """One system's checks. `ask` joins the round whose read has not begun (or opens one); `answer` waits for the
    round's answer: its first caller watches the window and runs the read (any other caller does, should the first
    not have begun it by the end of the window).

    `run` is called with `lock` held (the lock also guards what the read touches); `flows`: the system's flows."""

    def __init__(self, run: Callable[[], T], lock: threading.Lock, flows: frozenset[str]):
        self._run, self._lock, self._flows = run, lock, flows
        self._state = threading.Lock()  # guards the rounds' fields: held for microseconds, never while a read runs
        self._open: Round[T] | None = None

    def ask(self, flow: str | None = None) -> Round[T]:
        with self._state:
            turn = self._open
            if turn is None:
                turn = self._open = Round(time.monotonic())
            turn.asks += 1
            if flow is not None:
                turn.flows.add(flow)
            return turn

    def asking(self) -> frozenset[str]:
        """The flows that asked for the read that has not begun yet."""
        with self._state:
            return frozenset(self._open.flows) if self._open is not None else frozenset()

    def answer(self, turn: Round[T], wait: bool = True) -> T:
        """`wait=False`: begin the read without the window (a caller that knows no other ask is coming)."""
        if wait:
            self._window(turn)
        while not turn.done.is_set():
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

    def _window(self, turn: Round[T]) -> None:
        """Return when the round's read may begin: every flow of the system asked, LOOKS looks saw no new ask, or
        WINDOW has passed since the round opened. Only the first caller looks; the others wait for the answer."""
        with self._state:
            watcher, turn.watched = not turn.watched, True
        if not watcher:
            turn.done.wait(WINDOW)
            return
        seen, quiet = -1, 0
        while True:
            with self._state:
                asks, everyone = turn.asks, bool(self._flows) and turn.flows >= self._flows
                left = turn.opened + WINDOW - time.monotonic()
            quiet, seen = (quiet + 1 if asks == seen else 0), asks
            if everyone or left <= 0 or quiet >= LOOKS or turn.done.wait(min(QUIET / LOOKS, left)):
                return

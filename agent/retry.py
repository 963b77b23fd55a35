"""A flow's failure streak in the long-running mode: capped exponential backoff with jitter, logged once each way.

After a failed poll the flow waits before it touches a database again (tenacity's `wait_exponential_jitter`:
first_wait, doubling, up to max_wait, plus up to first_wait of jitter so flows that failed together do not
retry in lockstep). Scheduled polls during the wait return at once, without a query. The log says once that
the flow is failing and why (ERROR, the driver's first line, passwords scrubbed), once when it recovers (INFO,
after how long and how many attempts); every retry in between is DEBUG.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import tenacity

from agent.config import FlowRetry
from agent.connect import scrub
from agent.report import FlowReport

log = logging.getLogger("mes_erp_agent")
Clock = Callable[[], float]


class FailureStreak:
    """One flow's consecutive failed polls. Used from the flow's own job only (one poll at a time)."""

    def __init__(self, flow: str, retry: FlowRetry, secrets: list[str] | tuple[str, ...] = (),
                 clock: Clock = time.monotonic):
        first, cap = retry.first_wait.total_seconds(), retry.max_wait.total_seconds()
        self.flow, self.secrets, self.clock = flow, tuple(secrets), clock
        self._wait = tenacity.wait_exponential_jitter(initial=first, max=cap, jitter=first)
        self.attempts = 0  # failed polls in the current streak
        self.started: float | None = None
        self.retry_at: float | None = None

    def waiting(self) -> bool:
        """True while the flow must not touch a database yet."""
        return self.retry_at is not None and self.clock() < self.retry_at

    def failed(self, report: FlowReport) -> float:
        """Record a failed poll and log it (ERROR the first time, DEBUG after). Returns the wait before the next."""
        now = self.clock()
        self.attempts += 1
        self.started = self.started if self.started is not None else now
        wait = self._next_wait()
        self.retry_at = now + wait
        reason = first_line(scrub(report.message, self.secrets))
        where = f" on system {report.system}" if report.system else ""
        if self.attempts == 1:
            log.error("flow %s is failing%s: %s. It retries by itself with backoff (next in %.1fs); other flows keep "
                      "running. If it lasts, check that the database is up and accepts the agent's login.",
                      self.flow, where, reason, wait)
        else:
            log.debug("flow %s: attempt %d failed%s: %s; next in %.1fs", self.flow, self.attempts, where, reason, wait)
        return wait

    def succeeded(self) -> None:
        """A poll that did not fail: log the recovery once, and reset."""
        if self.attempts and self.started is not None:
            log.info("flow %s recovered after %s and %d failed attempt%s; it resumed from its committed watermark",
                     self.flow, duration_text(self.clock() - self.started), self.attempts, "s" if self.attempts != 1 else "")
        self.attempts, self.started, self.retry_at = 0, None, None

    def _next_wait(self) -> float:
        state = tenacity.RetryCallState(retry_object=tenacity.Retrying(), fn=None, args=(), kwargs={})
        state.attempt_number = self.attempts
        return float(self._wait(state))


def first_line(message: str) -> str:
    lines = message.strip().splitlines()
    return lines[0] if lines else ""


def duration_text(seconds: float) -> str:
    """`42s`, `3m 5s`, `2h 10m`: how long a person reads it."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60}s"
    return f"{whole // 3600}h {whole % 3600 // 60}m"

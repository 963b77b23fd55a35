"""Couriers: one thread per remote channel that sends the outbox's messages, off the flows' threads.

A courier takes the oldest undelivered message for its channel from the outbox (the IncidentBook), waits
for the channel's rate limit, sends it, and marks it delivered. A failure is logged once per failure
streak (not per retry) and retried with exponential backoff for as long as the agent runs; the message
stays in the outbox meanwhile, so nothing is dropped. Nothing here raises into a flow.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from agent.alerts.channels import Channel
from agent.alerts.model import Message

log = logging.getLogger("mes_erp_agent")


@dataclass(frozen=True)
class DeliveryPolicy:
    messages: int = 10  # at most this many messages per channel ...
    per: float = 60.0  # ... in any window of this many seconds; the rest wait in the outbox
    first_wait: float = 2.0  # seconds before the first retry of a failing channel; doubles up to max_wait
    max_wait: float = 300.0
    exit_wait: float = 10.0  # at shutdown, seconds to let couriers finish before the rest waits for the next start

    def backoff(self, failures: int) -> float:
        return float(min(self.max_wait, self.first_wait * 2 ** max(0, failures - 1)))


class Outbox(Protocol):
    def next_for(self, channel: str) -> Message | None: ...

    def mark_sent(self, channel: str, message: Message) -> None: ...


class RateLimit:
    """At most `messages` sends in any `per`-second window."""

    def __init__(self, messages: int, per: float):
        self.messages, self.per = messages, per
        self._sent: collections.deque[float] = collections.deque()

    def wait_time(self, now: float) -> float:
        while self._sent and now - self._sent[0] >= self.per:
            self._sent.popleft()
        return 0.0 if len(self._sent) < self.messages else self._sent[0] + self.per - now

    def record(self, now: float) -> None:
        self._sent.append(now)


class Courier:
    def __init__(self, outbox: Outbox, channel: Channel, policy: DeliveryPolicy):
        self.outbox, self.channel, self.policy = outbox, channel, policy
        self.rate = RateLimit(policy.messages, policy.per)
        self.failures = 0  # consecutive failed attempts: the current failure streak
        self._wake = threading.Event()
        self._deadline: float | None = None  # set by stop(): deliver what can be delivered until then
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def wake(self) -> None:
        """Something new is in the outbox. Starts the thread on first use (commands that never alert start none)."""
        with self._start_lock:
            if self._thread is None and self._deadline is None:
                self._thread = threading.Thread(target=self._run, name=f"alerts-{self.channel.name}", daemon=True)
                self._thread.start()
        self._wake.set()

    def stop(self, deadline: float) -> None:
        """Deliver until `deadline` (time.monotonic()), then stop; what is left stays in the outbox."""
        with self._start_lock:
            self._deadline = deadline
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join(timeout=max(0.0, deadline - time.monotonic()) + 1.0)

    # --- the thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            message = self.outbox.next_for(self.channel.name)
            if message is None:
                if self._deadline is not None:
                    return
                self._wake.wait()
                self._wake.clear()
                continue
            if not self._pause(self._rate_wait(message)):
                return
            if self._send(message):
                self.outbox.mark_sent(self.channel.name, message)
            elif not self._pause(self.policy.backoff(self.failures)):
                return

    def _rate_wait(self, message: Message) -> float:
        wait = self.rate.wait_time(time.monotonic())
        if wait > 0:
            log.info("alert channel %s: rate limit of %d messages per %gs reached; %r waits %.0fs in the outbox",
                     self.channel.describe(), self.policy.messages, self.policy.per, message.title, wait)
        return wait

    def _send(self, message: Message) -> bool:
        try:
            self.channel.send(message)
        except Exception as exc:  # any failure of any channel: log, keep the message, retry
            self._failed(message, exc)
            return False
        self.rate.record(time.monotonic())
        if self.failures:
            log.warning("alert channel %s delivers again (after %d failed attempt%s); sent %r",
                        self.channel.describe(), self.failures, "s" if self.failures != 1 else "", message.title)
        self.failures = 0
        return True

    def _failed(self, message: Message, exc: Exception) -> None:
        self.failures += 1
        if self.failures == 1:
            log.warning("alert channel %s could not send %r: %s. Retrying with backoff up to every %gs; the message "
                        "waits in the outbox and flows keep running. Check the channel's settings under `alerts:`.",
                        self.channel.describe(), message.title, describe_error(exc), self.policy.max_wait)
        else:
            log.debug("alert channel %s: attempt %d failed: %s", self.channel.describe(), self.failures,
                      describe_error(exc))

    def _pause(self, seconds: float) -> bool:
        """Sleep `seconds`, or less when stopping. False when the courier must stop now."""
        if seconds <= 0:
            return True
        deadline = self._deadline
        if deadline is not None and time.monotonic() + seconds > deadline:
            return False
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self._wake.wait(left)
            self._wake.clear()
            if self._deadline is not None and end > self._deadline:
                return False
        return True


def describe_error(exc: Exception) -> str:
    """The error's class and text. Channels never put a password or a secret URL into their errors."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

"""FlowHealth: what each flow is doing, fed by the scheduler, read by /healthz, /metrics and `status`.

The scheduler calls, per flow and from its worker threads:
  batch_done(batch)       after each committed batch (`pipeline.run_flow(on_batch=...)`): live progress;
  record(report)          after every poll, with its FlowReport;
  record_measurement(...) after a poll, with `probe.measure(ctx)` (lag, backlog);
  record_outcomes(...)    with the flow's rows by import outcome (the monitor's periodic check);
  set_next_run(...)       when the scheduler knows the next fire time;
  set_open_incidents(...) with the number of open drift incidents that halt the flow.

States: `starting` (no poll yet), `ok` (the last poll caught up), `catching_up` (a poll is moving full batches,
or ended with rows still pending), `failing` (since the first failure of the current streak, with the first
line of the error), `halted` (halted on schema drift, deliberately: it resumes by itself once resolved), `standby`
(another agent holds the flow's lock; healthy: this agent takes the flow over if that one dies).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from agent.config import LoadedConfig
from agent.connect import connection_url
from agent.errors import SecretUnavailable
from agent.health.metrics import AgentMetrics
from agent.health.probe import Measurement
from agent.outcome import OutcomeCounts
from agent.report import FAILED, HALTED, BatchReport, FlowReport

STARTING, OK, CATCHING_UP, FAILING, HALTED_ON_DRIFT = "starting", "ok", "catching_up", "failing", "halted"
STANDBY = "standby"  # another agent holds the flow's lock (agent/locks.py): this one does not move it
HEALTHY_STATES = (OK, HALTED_ON_DRIFT, STANDBY)  # /healthz answers 200 only when every flow is in one of these
REDACTED = "***"
Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass
class _Flow:
    name: str
    batch_size: int
    state: str = STARTING
    message: str | None = None  # failing: the error's first line; halted: the reason's first line
    failing_since: dt.datetime | None = None
    consecutive_failures: int = 0
    last_poll_at: dt.datetime | None = None
    last_success_at: dt.datetime | None = None
    rows_staged: int = 0
    rows_quarantined: int = 0
    batches: int = 0
    failures: int = 0
    measurement: Measurement = field(default_factory=Measurement)
    open_incidents: int = 0
    next_run: dt.datetime | None = None
    # What batch_done already counted of the poll in progress (record() adds only the rest).
    poll_rows_staged: int = 0
    poll_rows_quarantined: int = 0
    poll_batches: int = 0


class FlowHealth:
    """Thread-safe. `secrets` (passwords) are replaced by *** in every message it keeps."""

    def __init__(self, batch_sizes: dict[str, int], secrets: Iterable[str] = (), clock: Clock = utc_now):
        self._flows = {name: _Flow(name, size) for name, size in batch_sizes.items()}
        self._secrets = tuple(s for s in secrets if s)
        self._clock = clock
        self._lock = threading.Lock()
        self.metrics = AgentMetrics(batch_sizes)

    @classmethod
    def for_config(cls, config: LoadedConfig, only: str | None = None, clock: Clock = utc_now) -> FlowHealth:
        """The flows `run` runs (all enabled, or `only`), hiding every system's password."""
        passwords = [_password(config, name) for name in config.model.systems]
        sizes = {name: flow.batch_size for name, flow in config.flows(only).items()}
        return cls(sizes, secrets=[str(p) for p in passwords if p], clock=clock)

    def set_flows(self, batch_sizes: dict[str, int]) -> None:
        """After a configuration reload: flows added start fresh, flows removed are forgotten, the rest keep theirs."""
        with self._lock:
            for name in [n for n in self._flows if n not in batch_sizes]:
                del self._flows[name]
                self.metrics.forget(name)
            for name, size in batch_sizes.items():
                if name not in self._flows:
                    self._flows[name] = _Flow(name, size)
                    self.metrics.add(name)
                else:
                    self._flows[name].batch_size = size

    def batch_done(self, batch: BatchReport) -> None:
        """A committed batch; a full one means more rows are waiting: the flow is catching up."""
        with self._lock:
            flow = self._flows[batch.flow]
            flow.poll_rows_staged += batch.rows_written
            flow.poll_rows_quarantined += batch.rows_quarantined
            flow.poll_batches += 1
            self._count(flow, batch.rows_written, batch.rows_quarantined, 1)
            if batch.rows_read >= flow.batch_size:
                flow.failing_since, flow.consecutive_failures, flow.message = None, 0, None
                self._set_state(flow, CATCHING_UP)

    def record(self, report: FlowReport) -> None:
        """The end of a poll."""
        with self._lock:
            flow, now = self._flows[report.flow], self._clock()
            self._count(flow, report.rows_written - flow.poll_rows_staged,
                        report.rows_quarantined - flow.poll_rows_quarantined, report.batches - flow.poll_batches)
            flow.poll_rows_staged = flow.poll_rows_quarantined = flow.poll_batches = 0
            flow.last_poll_at = now
            self.metrics.add_poll(flow.name, report.seconds, report.outcome == FAILED)
            if report.outcome == FAILED:
                flow.failures += 1
                flow.consecutive_failures += 1
                flow.failing_since = flow.failing_since or now
                flow.message = self._first_line(report.message)
                self._set_state(flow, FAILING)
                return
            flow.failing_since, flow.consecutive_failures = None, 0
            if report.outcome == HALTED:
                flow.message = self._first_line(report.message)
                self._set_state(flow, HALTED_ON_DRIFT)
                return
            flow.last_success_at, flow.message = now, None
            self._set_state(flow, OK if report.caught_up else CATCHING_UP)

    def record_measurement(self, name: str, measurement: Measurement) -> None:
        with self._lock:
            self._flows[name].measurement = measurement
            self.metrics.set_measurement(name, measurement.lag_seconds, measurement.pending_rows,
                                         measurement.oldest_pending_age_seconds)

    def record_outcomes(self, name: str, counts: OutcomeCounts | None) -> None:
        """The flow's rows by import outcome (None: not watched, or not readable now): /metrics `import_rows`."""
        with self._lock:
            if counts is None:
                self.metrics.set_import_rows(name, None, None, None)
            else:
                self.metrics.set_import_rows(name, counts.pending_rows, counts.error_rows, counts.done_rows)

    def set_next_run(self, name: str, when: dt.datetime | None) -> None:
        with self._lock:
            self._flows[name].next_run = when

    def set_open_incidents(self, name: str, count: int) -> None:
        with self._lock:
            self._flows[name].open_incidents = count

    def set_standby(self, name: str, standby: bool) -> None:
        """The agent lost or took the flow's lock: `standby`, or back to `starting` until its next poll."""
        with self._lock:
            flow = self._flows.get(name)
            if flow is not None and (standby or flow.state == STANDBY):
                flow.message = None
                self._set_state(flow, STANDBY if standby else STARTING)

    def state(self, name: str) -> str | None:
        with self._lock:
            flow = self._flows.get(name)
            return flow.state if flow is not None else None

    def healthy(self) -> bool:
        """True when every flow is ok or deliberately halted on drift (/healthz: 200)."""
        with self._lock:
            return all(flow.state in HEALTHY_STATES for flow in self._flows.values())

    def snapshot(self) -> list[dict[str, Any]]:
        """One dict per flow, in configuration order (`status --json`, /healthz); times as ISO-8601 UTC."""
        with self._lock:
            return [_as_dict(flow) for flow in self._flows.values()]

    def _count(self, flow: _Flow, rows_staged: int, rows_quarantined: int, batches: int) -> None:
        flow.rows_staged += rows_staged
        flow.rows_quarantined += rows_quarantined
        flow.batches += batches
        self.metrics.add_batch(flow.name, rows_staged, rows_quarantined, batches)

    def _set_state(self, flow: _Flow, state: str) -> None:
        flow.state = state
        self.metrics.set_state(flow.name, state, healthy=state in HEALTHY_STATES)

    def _first_line(self, message: str) -> str:
        for secret in self._secrets:
            message = message.replace(secret, REDACTED)
        lines = message.strip().splitlines()
        return lines[0] if lines else ""


def _as_dict(flow: _Flow) -> dict[str, Any]:
    m = flow.measurement
    return {
        "flow": flow.name, "state": flow.state, "healthy": flow.state in HEALTHY_STATES, "message": flow.message,
        "failing_since": _iso(flow.failing_since), "consecutive_failures": flow.consecutive_failures,
        "last_poll_at": _iso(flow.last_poll_at), "last_success_at": _iso(flow.last_success_at),
        "rows_staged": flow.rows_staged, "rows_quarantined": flow.rows_quarantined, "batches": flow.batches,
        "failures": flow.failures, "lag_seconds": m.lag_seconds, "pending_rows": m.pending_rows,
        "oldest_pending_age_seconds": m.oldest_pending_age_seconds, "open_incidents": flow.open_incidents,
        "next_run": _iso(flow.next_run),
    }


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value.isoformat(timespec="seconds") + "Z"


def _password(config: LoadedConfig, name: str) -> str | None:
    """A system's password, to hide it from every message kept; None when it has none or it cannot be read."""
    try:
        return connection_url(config, name).password
    except SecretUnavailable:
        return None

"""The agent's Prometheus metrics, per flow (label `flow`), in a registry of their own.

A dedicated CollectorRegistry, not prometheus-client's global one: each agent (and each test) has its
own figures, and /metrics shows only the agent's metrics. FlowHealth is the only writer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

PREFIX = "mes_erp_agent_"
STATES = ("starting", "ok", "catching_up", "failing", "halted", "standby")
OUTCOMES = ("pending", "error", "done")  # label `outcome` of import_rows
# Poll durations: a poll that finds nothing takes milliseconds; an initial load of a large table minutes.
POLL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
NAN = float("nan")


class AgentMetrics:
    def __init__(self, flows: Iterable[str]):
        self.registry = CollectorRegistry(auto_describe=True)
        flow = ("flow",)
        self.rows_staged = Counter(f"{PREFIX}rows_staged", "Rows appended to the staging table", flow, registry=self.registry)
        self.rows_quarantined = Counter(
            f"{PREFIX}rows_quarantined", "Rows newly recorded in agent_quarantine", flow, registry=self.registry
        )
        self.batches = Counter(f"{PREFIX}batches", "Batches committed (one ERP transaction each)", flow, registry=self.registry)
        self.failures = Counter(f"{PREFIX}failures", "Polls that failed", flow, registry=self.registry)
        self.lag = Gauge(f"{PREFIX}lag_seconds", "How far staging trails the source: newest source change minus "
                         "the staged watermark, on the source's clock (NaN: unknown)", flow, registry=self.registry)
        self.drift_halted = Gauge(f"{PREFIX}drift_halted", "1 while the flow is halted on schema drift", flow,
                                  registry=self.registry)
        self.backlog_rows = Gauge(f"{PREFIX}backlog_rows", "PENDING staging rows the ERP import job has not picked up "
                                  "(NaN: unknown)", flow, registry=self.registry)
        self.backlog_age = Gauge(f"{PREFIX}backlog_oldest_age_seconds", "Age of the oldest PENDING staging row (0: "
                                 "none; NaN: unknown)", flow, registry=self.registry)
        self.import_rows = Gauge(
            f"{PREFIX}import_rows", "Staged rows by the ERP import's outcome: pending, error (rejected), done (the "
            "flow's agent_ledger entries neither pending nor in error; NaN: unknown or not watched)",
            ("flow", "outcome"), registry=self.registry)
        self.up = Gauge(f"{PREFIX}flow_up", "1 while the flow is ok or deliberately halted on drift (as /healthz)", flow,
                        registry=self.registry)
        self.state = Gauge(f"{PREFIX}flow_state", "1 for the flow's current state", ("flow", "state"), registry=self.registry)
        self.poll_duration = Histogram(f"{PREFIX}poll_duration_seconds", "Duration of a poll (drift gate, reads, writes)",
                                       flow, buckets=POLL_BUCKETS, registry=self.registry)
        for name in flows:
            self._initialise(name)

    def _initialise(self, flow: str) -> None:
        """Every series exists from the start, so a rate or an alert never sees a missing series."""
        for counter in (self.rows_staged, self.rows_quarantined, self.batches, self.failures):
            counter.labels(flow)
        for gauge in (self.lag, self.backlog_rows, self.backlog_age):
            gauge.labels(flow).set(NAN)
        for outcome in OUTCOMES:
            self.import_rows.labels(flow, outcome).set(NAN)
        self.drift_halted.labels(flow).set(0)
        self.poll_duration.labels(flow)
        self.set_state(flow, "starting", healthy=False)

    def add(self, flow: str) -> None:
        """A flow added by a configuration reload."""
        self._initialise(flow)

    def forget(self, flow: str) -> None:
        """A flow removed by a configuration reload: its series leave /metrics."""
        for metric in (self.rows_staged, self.rows_quarantined, self.batches, self.failures, self.lag, self.backlog_rows,
                       self.backlog_age, self.drift_halted, self.up, self.poll_duration):
            with contextlib.suppress(KeyError):  # never labelled
                metric.remove(flow)
        for state in STATES:
            with contextlib.suppress(KeyError):
                self.state.remove(flow, state)

    def add_batch(self, flow: str, rows_staged: int, rows_quarantined: int, batches: int = 1) -> None:
        self.rows_staged.labels(flow).inc(rows_staged)
        self.rows_quarantined.labels(flow).inc(rows_quarantined)
        self.batches.labels(flow).inc(batches)

    def add_poll(self, flow: str, seconds: float, failed: bool) -> None:
        self.poll_duration.labels(flow).observe(seconds)
        if failed:
            self.failures.labels(flow).inc()

    def set_state(self, flow: str, state: str, healthy: bool) -> None:
        for name in STATES:
            self.state.labels(flow, name).set(1 if name == state else 0)
        self.drift_halted.labels(flow).set(1 if state == "halted" else 0)
        self.up.labels(flow).set(1 if healthy else 0)

    def set_measurement(
        self, flow: str, lag_seconds: float | None, pending_rows: int | None, oldest_age_seconds: float | None
    ) -> None:
        self.lag.labels(flow).set(NAN if lag_seconds is None else lag_seconds)
        self.backlog_rows.labels(flow).set(NAN if pending_rows is None else pending_rows)
        if pending_rows == 0:
            self.backlog_age.labels(flow).set(0)
        else:
            self.backlog_age.labels(flow).set(NAN if oldest_age_seconds is None else oldest_age_seconds)

    def set_import_rows(self, flow: str, pending: int | None, error: int | None, done: int | None) -> None:
        for outcome, value in zip(OUTCOMES, (pending, error, done), strict=True):
            self.import_rows.labels(flow, outcome).set(NAN if value is None else value)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric (what /metrics serves)."""
        return generate_latest(self.registry)

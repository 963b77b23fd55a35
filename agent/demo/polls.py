"""What each of the agent's polls did, for the view and the summary: counts, arrivals, latencies.

It listens where the service can be listened to: `on_batch` right after each batch's commit on the target (a
`pipeline.BatchListener`), `finish_poll` with the poll's FlowReport. During the shop floor the scheduler runs
polls of different flows in its threads at the same time: each flow's own numbers are only touched by its own
polls (a flow never overlaps itself), and a lock keeps the shared parts (the poll list, the console) whole.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text

from agent import report
from agent.demo.staging_reader import StagingReader
from agent.demo.screen import Events, FlowStats, Printer, poll_line
from agent.demo.shopfloor import QUARANTINED, STAGED, ChangeLog


@dataclass(frozen=True)
class Poll:
    """One run of one flow, as the demo received it."""

    job_id: str | None  # the APScheduler job that ran it (the flow's name); None for the initial load
    report: report.FlowReport
    batch_ids: tuple[str, ...]  # its batches, as in agent_run.batch_id and stg_batch_id


@dataclass(frozen=True)
class _Marks:
    """A flow's counters after its previous poll: what the next poll line counts from."""

    live_staged: int = 0
    quarantined: int = 0
    latencies: int = 0


class PollRecorder:
    def __init__(self, flows: dict[str, FlowStats], log: ChangeLog, events: Events, reader: StagingReader,
                 printer: Printer):
        self.flows, self.log, self.events, self.reader, self.printer = flows, log, events, reader, printer
        self.polls: list[Poll] = []
        self.initial_load = True  # until the shop floor starts: batches count as history, no poll lines
        self.on_initial_rows: Callable[[str, int], None] | None = None  # (flow, rows read): the progress bars
        self.started = time.monotonic()  # poll lines show the time since the shop floor started
        self._lock = threading.Lock()
        self._batch_ids: dict[str, list[str]] = {name: [] for name in flows}
        self._marks: dict[str, _Marks] = {name: _Marks() for name in flows}

    def start_live(self) -> None:
        """From now on batches are live changes: remember where each staging table ends, to match arrivals."""
        for f in self.flows.values():
            self.reader.remember_positions(f)
            self._marks[f.name] = _Marks(f.live_staged, f.quarantined, len(f.latencies))
        self.initial_load = False
        self.started = time.monotonic()

    def on_batch(self, batch: report.BatchReport) -> None:
        """Right after a batch's commit on the target: count it and, live, match its rows to the simulated changes."""
        committed = time.monotonic()
        f = self.flows[batch.flow]
        self._batch_ids[f.name].append(batch.batch_id)
        f.batches += 1
        f.quarantined += batch.rows_quarantined
        if self.initial_load:
            f.initial_rows += batch.rows_written
            f.initial_batches += 1
            if self.on_initial_rows is not None:
                self.on_initial_rows(f.name, batch.rows_read)
            return
        f.live_staged += batch.rows_written
        latencies, quarantined = self._arrivals(f, committed)
        f.latencies.extend(latencies)
        self.events.add("agent", _batch_event(f, batch, latencies, quarantined))

    def _arrivals(self, f: FlowStats, committed: float) -> tuple[list[float], int]:
        """Mark the changes that arrived with this batch: the latencies of those staged, how many quarantined."""
        latencies = []
        for key, version in self.reader.new_staging_rows(f):
            change = self.log.arrive(f.table, key, version, STAGED, committed)
            if change is not None and change.latency is not None and change.outcome == STAGED:
                latencies.append(change.latency)
        quarantined = self.reader.new_quarantine_rows(f)
        for key, version in quarantined:
            self.log.arrive(f.table, key, version, QUARANTINED, committed)
        return latencies, len(quarantined)

    def finish_poll(self, flow_report: report.FlowReport, job_id: str | None = None) -> None:
        """A poll ended (its FlowReport): update the flow's numbers and, piped, print a line if it found rows."""
        f = self.flows[flow_report.flow]
        with self._lock:
            batch_ids, self._batch_ids[f.name] = tuple(self._batch_ids[f.name]), []
            self.polls.append(Poll(job_id, flow_report, batch_ids))
            f.polls += 0 if self.initial_load else 1
            f.watermark = flow_report.watermark_after or f.watermark
            f.outcome, f.message = flow_report.outcome, flow_report.message
            if flow_report.outcome != report.OK:
                self.events.add("agent", f"{f.name} {flow_report.outcome}: {flow_report.message}")
                if not self.printer.tty:
                    self.printer.console.print(Text(f"  {f.name} {flow_report.outcome}: {flow_report.message}",
                                                    style="bold red"))
            if flow_report.rows_read or f.pending is None:
                f.pending = self.reader.pending(f)
            if not self.initial_load:
                self._poll_line(f, flow_report)

    def poll_crashed(self, flow: str, job_id: str, exc: BaseException) -> None:
        """The poll raised instead of returning its FlowReport (a bug): a failed poll, shown as such."""
        self.finish_poll(report.FlowReport(flow, outcome=report.FAILED, message=f"the poll crashed: {exc}"), job_id)

    def _poll_line(self, f: FlowStats, flow_report: report.FlowReport) -> None:
        before = self._marks[f.name]
        self._marks[f.name] = _Marks(f.live_staged, f.quarantined, len(f.latencies))
        if flow_report.rows_read and not self.printer.tty:
            self.printer.console.print(poll_line(
                f, time.monotonic() - self.started, flow_report.rows_read, f.live_staged - before.live_staged,
                f.quarantined - before.quarantined, flow_report.rows_duplicate, f.latencies[before.latencies:],
            ), markup=False, highlight=False)


def _batch_event(f: FlowStats, batch: report.BatchReport, latencies: list[float], quarantined: int) -> str:
    text = f"{f.name}: batch of {batch.rows_read} -> {batch.rows_written} staged"
    if quarantined:
        text += f", {quarantined} quarantined"
    if latencies:
        low, high = min(latencies), max(latencies)
        text += f" (latency {low:.2f} s)" if len(latencies) == 1 else f" (latency {low:.2f}-{high:.2f} s)"
    return text

"""Step 3: every flow catches up on the history (the MES's work orders and operations, the ERP's released orders),
as `mes-erp-agent run --once` does, in batches."""

from __future__ import annotations

import time
from contextlib import nullcontext

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from agent import pipeline
from agent.demo.polls import PollRecorder
from agent.demo.screen import Printer, number, seconds_text


def run_initial_load(contexts: dict[str, pipeline.FlowContext], gate: pipeline.Gate | None, recorder: PollRecorder,
                     printer: Printer, source_counts: dict[str, int]) -> None:
    """Run each flow once to the end of its table; a terminal shows a progress bar per flow."""
    printer.step(3, "Initial load", "every flow catches up on its source's history (MES work orders and operations, "
                 f"the ERP's released orders), as `{printer.command('run', '--once')}`")
    progress = _progress_bars(recorder, printer, source_counts) if printer.tty else None
    with progress or nullcontext():
        for name, ctx in contexts.items():
            started = time.monotonic()
            flow_report = pipeline.run_flow(ctx, gate, recorder.on_batch)
            recorder.flows[name].initial_seconds = time.monotonic() - started
            recorder.finish_poll(flow_report)
    recorder.on_initial_rows = None
    for f in recorder.flows.values():
        rate = f" ({f.initial_rows / f.initial_seconds:,.0f} rows/s)" if f.initial_seconds > 0 and f.initial_rows else ""
        printer.detail(f"{f.name:<26} {number(f.initial_rows)} rows staged, {number(f.quarantined)} quarantined, "
                       f"in {f.initial_batches} batches, {seconds_text(f.initial_seconds)}{rate}")


def _progress_bars(recorder: PollRecorder, printer: Printer, source_counts: dict[str, int]) -> Progress:
    progress = Progress(TextColumn("  {task.description:<26}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("rows"), TimeElapsedColumn(), console=printer.console)
    tasks: dict[str, TaskID] = {
        name: progress.add_task(name, total=source_counts.get(f.table)) for name, f in recorder.flows.items()
    }
    recorder.on_initial_rows = lambda flow, rows: progress.advance(tasks[flow], rows)
    return progress

"""What the demo shows: the live view (a terminal) and plain lines (CI, logs, pipes), from one state.

Nothing here touches a database; `agent.demo.polls` fills `FlowStats` and the other steps call these functions.
"""

from __future__ import annotations

import datetime as dt
import shlex
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from agent.demo.folder import shown
from agent.demo.planner import PlannerCounters
from agent.demo.shopfloor import Counters, percentile


@dataclass
class FlowStats:
    """One flow as the demo shows it. Written by the agent loop, read by the live view."""

    name: str
    table: str  # source table
    staging: str  # staging.stg_... (mes_inbound.stg_... for the ERP -> MES flow)
    every: float  # seconds between polls (`schedule: {every:}`)
    lag: float
    source: str = "mes"  # system names
    target: str = "erp"
    polls: int = 0
    batches: int = 0
    initial_rows: int = 0
    initial_batches: int = 0
    initial_seconds: float = 0.0
    live_staged: int = 0
    quarantined: int = 0
    pending: int | None = None
    watermark: str = "(initial load)"
    latencies: list[float] = field(default_factory=list)
    outcome: str = "ok"
    message: str = ""
    last_stg_id: int = 0
    last_quarantine_id: int = 0

    @property
    def staged(self) -> int:
        return self.initial_rows + self.live_staged


class Printer:
    """The demo's own lines: numbered steps, indented details, messages; plain text when piped."""

    def __init__(self, console: Console, config_path: Path):
        self.console = console
        self.tty = console.is_terminal and not console.is_dumb_terminal
        self.config_path = config_path  # for the commands shown; the loaded configuration's path once there is one

    def say(self, markup: str) -> None:
        self.console.print(markup, highlight=False)

    def step(self, n: int, title: str, text: str) -> None:
        self.console.print()
        self.say(f"[bold cyan]{n}/5 {title}[/]" + (f"  {escape(text)}" if text else ""))

    def detail(self, text: str) -> None:
        if self.tty:
            self.console.print(Padding(Text(text), (0, 0, 0, 4)))
        else:
            self.console.print(Text("    " + text), soft_wrap=True)

    def command(self, command: str, *args: str) -> str:
        """A `mes-erp-agent` command line on the demo's configuration, as the user would type it."""
        return " ".join(["mes-erp-agent", command, "-c", shlex.quote(shown(self.config_path)), *args])


@dataclass
class Events:
    """The last few things that happened, newest last, for the live view."""

    lines: deque[tuple[str, str, str]] = field(default_factory=lambda: deque(maxlen=6))

    def add(self, source: str, text: str) -> None:
        self.lines.append((dt.datetime.now().strftime("%H:%M:%S.%f")[:-3], source, text))


def number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def seconds_text(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def every_text(seconds: float) -> str:
    return f"{seconds:g} s"


def latency_text(latencies: Sequence[float]) -> str:
    if not latencies:
        return "-"
    median, worst = percentile(latencies, 0.5), max(latencies)
    assert median is not None
    return f"{median:.2f} / {worst:.2f} s ({len(latencies)} changes)"


def flow_table(flows: Sequence[FlowStats], title: str | None = None) -> Table:
    """One column per flow (fits an 80-column terminal for the demo's flows)."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("")
    for f in flows:
        table.add_column(f.name, overflow="fold", style="" if f.outcome == "ok" else "red")
    rows: list[tuple[str, list[Any]]] = [
        ("source table", [f"{f.source.upper()} {f.table}" for f in flows]),
        ("staging table", [f"{f.target.upper()} {f.staging}" for f in flows]),
        ("polls", [f"{number(f.polls)}, every {every_text(f.every)}" for f in flows]),
        ("initial load", [f"{number(f.initial_rows)} rows" for f in flows]),
        ("live changes staged", [number(f.live_staged) for f in flows]),
        ("quarantined", [Text(number(f.quarantined), style="bold yellow" if f.quarantined else "") for f in flows]),
        ("batches", [number(f.batches) for f in flows]),
        ("PENDING in staging", [number(f.pending) for f in flows]),
        ("latency median / max", [latency_text(f.latencies) for f in flows]),
        ("watermark", [f.watermark.replace(", ", "\n") for f in flows]),
    ]
    if any(f.outcome != "ok" for f in flows):
        rows.append(("outcome", [Text(f"{f.outcome}: {f.message}" if f.outcome != "ok" else "ok",
                                      style="bold red" if f.outcome != "ok" else "") for f in flows]))
    for label, values in rows:
        table.add_row(Text(label, style="dim"), *values)
    return table


def simulator_line(counters: Counters) -> Text:
    c = counters
    text = Text("MES (simulated shop floor): ", style="bold")
    text.append(
        f"{c.orders_started} orders started, {c.operations_confirmed} operations confirmed "
        f"({c.operations_without_hours} without labor hours, {c.operations_corrected} corrected), "
        f"{c.orders_completed} orders completed ({c.orders_scrapped} with scrap)"
    )
    return text


def planner_line(counters: PlannerCounters) -> Text:
    c = counters
    text = Text("ERP (simulated planner): ", style="bold")
    text.append(f"{c.rescheduled} orders rescheduled, {c.quantities_changed} quantities changed, {c.released} orders released")
    return text


def latency_note(flows: Sequence[FlowStats]) -> Text:
    lags = sorted({f.lag for f in flows})
    lag = " / ".join(f"{x:g} s" for x in lags)
    return Text(
        "latency: from the source commit of a change (MES, or ERP for released orders) to the target's commit of its "
        f"staging row, measured for each change. It includes the flow's lag ({lag}: rows younger than that wait for "
        "the next poll) and the wait for the next poll. PENDING: staging rows the target's import job has not taken "
        "yet; no import job runs in the demo, so every staged row stays PENDING.",
        style="dim",
    )


def live_view(flows: Sequence[FlowStats], counters: Counters, events: Events, started: float, seconds: float,
              phase: str, planner: PlannerCounters | None = None) -> RenderableType:
    elapsed = min(time.monotonic() - started, seconds)
    head = Text(f"{phase}  ", style="bold cyan")
    head.append(f"{elapsed:4.1f} s of {seconds:g} s", style="bold")
    log = Table.grid(padding=(0, 1))
    log.add_column(style="dim")
    log.add_column()
    log.add_column()
    for when, source, text in list(events.lines):
        log.add_row(when, Text(source, style={"MES": "magenta", "ERP": "blue"}.get(source, "green")), text)
    lags = " / ".join(f"{x:g} s" for x in sorted({f.lag for f in flows}))
    note = Text(f"latency: source commit -> staging commit on the target; includes the lag ({lags}) and the wait for "
                "the next poll", style="dim")
    simulators = [simulator_line(counters)] + ([planner_line(planner)] if planner is not None else [])
    return Group(head, *simulators, Text(""), flow_table(flows), note, Text(""),
                 Text("latest events", style="bold"), log)


def poll_line(flow: FlowStats, elapsed: float, read: int, written: int, quarantined: int, already: int,
              latencies: Sequence[float]) -> str:
    """One line per poll that found rows, for plain output."""
    parts = [f"{written} staged"]
    if quarantined:
        parts.append(f"{quarantined} quarantined")
    if already:
        parts.append(f"{already} already staged")
    latency = ""
    if latencies:
        low, high = min(latencies), max(latencies)
        latency = f", latency {seconds_text(low)}" if len(latencies) == 1 else f", latency {low:.2f}-{high:.2f} s"
    return f"  +{elapsed:5.1f} s  {flow.name:<26} read {read}: {', '.join(parts)}{latency}; PENDING {number(flow.pending)}"


def rows_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*[_cell(v) for v in row])
    return table


def record_table(title: str, rows: Sequence[Any]) -> Table:
    """Rows of one table side by side, one column per row, one line per column: versions are easy to compare."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("column", style="dim")
    for number_, _ in enumerate(rows, start=1):
        table.add_column(f"version {number_}", overflow="fold")
    if rows:
        for column in rows[0]._mapping:
            values = [_cell(row._mapping[column]) for row in rows]
            changed = len(set(values)) > 1 and column not in ("stg_id", "stg_batch_id", "stg_loaded_at", "stg_source_version")
            table.add_row(column, *[Text(v, style="bold" if changed else "") for v in values])
    return table


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="milliseconds")
    return str(value)

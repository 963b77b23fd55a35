"""The values of the alert layer: an incident, its resolution, and one message to tell on a channel."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

OPENED, RESOLVED = "opened", "resolved"


@dataclass(frozen=True)
class Incident:
    """Something an admin must know about. `key` identifies it across polls and restarts."""

    kind: str  # drift | flow_failing | quarantine | backlog | config_rejected | ...
    key: str  # e.g. `drift:mes`, `flow_failing:work_orders`
    title: str  # one line: the e-mail subject, the card title
    body: str  # plain words: what happened, where, since when, what to do next
    opened_at: dt.datetime
    flow: str | None = None
    system: str | None = None
    table: str | None = None
    column: str | None = None
    data: dict[str, Any] = field(default_factory=dict)  # the same facts for machines (the `.json` report file)
    stem: str = ""  # report file name without extension; derived from key and time when empty

    def report_stem(self) -> str:
        if self.stem:
            return self.stem
        stamp = self.opened_at.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        return f"{self.key.replace(':', '-')}-{stamp}"

    def fields(self) -> list[tuple[str, str]]:
        """Where it happened, as (name, value) pairs for structured channels."""
        named = [("flow", self.flow), ("system", self.system), ("table", self.table), ("column", self.column)]
        return [(name, value) for name, value in named if value] + [("since", utc(self.opened_at))]


@dataclass(frozen=True)
class Resolution:
    title: str
    body: str
    resolved_at: dt.datetime
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Message:
    """One thing to tell on a channel: an incident opened, or its resolution."""

    event: str  # OPENED | RESOLVED
    incident: Incident
    title: str
    body: str
    data: dict[str, Any]
    at: dt.datetime
    serial: int  # the incident record's number in the outbox

    @property
    def stem(self) -> str:
        base = self.incident.report_stem()
        return base if self.event == OPENED else f"{base}-resolved"


def utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")

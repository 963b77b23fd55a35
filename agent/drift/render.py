"""The drift report an admin reads: plain text for people, JSON for machines.

A `DriftReport` is a value (system, diffs, flow decisions, commands). The log, the alert files, the
`drift` command and, later, e-mail or webhooks all send the same value; only the formatting lives here.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.drift.diff import Diff
from agent.drift.policy import FlowDecision

@dataclass(frozen=True)
class DriftReport:
    system: str
    dialect: str
    snapshot: Path
    config: Path
    diffs: tuple[Diff, ...]
    flows: tuple[FlowDecision, ...]
    detected_at: dt.datetime | None = None  # set for alerts; the `drift` command leaves it out
    fingerprint: str = ""

    @property
    def drift(self) -> bool:
        return bool(self.diffs)

    @property
    def halted(self) -> list[FlowDecision]:
        return [f for f in self.flows if f.halts]

    @property
    def running(self) -> list[FlowDecision]:
        return [f for f in self.flows if not f.halts]

    def review_command(self) -> str:
        return f"mes-erp-agent drift -c {self.config}"

    def accept_command(self) -> str:
        return f"mes-erp-agent snapshot -c {self.config} --system {self.system} --accept"


@dataclass(frozen=True)
class Resolution:
    """A drift that is over: the live schema matches the snapshot again."""

    system: str
    dialect: str
    snapshot: Path
    flows: tuple[str, ...]  # flows the drift had halted
    resolved_at: dt.datetime
    incident: str = ""  # the report file of the drift, if one was written
    fingerprint: str = field(default="")


def text(report: DriftReport) -> str:
    """The report for a person who is not a developer."""
    if not report.drift:
        return f"No schema drift on system {report.system} ({report.dialect}): it matches {report.snapshot}."
    count = len(report.diffs)
    lines = [
        f"SCHEMA DRIFT on system {report.system} ({report.dialect})",
        f"The live database no longer matches its reviewed snapshot {report.snapshot}.",
    ]
    if report.detected_at is not None:
        lines.append(f"Detected {_utc(report.detected_at)}.")
    lines += ["", f"{count} change{'s' if count != 1 else ''}:"]
    for number, diff in enumerate(report.diffs, start=1):
        lines += _diff_lines(number, diff)
    lines += [""] + _flow_lines(report) + [""] + _todo_lines(report)
    return "\n".join(lines)


def _diff_lines(number: int, diff: Diff) -> list[str]:
    where = diff.table
    if diff.column:
        where += f", column {diff.column}"
    elif diff.constraint:
        where += f", {'index' if diff.kind.startswith('index') else 'constraint'} {diff.constraint}"
    pad = " " * (len(str(number)) + 4)  # under the text after "  1. "
    lines = [
        f"  {number}. {where}: {diff.title}",
        f"{pad}was: {diff.expected or '(none)'}",
        f"{pad}now: {diff.actual or '(none)'}",
    ]
    for impact in diff.impacts:
        verdict = "BREAKING" if impact.breaking else "not breaking"
        lines.append(f"{pad}flow {impact.flow}: {verdict}, {impact.reason}")
    return lines


def _flow_lines(report: DriftReport) -> list[str]:
    lines = []
    if report.halted:
        lines.append("Flows halted (they move no rows and keep their watermark until this is resolved):")
        lines += [f"  {f.describe()}" for f in report.halted]
    else:
        lines.append("No flow halted.")
    if report.running:
        lines.append("Flows that keep running (their on_drift policy lets them):")
        lines += [f"  {f.describe()}" for f in report.running]
    return lines


def _todo_lines(report: DriftReport) -> list[str]:
    return [
        "What to do:",
        "  1. Find out who changed the database and why (for example a vendor update).",
        "  2. Review the differences at any time with:",
        f"       {report.review_command()}",
        "  3. If the change is intended and the flows' mappings still fit it, accept it:",
        f"       {report.accept_command()}",
        "     Halted flows resume at their next poll; a running agent needs no restart.",
        "     If the change is not intended, undo it in the database instead: halted flows",
        "     resume by themselves once the schema matches the snapshot again.",
    ]


def resolution_text(resolution: Resolution) -> str:
    flows = ", ".join(resolution.flows) if resolution.flows else "(no flow was halted)"
    lines = [
        f"SCHEMA DRIFT RESOLVED on system {resolution.system} ({resolution.dialect})",
        f"The live database matches its snapshot {resolution.snapshot} again (the change was accepted or undone).",
        f"Resolved {_utc(resolution.resolved_at)}.",
        f"Flows that were halted resume at their next poll: {flows}.",
    ]
    if resolution.incident:
        lines.append(f"The drift was reported in {resolution.incident}.")
    return "\n".join(lines)


def as_dict(report: DriftReport) -> dict[str, Any]:
    return {
        "event": "schema_drift" if report.drift else "no_drift",
        "system": report.system,
        "dialect": report.dialect,
        "snapshot": str(report.snapshot),
        "detected_at": _iso(report.detected_at),
        "fingerprint": report.fingerprint or None,
        "changes": [d.as_dict() for d in report.diffs],
        "flows": [
            {"flow": f.flow, "on_drift": f.on_drift, "action": "halt" if f.halts else "keep running",
             "changes": f.changes, "breaking": f.breaking}
            for f in report.flows
        ],
        "commands": {"review": report.review_command(), "accept": report.accept_command()},
    }


def resolution_dict(resolution: Resolution) -> dict[str, Any]:
    return {
        "event": "schema_drift_resolved",
        "system": resolution.system,
        "dialect": resolution.dialect,
        "snapshot": str(resolution.snapshot),
        "resolved_at": _iso(resolution.resolved_at),
        "fingerprint": resolution.fingerprint or None,
        "flows_resumed": list(resolution.flows),
        "incident": resolution.incident or None,
    }


def to_json(data: dict[str, Any] | list[Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(dt.timezone.utc).isoformat(timespec="seconds")

"""Drift incidents: each drift is reported once (log + a report file), and so is its resolution.

Files in the `alerts:` folder, one pair per incident so any channel can pick them up:
  drift-<system>-<UTC stamp>-<fingerprint>.txt / .json            the report, when the drift is first seen
  drift-<system>-<UTC stamp>-<fingerprint>-resolved.txt / .json   when the schema matches the snapshot again
An incident without its `-resolved` file is open. The folder is the state, so a `run --once` from cron
does not report the same drift again on every run either. The files are written, and every other alert
channel told, through the IncidentBook (agent/alerts) as incident `drift:<system>`; its outbox
(`incidents.state.json` in the same folder) also knows the open incidents, and the two are merged at start.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from agent import alerts
from agent.alerts import IncidentBook
from agent.drift import render
from agent.drift.diff import Diff
from agent.drift.render import DriftReport, Resolution

log = logging.getLogger("mes_erp_agent")


def fingerprint(diffs: Iterable[Diff]) -> str:
    identities = sorted(json.dumps(d.identity()) for d in diffs)
    return hashlib.sha256("\n".join(identities).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Incident:
    system: str
    fingerprint: str
    stem: str  # file name without extension
    halted: tuple[str, ...]

    def text_path(self, folder: Path) -> Path:
        return folder / f"{self.stem}.txt"


class IncidentLog:
    """Open incidents per system, kept in the alerts folder."""

    def __init__(self, folder: Path, book: IncidentBook | None = None):
        self.folder = folder
        self.book = book or IncidentBook(folder, [alerts.DirChannel(folder)])
        self.open: dict[str, Incident] = self._scan()
        self._merge_with_book()

    def _merge_with_book(self) -> None:
        """Report files without outbox state (written by an older agent) are given to the book, which then
        tells the other channels; incidents open in the book whose files were deleted stay open."""
        for system, incident in self.open.items():
            if self.book.current(_key(system)) is None:
                self._adopt(incident)
        for opened in self.book.open_incidents():
            if opened.kind == "drift" and opened.system and opened.system not in self.open:
                halted = tuple(f["flow"] for f in opened.data.get("flows", []) if f.get("action") == "halt")
                self.open[opened.system] = Incident(opened.system, opened.data.get("fingerprint") or "", opened.stem,
                                                    halted)

    def _adopt(self, incident: Incident) -> None:
        try:
            body = incident.text_path(self.folder).read_text(encoding="utf-8").rstrip("\n")
            data = json.loads((self.folder / f"{incident.stem}.json").read_text(encoding="utf-8"))
            opened_at = dt.datetime.fromisoformat(data["detected_at"]) if data.get("detected_at") else _now()
        except (OSError, ValueError) as exc:
            log.warning("drift report %s cannot be read (%s); it is not sent to the other alert channels",
                        incident.text_path(self.folder), exc)
            return
        self.book.open(_alert(incident, body, data, opened_at))

    def _scan(self) -> dict[str, Incident]:
        found: dict[str, Incident] = {}
        if not self.folder.is_dir():
            return found
        for path in sorted(self.folder.glob("drift-*.json")):
            if path.stem.endswith("-resolved") or path.with_name(f"{path.stem}-resolved.json").exists():
                continue
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                halted = tuple(f["flow"] for f in data["flows"] if f["action"] == "halt")
                found[data["system"]] = Incident(data["system"], data["fingerprint"], path.stem, halted)
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("ignoring unreadable drift report %s", path)
        return found

    def report(self, report: DriftReport) -> Incident:
        """Open an incident for this drift unless it is the one already open (then nothing is written)."""
        current = self.open.get(report.system)
        if current is not None and current.fingerprint == report.fingerprint:
            return current
        if current is not None:
            self._close(current, report.detected_at or _now(), replaced=True, dialect=report.dialect,
                        snapshot=report.snapshot)
        stamp = (report.detected_at or _now()).astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        incident = Incident(report.system, report.fingerprint, f"drift-{report.system}-{stamp}-{report.fingerprint[:8]}",
                            tuple(f.flow for f in report.halted))
        body = render.text(report)
        self.book.open(_alert(incident, body, render.as_dict(report), report.detected_at or _now()))
        where = incident.text_path(self.folder)
        log.error("%s%s", body, f"\n(report written to {where})" if where.exists() else "")
        self.open[report.system] = incident
        return incident

    def resolve(self, system: str, dialect: str, snapshot: Path) -> Resolution | None:
        """Report that the open incident of `system` is over, if there is one."""
        current = self.open.get(system)
        if current is None:
            return None
        return self._close(current, _now(), replaced=False, dialect=dialect, snapshot=snapshot)

    def _close(self, incident: Incident, when: dt.datetime, replaced: bool, dialect: str, snapshot: Path) -> Resolution:
        resolution = Resolution(incident.system, dialect, snapshot, incident.halted, when,
                                str(incident.text_path(self.folder)), incident.fingerprint)
        body = render.resolution_text(resolution)
        if replaced:
            body += "\nThe schema changed again since; a new report follows."
        self.book.resolve(_key(incident.system), f"Schema drift resolved on system {incident.system}", body,
                          render.resolution_dict(resolution), when)
        (log.warning if replaced else log.info)("%s", body)
        self.open.pop(incident.system, None)
        return resolution


def _key(system: str) -> str:
    return f"drift:{system}"


def _alert(incident: Incident, body: str, data: dict, opened_at: dt.datetime) -> alerts.Incident:
    """The drift incident for every alert channel: the report text as body, the first change in the title."""
    changes = data.get("changes") or [{}]
    first = changes[0]
    where = first.get("table") or ""
    if first.get("column"):
        where += f", column {first['column']}"
    elif first.get("constraint"):
        where += f", {'index' if str(first.get('kind')).startswith('index') else 'constraint'} {first['constraint']}"
    more = f" and {len(changes) - 1} more change{'s' if len(changes) > 2 else ''}" if len(changes) > 1 else ""
    return alerts.Incident(
        kind="drift", key=_key(incident.system), title=f"Schema drift on system {incident.system}: {where}{more}",
        body=body, opened_at=opened_at, system=incident.system, table=first.get("table"), column=first.get("column"),
        flow=", ".join(incident.halted) or None, data=data, stem=incident.stem,
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)

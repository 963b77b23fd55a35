"""Drift incidents: each drift is reported once (log + a report file), and so is its resolution.

Files in the `alerts:` folder, one pair per incident so any channel can pick them up:
  drift-<system>-<UTC stamp>-<fingerprint>.txt / .json            the report, when the drift is first seen
  drift-<system>-<UTC stamp>-<fingerprint>-resolved.txt / .json   when the schema matches the snapshot again
An incident without its `-resolved` file is open. The folder is the state, so a `run --once` from cron
does not report the same drift again on every run either.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

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

    def __init__(self, folder: Path):
        self.folder = folder
        self.open: dict[str, Incident] = self._scan()

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
        where = self._write(incident.stem, body, render.as_dict(report))
        log.error("%s%s", body, f"\n(report written to {where})" if where else "")
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
        self._write(f"{incident.stem}-resolved", body, render.resolution_dict(resolution))
        (log.warning if replaced else log.info)("%s", body)
        self.open.pop(incident.system, None)
        return resolution

    def _write(self, stem: str, body: str, data: dict) -> Path | None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / f"{stem}.json").write_text(render.to_json(data) + "\n", encoding="utf-8", newline="\n")
            path = self.folder / f"{stem}.txt"
            path.write_text(body + "\n", encoding="utf-8", newline="\n")
            return path
        except OSError as exc:
            log.warning("could not write the drift report to %s (%s); it is in this log only", self.folder, exc)
            return None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)

"""Incidents and the book that alerts people about them: once when one opens, once when it resolves.

An `Incident` is a value: what happened (kind, title, a plain-words body), where (flow, system, table,
column) and since when. The `IncidentBook` keeps every incident that is open, or resolved but not yet
told on every channel, in `<alerts.dir>/incidents.state.json`: the outbox. Opening an incident that is
already open sends nothing; a restarted agent re-reads the outbox, so it neither sends an open incident
again nor forgets to send a resolution. The outbox holds at most one open and one resolve message per
incident, and incidents are deduplicated by key, so it stays as small as the number of things that can
go wrong at once.

Local channels (the `dir` report files) are written in the caller's thread, so a halted flow's report
file exists when its run ends. Every other channel is sent by its own courier thread (delivery.py):
rate-limited, retried with backoff, never raising into the caller.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent.alerts.channels import Channel
from agent.alerts.delivery import Courier, DeliveryPolicy
from agent.alerts.model import OPENED, RESOLVED, Incident, Message, Resolution, utc

log = logging.getLogger("mes_erp_agent")

STATE_FILE = "incidents.state.json"
_FORMAT = 1


@dataclass
class _Record:
    serial: int
    incident: Incident
    resolution: Resolution | None = None
    sent: dict[str, list[str]] = field(default_factory=dict)  # channel name -> events delivered there

    def message(self, event: str) -> Message:
        if event == OPENED:
            i = self.incident
            return Message(OPENED, i, i.title, i.body, i.data, i.opened_at, self.serial)
        assert self.resolution is not None
        r = self.resolution
        return Message(RESOLVED, self.incident, r.title, r.body, r.data, r.resolved_at, self.serial)

    def due(self, channel: str) -> list[str]:
        events = [OPENED] if self.resolution is None else [OPENED, RESOLVED]
        return [e for e in events if e not in self.sent.get(channel, [])]


class IncidentBook:
    """Opens and resolves incidents and tells every channel once about each. Thread-safe."""

    def __init__(self, folder: Path, channels: Sequence[Channel], policy: DeliveryPolicy | None = None):
        self.folder = folder
        self.path = folder / STATE_FILE
        self.channels = list(channels)
        self.policy = policy or DeliveryPolicy()
        self._lock = threading.RLock()
        self._records: list[_Record] = []
        self._next_serial = 1
        self._load()
        self._couriers = {c.name: Courier(self, c, self.policy) for c in self.channels if not c.local}
        self._closed = False
        if self._records:
            self._deliver_local()
            self._wake_couriers()

    # --- the caller's side -----------------------------------------------------------------------
    def open(self, incident: Incident) -> bool:
        """Open `incident` unless one with its key is open already. True when it was opened (and sent)."""
        with self._lock:
            if self.current(incident.key) is not None:
                return False
            self._records.append(_Record(self._next_serial, incident))
            self._next_serial += 1
            self._save()
            self._deliver_local()
        self._wake_couriers()
        return True

    def resolve(self, key: str, title: str | None = None, body: str | None = None,
                data: dict[str, Any] | None = None, at: dt.datetime | None = None) -> bool:
        """Resolve the open incident `key`, if there is one. True when it was open (its resolution is sent)."""
        with self._lock:
            record = self._open_record(key)
            if record is None:
                return False
            when = at or _now()
            record.resolution = Resolution(
                title or f"RESOLVED: {record.incident.title}",
                body or _resolution_body(record.incident, when),
                when,
                data if data is not None else {"event": "resolved", "key": key, "resolved_at": _iso(when)},
            )
            self._forget_delivered()
            self._save()
            self._deliver_local()
        self._wake_couriers()
        return True

    def current(self, key: str) -> Incident | None:
        """The open incident with this key, or None."""
        with self._lock:
            record = self._open_record(key)
            return record.incident if record else None

    def open_incidents(self) -> list[Incident]:
        with self._lock:
            return [r.incident for r in self._records if r.resolution is None]

    def pending(self, channel: str | None = None) -> int:
        """Messages not delivered yet (on one channel, or on all)."""
        names = [channel] if channel else [c.name for c in self.channels]
        with self._lock:
            return sum(len(r.due(name)) for r in self._records for name in names)

    def close(self, wait: float | None = None) -> None:
        """Give the couriers up to `wait` seconds (default `exit_wait`) to deliver, then stop them.
        Whatever is still undelivered stays in the outbox for the next start."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        deadline = time.monotonic() + (self.policy.exit_wait if wait is None else wait)
        for courier in self._couriers.values():
            courier.stop(deadline)
        left = self.pending()
        if left:
            log.warning("%d alert message%s not delivered yet; kept in %s, the agent sends %s when it next starts",
                        left, "s" if left != 1 else "", self.path, "them" if left != 1 else "it")

    # --- the couriers' side ----------------------------------------------------------------------
    def next_for(self, channel: str) -> Message | None:
        """The oldest message not yet delivered on `channel`."""
        with self._lock:
            for record in self._records:
                due = record.due(channel)
                if due:
                    return record.message(due[0])
            return None

    def mark_sent(self, channel: str, message: Message) -> None:
        with self._lock:
            for record in self._records:
                if record.serial == message.serial:
                    events = record.sent.setdefault(channel, [])
                    if message.event not in events:
                        events.append(message.event)
            self._forget_delivered()
            self._save()

    # --- inside ----------------------------------------------------------------------------------
    def _open_record(self, key: str) -> _Record | None:
        return next((r for r in self._records if r.incident.key == key and r.resolution is None), None)

    def _deliver_local(self) -> None:
        """Called with the lock held: write the local channels now (a failure is retried at the next change)."""
        for channel in self.channels:
            if not channel.local:
                continue
            while (message := self.next_for(channel.name)) is not None:
                try:
                    channel.send(message)
                except Exception as exc:  # a channel never raises into a flow
                    log.warning("alert channel %s could not record %s (%s); it is in this log only for now",
                                channel.describe(), message.title, exc)
                    break
                self.mark_sent(channel.name, message)

    def _wake_couriers(self) -> None:
        if self._closed:
            return
        for courier in self._couriers.values():
            courier.wake()

    def _forget_delivered(self) -> None:
        names = [c.name for c in self.channels]
        self._records = [r for r in self._records if r.resolution is None or any(r.due(n) for n in names)]

    def _save(self) -> None:
        """Atomically: a crash leaves the previous state or the new one, never half a file."""
        document = {"format": _FORMAT, "next_serial": self._next_serial,
                    "incidents": [_record_to_json(r) for r in self._records]}
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError as exc:
            log.warning("could not save the alert state to %s (%s): after a restart, open incidents may be "
                        "alerted again; check that the folder exists and the agent may write to it", self.path, exc)

    def _load(self) -> None:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
            self._records = [_record_from_json(r) for r in document["incidents"]]
            self._next_serial = int(document["next_serial"])
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable alert state %s (%s): open incidents will be alerted again", self.path, exc)
            self._records, self._next_serial = [], 1


def _record_to_json(record: _Record) -> dict[str, Any]:
    incident = {**asdict(record.incident), "opened_at": _iso(record.incident.opened_at)}
    resolution = None
    if record.resolution is not None:
        resolution = {**asdict(record.resolution), "resolved_at": _iso(record.resolution.resolved_at)}
    return {"serial": record.serial, "incident": incident, "resolution": resolution, "sent": record.sent}


def _record_from_json(data: dict[str, Any]) -> _Record:
    incident = Incident(**{**data["incident"], "opened_at": dt.datetime.fromisoformat(data["incident"]["opened_at"])})
    resolution = None
    if data["resolution"] is not None:
        raw = data["resolution"]
        resolution = Resolution(**{**raw, "resolved_at": dt.datetime.fromisoformat(raw["resolved_at"])})
    return _Record(int(data["serial"]), incident, resolution, {k: list(v) for k, v in data["sent"].items()})


def _resolution_body(incident: Incident, when: dt.datetime) -> str:
    return (f"RESOLVED: {incident.title}\nOpen since {utc(incident.opened_at)}, resolved {utc(when)}.\n"
            "Nothing more to do; the agent alerts again if it happens again.")


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="seconds")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


__all__ = ["OPENED", "RESOLVED", "STATE_FILE", "Incident", "IncidentBook", "Message", "Resolution"]

"""The running agent's status file: what `status` shows besides the ERP figures, while the agent runs and after.

`<alerts.dir>/agent.status.json`, next to the incident state: the agent's pid, host, start time, when it last
wrote the file, when it stopped (if it did), and each flow's health (state, failing since, last successful
poll, lag, next run). Written atomically (temporary file + os.replace), at most about once a second, so a
reader never sees half a file. A reader decides from pid and host whether the agent that wrote it is alive.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("mes_erp_agent")
STATUS_FILE = "agent.status.json"
MIN_INTERVAL = 1.0  # seconds between two writes after polls


def status_path(alerts_dir: Path) -> Path:
    return alerts_dir / STATUS_FILE


class StatusFile:
    """Writes the file from any thread; `flows` returns the flows' health (FlowHealth.snapshot)."""

    def __init__(self, path: Path, flows: Callable[[], list[dict[str, Any]]], clock: Callable[[], float] = time.monotonic):
        self.path, self.flows, self.clock = path, flows, clock
        self.started_at = _utc_text()
        self._last_write = -MIN_INTERVAL
        self._lock = threading.Lock()
        self._warned = False

    def update(self, force: bool = False) -> None:
        """Write now unless the last write was less than a second ago (`force`: always)."""
        with self._lock:
            if not force and self.clock() - self._last_write < MIN_INTERVAL:
                return
            self._last_write = self.clock()
            self._write({"pid": os.getpid(), "host": socket.gethostname(), "started_at": self.started_at,
                         "written_at": _utc_text(), "stopped_at": None, "flows": self.flows()})

    def stopped(self) -> None:
        with self._lock:
            self._write({"pid": os.getpid(), "host": socket.gethostname(), "started_at": self.started_at,
                         "written_at": _utc_text(), "stopped_at": _utc_text(), "flows": self.flows()})

    def _write(self, document: dict[str, Any]) -> None:
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError as exc:
            if not self._warned:
                log.warning("cannot write the agent's status file %s (%s): `status` will say the agent is not running; "
                            "check that the agent may write to that folder", self.path, exc)
                self._warned = True


def read_status(path: Path) -> dict[str, Any] | None:
    """The last status file, or None when there is none (or it cannot be read)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def is_alive(document: dict[str, Any]) -> bool:
    """True when the agent that wrote `document` runs now: not stopped, on this host, and its pid exists."""
    if document.get("stopped_at") or document.get("host") != socket.gethostname():
        return False
    pid = document.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another account
        return True
    return True


def _utc_text() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"

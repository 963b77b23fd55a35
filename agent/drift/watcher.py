"""Reload changed snapshot files in the long-running mode (watchdog), so an accepted change resumes the
halted flows at their next poll without a restart.

`snapshot --accept` replaces `<system>.yaml` atomically (a rename), which watchdog reports as a move onto
the file; an editor or `git checkout` may report a modification or a new file instead. All three count.
"""

from __future__ import annotations

import logging
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from agent.drift.gate import DriftGate

log = logging.getLogger("mes_erp_agent")
# Events that change a file's content. watchdog also reports a file being opened or closed unwritten: reading
# the file (as a reload does) must not count as a change, or every read would trigger the next one.
CHANGE_EVENTS = frozenset({"modified", "created", "moved", "closed"})


class _StopRace(logging.Filter):
    """watchdog's inotify emitter logs "queue_events() called when the thread is inactive" at ERROR when an observer
    is stopped while the emitter waits for an event: a race inside the library at the agent's clean stop, harmless
    (the watch is being closed). An admin's log must not show an ERROR for it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "called when the thread is inactive" not in record.getMessage()


logging.getLogger("watchdog.observers.inotify").addFilter(_StopRace())


def changes_content(event: FileSystemEvent) -> bool:
    return not event.is_directory and event.event_type in CHANGE_EVENTS


class _SnapshotEvents(FileSystemEventHandler):
    def __init__(self, gate: DriftGate, files: dict[Path, str]):
        self.gate = gate
        self.files = files

    def on_any_event(self, event: FileSystemEvent) -> None:
        if not changes_content(event):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if not raw:
                continue
            path = Path(raw if isinstance(raw, str) else raw.decode()).resolve()
            system = self.files.get(path)
            if system is not None:
                log.debug("snapshot file %s changed (%s); reloading it before the next poll", path, event.event_type)
                self.gate.invalidate(system)


class SnapshotWatcher:
    """Watches the snapshot folder and tells the gate which system's snapshot to reload."""

    def __init__(self, gate: DriftGate):
        from agent.drift.snapshot import snapshot_dir, snapshot_path

        self.folder = snapshot_dir(gate.config)
        files = {snapshot_path(gate.config, system).resolve(): system for system in gate.queries}
        self.observer = Observer()
        self.observer.daemon = True
        self.folder.mkdir(parents=True, exist_ok=True)
        self.observer.schedule(_SnapshotEvents(gate, files), str(self.folder), recursive=False)

    def start(self) -> SnapshotWatcher:
        self.observer.start()
        return self

    def stop(self) -> None:
        self.observer.stop()
        self.observer.join(timeout=5)

    def __enter__(self) -> SnapshotWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

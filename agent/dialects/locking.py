"""Flow locks, as each database holds them: one agent moves a flow at a time (agent/locks.py decides which).

`SessionLocks` (PostgreSQL advisory locks, MySQL/MariaDB GET_LOCK, SQL Server sp_getapplock): one dedicated
connection per target system, in autocommit, outside every batch transaction; the locks belong to its session, so
the database frees them when the agent stops, dies or loses the connection. `FileLocks` (SQLite, which has no
sessions): an exclusive, non-blocking lock on `<database file>.<flow>.lock` next to the ERP database, which the
operating system frees when the process ends. The statements are the templates `flow_lock_take`,
`flow_lock_release` and `flow_lock_session` of `sql/<dialect>/`.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import IO, Any, Protocol

import sqlalchemy as sa

LOCK_PREFIX = "mes-erp-agent:"
MAX_LOCK_NAME = 64  # MySQL's GET_LOCK limit; the others allow more


def lock_name(schema: str, flow: str) -> str:
    """The flow's lock: `mes-erp-agent:<staging schema>.<flow>`, or a hash of it where that is longer than 64."""
    name = f"{LOCK_PREFIX}{schema}.{flow}"
    if len(name) <= MAX_LOCK_NAME:
        return name
    return LOCK_PREFIX + hashlib.sha256(name.encode("utf-8")).hexdigest()[: MAX_LOCK_NAME - len(LOCK_PREFIX)]


class Templates(Protocol):
    """What the locks need of their dialect (agent/dialects/base.py Dialect)."""

    def render(self, template: str, **context: Any) -> str: ...

    def statement(self, template: str, bind_types: Any = None, result_types: Any = None, **context: Any) -> Any: ...


class LockSession(Protocol):
    """The flow locks one agent holds in one target database."""

    def open(self) -> str | None:
        """Connect; the session's id (None where there is none). Raises on a connection failure."""

    def check(self) -> str | None:
        """A cheap round trip on the lock session: raises when it (and every lock it held) is gone."""

    def take(self, flow: str, name: str) -> bool:
        """Take the flow's lock without waiting: False when another agent holds it."""

    def release(self, flow: str, name: str) -> None: ...

    def close(self) -> None:
        """Release everything (closing the session frees what a failed release left)."""


class SessionLocks:
    """Locks of a database session: one connection kept open for the agent's life."""

    def __init__(self, dialect: Templates, engine: sa.engine.Engine):
        self.dialect, self.engine = dialect, engine
        self.conn: sa.Connection | None = None

    def open(self) -> str | None:
        self.close()
        self.conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self.check()

    def _connection(self) -> sa.Connection:
        if self.conn is None:
            raise sa.exc.InvalidRequestError("the lock session is not open")
        return self.conn

    def check(self) -> str | None:
        value = self._connection().execute(self.dialect.statement("flow_lock_session")).scalar()
        return None if value is None else str(value)

    def take(self, flow: str, name: str) -> bool:
        taken = self._connection().execute(self.dialect.statement("flow_lock_take"), {"lock_name": name}).scalar()
        return taken is not None and int(taken) == 1

    def release(self, flow: str, name: str) -> None:
        self._connection().execute(self.dialect.statement("flow_lock_release"), {"lock_name": name})

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            conn.invalidate()  # the session ends: the database frees every lock it held, released or not
        finally:
            conn.close()


class FileLocks:
    """SQLite: `<database file>.<flow>.lock`, locked exclusively by this process (flock, or msvcrt on Windows)."""

    def __init__(self, dialect: Templates, database: str):
        self.database = database
        self.files: dict[str, IO[bytes]] = {}
        # The templates only say so, for the DBA (render-sql): there is no statement to run.
        statements = [dialect.render(t) for t in ("flow_lock_session", "flow_lock_take", "flow_lock_release")]
        assert not any(statements), "SQLite's flow-lock templates are comments: its locks are file locks"

    def path(self, flow: str) -> Path:
        return Path(f"{self.database}.{flow}.lock")

    def open(self) -> str | None:
        return None

    def check(self) -> str | None:
        return None

    def take(self, flow: str, name: str) -> bool:
        if flow in self.files:
            return True
        handle = self.path(flow).open("a+b")
        try:
            _lock(handle)
        except OSError:
            handle.close()
            return False
        self.files[flow] = handle
        return True

    def release(self, flow: str, name: str) -> None:
        handle = self.files.pop(flow, None)
        if handle is not None:
            _unlock(handle)
            handle.close()

    def close(self) -> None:
        for flow in list(self.files):
            self.release(flow, "")


if sys.platform == "win32":  # pragma: no cover - Windows
    import msvcrt

    def _lock(handle: IO[bytes]) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)

    def _unlock(handle: IO[bytes]) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(handle: IO[bytes]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(handle: IO[bytes]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

"""SQLite, for the embedded demo and tests. A schema is an attached database file (`attach:` in the config).

Sources open the file with `mode=ro`; attached files are attached read-only for sources as well. A source never
creates a file: an attached file that does not exist yet (the staging schema of a system that is also a target,
before `sql ddl --apply` made it) is left out, and a pooled connection made without it is replaced once it exists.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sa_sqlite
from sqlalchemy.engine import URL

from agent.dialects.type_names import TypeName, TypeNames
from agent.dialects.base import Dialect, Role
from agent.dialects.locking import FileLocks, LockSession
from agent.dialects.mssql import MSSQLDialect
from agent.dialects.mysql import MySQLDialect
from agent.dialects.postgresql import PostgreSQLDialect
from agent.types import ColumnType, parse_type


class SQLiteDialect(Dialect):
    name = "sqlite"
    sqlalchemy_names = ("sqlite",)
    max_bind_params = 32000
    read_only_mechanism = "mode=ro"
    enforces_column_types = False
    # `main` is the ERP database file itself; staging lives in an attached file (`attach:`).
    default_protected_schemas = ("main", "temp")
    case_insensitive_columns = True
    has_logins = False
    sqlglot_name = "sqlite"
    canonical_families = frozenset(("integer", "text", "timestamp", "date"))
    # As TEXT (below): SQLite's NUMERIC affinity would keep only 15 significant digits.
    holds_unbounded_decimal = True
    integer_types = (("INTEGER", -(2**63), 2**63 - 1),)

    # SQLite keeps any declared type text (tables are often made by tools written for other databases): every
    # dialect's names are understood.
    type_synonyms: ClassVar[dict[str, str | ColumnType]] = {
        **PostgreSQLDialect.type_synonyms, **MySQLDialect.type_synonyms, **MSSQLDialect.type_synonyms,
        "clob": "text", "number": "numeric",
    }
    type_names: ClassVar[TypeNames] = {
        # Without precision: TEXT, exact (the canonical decimal text); NUMERIC affinity would round to a REAL.
        "decimal": TypeName("TEXT", "DECIMAL({precision},{scale})"),
        "float": TypeName("REAL"),
        "text": TypeName("TEXT", "VARCHAR({length})"),
        "timestamp": TypeName("TIMESTAMP"),  # ISO text, which keeps microseconds
        "binary": TypeName("BLOB"),
        "date": TypeName("DATE"), "time": TypeName("TIME"), "boolean": TypeName("BOOLEAN"),
    }

    def catalog_type(
        self, data_type: str | None, native: str, length: int | None, precision: int | None, scale: int | None,
        datetime_precision: int | None,
    ) -> ColumnType:
        """SQLite keeps the declared type text: parse it, else apply SQLite's own type-affinity rules."""
        try:
            return parse_type(native, self.type_synonyms)
        except ValueError:
            declared = native.upper()
            if "INT" in declared:
                return ColumnType("integer", precision=64)
            if any(word in declared for word in ("CHAR", "CLOB", "TEXT")):
                return ColumnType("text")
            if any(word in declared for word in ("REAL", "FLOA", "DOUB")):
                return ColumnType("float")
            if "BLOB" in declared:
                return ColumnType("binary")
            return ColumnType("other")

    def stored_type(self, declared: ColumnType) -> ColumnType:
        # Every integer column holds 64 bits in SQLite, whatever its declared name (`sql ddl` writes INTEGER).
        if declared.family == "integer":
            return ColumnType("integer", precision=64)
        return declared

    def resolve_url(self, url: URL, folder: Path) -> URL:
        if url.database and url.database != ":memory:" and not Path(url.database).is_absolute():
            return url.set(database=str((folder / url.database).resolve()))
        return url

    def engine_url(self, url: URL, role: Role, attach: dict[str, str]) -> URL:
        if role == "source" and url.database and url.database != ":memory:":
            return url.set(database=f"file:{url.database}?mode=ro", query={"uri": "true"})
        return url

    def configure_engine(self, engine: sa.engine.Engine, role: Role, attach: dict[str, str]) -> None:
        if role == "source" and attach:
            @sa.event.listens_for(engine, "connect")
            def _note_missing(_dbapi_connection: Any, record: Any) -> None:
                record.info["unattached"] = [path for path in attach.values() if not Path(path).exists()]

            @sa.event.listens_for(engine, "checkout")
            def _reattach(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
                if any(Path(path).exists() for path in record.info.get("unattached", ())):
                    raise sa.exc.DisconnectionError("an attached file exists now: connect again to attach it")

        super().configure_engine(engine, role, attach)

        # pysqlite's own transaction handling is off (see on_connect): begin explicitly. A target takes the
        # write lock at BEGIN so that two writers wait for each other instead of failing at commit.
        @sa.event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if role == "target" else "BEGIN")

    def flow_locks(self, engine: sa.engine.Engine) -> LockSession:
        """No sessions to hold a lock: a file lock next to the ERP database file, freed when the process ends."""
        return FileLocks(self, engine.url.database or "erp.db")

    def on_connect(self, dbapi_connection: Any, role: Role, attach: dict[str, str]) -> None:
        # Let SQLAlchemy, not pysqlite, manage transactions (pysqlite's implicit BEGIN breaks isolation).
        dbapi_connection.isolation_level = None
        # SQLite has no hash function and keeps timestamps as text: the reconcile templates call these (in-process).
        dbapi_connection.create_function("mea_hash32", 1, hash32, deterministic=True)
        dbapi_connection.create_function("mea_canonical", 2, canonical_text, deterministic=True)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA busy_timeout = 30000")
            for schema, path in attach.items():
                if role == "source" and not Path(path).exists():
                    continue  # read-only cannot create it; see configure_engine
                target = f"file:{path}?mode=ro" if role == "source" else f"file:{path}"
                cursor.execute("ATTACH DATABASE ? AS " + _quote(schema), (target,))
        finally:
            cursor.close()


_DATETIME = sa_sqlite.DATETIME().result_processor(sa_sqlite.dialect(), None)
_DATE = sa_sqlite.DATE().result_processor(sa_sqlite.dialect(), None)


def hash32(text: str | None) -> int | None:
    """The first 32 bits of the MD5 of the UTF-8 text, as the other dialects' templates compute them."""
    if text is None:
        return None
    return int.from_bytes(hashlib.md5(str(text).encode("utf-8")).digest()[:4], "big")


def canonical_text(value: Any, family: str) -> str | None:
    """contract.version_text of one stored value as the agent reads it (SQLAlchemy's SQLite conversions); None for
    NULL (the template writes `\\N`)."""
    if value is None:
        return None
    if family == "timestamp" and isinstance(value, str) and _DATETIME is not None:
        moment = _DATETIME(value)
        return moment.isoformat(timespec="microseconds") if moment is not None else None
    if family == "date" and isinstance(value, str) and _DATE is not None:
        day = _DATE(value)
        return None if day is None else (day.date() if isinstance(day, dt.datetime) else day).isoformat()
    text = str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|") if family == "text" else text


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'

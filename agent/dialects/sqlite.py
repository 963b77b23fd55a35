"""SQLite, for the embedded demo and tests. A schema is an attached database file (`attach:` in the config).

Sources open the file with `mode=ro`; attached files are attached read-only for sources as well.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

from agent.dialects.base import Dialect, Role
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
    # As TEXT (below): SQLite's NUMERIC affinity would keep only 15 significant digits.
    holds_unbounded_decimal = True
    integer_types = (("INTEGER", -(2**63), 2**63 - 1),)

    def catalog_type(
        self, data_type: str | None, native: str, length: int | None, precision: int | None, scale: int | None,
        datetime_precision: int | None,
    ) -> ColumnType:
        """SQLite keeps the declared type text: parse it, else apply SQLite's own type-affinity rules."""
        try:
            return parse_type(native)
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

    def render_type(self, column_type: ColumnType) -> str:
        family = column_type.family
        if family == "integer":
            return "INTEGER"
        if family == "decimal":
            if column_type.precision is None:
                return "TEXT"  # exact: the canonical decimal text, every digit (NUMERIC would round to a REAL)
            return f"DECIMAL({column_type.precision},{column_type.scale or 0})"
        if family == "float":
            return "REAL"
        if family == "text":
            return f"VARCHAR({column_type.length})" if column_type.length else "TEXT"
        if family == "timestamp":
            return "TIMESTAMP"
        if family == "binary":
            return "BLOB"
        return {"date": "DATE", "time": "TIME", "boolean": "BOOLEAN"}[family]

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
        super().configure_engine(engine, role, attach)

        # pysqlite's own transaction handling is off (see on_connect): begin explicitly. A target takes the
        # write lock at BEGIN so that two writers wait for each other instead of failing at commit.
        @sa.event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if role == "target" else "BEGIN")

    def on_connect(self, dbapi_connection: Any, role: Role, attach: dict[str, str]) -> None:
        # Let SQLAlchemy, not pysqlite, manage transactions (pysqlite's implicit BEGIN breaks isolation).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA busy_timeout = 30000")
            for schema, path in attach.items():
                target = f"file:{path}?mode=ro" if role == "source" else f"file:{path}"
                cursor.execute("ATTACH DATABASE ? AS " + _quote(schema), (target,))
        finally:
            cursor.close()


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'

"""MySQL and MariaDB (native pymysql or pyodbc with the MariaDB ODBC driver).

A schema is a database here. Sources run `SET SESSION TRANSACTION READ ONLY`; targets work in UTC.
"""

from __future__ import annotations

import re
from typing import Any

from agent.dialects.base import Dialect, Role
from agent.types import ColumnType


_ENUM_LABEL = re.compile(r"'((?:[^']|'')*)'")


class MySQLDialect(Dialect):
    name = "mysql"
    sqlalchemy_names = ("mysql", "mariadb")
    read_only_mechanism = "SET SESSION TRANSACTION READ ONLY"
    default_protected_schemas = ("mysql", "sys", "information_schema", "performance_schema")
    schema_is_database = True
    case_insensitive_columns = True
    sqlglot_name = "mysql"
    type_families = {
        **dict.fromkeys(("tinyint", "smallint", "mediumint", "int", "integer", "bigint"), "integer"),
        **dict.fromkeys(("decimal", "numeric"), "decimal"), **dict.fromkeys(("float", "double", "real"), "float"),
        **dict.fromkeys(("char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set"), "text"),
        **dict.fromkeys(("datetime", "timestamp"), "timestamp"), "date": "date", "time": "time",
        **dict.fromkeys(("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"), "binary"),
    }
    integer_bits = {"tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "integer": 32, "bigint": 64}

    def literal(self, text: str) -> str:
        return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"

    def login(self, name: str, host: str) -> str:
        # Account names as string literals: the identifier quoting of pyformat drivers doubles `%` (host `%`).
        return f"{self.literal(name)}@{self.literal(host)}"

    def enum_labels(self, data_type: str | None, native: str) -> tuple[str, ...]:
        # COLUMN_TYPE spells them: enum('open','it''s done')
        if (data_type or "").lower() != "enum":
            return ()
        return tuple(label.replace("''", "'") for label in _ENUM_LABEL.findall(native))

    def catalog_default(self, text: str | None) -> str | None:
        # MariaDB reports a nullable column without a default as the text NULL.
        return None if text is None or str(text) == "NULL" else str(text).strip()

    def render_type(self, column_type: ColumnType) -> str:
        family = column_type.family
        if family == "integer":
            return {8: "tinyint", 16: "smallint", 64: "bigint"}.get(column_type.precision or 32, "int")
        if family == "decimal":
            return f"decimal({min(column_type.precision or 38, 65)},{column_type.scale or 0})"
        if family == "float":
            return "double"
        if family == "text":
            return f"varchar({column_type.length})" if column_type.length and column_type.length <= 16383 else "longtext"
        if family == "timestamp":
            precision = 6 if column_type.precision is None else min(column_type.precision, 6)
            return f"datetime({precision})"  # stored in UTC when the source had a time zone
        if family == "binary":
            return f"varbinary({column_type.length})" if column_type.length else "longblob"
        if family == "time":
            return "time(6)"
        return {"date": "date", "boolean": "boolean"}[family]

    def batch_table_name(self, flow: str, schema: str | None = None) -> str:
        # A temporary table lives in a database here; put it in the staging schema, where the grant is.
        return self.table(schema, f"agent_batch_{flow}")

    def on_connect(self, dbapi_connection: Any, role: Role, attach: dict[str, str]) -> None:
        cursor = dbapi_connection.cursor()
        try:
            if role == "source":
                cursor.execute("SET SESSION TRANSACTION READ ONLY")
            else:
                # Control timestamps (stg_loaded_at, agent_run) are UTC; the MES clock stays the server's own.
                cursor.execute("SET time_zone = '+00:00'")
        finally:
            cursor.close()

"""MySQL and MariaDB (native pymysql or pyodbc with the MariaDB ODBC driver).

A schema is a database here. Sources run `SET SESSION TRANSACTION READ ONLY`; targets work in UTC.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from agent.dialects.type_names import TypeName, TypeNames
from agent.dialects import mysql_load
from agent.dialects.base import Dialect, Role
from agent.types import ColumnType

# Drivers whose binds lose part of a value. pyodbc binds a datetime with the precision the ODBC driver reports for
# SQL_TYPE_TIMESTAMP (SQLGetTypeInfo): MariaDB Connector/ODBC 3.1 reports 16 characters, so pyodbc sends whole
# seconds (a keyset page would restart at the whole second), and times go as SQL_TIME_STRUCT, which has no
# fraction. It also cannot bind integers beyond signed 64 bits.
_ODBC_DRIVERS = frozenset(("pyodbc",))


class ExactTemporalText(sa.types.TypeDecorator):
    """Binds datetimes as `YYYY-MM-DD HH:MM:SS.ffffff` and times as `HH:MM:SS.ffffff`: MySQL/MariaDB convert the
    text to the column's type exactly, as they do for PyMySQL, which sends the same text. A zoned value keeps its
    wall-clock time (PyMySQL ignores tzinfo too)."""

    impl = sa.String
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.engine.Dialect) -> Any:
        if isinstance(value, dt.datetime):
            return f"{value.year:04d}-{value.month:02d}-{value.day:02d} {_time_text(value)}"
        if isinstance(value, dt.time):
            return _time_text(value)
        return value


def _time_text(value: dt.datetime | dt.time) -> str:
    return f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}"


class WideIntegerText(sa.types.TypeDecorator):
    """Binds integers beyond signed 64 bits (`bigint unsigned` values) as decimal text, which MySQL/MariaDB
    convert exactly: pyodbc cannot bind them (OverflowError)."""

    impl = sa.BigInteger
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.engine.Dialect) -> Any:
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            return str(value)
        return value


_ENUM_LABEL = re.compile(r"'((?:[^']|'')*)'")


class MySQLDialect(Dialect):
    name = "mysql"
    sqlalchemy_names = ("mysql", "mariadb")
    read_only_mechanism = "SET SESSION TRANSACTION READ ONLY"
    default_protected_schemas = ("mysql", "sys", "information_schema", "performance_schema")
    schema_is_database = True
    case_insensitive_columns = True
    sqlglot_name = "mysql"
    canonical_families = frozenset(("integer", "decimal", "text", "timestamp", "date"))
    type_families: ClassVar[dict[str, str]] = {
        **dict.fromkeys(("tinyint", "smallint", "mediumint", "int", "integer", "bigint"), "integer"),
        **dict.fromkeys(("decimal", "numeric"), "decimal"), **dict.fromkeys(("float", "double", "real"), "float"),
        **dict.fromkeys(("char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set"), "text"),
        **dict.fromkeys(("datetime", "timestamp"), "timestamp"), "date": "date", "time": "time",
        **dict.fromkeys(("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"), "binary"),
    }
    integer_bits: ClassVar[dict[str, int]] = {"tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "integer": 32, "bigint": 64}
    integer_types = (
        ("tinyint", -(2**7), 2**7 - 1), ("tinyint unsigned", 0, 2**8 - 1),
        ("smallint", -(2**15), 2**15 - 1), ("smallint unsigned", 0, 2**16 - 1),
        ("int", -(2**31), 2**31 - 1), ("int unsigned", 0, 2**32 - 1),
        ("bigint", -(2**63), 2**63 - 1), ("bigint unsigned", 0, 2**64 - 1),
    )

    type_synonyms: ClassVar[dict[str, str | ColumnType]] = {
        "mediumint": ColumnType("integer", precision=24), "datetime": "timestamp", "double": "double precision",
        **dict.fromkeys(("tinytext", "mediumtext", "longtext"), "text"),
        **dict.fromkeys(("tinyblob", "blob", "mediumblob", "longblob"), "varbinary"),
    }
    type_names: ClassVar[TypeNames] = {
        "decimal": TypeName("decimal(38,0)", "decimal({precision},{scale})", max_size=65, default_precision=38),
        "float": TypeName("double"),
        "text": TypeName("longtext", "varchar({length})", max_size=16383),
        # A zoned source timestamp is stored in UTC: MySQL's datetime has no zone.
        "timestamp": TypeName("", "datetime({precision})", max_size=6, default_precision=6),
        "binary": TypeName("longblob", "varbinary({length})"),
        "date": TypeName("date"), "time": TypeName("time(6)"), "boolean": TypeName("boolean"),
    }

    def __init__(self, sa_dialect: sa.engine.Dialect | None = None):
        super().__init__(sa_dialect)
        # The driver's text of the batch table's multi-row INSERT: (batch table, columns, rows, paramstyle) -> text.
        self._insert_sql: dict[tuple[Any, ...], tuple[str, bool]] = {}

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

    def is_unsigned(self, name: str, native: str) -> bool:
        # COLUMN_TYPE says it: `tinyint(3) unsigned`, `int(10) unsigned zerofill`.
        return "unsigned" in native.lower().split()

    def catalog_default(self, text: str | None) -> str | None:
        # MariaDB reports a nullable column without a default as the text NULL.
        return None if text is None or str(text) == "NULL" else str(text).strip()

    def bind_type(self, sa_type: sa.types.TypeEngine) -> sa.types.TypeEngine:
        if self.sa_dialect.driver not in _ODBC_DRIVERS:
            return sa_type
        if isinstance(sa_type, (sa.DateTime, sa.Time)):
            return ExactTemporalText()
        if isinstance(sa_type, sa.BigInteger):
            return WideIntegerText()
        return sa_type

    def batch_table_name(self, flow: str, schema: str | None = None, shape: str = "") -> str:
        # A temporary table lives in a database here; put it in the staging schema, where the grant is.
        return self.table(schema, f"agent_batch_{flow}")

    def connect_args(self, role: Role) -> dict[str, Any]:
        if self.sa_dialect.driver != "pymysql":
            return {}
        # PyMySQL offers LOAD DATA LOCAL INFILE to the server only when connected with it (the batch table's load;
        # MariaDB Connector/ODBC offers it by default).
        return {"conv": mysql_load.pymysql_conversions(), **({"local_infile": True} if role == "target" else {})}

    def on_connect(self, dbapi_connection: Any, role: Role, attach: dict[str, str]) -> None:
        if hasattr(dbapi_connection, "_local_infile"):
            # PyMySQL: answer the server's file requests only during the agent's own LOAD DATA (mysql_load.py).
            dbapi_connection._local_infile = False
        cursor = dbapi_connection.cursor()
        try:
            if role == "source":
                cursor.execute("SET SESSION TRANSACTION READ ONLY")
            else:
                # Control timestamps (stg_loaded_at, agent_run) are UTC; the MES clock stays the server's own.
                cursor.execute("SET time_zone = '+00:00'")
        finally:
            cursor.close()

    # --- the write path: LOAD DATA LOCAL INFILE (PyMySQL), else multi-row INSERTs (agent/dialects/mysql_load.py) ----
    def load_batch_table(
        self, conn: Connection, batch_table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]],
        bind_types: dict[str, sa.types.TypeEngine], native_types: Mapping[str, str | None] | None = None,
    ) -> None:
        rows = rows if isinstance(rows, list) else list(rows)
        if not rows:
            return
        if mysql_load.infile_allowed(conn):
            def statement(path: str) -> sa.TextClause:
                return sa.text(self.load_batch_sql(batch_table, columns, bind_types, path))

            if mysql_load.load_infile(conn, statement, [_is_binary(bind_types[c]) for c in columns], rows):
                return
        types = [self.bind_type(bind_types[c]).dialect_impl(conn.dialect) for c in columns]
        processors = [t.bind_processor(conn.dialect) for t in types]

        def statement_for(count: int) -> tuple[str, bool]:
            key = (batch_table, tuple(columns), count, conn.dialect.paramstyle)
            if key not in self._insert_sql:
                text = self.render("load_batch_table", infile=False, batch_table=batch_table, rows=count,
                                   columns=[self.quote(c) for c in columns])
                compiled = sa.text(text).compile(dialect=conn.dialect)
                if len(self._insert_sql) > 64:  # a few flows, each a full and a last statement per batch
                    self._insert_sql.clear()
                self._insert_sql[key] = (compiled.string, compiled.positional)
            return self._insert_sql[key]

        mysql_load.insert_rows(conn, statement_for, len(columns), rows, processors)

    def load_batch_sql(
        self, batch_table: str, columns: Sequence[str], bind_types: dict[str, sa.types.TypeEngine] | None = None,
        path: str = "<temporary file>",
    ) -> str:
        """LOAD DATA LOCAL INFILE of the batch's file at `path` (render-sql shows a placeholder); a server that refuses
        it gets multi-row INSERTs (the same template, `infile=False`)."""
        quoted = [self.quote(c) for c in columns]
        binary = [bind_types is not None and _is_binary(bind_types[c]) for c in columns]
        targets = [f"@b{i}" if b else q for i, (q, b) in enumerate(zip(quoted, binary, strict=True))]
        unhex = [(q, f"@b{i}") for i, (q, b) in enumerate(zip(quoted, binary, strict=True)) if b]
        return self.render("load_batch_table", infile=True, path=self.literal(path), batch_table=batch_table,
                           targets=targets, unhex=unhex)


def _is_binary(sa_type: sa.types.TypeEngine) -> bool:
    return isinstance(sa_type, sa.types._Binary)

"""PostgreSQL: COPY into a session-private batch table, read-only sessions via default_transaction_read_only."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from agent.dialects.base import Dialect, Role
from agent.types import ColumnType


class PostgreSQLDialect(Dialect):
    name = "postgresql"
    sqlalchemy_names = ("postgresql",)
    read_only_mechanism = "default_transaction_read_only = on"
    default_protected_schemas = ("public", "pg_catalog", "information_schema")
    folds_unquoted_to_lower = True
    sqlglot_name = "postgres"
    type_families = {
        **dict.fromkeys(("int2", "int4", "int8"), "integer"), "numeric": "decimal", "money": "decimal",
        **dict.fromkeys(("float4", "float8"), "float"), **dict.fromkeys(("varchar", "bpchar", "text", "name", "citext"), "text"),
        **dict.fromkeys(("timestamp", "timestamptz"), "timestamp"), "date": "date",
        **dict.fromkeys(("time", "timetz"), "time"), "bool": "boolean", "bytea": "binary",
    }
    integer_bits = {"int2": 16, "int4": 32, "int8": 64}
    # No unsigned types: an unsigned source column gets the next wider signed type.
    integer_types = (
        ("smallint", -(2**15), 2**15 - 1), ("integer", -(2**31), 2**31 - 1), ("bigint", -(2**63), 2**63 - 1),
        ("numeric(20,0)", -(10**20 - 1), 10**20 - 1),
    )
    zoned_types = frozenset(("timestamptz", "timetz"))
    holds_unbounded_decimal = True

    def render_type(self, column_type: ColumnType) -> str:
        family = column_type.family
        if family == "integer":
            return self.integer_column(column_type)[0]
        if family == "decimal":
            if column_type.precision is None:
                return "numeric"
            return f"numeric({column_type.precision},{column_type.scale or 0})"
        if family == "float":
            return "double precision"
        if family == "text":
            return f"varchar({column_type.length})" if column_type.length else "text"
        if family == "timestamp":
            precision = 6 if column_type.precision is None else min(column_type.precision, 6)
            zone = "with time zone" if column_type.timezone else "without time zone"
            return f"timestamp({precision}) {zone}"
        if family == "binary":
            return "bytea"
        return {"date": "date", "time": "time", "boolean": "boolean"}[family]

    def connect_args(self, role: Role) -> dict[str, Any]:
        options = "-c default_transaction_read_only=on" if role == "source" else "-c timezone=UTC"
        return {"options": options}

    def load_batch_table(
        self, conn: Connection, batch_table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]],
        bind_types: dict[str, sa.types.TypeEngine],
    ) -> None:
        statement = self.load_batch_sql(batch_table, columns)
        cursor = conn.connection.driver_connection.cursor()
        driver_error = conn.dialect.loaded_dbapi.Error
        try:
            with cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
        except driver_error as exc:
            # COPY runs on the driver's own cursor, outside SQLAlchemy, which wraps every other statement's errors:
            # wrap this one too, so that the run records a flow failure instead of ending in a traceback.
            raise sa.exc.DBAPIError.instance(statement, None, exc, driver_error) from exc

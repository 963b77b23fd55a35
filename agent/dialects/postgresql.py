"""PostgreSQL: COPY into a session-private batch table, read-only sessions via default_transaction_read_only."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from agent.dialects import pg_copy
from agent.dialects.type_names import TypeName, TypeNames
from agent.dialects.base import Dialect, Role
from agent.types import ColumnType


class PostgreSQLDialect(Dialect):
    name = "postgresql"
    sqlalchemy_names = ("postgresql",)
    read_only_mechanism = "default_transaction_read_only = on"
    default_protected_schemas = ("public", "pg_catalog", "information_schema")
    folds_unquoted_to_lower = True
    sqlglot_name = "postgres"
    canonical_families = frozenset(("integer", "decimal", "text", "timestamp", "date", "boolean"))
    type_families: ClassVar[dict[str, str]] = {
        **dict.fromkeys(("int2", "int4", "int8"), "integer"), "numeric": "decimal", "money": "decimal",
        **dict.fromkeys(("float4", "float8"), "float"), **dict.fromkeys(("varchar", "bpchar", "text", "name", "citext"), "text"),
        **dict.fromkeys(("timestamp", "timestamptz"), "timestamp"), "date": "date",
        **dict.fromkeys(("time", "timetz"), "time"), "bool": "boolean", "bytea": "binary",
    }
    integer_bits: ClassVar[dict[str, int]] = {"int2": 16, "int4": 32, "int8": 64}
    # No unsigned types: an unsigned source column gets the next wider signed type.
    integer_types = (
        ("smallint", -(2**15), 2**15 - 1), ("integer", -(2**31), 2**31 - 1), ("bigint", -(2**63), 2**63 - 1),
        ("numeric(20,0)", -(10**20 - 1), 10**20 - 1),
    )
    zoned_types = frozenset(("timestamptz", "timetz"))
    holds_unbounded_decimal = True

    type_synonyms: ClassVar[dict[str, str | ColumnType]] = {
        "int2": "smallint", "int4": "int", "int8": "bigint", "float4": "real", "float8": "double precision",
        "bytea": "varbinary", "bpchar": "char", "money": ColumnType("decimal", precision=19, scale=2),
    }
    type_names: ClassVar[TypeNames] = {
        "decimal": TypeName("numeric", "numeric({precision},{scale})"),  # plain `numeric`: unbounded, exact
        "float": TypeName("double precision"),
        "text": TypeName("text", "varchar({length})"),
        "timestamp": TypeName("", "timestamp({precision}) without time zone", max_size=6,
                              zoned="timestamp({precision}) with time zone", default_precision=6),
        "binary": TypeName("bytea"),
        "date": TypeName("date"), "time": TypeName("time"), "boolean": TypeName("boolean"),
    }

    def connect_args(self, role: Role) -> dict[str, Any]:
        options = "-c default_transaction_read_only=on" if role == "source" else "-c timezone=UTC"
        return {"options": options}

    def batch_table_name(self, flow: str, schema: str | None = None, shape: str = "") -> str:
        # The table is kept for the session (create_batch_table.sql): a digest of its shape names it, first, so that
        # PostgreSQL's 63-byte limit can only cut the flow's name, never make two shapes one table.
        digest = hashlib.blake2b(shape.encode(), digest_size=6).hexdigest()
        return self.quote(f"agent_batch_{digest}_{flow}"[:63])

    def load_batch_table(
        self, conn: Connection, batch_table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]],
        bind_types: dict[str, sa.types.TypeEngine], native_types: Mapping[str, str | None] | None = None,
    ) -> None:
        rows = rows if isinstance(rows, list) else list(rows)
        types = pg_copy.binary_types(pg_copy.natives_of(columns, native_types), rows) if native_types is not None else None
        pg_copy.copy_rows(conn, lambda binary: self.load_batch_sql(batch_table, columns, binary=binary), rows, types)

    def load_batch_sql(
        self, batch_table: str, columns: Sequence[str], bind_types: dict[str, sa.types.TypeEngine] | None = None,
        binary: bool = False,
    ) -> str:
        return self.render("load_batch_table", batch_table=batch_table, columns=[self.quote(c) for c in columns], binary=binary)

"""SQL Server (pyodbc). Compiled and checked in tests; no live server runs in this project's CI.

No row-value comparison, so keyset predicates are written out as OR/AND; batch tables are #temp tables;
sources connect with ApplicationIntent=ReadOnly (read-only routing on an availability group) plus the grants.
"""

from __future__ import annotations

from sqlalchemy.engine import URL

from agent.dialects.base import Dialect, Role
from agent.types import ColumnType


class MSSQLDialect(Dialect):
    name = "mssql"
    sqlalchemy_names = ("mssql",)
    row_value_compare = False
    max_bind_params = 2000
    read_only_mechanism = "ApplicationIntent=ReadOnly and SELECT-only grants"
    default_protected_schemas = ("dbo", "sys", "INFORMATION_SCHEMA", "guest")
    case_insensitive_columns = True
    supports_rowversion_watermark = True
    derived_table_allows_with = False
    sqlglot_name = "tsql"
    type_families = {
        **dict.fromkeys(("tinyint", "smallint", "int", "bigint"), "integer"),
        **dict.fromkeys(("decimal", "numeric", "money", "smallmoney"), "decimal"), **dict.fromkeys(("float", "real"), "float"),
        **dict.fromkeys(("char", "varchar", "nchar", "nvarchar", "text", "ntext", "sysname"), "text"),
        **dict.fromkeys(("datetime", "datetime2", "smalldatetime", "datetimeoffset"), "timestamp"),
        "date": "date", "time": "time", "bit": "boolean",
        **dict.fromkeys(("binary", "varbinary", "image", "timestamp", "rowversion"), "binary"),
    }
    integer_bits = {"tinyint": 8, "smallint": 16, "int": 32, "bigint": 64}
    zoned_types = frozenset(("datetimeoffset",))

    def literal(self, text: str) -> str:
        return "N'" + text.replace("'", "''") + "'"

    def render_type(self, column_type: ColumnType) -> str:
        family = column_type.family
        if family == "integer":
            return {8: "tinyint", 16: "smallint", 64: "bigint"}.get(column_type.precision or 32, "int")
        if family == "decimal":
            return f"decimal({column_type.precision or 38},{column_type.scale or 0})"
        if family == "float":
            return "float"
        if family == "text":
            return f"nvarchar({column_type.length})" if column_type.length and column_type.length <= 4000 else "nvarchar(max)"
        if family == "timestamp":
            precision = 7 if column_type.precision is None else min(column_type.precision, 7)
            return f"datetimeoffset({precision})" if column_type.timezone else f"datetime2({precision})"
        if family == "binary":
            return f"varbinary({column_type.length})" if column_type.length and column_type.length <= 8000 else "varbinary(max)"
        return {"date": "date", "time": "time(7)", "boolean": "bit"}[family]

    def batch_table_name(self, flow: str, schema: str | None = None) -> str:
        return self.quote(f"#agent_batch_{flow}")

    def engine_url(self, url: URL, role: Role, attach: dict[str, str]) -> URL:
        if role == "source":
            return url.update_query_dict({"ApplicationIntent": "ReadOnly"})
        return url

"""SQL Server (pyodbc). Compiled and checked in tests; no live server runs in this project's CI.

No row-value comparison, so keyset predicates are written out as OR/AND; batch tables are #temp tables;
sources connect with ApplicationIntent=ReadOnly (read-only routing on an availability group) plus the grants.
"""

from __future__ import annotations


from typing import ClassVar

from sqlalchemy.engine import URL

from agent.dialects.type_names import TypeName, TypeNames
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
    canonical_families = frozenset(("integer", "decimal", "text", "timestamp", "date"))
    type_families: ClassVar[dict[str, str]] = {
        **dict.fromkeys(("tinyint", "smallint", "int", "bigint"), "integer"),
        **dict.fromkeys(("decimal", "numeric", "money", "smallmoney"), "decimal"), **dict.fromkeys(("float", "real"), "float"),
        **dict.fromkeys(("char", "varchar", "nchar", "nvarchar", "text", "ntext", "sysname"), "text"),
        **dict.fromkeys(("datetime", "datetime2", "smalldatetime", "datetimeoffset"), "timestamp"),
        "date": "date", "time": "time", "bit": "boolean",
        **dict.fromkeys(("binary", "varbinary", "image", "timestamp", "rowversion"), "binary"),
    }
    integer_bits: ClassVar[dict[str, int]] = {"tinyint": 8, "smallint": 16, "int": 32, "bigint": 64}
    unsigned_integer_types = frozenset(("tinyint",))
    integer_types = (
        ("tinyint", 0, 2**8 - 1), ("smallint", -(2**15), 2**15 - 1), ("int", -(2**31), 2**31 - 1),
        ("bigint", -(2**63), 2**63 - 1), ("decimal(20,0)", -(10**20 - 1), 10**20 - 1),
    )
    zoned_types = frozenset(("datetimeoffset",))

    type_synonyms: ClassVar[dict[str, str | ColumnType]] = {
        "nvarchar": "varchar", "nchar": "char", "ntext": "text", "datetime": "timestamp", "datetime2": "timestamp",
        "smalldatetime": "timestamp", "datetimeoffset": "timestamptz", "bit": "boolean",
        "money": ColumnType("decimal", precision=19, scale=4), "smallmoney": ColumnType("decimal", precision=10, scale=4),
        "rowversion": ColumnType("binary", length=8),
    }
    type_names: ClassVar[TypeNames] = {
        "decimal": TypeName("decimal(38,0)", "decimal({precision},{scale})", default_precision=38),
        "float": TypeName("float"),
        "text": TypeName("nvarchar(max)", "nvarchar({length})", max_size=4000),
        "timestamp": TypeName("", "datetime2({precision})", max_size=7, zoned="datetimeoffset({precision})",
                              default_precision=7),
        "binary": TypeName("varbinary(max)", "varbinary({length})", max_size=8000),
        "date": TypeName("date"), "time": TypeName("time(7)"), "boolean": TypeName("bit"),
    }

    def literal(self, text: str) -> str:
        return "N'" + text.replace("'", "''") + "'"

    def integer_column(self, column_type: ColumnType) -> tuple[str, int, int]:
        # tinyint is SQL Server's only 8-bit type, and 8-bit staging columns have always been tinyint here: a
        # signed source's negative values are quarantined with the range rather than changing existing DDL.
        if column_type.precision == 8:
            return self.integer_types[0]
        return super().integer_column(column_type)

    # bind_type stays the default here. SQLAlchemy's mssql+pyodbc (sqlalchemy/dialects/mssql/pyodbc.py and
    # base.py) already binds what pyodbc would cut: times as text (`TIME.bind_processor`, pyodbc sends
    # SQL_TIME_STRUCT, which has no fraction) and zoned datetimes as `isoformat(timespec="microseconds")` text
    # (`_ODBCDateTimeBindProcessor`). Naive datetimes go to pyodbc as datetime objects, which pyodbc binds as
    # SQL_TYPE_TIMESTAMP with the precision the ODBC driver reports for that type: Microsoft ODBC Driver 17/18
    # report datetime2 (7 digits), so microseconds arrive; the legacy "SQL Server" driver (sqlsrv32) knows only
    # datetime and would cut them to milliseconds, so plants use Driver 17/18. Text is not the way out here as it
    # is on MariaDB: a `datetime` column refuses text with more than 3 fractional digits.
    # Not verified against a live SQL Server: none runs in this project's tests.

    def batch_table_name(self, flow: str, schema: str | None = None, shape: str = "") -> str:
        return self.quote(f"#agent_batch_{flow}")

    def engine_url(self, url: URL, role: Role, attach: dict[str, str]) -> URL:
        if role == "source":
            return url.update_query_dict({"ApplicationIntent": "ReadOnly"})
        return url

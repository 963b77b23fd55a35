"""What every database dialect provides. Shared code reads these capabilities; it never tests a name.

Each subclass lives in its own module (`postgresql.py`, `mysql.py`, `mssql.py`, `sqlite.py`) next to the
SQL templates of `sql/<name>/`: everything specific to one database is in those two places.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection

from agent.dialects import templates
from agent.dialects.locking import LockSession, SessionLocks
from agent.dialects.type_names import TypeNames
from agent.types import ColumnType, integer_range

Role = Literal["source", "target"]


class Dialect:
    name: ClassVar[str]  # also the folder under sql/
    sqlalchemy_names: ClassVar[tuple[str, ...]]
    # `(a, b) > (:a, :b)` is understood (SQL Server has no row-value comparison).
    row_value_compare: ClassVar[bool] = True
    # Largest number of bind parameters in one statement (SQL Server caps at 2100).
    max_bind_params: ClassVar[int] = 30000
    # Stored values always match their column's declared type (SQLite's type affinity does not promise it).
    enforces_column_types: ClassVar[bool] = True
    # What a session in read-only mode is called in this database, for messages.
    read_only_mechanism: ClassVar[str] = ""
    # Schemas that hold a database's own or core tables: never a staging schema unless opted in by name
    # (`allow_staging_in:`).
    default_protected_schemas: ClassVar[tuple[str, ...]] = ()
    # A schema is a database here (MySQL/MariaDB): unqualified tables live in the URL's database, and a
    # login's privileges are listed server-wide (the privilege check then knows the staging database of
    # another system on the same server as the agent's own).
    schema_is_database: ClassVar[bool] = False
    # Unquoted identifiers are folded to lower case (PostgreSQL); elsewhere they keep their case.
    folds_unquoted_to_lower: ClassVar[bool] = False
    # Column names match regardless of case (MySQL, SQLite, SQL Server with its usual CI collations).
    case_insensitive_columns: ClassVar[bool] = False
    # `rowversion` watermark columns with MIN_ACTIVE_ROWVERSION() as upper bound (SQL Server).
    supports_rowversion_watermark: ClassVar[bool] = False
    # The database has logins and GRANT (SQLite has neither: grants.sql only explains the file permissions).
    has_logins: ClassVar[bool] = True
    # A query starting with WITH may stand inside a derived table (not on SQL Server).
    derived_table_allows_with: ClassVar[bool] = True
    # The name sqlglot knows this database by (reading the tables of custom queries).
    sqlglot_name: ClassVar[str] = ""
    # Catalog type names (lower case, as `sql/<dialect>/catalog.sql` reports them) -> normalized family,
    # integer widths in bits, and the timestamp types that carry a time zone. Used for schema snapshots.
    type_families: ClassVar[dict[str, str]] = {}
    integer_bits: ClassVar[dict[str, int]] = {}
    zoned_types: ClassVar[frozenset[str]] = frozenset()
    # How each family (but integer) is spelled in DDL: see type_names.py.
    type_names: ClassVar[TypeNames] = {}
    # This database's own type names, for `type:` and declared types (types.parse_type): a neutral name or a type.
    type_synonyms: ClassVar[dict[str, str | ColumnType]] = {}
    # An exact column type holds every value of an unbounded decimal (PostgreSQL `numeric`). Elsewhere (MySQL at
    # most decimal(65,30), SQL Server decimal(38,s)) a staging column taking one needs a `type: decimal(P,S)`.
    holds_unbounded_decimal: ClassVar[bool] = False
    # Integer catalog names that are unsigned here (SQL Server's tinyint; MySQL says `... unsigned` instead).
    unsigned_integer_types: ClassVar[frozenset[str]] = frozenset()
    # Integer column types, narrowest first: (native type, lowest value, highest value). render_type picks the
    # first that holds every value of a column type, and validation enforces the range of the one it picked.
    integer_types: ClassVar[tuple[tuple[str, int, int], ...]] = ()
    # Column families whose canonical text (contract.version_text, as stg_source_key/stg_source_version hold it)
    # reconcile_source_buckets.sql renders in SQL, so both databases checksum the same text (naive timestamps only).
    canonical_families: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, sa_dialect: sa.engine.Dialect | None = None):
        if sa_dialect is None:
            sa_dialect = sa.dialects.registry.load(self.sqlalchemy_names[0])()
        self.sa_dialect = sa_dialect

    # --- identifiers and types -------------------------------------------------------------------
    def quote(self, identifier: str) -> str:
        return self.sa_dialect.identifier_preparer.quote_identifier(identifier)

    def table(self, schema: str | None, name: str) -> str:
        return f"{self.quote(schema)}.{self.quote(name)}" if schema else self.quote(name)

    def render_type(self, column_type: ColumnType) -> str:
        """The native DDL type of a staging column of this type (`type_names`; integers by their range)."""
        if column_type.family == "integer":
            return self.integer_column(column_type)[0]
        return self.type_names[column_type.family].render(column_type)

    def stored_type(self, declared: ColumnType) -> ColumnType:
        """What a live staging column of the reflected type `declared` accepts (the mapping validates against it)."""
        return declared
    def integer_column(self, column_type: ColumnType) -> tuple[str, int, int]:
        """(native type, lowest, highest value) of the staging column this integer type becomes here."""
        low, high = integer_range(column_type)
        for native, lowest, highest in self.integer_types:
            if lowest <= low and high <= highest:
                return native, lowest, highest
        return self.integer_types[-1]  # the widest; values beyond it are quarantined

    def bind_type(self, sa_type: sa.types.TypeEngine) -> sa.types.TypeEngine:
        """The type to bind values of `sa_type` with through this engine's driver: `sa_type` itself, unless the
        driver would send less than the whole value (every bind of the read and write paths goes through here)."""
        return sa_type

    def catalog_type(
        self, data_type: str | None, native: str, length: int | None, precision: int | None, scale: int | None,
        datetime_precision: int | None,
    ) -> ColumnType:
        """Normalize a column type as the catalog query reports it (family `other` when the agent has none)."""
        name = (data_type or "").lower()
        family = self.type_families.get(name, "other")
        if family == "integer":
            return ColumnType("integer", precision=self.integer_bits.get(name, 32), unsigned=self.is_unsigned(name, native))
        if family == "decimal":
            return ColumnType("decimal", precision=_int(precision), scale=_int(scale))
        if family in ("text", "binary"):
            return ColumnType(family, length=_int(length))
        if family in ("timestamp", "time"):
            return ColumnType(family, precision=_int(datetime_precision), timezone=name in self.zoned_types)
        return ColumnType(family)

    def enum_labels(self, data_type: str | None, native: str) -> tuple[str, ...]:
        """An enum column's labels, where its type text as the catalog reports it lists them (MySQL)."""
        return ()

    def is_unsigned(self, name: str, native: str) -> bool:
        """Whether the catalog's integer type `name` (native text `native`) holds no negative values."""
        return name in self.unsigned_integer_types

    def catalog_default(self, text: str | None) -> str | None:
        """A column default as the catalog reports it; None when the column has none."""
        return None if text is None else str(text).strip()

    def batch_table_name(self, flow: str, schema: str | None = None, shape: str = "") -> str:
        """Session-private table the batch is loaded into before the de-duplicating insert. `shape`: what its columns
        depend on, for a dialect that keeps the table for the session (PostgreSQL) and so must name each shape."""
        return self.quote(f"agent_batch_{flow}")

    # --- templates ---------------------------------------------------------------------------------
    def render(self, template: str, **context: Any) -> str:
        """The text of `sql/<dialect>/<template>.sql` with identifiers filled in (values stay bind parameters)."""
        return templates.render(self.name, template, **context)

    def render_script(self, template: str, **context: Any) -> str:
        """A DBA script (grants): the template with its comments, which explain it to the reader."""
        return templates.render(self.name, template, keep_comments=True, **context)

    def literal(self, text: str) -> str:
        """A string literal for DBA scripts (logins, password placeholders); never used for data values."""
        return "'" + text.replace("'", "''") + "'"

    def derived_table(self, sql: str, alias: str) -> str:
        """A plant-written SELECT as a derived table, so the keyset read can wrap it."""
        return f"(\n{sql}\n) AS {self.quote(alias)}"

    def login(self, name: str, host: str) -> str:
        """How grants name the agent's login (MySQL adds the host part)."""
        return self.quote(name)

    def protected_schemas(self, url: URL) -> list[str]:
        """The default protected schemas for a system at this URL."""
        return list(self.default_protected_schemas)

    def unquoted_name(self, name: str) -> str:
        """The name the database gives an unquoted identifier."""
        return name.lower() if self.folds_unquoted_to_lower else name

    def same_column(self, a: str, b: str) -> bool:
        return a.lower() == b.lower() if self.case_insensitive_columns else a == b

    def statement(
        self, template: str, bind_types: dict[str, sa.types.TypeEngine] | None = None,
        result_types: dict[str, sa.types.TypeEngine] | None = None, **context: Any,
    ) -> sa.TextClause | sa.TextualSelect:
        """A rendered template as an executable statement; the types convert values such as timestamps."""
        clause = sa.text(self.render(template, **context))
        if bind_types:
            clause = clause.bindparams(
                *[sa.bindparam(name, type_=self.bind_type(type_)) for name, type_ in bind_types.items()]
            )
        if result_types:
            return clause.columns(**result_types)
        return clause

    def split_script(self, text: str) -> list[str]:
        """Statements of a multi-statement DDL template (each ends with `;` at the end of a line)."""
        return [part.strip() for part in text.split(";\n") if part.strip()]

    # --- connections -----------------------------------------------------------------------------
    def resolve_url(self, url: URL, folder: Path) -> URL:
        """Make file paths in the URL absolute against the configuration file's folder (file databases)."""
        return url

    def engine_url(self, url: URL, role: Role, attach: dict[str, str]) -> URL:
        """The URL to connect with; sources are opened read-only where the URL can say so."""
        return url

    def connect_args(self, role: Role) -> dict[str, Any]:
        return {}

    def configure_engine(self, engine: sa.engine.Engine, role: Role, attach: dict[str, str]) -> None:
        """Install the session setup of `on_connect` on every new connection of the engine."""

        @sa.event.listens_for(engine, "connect")
        def _session_setup(dbapi_connection: Any, _record: Any) -> None:
            self.on_connect(dbapi_connection, role, attach)

    def on_connect(self, dbapi_connection: Any, role: Role, attach: dict[str, str]) -> None:
        """Session setup run on every new connection (read-only mode, time zone, attached files)."""

    def flow_locks(self, engine: sa.engine.Engine) -> LockSession:
        """Where this database holds the flow locks of one agent: a session of its own (agent/dialects/locking.py)."""
        return SessionLocks(self, engine)

    # --- the write path --------------------------------------------------------------------------
    def load_batch_table(
        self, conn: Connection, batch_table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]],
        bind_types: dict[str, sa.types.TypeEngine], native_types: Mapping[str, str | None] | None = None,
    ) -> None:
        """Load rows into the batch table: one multi-row insert by default (dialects may use a bulk API)."""
        statement = sa.text(self.load_batch_sql(batch_table, columns))
        statement = statement.bindparams(
            *[sa.bindparam(p, type_=self.bind_type(bind_types[c])) for p, c in zip(_params(columns), columns, strict=True)]
        )
        payload = [dict(zip(_params(columns), row, strict=True)) for row in rows]
        if payload:
            conn.execute(statement, payload)

    def load_batch_sql(
        self, batch_table: str, columns: Sequence[str], bind_types: dict[str, sa.types.TypeEngine] | None = None,
    ) -> str:
        """The statement that loads one batch into the batch table (an insert executed for every row, COPY on
        PostgreSQL, LOAD DATA LOCAL INFILE or multi-row inserts on MySQL); `bind_types`: the columns' types."""
        return self.render(
            "load_batch_table", batch_table=batch_table, columns=[self.quote(c) for c in columns], params=_params(columns)
        )

    def to_utc_text(self, value: Any) -> str | None:
        """Timestamps read back from control tables, as ISO text in UTC (for status output)."""
        if value is None:
            return None
        if hasattr(value, "isoformat"):
            if getattr(value, "tzinfo", None) is None:
                return value.isoformat(sep=" ", timespec="seconds") + "Z"
            import datetime as _dt

            return value.astimezone(_dt.timezone.utc).replace(tzinfo=None).isoformat(sep=" ", timespec="seconds") + "Z"
        return str(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _params(columns: Sequence[str]) -> list[str]:
    return [f"p{i}" for i in range(len(columns))]


def param_names(columns: Sequence[str]) -> list[str]:
    return _params(columns)

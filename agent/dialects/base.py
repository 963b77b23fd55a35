"""What every database dialect provides. Shared code reads these capabilities; it never tests a name.

Each subclass lives in its own module (`postgresql.py`, `mysql.py`, `mssql.py`, `sqlite.py`) next to the
SQL templates of `sql/<name>/`: everything specific to one database is in those two places.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection

from agent.dialects import templates
from agent.types import ColumnType

Role = Literal["source", "target"]


class Dialect:
    name: ClassVar[str]  # also the folder under sql/
    sqlalchemy_names: ClassVar[tuple[str, ...]]
    # `(a, b) > (:a, :b)` is understood (SQL Server has no row-value comparison).
    row_value_compare: ClassVar[bool] = True
    # Largest number of bind parameters in one statement (SQL Server caps at 2100).
    max_bind_params: ClassVar[int] = 30000
    # What a session in read-only mode is called in this database, for messages.
    read_only_mechanism: ClassVar[str] = ""

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
        raise NotImplementedError

    def batch_table_name(self, flow: str, schema: str | None = None) -> str:
        """Session-private table the batch is loaded into before the de-duplicating insert."""
        return self.quote(f"agent_batch_{flow}")

    # --- templates ---------------------------------------------------------------------------------
    def render(self, template: str, **context: Any) -> str:
        """The text of `sql/<dialect>/<template>.sql` with identifiers filled in (values stay bind parameters)."""
        return templates.render(self.name, template, **context)

    def statement(
        self, template: str, bind_types: dict[str, sa.types.TypeEngine] | None = None,
        result_types: dict[str, sa.types.TypeEngine] | None = None, **context: Any,
    ) -> sa.TextClause | sa.TextualSelect:
        """A rendered template as an executable statement; the types convert values such as timestamps."""
        clause = sa.text(self.render(template, **context))
        if bind_types:
            clause = clause.bindparams(*[sa.bindparam(name, type_=type_) for name, type_ in bind_types.items()])
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

    # --- the write path --------------------------------------------------------------------------
    def load_batch_table(
        self, conn: Connection, batch_table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]],
        bind_types: dict[str, sa.types.TypeEngine],
    ) -> None:
        """Load rows into the batch table: one multi-row insert by default (dialects may use a bulk API)."""
        statement = sa.text(self.render(
            "load_batch_table", batch_table=batch_table, columns=[self.quote(c) for c in columns], params=_params(columns)
        ))
        statement = statement.bindparams(*[sa.bindparam(p, type_=bind_types[c]) for p, c in zip(_params(columns), columns)])
        payload = [dict(zip(_params(columns), row)) for row in rows]
        if payload:
            conn.execute(statement, payload)

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


def _params(columns: Sequence[str]) -> list[str]:
    return [f"p{i}" for i in range(len(columns))]


def param_names(columns: Sequence[str]) -> list[str]:
    return _params(columns)

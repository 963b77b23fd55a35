"""The one live-schema reader: tables described with ONE catalog query per system (`sql/<dialect>/catalog.sql`).

The query returns one row per column and per key/index/foreign-key column of every watched table; this
module turns those rows into `TableSnapshot` values, with types normalized by the dialect. The gate runs
it before every poll, so the statement is built once per system and its raw rows are cheap to compare.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from agent.config import LoadedConfig
from agent.connect import Systems
from agent.dialects import Dialect
from agent.catalog.model import ColumnSnapshot, ForeignKeySnapshot, IndexSnapshot, KeySnapshot, TableSnapshot

Row = Sequence[Any]  # one catalog row (a tuple), indexed in FIELDS order
# Column order of every dialect's catalog.sql.
FIELDS = (
    "kind", "watch_id", "object_name", "position", "column_name", "data_type", "native_type", "char_length",
    "numeric_precision", "numeric_scale", "datetime_precision", "nullable", "default_value", "is_identity",
    "is_computed", "collation_name", "is_unique", "ref_schema", "ref_table", "ref_column",
)


@dataclass(frozen=True)
class WatchedTable:
    """A table the catalog query describes: `schema.table` on one system (schema None: the default one)."""

    system: str
    schema: str | None
    table: str

    @property
    def key(self) -> str:
        return f"{self.schema}.{self.table}" if self.schema else self.table


@dataclass(frozen=True)
class CatalogQuery:
    """The catalog statement for one system's watched tables, built once and run before every poll."""

    system: str
    dialect: Dialect
    tables: tuple[WatchedTable, ...]
    statement: sa.TextClause
    params: dict[str, str]
    _compiled: dict[tuple[str, str, str], tuple[str, list[str] | None]] = field(default_factory=dict, compare=False)

    @classmethod
    def build(cls, system: str, dialect: Dialect, tables: Sequence[WatchedTable]) -> CatalogQuery:
        watched, params = [], {}
        for i, table in enumerate(tables):
            entry = {"schema": None, "table": f"t{i}"}
            params[f"t{i}"] = table.table
            if table.schema:
                entry["schema"] = f"s{i}"
                params[f"s{i}"] = table.schema
            watched.append(entry)
        statement = sa.text(dialect.render("catalog", watched=watched))
        return cls(system, dialect, tuple(tables), statement, params)

    def fetch(self, conn: Connection) -> Sequence[Row]:
        """The raw catalog rows (one round trip), as plain tuples (they compare in C: the gate compares them each poll).

        The drift gate runs this before every poll and compares the rows with the last ones; SQLAlchemy's execute
        and its Row objects were half of an empty poll's CPU for it, so the statement, compiled once per dialect,
        goes straight to the driver's cursor, inside the connection's SQLAlchemy transaction (the caller's commit
        ends it; psycopg keeps the statement prepared), with the connection's cursor-execute events, so that what
        counts or traces statements still sees it. A driver error comes out as SQLAlchemy's own exception, as
        from `conn.execute`, and a connection the server dropped is invalidated (never pooled again)."""
        sql, names = self._driver_sql(conn.dialect)
        params: Any = self.params if names is None else [self.params[name] for name in names]
        if not conn.in_transaction():
            conn.begin()
        dbapi_connection = conn.connection.dbapi_connection
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            conn.dispatch.before_cursor_execute(conn, cursor, sql, params, None, False)  # what counts or traces statements
            cursor.execute(sql, params)
            rows = cursor.fetchall()
            conn.dispatch.after_cursor_execute(conn, cursor, sql, params, None, False)
        except conn.dialect.loaded_dbapi.Error as exc:
            gone = conn.dialect.is_disconnect(exc, dbapi_connection, cursor)
            if gone:
                conn.invalidate(exc)  # never back into the pool
            raise sa.exc.DBAPIError.instance(sql, params, exc, conn.dialect.loaded_dbapi.Error, hide_parameters=True,
                                             connection_invalidated=gone, dialect=conn.dialect) from exc
        finally:
            with contextlib.suppress(conn.dialect.loaded_dbapi.Error):  # the connection may be gone with it
                cursor.close()
        return list(rows) if not rows or type(rows[0]) is tuple else [tuple(row) for row in rows]  # pyodbc: its Row type

    def _driver_sql(self, dialect: sa.Dialect) -> tuple[str, list[str] | None]:
        """The statement in the driver's parameter style, and the parameter names in order for a positional one."""
        key = (dialect.name, dialect.driver, dialect.paramstyle)
        if key not in self._compiled:
            compiled = self.statement.compile(dialect=dialect)
            self._compiled[key] = (compiled.string, list(compiled.positiontup or []) if compiled.positional else None)
        return self._compiled[key]

    def tables_from(self, rows: Sequence[Row]) -> dict[str, TableSnapshot]:
        """Watched tables that exist, by name; a table the database does not show is absent."""
        grouped: dict[int, dict[str, list[Row]]] = defaultdict(lambda: defaultdict(list))
        for row in rows:
            grouped[int(row[1])][row[0]].append(row)
        found = {}
        for watch_id, kinds in grouped.items():
            if kinds.get("column"):
                table = self.tables[watch_id]
                found[table.key] = _table(self.dialect, table.key, kinds)
        return dict(sorted(found.items()))


def server_version(conn: Connection, dialect: Dialect) -> str:
    return str(conn.execute(sa.text(dialect.render("server_version"))).scalar_one()).strip()


def engine_for(config: LoadedConfig, systems: Systems, system: str) -> Engine:
    """The engine the flows already use for this system: the writing one on a target, else read-only."""
    if any(flow.target == system for flow in config.model.flows.values()):
        return systems.target(system)
    return systems.source(system)


def _table(dialect: Dialect, name: str, kinds: dict[str, list[Row]]) -> TableSnapshot:
    ordered = sorted(kinds["column"], key=lambda r: int(r[3]))
    labels = _enum_labels(kinds.get("enum_label", []))
    columns = tuple(
        _column(dialect, position, row, labels.get(str(row[4]), ())) for position, row in enumerate(ordered, start=1)
    )
    keys = _grouped(kinds.get("primary_key", []))
    primary_key = next((KeySnapshot(n or None, tuple(c for c, _ in cols)) for n, cols in keys.items()), None)
    unique = tuple(KeySnapshot(n, tuple(c for c, _ in cols)) for n, cols in _grouped(kinds.get("unique", [])).items())
    indexes = tuple(
        IndexSnapshot(n, tuple(c for c, _ in cols), bool(cols[0][1][16]))
        for n, cols in _grouped(kinds.get("index", [])).items()
    )
    foreign_keys = tuple(
        ForeignKeySnapshot(
            n, tuple(c for c, _ in cols), _qualified(cols[0][1][17], cols[0][1][18]), tuple(str(r[19]) for _, r in cols)
        )
        for n, cols in _grouped(kinds.get("foreign_key", [])).items()
    )
    return TableSnapshot(name, columns, primary_key, unique, indexes, foreign_keys)


def _enum_labels(rows: list[Row]) -> dict[str, tuple[str, ...]]:
    """column -> its enum's labels in label order, from the rows of kind 'enum_label' (the label is native_type)."""
    labels: dict[str, list[str]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: int(r[3])):
        labels[str(row[4])].append(str(row[6]))
    return {column: tuple(found) for column, found in labels.items()}


def _column(dialect: Dialect, position: int, row: Row, labels: tuple[str, ...] = ()) -> ColumnSnapshot:
    (_, _, _, _, name, data_type, native, length, precision, scale, dt_precision, nullable, default,
     identity, computed, collation, *_rest) = row
    return ColumnSnapshot(
        name=str(name),
        position=position,
        type=dialect.catalog_type(data_type, str(native), length, precision, scale, dt_precision),
        native=str(native),
        nullable=bool(int(nullable)),
        default=dialect.catalog_default(default),
        identity=bool(int(identity)),
        computed=bool(int(computed)),
        collation=None if collation is None else str(collation),
        labels=labels or dialect.enum_labels(data_type, str(native)),
    )


def _grouped(rows: list[Row]) -> dict[str, list[tuple[str, Row]]]:
    """name -> [(column, row)] in key order; groups sorted by name for a stable snapshot."""
    groups: dict[str, list[tuple[int, str, Row]]] = defaultdict(list)
    for row in rows:
        groups[row[2] or ""].append((int(row[3]), str(row[4]), row))
    return {name: [(c, r) for _, c, r in sorted(items, key=lambda i: i[0])] for name, items in sorted(groups.items())}


def _qualified(schema: Any, table: Any) -> str:
    return f"{schema}.{table}" if schema else str(table)


def describe_table(engine: Engine, dialect: Dialect, schema: str | None, table: str) -> TableSnapshot | None:
    """One table as the catalog query shows it to this engine's login (None: it does not exist or is not visible).

    `prepare` uses this for source and staging tables, the drift gate the same query for all watched tables:
    one reader, so both see the same types. information_schema shows a login with column-level grants exactly
    the columns it may read (MySQL), where SQLAlchemy's reflection would need table-level rights.
    """
    query = CatalogQuery.build("", dialect, [WatchedTable("", schema, table)])
    with engine.connect() as conn:
        rows = query.fetch(conn)
        conn.commit()  # read-only; commit keeps psycopg's prepared statements, a rollback drops them
    return next(iter(query.tables_from(rows).values()), None)

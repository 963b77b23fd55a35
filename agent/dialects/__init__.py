"""Database dialects: one module each, looked up by SQLAlchemy's dialect name."""

from __future__ import annotations

import sqlalchemy as sa

from agent.dialects.base import Dialect
from agent.dialects.mssql import MSSQLDialect
from agent.dialects.mysql import MySQLDialect
from agent.dialects.postgresql import PostgreSQLDialect
from agent.dialects.sqlite import SQLiteDialect
from agent.types import ColumnType, parse_type

DIALECTS: dict[str, type[Dialect]] = {
    cls.name: cls for cls in (PostgreSQLDialect, MySQLDialect, MSSQLDialect, SQLiteDialect)
}
_BY_SQLALCHEMY_NAME = {sa_name: cls for cls in DIALECTS.values() for sa_name in cls.sqlalchemy_names}


def parse_any_type(text: str) -> ColumnType:
    """A `type:` of the configuration: the neutral names, or any supported database's own (nvarchar, int8, money)."""
    return parse_type(text, SQLiteDialect.type_synonyms)


def for_engine(engine: sa.engine.Engine | sa.engine.Connection) -> Dialect:
    return _lookup(engine.dialect.name)(engine.dialect)


def for_url(url: sa.engine.URL) -> Dialect:
    return _lookup(url.get_backend_name())(_driver_dialect(url))


def _driver_dialect(url: sa.engine.URL) -> sa.engine.Dialect | None:
    """SQLAlchemy's dialect for the URL's own driver (binds differ per driver); None when it does not know the
    driver: the backend's default then serves for quoting, and connecting reports the unknown driver."""
    try:
        return url.get_dialect()()
    except sa.exc.NoSuchModuleError:
        return None


def for_name(name: str) -> Dialect:
    """A dialect by name (`mssql`, `postgresql`, `mysql`, `sqlite`), for rendering SQL without connecting."""
    return _lookup(name)()


def _lookup(sa_name: str) -> type[Dialect]:
    try:
        return _BY_SQLALCHEMY_NAME[sa_name]
    except KeyError:
        supported = ", ".join(sorted(DIALECTS))
        raise ValueError(f"database {sa_name!r} is not supported; supported: {supported}") from None


__all__ = ["DIALECTS", "Dialect", "for_engine", "for_name", "for_url", "parse_any_type"]

"""Real test databases: create and drop one database per test module on local servers.

Kinds:
  sqlite      a file in a directory the caller gives (pytest's tmp_path)
  postgresql  PostgreSQL via psycopg 3; admin URL from MEA_TEST_PG_URL
  mysql       MariaDB/MySQL via pymysql; admin URL from MEA_TEST_MYSQL_URL
  mysql_odbc  the same MariaDB server via pyodbc and the "MariaDB Unicode" ODBC driver

A kind whose server or driver is missing is skipped with a reason that says how to fix it.
If PostgreSQL is unreachable and the optional package ``pgserver`` is installed, a private
PostgreSQL server from that wheel is started for the test session instead.
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import URL, Engine, create_engine, make_url, text
from sqlalchemy.pool import NullPool

KINDS = ("sqlite", "postgresql", "mysql", "mysql_odbc")
DEFAULT_PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_MYSQL_ADMIN_URL = "mysql+pymysql://root@127.0.0.1:3306/"
ODBC_DRIVER = "MariaDB Unicode"
CONNECT_TIMEOUT_S = 3
MAX_NAME_LENGTH = 63  # PostgreSQL identifier limit; MySQL allows 64

PG_START_HINT = (
    "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start, "
    "or pip install pgserver for a bundled server"
)
MYSQL_START_HINT = (
    "start it with: mkdir -p /run/mysqld && chown mysql: /run/mysqld && "
    "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql"
)
ODBC_INSTALL_HINT = "install it with: apt-get install -y unixodbc odbc-mariadb"


def _render(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def _admin_engine(admin_url: str) -> Engine:
    # psycopg and pymysql both take connect_timeout (seconds)
    return create_engine(
        admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": CONNECT_TIMEOUT_S}
    )


def _sqlite_path(name: str, sqlite_dir: Path | None) -> Path:
    return Path(sqlite_dir or tempfile.gettempdir()) / f"{name}.db"


def _ping(admin_url: str) -> str | None:
    """None if the server answers, else the error text."""
    engine = _admin_engine(admin_url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return None
    except Exception as error:  # any driver error means "not usable"
        return f"{type(error).__name__}: {str(error).splitlines()[0]}"
    finally:
        engine.dispose()


def _start_pgserver() -> str | None:
    """Start a PostgreSQL server from the ``pgserver`` wheel; its admin URL, or None if impossible.

    The server stops and its data directory is deleted when the Python process exits. Run as
    root, pgserver creates an OS user named ``pgserver`` to own the server (initdb refuses root).
    """
    try:
        import pgserver  # type: ignore[import-not-found]
    except ImportError:
        return None
    data_dir = tempfile.mkdtemp(prefix="mea-pgserver-")
    try:
        server = pgserver.get_server(data_dir, cleanup_mode="delete")
    except Exception:
        shutil.rmtree(data_dir, ignore_errors=True)
        return None
    socket_dir = make_url(server.get_uri()).query.get("host", data_dir)
    return _render(make_url("postgresql+psycopg://postgres@/postgres").update_query_dict({"host": socket_dir}))


def pg_admin_url() -> str:
    return os.environ.get("MEA_TEST_PG_URL", DEFAULT_PG_ADMIN_URL)


def mysql_admin_url() -> str:
    return os.environ.get("MEA_TEST_MYSQL_URL", DEFAULT_MYSQL_ADMIN_URL)


@functools.cache
def _postgresql_admin_url_or_reason() -> tuple[str | None, str | None]:
    configured = pg_admin_url()
    error = _ping(configured)
    if error is None:
        return configured, None
    fallback = _start_pgserver()
    if fallback is not None and _ping(fallback) is None:
        return fallback, None
    where = make_url(configured).render_as_string(hide_password=True)
    return None, f"PostgreSQL not reachable at {where} ({PG_START_HINT}): {error}"


def _postgresql_admin_url() -> str:
    admin_url, reason = _postgresql_admin_url_or_reason()
    if admin_url is None:
        raise RuntimeError(reason)
    return admin_url


def _odbc_driver_reason() -> str | None:
    try:
        import pyodbc
    except ImportError as error:  # pyodbc needs libodbc.so.2 from unixodbc
        return f"pyodbc cannot load ({ODBC_INSTALL_HINT}): {error}"
    if ODBC_DRIVER not in pyodbc.drivers():
        return f"ODBC driver {ODBC_DRIVER!r} not installed ({ODBC_INSTALL_HINT})"
    return None


@functools.cache
def unavailable_reason(kind: str) -> str | None:
    """Why databases of ``kind`` cannot be made here, or None if they can."""
    if kind == "sqlite":
        return None
    if kind == "postgresql":
        return _postgresql_admin_url_or_reason()[1]
    if kind in ("mysql", "mysql_odbc"):
        error = _ping(mysql_admin_url())
        if error is not None:
            where = make_url(mysql_admin_url()).render_as_string(hide_password=True)
            return f"MariaDB not reachable at {where} ({MYSQL_START_HINT}): {error}"
        return _odbc_driver_reason() if kind == "mysql_odbc" else None
    raise ValueError(f"unknown database kind {kind!r}; expected one of {', '.join(KINDS)}")


def skip_unless_available(kind: str) -> None:
    reason = unavailable_reason(kind)
    if reason is not None:
        pytest.skip(reason)


def database_prefix(module: str) -> str:
    """``mea_<module>_<random6>``: lower case, so names are safe unquoted on every server."""
    module_part = _identifier(module.removeprefix("test_"))[:30]
    return f"mea_{module_part}_{secrets.token_hex(3)}"


def database_name(prefix: str, suffix: str) -> str:
    name = f"{prefix}_{_identifier(suffix)}"
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"database name {name!r} is longer than {MAX_NAME_LENGTH} characters")
    return name


def _identifier(text_: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", text_.lower())


def url_for(kind: str, name: str, sqlite_dir: Path | None = None) -> str:
    """SQLAlchemy URL of database ``name`` of ``kind`` (the database must exist, see make_database)."""
    if kind == "sqlite":
        return _render(URL.create("sqlite", database=str(_sqlite_path(name, sqlite_dir))))
    if kind == "postgresql":
        return _render(make_url(_postgresql_admin_url()).set(database=name))
    if kind == "mysql":
        return _render(make_url(mysql_admin_url()).set(database=name))
    if kind == "mysql_odbc":
        admin = make_url(mysql_admin_url())
        # SQLAlchemy's pyodbc connector writes a URL port as "Server=host,port" (SQL Server syntax),
        # which the MariaDB driver ignores; a "port" query key becomes "port=N", which it honours.
        return _render(
            URL.create(
                "mysql+pyodbc",
                username=admin.username,
                password=admin.password,
                host=admin.host,
                database=name,
                query={"driver": ODBC_DRIVER, "port": str(admin.port or 3306)},
            )
        )
    raise ValueError(f"unknown database kind {kind!r}; expected one of {', '.join(KINDS)}")


def make_database(kind: str, name: str, sqlite_dir: Path | None = None) -> str:
    """Create empty database ``name`` of ``kind``; return its SQLAlchemy URL."""
    reason = unavailable_reason(kind)
    if reason is not None:
        raise RuntimeError(reason)
    if kind == "postgresql":
        with _admin_engine(_postgresql_admin_url()).connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    elif kind in ("mysql", "mysql_odbc"):
        with _admin_engine(mysql_admin_url()).connect() as connection:
            connection.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    elif kind == "sqlite":
        _sqlite_path(name, sqlite_dir).unlink(missing_ok=True)
    return url_for(kind, name, sqlite_dir)


def drop_database(kind: str, name: str, sqlite_dir: Path | None = None) -> None:
    """Drop database ``name`` of ``kind`` if it exists, closing other sessions on PostgreSQL."""
    if kind == "postgresql":
        with _admin_engine(_postgresql_admin_url()).connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    elif kind in ("mysql", "mysql_odbc"):
        with _admin_engine(mysql_admin_url()).connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    elif kind == "sqlite":
        _sqlite_path(name, sqlite_dir).unlink(missing_ok=True)
    else:
        raise ValueError(f"unknown database kind {kind!r}; expected one of {', '.join(KINDS)}")

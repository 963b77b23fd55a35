"""The drift gate's catalog read goes straight to the driver's cursor (`CatalogQuery.fetch`), on real servers: it
reads exactly the rows SQLAlchemy's execute reads, as plain tuples, inside the connection's transaction; a driver
error comes out as SQLAlchemy's exception, and a connection the server dropped is invalidated, never pooled again."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from agent import dialects
from agent.catalog.query import CatalogQuery, WatchedTable

DDL = ("CREATE TABLE {t} (id integer NOT NULL PRIMARY KEY, code varchar(12) NOT NULL, qty decimal(18,3) NULL, "
       "changed_at {ts} NOT NULL, CONSTRAINT uq_fetch_code UNIQUE (code))")
INDEX = "CREATE INDEX ix_fetch_changed ON {t} (changed_at, id)"


@pytest.fixture(scope="module", params=["postgresql", "mysql", "mysql_odbc", "sqlite"])
def watched(request, db_factory):
    url = db_factory(request.param)
    engine = sa.create_engine(url, pool_pre_ping=True)
    schema = "public" if request.param == "postgresql" else None
    table = f"{schema}.fetch_me" if schema else "fetch_me"
    with engine.begin() as conn:
        conn.exec_driver_sql(DDL.format(t=table, ts="timestamp(6)" if request.param != "sqlite" else "timestamp"))
        conn.exec_driver_sql(INDEX.format(t=table))
    if request.param.startswith("mysql"):
        schema = sa.make_url(url).database
    dialect = dialects.for_engine(engine)
    query = CatalogQuery.build("mes", dialect, [WatchedTable("mes", schema, "fetch_me"), WatchedTable("mes", schema, "absent")])
    yield request.param, engine, query
    engine.dispose()


def test_the_driver_reads_exactly_the_rows_sqlalchemy_reads_as_tuples(watched):
    _kind, engine, query = watched
    with engine.connect() as conn:
        through_sqlalchemy = [tuple(row) for row in conn.execute(query.statement, query.params)]
        conn.commit()
        fetched = query.fetch(conn)
        assert conn.in_transaction()  # the caller's commit ends it (psycopg keeps the statement prepared)
        conn.commit()
        again = query.fetch(conn)
        conn.commit()
    assert fetched == through_sqlalchemy and again == fetched
    assert all(type(row) is tuple for row in fetched)
    kinds = sorted({row[0] for row in fetched})
    assert {"column", "index", "primary_key", "unique"} <= set(kinds), kinds
    assert sorted(row[4] for row in fetched if row[0] == "column") == ["changed_at", "code", "id", "qty"]
    assert list(query.tables_from(fetched)) == [query.tables[0].key]  # the absent table is absent, not an error


def test_a_driver_error_is_sqlalchemys_and_says_what_failed(watched):
    _kind, engine, query = watched
    broken = CatalogQuery(query.system, query.dialect, query.tables, sa.text("SELECT no_such_column FROM fetch_me"), {})
    with engine.connect() as conn:
        with pytest.raises(sa.exc.DBAPIError) as raised:
            broken.fetch(conn)
        assert not raised.value.connection_invalidated
        conn.rollback()
        assert query.fetch(conn)  # the same connection goes on
    assert "no_such_column" in str(raised.value)


def test_a_connection_the_server_dropped_is_invalidated_and_the_next_checkout_reads_again(watched, caplog):
    kind, engine, query = watched
    if kind != "postgresql":
        pytest.skip("terminating one session from another is shown on PostgreSQL")
    with engine.connect() as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        conn.commit()
        with engine.connect() as other:
            assert other.exec_driver_sql(f"SELECT pg_terminate_backend({pid})").scalar() is True
            other.commit()
        caplog.set_level(logging.ERROR, logger="sqlalchemy.pool")
        with pytest.raises(sa.exc.OperationalError) as raised:
            query.fetch(conn)
        assert raised.value.connection_invalidated
    assert not [r for r in caplog.records if r.name.startswith("sqlalchemy.pool")]  # no "Exception during reset"
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() != pid
        assert query.fetch(conn)
        conn.commit()

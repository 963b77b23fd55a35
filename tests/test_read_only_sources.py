"""Source connections are read-only sessions: a write attempted through one fails, whatever the login may do.

The login here is the server's administrator, so only the session setting stops the writes:
PostgreSQL `default_transaction_read_only`, MariaDB `SET SESSION TRANSACTION READ ONLY` (native and ODBC),
SQLite `mode=ro`.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
import yaml

from agent.config import load_config
from agent.connect import create_engine

WRITES = [
    "INSERT INTO {t} (id, name) VALUES (2, 'new')",
    "UPDATE {t} SET name = 'changed'",
    "DELETE FROM {t}",
    "CREATE TABLE made_by_agent (id int)",
    "DROP TABLE {t}",
]
# What each database answers (driver error code or message), for every statement above.
REFUSAL = {
    "postgresql": ("25006", "read-only transaction"),
    "mysql": (1792, "Cannot execute statement in a READ ONLY transaction"),
    "mysql_odbc": ("25006", "Cannot execute statement in a READ ONLY transaction"),
    "sqlite": (None, "attempt to write a readonly database"),
}


@pytest.fixture(scope="module", params=list(REFUSAL))
def source(request, db_factory, tmp_path_factory):
    kind = request.param
    url = db_factory(kind, f"mes_{kind}")
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE part (id int PRIMARY KEY, name varchar(20))")
        conn.exec_driver_sql("INSERT INTO part VALUES (1, 'bolt')")
    admin.dispose()
    folder = tmp_path_factory.mktemp(kind)
    document = {
        "systems": {"mes": {"url": url}, "erp": {"url": f"sqlite:///{folder / 'erp.db'}", "staging_schema": "staging"}},
        "flows": {"parts": {"source": "mes", "target": "erp", "table": "part", "watermark": ["id"], "key": ["id"],
                            "staging_table": "stg_part", "columns": {"part_no": "id"}}},
    }
    (folder / "agent.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    engine = create_engine(load_config(folder / "agent.yaml"), "mes", "source")
    yield kind, url, engine
    engine.dispose()


@pytest.mark.parametrize("statement", WRITES)
def test_a_write_through_a_source_session_fails(source, statement):
    kind, url, engine = source
    with engine.connect() as conn:
        with pytest.raises(sa.exc.DBAPIError) as refused:
            conn.exec_driver_sql(statement.format(t="part"))
            conn.commit()
        conn.rollback()
    code, message = REFUSAL[kind]
    assert message in str(refused.value.orig)
    if kind == "postgresql":
        assert refused.value.orig.sqlstate == code
    elif kind == "mysql" or kind == "mysql_odbc":
        assert refused.value.orig.args[0] == code
    admin = sa.create_engine(url)
    with admin.connect() as conn:
        assert conn.execute(sa.text("SELECT id, name FROM part")).all() == [(1, "bolt")]
    admin.dispose()


def test_the_same_session_reads(source):
    _kind, _url, engine = source
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT name FROM part WHERE id = 1")).scalar_one() == "bolt"

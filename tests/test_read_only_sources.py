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


def test_a_sqlite_source_attaches_a_staging_file_only_once_it_exists_and_never_creates_it(tmp_path):
    """A system that is a flow's source and another flow's target: before `sql ddl --apply` made its staging file,
    its read-only session opens without it (mode=ro cannot create a file, and must not); once the file exists, a
    pooled connection made without it is replaced and the staging schema is readable. Before, the session failed
    with "unable to open database" until the file existed, so `sql ddl --apply` of the other system failed."""
    main, inbound = tmp_path / "mes.db", tmp_path / "mes_inbound.db"
    admin = sa.create_engine(f"sqlite:///{main}")
    with admin.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE part (id int PRIMARY KEY, name varchar(20))")
        conn.exec_driver_sql("INSERT INTO part VALUES (1, 'bolt')")
    admin.dispose()
    document = {
        "systems": {"mes": {"url": f"sqlite:///{main}", "staging_schema": "mes_inbound",
                            "attach": {"mes_inbound": str(inbound)}},
                    "erp": {"url": f"sqlite:///{tmp_path / 'erp.db'}", "staging_schema": "staging",
                            "attach": {"staging": str(tmp_path / "erp_staging.db")}}},
        "flows": {"parts": {"source": "mes", "target": "erp", "table": "part", "watermark": ["id"], "key": ["id"],
                            "staging_table": "stg_part", "columns": {"part_no": "id"}},
                  "orders": {"source": "erp", "target": "mes", "table": "production_order", "watermark": ["id"],
                             "key": ["id"], "staging_table": "stg_order", "columns": {"order_no": "id"}}},
    }
    (tmp_path / "agent.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    config = load_config(tmp_path / "agent.yaml")
    source = create_engine(config, "mes", "source")
    with source.connect() as conn:
        assert conn.execute(sa.text("SELECT name FROM part")).scalar_one() == "bolt"
        assert [r.name for r in conn.exec_driver_sql("PRAGMA database_list")] == ["main"]
    assert not inbound.exists()  # the read-only session created nothing
    target = create_engine(config, "mes", "target")  # what `sql ddl --apply` does: the target creates the file
    with target.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE mes_inbound.stg_order (stg_id INTEGER PRIMARY KEY, order_no int)")
        conn.exec_driver_sql("INSERT INTO mes_inbound.stg_order (order_no) VALUES (7)")
    target.dispose()
    with source.connect() as conn:  # the pooled connection without the file is replaced
        assert conn.execute(sa.text("SELECT order_no FROM mes_inbound.stg_order")).scalar_one() == 7
        with pytest.raises(sa.exc.OperationalError, match="attempt to write a readonly database"):
            conn.exec_driver_sql("INSERT INTO mes_inbound.stg_order (order_no) VALUES (8)")
    source.dispose()

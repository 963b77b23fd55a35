"""Custom source queries (`query: sql/flows/<name>.sql`): one read-only SELECT, refused otherwise with file:line.

The checks run in `check-config` (exit 2) and therefore before every run; a good query moves data end to end
as a derived table under the keyset read, typed from the columns it selects.
"""

from __future__ import annotations

import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from agent import source_query
from agent.config import load_config
from agent.dialects import for_name
from agent.demo import adventureworks
from helpers import cli, make_pair, prepare_erp, staging_rows, table_name, write_config

CONFIG = """\
systems:
  mes:
    url: "{mes}"
  erp:
    url: "sqlite:///erp.db"
    staging_schema: staging
    attach: {{staging: erp_staging.db}}
flows:
  scrap_view:
    source: mes
    target: erp
    query: sql/flows/q.sql
    watermark: [modified_date, work_order_id]
    key: [work_order_id]
    staging_table: stg_scrap_view
    columns:
      order_no: work_order_id
      qty: stocked_qty
      scrap: scrap_name
"""
GOOD = """\
-- Work orders with the name of their scrap reason.
-- The agent adds the watermark condition, ORDER BY and LIMIT around this query.
SELECT wo.work_order_id, wo.modified_date, wo.stocked_qty, sr.name AS scrap_name
FROM production.work_order wo
LEFT JOIN production.scrap_reason sr ON sr.scrap_reason_id = wo.scrap_reason_id
WHERE wo.order_qty > 0 AND sr.name <> 'at 10:30 :not_a_bind'
"""


def setup(tmp_path: Path, query: str, mes: str = "postgresql+psycopg://agent@mes-db/mes") -> Path:
    (tmp_path / "sql" / "flows").mkdir(parents=True, exist_ok=True)
    (tmp_path / "sql" / "flows" / "q.sql").write_text(textwrap.dedent(query), encoding="utf-8")
    path = tmp_path / "agent.yaml"
    path.write_text(CONFIG.format(mes=mes), encoding="utf-8")
    return path


def problems(tmp_path: Path, query: str, mes: str = "postgresql+psycopg://agent@mes-db/mes") -> list[str]:
    config = setup(tmp_path, query, mes)
    result = cli("check-config", "-c", str(config))
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"{config}: configuration is not valid")
    suffix = f" (query of flow scrap_view, {config}:12)"
    assert all(line.endswith(suffix) for line in lines[1:]), lines
    return [line.strip().removesuffix(suffix).replace(str(tmp_path / "sql" / "flows" / "q.sql"), "q.sql")
            for line in lines[1:]]


def test_a_good_query_passes_check_config(tmp_path):
    config = setup(tmp_path, GOOD)
    result = cli("check-config", "-c", str(config))
    assert result.exit_code == 0, result.output
    query = source_query.load(load_config(config).model.flows["scrap_view"].query, for_name("postgresql"))
    assert [(o.name, o.line, o.origin) for o in query.outputs] == [
        ("work_order_id", 3, ("production", "work_order", "work_order_id")),
        ("modified_date", 3, ("production", "work_order", "modified_date")),
        ("stocked_qty", 3, ("production", "work_order", "stocked_qty")),
        ("scrap_name", 3, ("production", "scrap_reason", "name")),
    ]
    assert query.columns_read == (
        (("production", "work_order"), ("work_order_id", "modified_date", "stocked_qty", "scrap_reason_id", "order_qty")),
        (("production", "scrap_reason"), ("name", "scrap_reason_id")),
    )


def test_query_tables_names_every_table_the_query_reads(tmp_path):
    config = load_config(setup(tmp_path, GOOD))
    flow = config.model.flows["scrap_view"]
    assert source_query.query_tables(flow.query, (None, ""), "postgresql") == [("production", "work_order"), ("production", "scrap_reason")]
    tables = source_query.query_tables(flow.query, (None, ""), for_name("postgresql"))
    assert tables == [("production", "work_order"), ("production", "scrap_reason")]


def test_a_write_is_refused_with_file_and_line(tmp_path):
    assert problems(tmp_path, """\
        -- looks like a report
        DELETE FROM production.work_order
        WHERE stocked_qty = 0
        """) == ["q.sql:2: is a DELETE statement, not a SELECT; a source query only reads"]


def test_two_statements_are_refused_at_the_second(tmp_path):
    assert problems(tmp_path, """\
        SELECT wo.work_order_id, wo.modified_date, wo.stocked_qty, wo.name AS scrap_name
        FROM production.work_order wo;
        UPDATE production.work_order SET stocked_qty = 0
        """) == ["q.sql:3: a second statement starts here; a query file holds exactly one SELECT (no `;` between statements)"]


def test_a_write_hidden_in_a_cte_and_locks_are_refused(tmp_path):
    assert problems(tmp_path, """\
        WITH gone AS (DELETE FROM production.work_order RETURNING work_order_id)
        SELECT g.work_order_id, g.modified_date, g.stocked_qty, g.scrap_name
        FROM gone g
        FOR UPDATE
        """) == [
        "q.sql:1: a DELETE statement inside the query; a source query only reads (no INSERT, UPDATE, DELETE, MERGE, DDL or EXEC)",
        "q.sql:4: a locking clause (FOR UPDATE/SHARE, LOCK IN SHARE MODE) blocks MES writers; remove it",
    ]


def test_select_into_placeholders_star_order_and_side_effects_are_refused(tmp_path):
    assert problems(tmp_path, """\
        SELECT wo.work_order_id, wo.modified_date, wo.stocked_qty, nextval('s') AS scrap_name, wo.*
        INTO copy_of_work_orders
        FROM production.work_order wo
        WHERE wo.product_id = :product
        ORDER BY wo.work_order_id
        """) == [
        "q.sql:1: function nextval() changes state, waits or reaches outside the database; a source query only reads",
        "q.sql:1: `*` in a select list; name the columns (the grants give SELECT on exactly the columns read, and drift "
        "is checked per column)",
        "q.sql:2: SELECT ... INTO creates a table; a source query only reads",
        "q.sql:4: a bind parameter; a source query has none: the agent adds the watermark condition around it (see README, For DBAs)",
        "q.sql:5: ORDER at the top of the query; the agent orders and limits by the watermark itself (keep it in subqueries only)",
    ]


def test_comments_may_not_hide_statements(tmp_path):
    assert problems(tmp_path, """\
        SELECT wo.work_order_id, wo.modified_date, wo.stocked_qty, /*! 1 AS x, */ wo.name AS scrap_name
        FROM production.work_order wo -- ; DROP TABLE production.work_order
        /* later: delete from production.work_order */
        /* outer /* inner */ still a comment in PostgreSQL */
        """) == [
        "q.sql:1: executable comment or optimizer hint (/*! */, /*M! */, /*+ */): MySQL and MariaDB run its content; remove it",
        "q.sql:2: this comment reads like a statement (or holds a `;`); comments may not hide statements: reword or remove it",
        "q.sql:3: this comment reads like a statement (or holds a `;`); comments may not hide statements: reword or remove it",
        "q.sql:4: a comment inside a comment: databases disagree where it ends, so it could hide a statement; remove the inner comment",
    ]


def test_sql_server_hints_exec_and_ctes_are_refused(tmp_path):
    mssql = "mssql+pyodbc://agent@mes-db/MES?driver=ODBC+Driver+18+for+SQL+Server"
    assert problems(tmp_path, """\
        SELECT wo.work_order_id, wo.modified_date, wo.stocked_qty, sr.name AS scrap_name
        FROM production.work_order wo WITH (NOLOCK)
        JOIN production.scrap_reason sr WITH (UPDLOCK, INDEX(ix_scrap)) ON sr.scrap_reason_id = wo.scrap_reason_id
        """, mssql) == [
        "q.sql:2: table hint NOLOCK reads uncommitted or skips locked rows, which a change capture then stages or misses; "
        "remove it (use READ COMMITTED SNAPSHOT on the database for non-blocking reads)",
        "q.sql:3: table hint UPDLOCK locks rows or tables and blocks MES writers; remove it (use READ COMMITTED "
        "SNAPSHOT on the database for non-blocking reads)",
    ]
    assert problems(tmp_path / "exec", "EXEC production.usp_work_orders\n", mssql) == [
        "q.sql:1: is an EXECUTE statement, not a SELECT; a source query only reads"]
    assert problems(tmp_path / "cte", """\
        WITH w AS (SELECT work_order_id, modified_date, stocked_qty, scrap_reason_id FROM production.work_order)
        SELECT w.work_order_id, w.modified_date, w.stocked_qty, w.scrap_reason_id AS scrap_name FROM w
        """, mssql) == [
        "q.sql:1: WITH (a CTE) cannot stand inside a derived table on mssql, and the agent reads the query as one; "
        "write the CTE as a subquery in FROM"]


def test_the_flow_columns_must_be_plain_named_outputs_of_the_query(tmp_path):
    assert problems(tmp_path, """\
        SELECT wo.work_order_id,
               GREATEST(wo.modified_date, wo.due_date) AS modified_date,
               wo.stocked_qty + 0 AS stocked_qty
        FROM production.work_order wo
        """) == [
        "q.sql:1: the query has no output column 'scrap_name', which flow scrap_view reads as a mapped column "
        "(its columns: work_order_id, modified_date, stocked_qty)",
        "q.sql:2: watermark column 'modified_date' is an expression; the keyset read needs a plain table column (with an index)",
        "q.sql:3: 'stocked_qty' is an expression, so the agent cannot learn its type; give staging column 'qty' a `type:`",
    ]


def test_unqualified_columns_over_several_tables_are_refused(tmp_path):
    assert problems(tmp_path, """\
        SELECT wo.work_order_id, wo.modified_date, stocked_qty, sr.name AS scrap_name
        FROM production.work_order wo JOIN production.scrap_reason sr ON sr.scrap_reason_id = wo.scrap_reason_id
        """) == [
        "q.sql:1: column stocked_qty is not qualified; in a query over several tables write <alias>.<column>, so the "
        "grants and the drift check know its table",
    ]


# --- end to end on live databases ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mysql"])
def test_a_query_flow_moves_its_rows_end_to_end(kind, db_factory, tmp_path):
    pair = make_pair(db_factory, kind, suffix=f"_{kind}")
    mes = sa.create_engine(pair.mes_url)
    adventureworks.create_and_load(mes, ["work_order", "scrap_reason"], schema=pair.mes_schema, limit=2000)
    with mes.connect() as conn:
        work_order, scrap_reason = table_name(pair, "work_order"), table_name(pair, "scrap_reason")
        expected = [tuple(r) for r in conn.execute(sa.text(
            f"SELECT wo.work_order_id, wo.stocked_qty, sr.name FROM {work_order} wo "
            f"JOIN {scrap_reason} sr ON sr.scrap_reason_id = wo.scrap_reason_id "
            "WHERE wo.scrapped_qty > 0 ORDER BY wo.work_order_id"))]
    mes.dispose()
    (tmp_path / "sql" / "flows").mkdir(parents=True)
    (tmp_path / "sql" / "flows" / "scrapped.sql").write_text(
        "-- Scrapped work orders with the name of the reason: 10:30 ':x' is text, not a bind parameter\n"
        f"SELECT wo.work_order_id, wo.modified_date, wo.stocked_qty, sr.name AS scrap_name\n"
        f"FROM {work_order} wo\n"
        f"JOIN {scrap_reason} sr ON sr.scrap_reason_id = wo.scrap_reason_id\n"
        "WHERE wo.scrapped_qty > 0 AND sr.name <> ':x'\n", encoding="utf-8")
    flow = {"source": "mes", "target": "erp", "query": "sql/flows/scrapped.sql", "watermark": ["modified_date", "work_order_id"],
            "key": ["work_order_id"], "staging_table": "stg_scrapped", "batch_size": 7,
            "columns": {"order_no": "work_order_id", "qty": {"from": "stocked_qty", "type": "decimal(18,3)"},
                        "scrap": "scrap_name"}}
    config = write_config(tmp_path / "agent.yaml", pair, {"scrapped": flow})
    prepare_erp(config)
    first = cli("run", "-c", str(config), "--once")
    assert first.exit_code == 0, first.output
    rows = staging_rows(pair, "stg_scrapped", "order_no, qty, scrap", "order_no")
    assert [(r[0], Decimal(str(r[1])), r[2]) for r in rows] == [(w, Decimal(q), n) for w, q, n in expected]
    assert len(expected) > 7  # several batches
    second = cli("run", "-c", str(config), "--once")
    assert second.exit_code == 0 and len(staging_rows(pair, "stg_scrapped", "order_no")) == len(expected)


def test_a_query_that_fails_on_the_database_stops_the_run_before_any_data_moves(db_factory, tmp_path):
    pair = make_pair(db_factory, "sqlite")
    mes = sa.create_engine(pair.mes_url)
    adventureworks.create_and_load(mes, ["work_order"], limit=10)
    mes.dispose()
    (tmp_path / "sql" / "flows").mkdir(parents=True)
    query = tmp_path / "sql" / "flows" / "wo.sql"
    query.write_text("SELECT wo.work_order_id, wo.modified_date FROM work_order wo\n", encoding="utf-8")
    flow = {"source": "mes", "target": "erp", "query": "sql/flows/wo.sql", "watermark": ["modified_date", "work_order_id"],
            "key": ["work_order_id"], "staging_table": "stg_wo", "columns": {"order_no": "work_order_id"}}
    config = write_config(tmp_path / "agent.yaml", pair, {"wo": flow})
    prepare_erp(config)
    query.write_text("SELECT wo.work_order_id, wo.modified_date FROM work_order wo WHERE wo.closed_at IS NULL\n",
                     encoding="utf-8")
    result = cli("run", "-c", str(config), "--once")
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"{config}: configuration does not match the databases; no data was moved:",
        f"flow wo: query {query} fails on system mes: no such column: wo.closed_at",
    ]

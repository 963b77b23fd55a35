"""SQL for the DBA's review without connecting: `render-sql`, `sql grants`, `sql ddl --dialect`; SQL Server
statements are compiled for the mssql dialect and parsed as T-SQL (no SQL Server runs here).

Also the configuration rules that keep writes inside the staging schema (protected schemas, opt-in).
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
import sqlglot
from sqlalchemy.dialects import mssql

from agent import review as sql_review
from agent.config import load_config
from agent.read import SourceColumn, check_source_columns
from agent.types import ColumnType
from helpers import cli

MSSQL = """\
systems:
  mes:
    url: "mssql+pyodbc://mes_agent@mes-db/MES?driver=ODBC+Driver+18+for+SQL+Server"
  erp:
    url: "mssql+pyodbc://erp_agent@erp-db/ERP?driver=ODBC+Driver+18+for+SQL+Server"
    staging_schema: staging
    protected_schemas: [erp]
flows:
  work_orders:
    source: mes
    target: erp
    table: production.work_order
    watermark: [row_ver]
    rowversion: true
    key: [work_order_id]
    staging_table: stg_work_order
    columns:
      order_no: {from: work_order_id, type: int}
      qty_good: {from: stocked_qty, type: "decimal(18,3)"}
      due_date: {from: due_date, type: datetime2, required: true}
  scrapped:
    source: mes
    target: erp
    query: sql/flows/scrapped.sql
    watermark: [modified_date, work_order_id]
    key: [work_order_id]
    staging_table: stg_scrapped
    lag: 2s
    overlap: 5m
    columns:
      order_no: {from: work_order_id, type: int}
      scrap: {from: scrap_name, type: "nvarchar(50)"}
"""
SCRAPPED = """\
-- Scrapped work orders with the reason's name
SELECT wo.WorkOrderID AS work_order_id, wo.ModifiedDate AS modified_date, sr.Name AS scrap_name
FROM Production.WorkOrder wo
JOIN Production.ScrapReason sr ON sr.ScrapReasonID = wo.ScrapReasonID
WHERE wo.ScrappedQty > 0
"""
BIND = re.compile(r"(?<![:\w\\]):(\w+)")


def write(folder: Path, text: str, query: str | None = None) -> Path:
    if query is not None:
        (folder / "sql" / "flows").mkdir(parents=True, exist_ok=True)
        (folder / "sql" / "flows" / "scrapped.sql").write_text(query, encoding="utf-8")
    path = folder / "agent.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def mssql_config(tmp_path):
    return load_config(write(tmp_path, MSSQL, SCRAPPED))


def every_statement(config) -> list[sql_review.Statement]:
    flows = [s for name in config.model.flows for s in sql_review.flow_statements(config, name)]
    status = [s for name in config.model.flows for s in sql_review.status_statements(config, name)]
    return sql_review.startup_statements(config) + flows + status


def as_tsql(text: str) -> str:
    """T-SQL spells bind parameters @name (pyodbc sends them as ?)."""
    return BIND.sub(r"@\1", text)


def test_every_sql_server_statement_compiles_and_parses_as_tsql(mssql_config):
    statements = every_statement(mssql_config)
    assert {s.dialect for s in statements} == {"mssql"}
    for statement in statements:
        compiled = sa.text(statement.sql).compile(dialect=mssql.dialect(paramstyle="qmark"))  # as pyodbc sends it
        assert [p for p, _ in statement.params] == list(dict.fromkeys(compiled.positiontup)), statement.template
        assert str(compiled).count("?") == len(compiled.positiontup)
        assert "LIMIT" not in statement.text and "::" not in statement.text, statement.template
        parsed = sqlglot.parse(as_tsql(statement.text), read="tsql")
        assert len(parsed) == 1 and not isinstance(parsed[0], sqlglot.exp.Command), statement.template


def test_sql_server_reads_use_top_written_out_keysets_and_min_active_rowversion(mssql_config):
    reads = [s.text for s in sql_review.flow_statements(mssql_config, "work_orders") if s.template == "read_batch"]
    assert reads == [
        "SELECT TOP (:batch_size) [row_ver], [work_order_id], [stocked_qty], [due_date]\n"
        "FROM [production].[work_order]\n"
        "WHERE 1 = 1\n"
        "  AND [row_ver] < MIN_ACTIVE_ROWVERSION()\n"
        "ORDER BY [row_ver]",
        "SELECT TOP (:batch_size) [row_ver], [work_order_id], [stocked_qty], [due_date]\n"
        "FROM [production].[work_order]\n"
        "WHERE (\n"
        "([row_ver] > :wm_0)\n"
        ")\n"
        "  AND [row_ver] < MIN_ACTIVE_ROWVERSION()\n"
        "ORDER BY [row_ver]",
    ]
    assert "server_time" not in [s.template for s in sql_review.flow_statements(mssql_config, "work_orders")]
    query_reads = [s for s in sql_review.flow_statements(mssql_config, "scrapped") if s.template == "read_batch"]
    derived = (
        "FROM (\n-- Scrapped work orders with the reason's name\n" + SCRAPPED.split("\n", 1)[1].rstrip("\n")
        + "\n) AS [src]\n"
    )
    assert [s.text for s in query_reads] == [
        "SELECT TOP (:batch_size) [modified_date], [work_order_id], [scrap_name]\n" + derived
        + "WHERE 1 = 1\n  AND [modified_date] <= :upper_bound\nORDER BY [modified_date], [work_order_id]",
        "SELECT TOP (:batch_size) [modified_date], [work_order_id], [scrap_name]\n" + derived
        + "WHERE (\n([modified_date] > :wm_0)\nOR ([modified_date] = :wm_0 AND [work_order_id] > :wm_1)\n)\n"
        "  AND [modified_date] <= :upper_bound\nORDER BY [modified_date], [work_order_id]",
        "SELECT TOP (:batch_size) [modified_date], [work_order_id], [scrap_name]\n" + derived
        + "WHERE [modified_date] >= :lower_bound\n  AND [modified_date] <= :upper_bound\n"
        "ORDER BY [modified_date], [work_order_id]",
    ]
    assert [p for p, _ in query_reads[1].params] == ["batch_size", "wm_0", "wm_1", "upper_bound"]
    assert dict(query_reads[2].params) == {
        "batch_size": "5000 (batch_size; 0 once at start-up, to check the query runs)",
        "lower_bound": "stored modified_date minus overlap 5m",
        "upper_bound": "MES clock minus lag 2s",
    }


def test_sql_server_batch_statements_use_a_temp_table_and_identity(mssql_config, tmp_path):
    by_template = {s.template: s.text for s in sql_review.flow_statements(mssql_config, "work_orders")}
    columns = "[stg_batch_id], [stg_flow], [stg_source_key], [stg_source_version], [stg_change], [order_no], [qty_good], [due_date]"
    assert by_template["create_batch_table"] == (
        "SELECT l.batch_id AS stg_batch_id, l.flow AS stg_flow, l.source_key AS stg_source_key,\n"
        "       l.source_version AS stg_source_version, CAST(NULL AS nchar(1)) AS stg_change, s.[order_no], s.[qty_good], "
        "s.[due_date]\nINTO [#agent_batch_work_orders]\n"
        "FROM [staging].[agent_ledger] l CROSS JOIN [staging].[stg_work_order] s WHERE 1 = 0")
    assert by_template["load_batch_table"] == (
        f"INSERT INTO [#agent_batch_work_orders] ({columns})\nVALUES (:p0, :p1, :p2, :p3, :p4, :p5, :p6, :p7)")
    ddl = cli("sql", "ddl", "-c", str(mssql_config.path), "--system", "erp", "--dialect", "mssql")
    assert ddl.exit_code == 0, ddl.output
    assert "    stg_id bigint IDENTITY(1,1) NOT NULL PRIMARY KEY,\n" in ddl.output
    assert "    [order_no] int NULL,\n    [qty_good] decimal(18,3) NULL,\n    [due_date] datetime2(6) NOT NULL,\n" in ddl.output
    statements = [s for s in ddl.output.split(";\n\n")]
    kinds = [type(p).__name__ for statement in statements for p in sqlglot.parse(statement.strip().rstrip(";"), read="tsql")]
    # The schema, five control tables, then per staging table its CREATE, its index and the ledger seed (an
    # upgrade's rows, recorded as staged).
    assert kinds == ["IfBlock"] * 6 + ["IfBlock", "IfBlock", "Insert"] * ((len(kinds) - 6) // 3), kinds
    assert len(kinds) == len(statements) and len(kinds) > 6


def test_render_sql_prints_every_statement_with_its_bind_parameters(mssql_config):
    result = cli("render-sql", "-c", str(mssql_config.path), "--flow", "scrapped")
    assert result.exit_code == 0, result.output
    sections = re.findall(r"^-- (start-up.*|flow .*|`mes-erp-agent status`.*|import outcomes.*)$", result.output, re.M)
    assert sections == ["start-up, once per system", "flow scrapped: mes (mssql) -> erp (mssql)",
                        "flow scrapped: its lock (one agent moves the flow; several agents may run)",
                        "`mes-erp-agent status`, flow scrapped",
                        "import outcomes, flow scrapped: the running agent's check and `mes-erp-agent outcomes`"]
    templates = re.findall(r"^--    system (\w+) \(mssql\), template sql/mssql/(\w+)\.sql$", result.output, re.M)
    assert templates == [
        ("erp", "privilege_check"), ("erp", "catalog"), ("erp", "server_version"),
        ("mes", "privilege_check"), ("mes", "catalog"), ("mes", "server_version"),
        ("erp", "watermark_select"), ("mes", "server_time"), ("mes", "read_batch"), ("mes", "read_batch"),
        ("mes", "read_batch"), ("erp", "drop_batch_table"), ("erp", "create_batch_table"), ("erp", "load_batch_table"),
        ("erp", "write_staging_new"), ("erp", "analyze_batch_table"), ("erp", "ledger_insert"), ("erp", "write_staging"),
        ("erp", "drop_batch_table"), ("erp", "quarantine_insert"),
        ("erp", "watermark_insert"), ("erp", "watermark_update"), ("erp", "run_insert"), ("erp", "ledger_newest"),
        ("erp", "ledger_prune"), ("mes", "source_newest"),
        # reconcile, deletes, backfill (their keyset read and watermark select are the polls', listed above)
        ("mes", "reconcile_source_buckets"), ("erp", "reconcile_ledger_buckets"), ("erp", "reconcile_ledger_entries"),
        ("erp", "ledger_oldest"), ("mes", "reconcile_source_keys"), ("mes", "source_count"),
        ("erp", "flow_lock_session"), ("erp", "flow_lock_take"), ("erp", "flow_lock_release"), ("erp", "holder_upsert"),
        ("erp", "holder_release"), ("erp", "holder_prune"), ("erp", "holder_select"),
        ("erp", "status_totals"), ("erp", "status_last_run"), ("erp", "outcome_counts"), ("erp", "status_quarantine"),
        ("erp", "outcome_errors"),
        ("erp", "quarantine_list"), ("erp", "replay_pending"), ("erp", "replay_ledger_versions"),
        ("erp", "drop_batch_table"), ("erp", "create_batch_table"), ("erp", "load_batch_table"), ("erp", "analyze_batch_table"),
        ("erp", "ledger_insert"),  # a replay page is never tried as all new: its rows may have been staged
        ("erp", "write_staging"), ("erp", "drop_batch_table"), ("erp", "replay_mark"), ("erp", "replay_reason"),
        ("erp", "run_insert"),
    ]
    assert ("-- 4. read, cursor after: every next batch: rows strictly after the last row read (keyset)\n"
            "--    system mes (mssql), template sql/mssql/read_batch.sql\n"
            "--    :batch_size   5000 (batch_size; 0 once at start-up, to check the query runs)\n"
            "--    :wm_0         modified_date of the last row read\n"
            "--    :wm_1         work_order_id of the last row read\n"
            "--    :upper_bound  MES clock minus lag 2s\n"
            "SELECT TOP (:batch_size)") in result.output
    assert "--    :staging_schema  '' (the agent only reads this system)\n" in result.output
    assert "--    :t0  'ScrapReason'\n" in result.output  # the drift gate watches the query's tables


GRANTS = """\
systems:
  mes:
    url: "postgresql+psycopg://mes_agent@mes-db/mes"
  erp:
    url: "postgresql+psycopg://erp_agent:s3cret-pw@erp-db/erp"
    staging_schema: staging
    grants: {login: erp_agent, password_placeholder: "<erp-password>"}
flows:
  work_orders:
    source: mes
    target: erp
    table: production.work_order
    watermark: [modified_date, work_order_id]
    key: [work_order_id]
    staging_table: stg_work_order
    columns:
      order_no: work_order_id
      qty_good: {from: stocked_qty, type: "decimal(18,3)"}
"""


def statements_of(script: str) -> list[str]:
    return [line for line in script.splitlines() if line and not line.startswith("--")]


@pytest.mark.parametrize("dialect, mes, erp", [
    ("postgresql", [
        "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'mes_agent') THEN CREATE ROLE "
        "\"mes_agent\" LOGIN PASSWORD 'CHANGE_ME' NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS; END IF; END$$;",
        'GRANT CONNECT ON DATABASE "mes" TO "mes_agent";',
        'GRANT USAGE ON SCHEMA "production" TO "mes_agent";',
        'GRANT SELECT ("modified_date", "work_order_id", "stocked_qty") ON TABLE "production"."work_order" TO "mes_agent";',
    ], [
        "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'erp_agent') THEN CREATE ROLE "
        "\"erp_agent\" LOGIN PASSWORD '<erp-password>' NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS; END IF; END$$;",
        'GRANT CONNECT ON DATABASE "erp" TO "erp_agent";',
        'GRANT TEMPORARY ON DATABASE "erp" TO "erp_agent";',
        'GRANT USAGE ON SCHEMA "staging" TO "erp_agent";',
        'GRANT SELECT, INSERT ON TABLE "staging"."stg_work_order" TO "erp_agent";',
        'GRANT SELECT, INSERT, UPDATE ON TABLE "staging"."agent_watermark" TO "erp_agent";',
        'GRANT SELECT, INSERT ON TABLE "staging"."agent_run" TO "erp_agent";',
        'GRANT SELECT, INSERT ON TABLE "staging"."agent_quarantine" TO "erp_agent";',
        'GRANT UPDATE (reason, replayed_at, replay_batch_id, replay_outcome) ON TABLE "staging"."agent_quarantine" TO "erp_agent";',
        'GRANT SELECT, INSERT, DELETE ON TABLE "staging"."agent_ledger" TO "erp_agent";',
        'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "staging"."agent_holder" TO "erp_agent";',
    ]),
    ("mysql", [
        "CREATE USER IF NOT EXISTS 'mes_agent'@'%' IDENTIFIED BY 'CHANGE_ME';",
        "GRANT SELECT (`modified_date`, `work_order_id`, `stocked_qty`) ON `production`.`work_order` TO 'mes_agent'@'%';",
    ], [
        "CREATE USER IF NOT EXISTS 'erp_agent'@'%' IDENTIFIED BY '<erp-password>';",
        "GRANT CREATE TEMPORARY TABLES ON `staging`.* TO 'erp_agent'@'%';",
        "GRANT SELECT, INSERT ON `staging`.`stg_work_order` TO 'erp_agent'@'%';",
        "GRANT SELECT, INSERT, UPDATE ON `staging`.`agent_watermark` TO 'erp_agent'@'%';",
        "GRANT SELECT, INSERT ON `staging`.`agent_run` TO 'erp_agent'@'%';",
        "GRANT SELECT, INSERT ON `staging`.`agent_quarantine` TO 'erp_agent'@'%';",
        "GRANT UPDATE (reason, replayed_at, replay_batch_id, replay_outcome) ON `staging`.`agent_quarantine` TO 'erp_agent'@'%';",
        "GRANT SELECT, INSERT, DELETE ON `staging`.`agent_ledger` TO 'erp_agent'@'%';",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON `staging`.`agent_holder` TO 'erp_agent'@'%';",
    ]),
    ("mssql", [
        "IF SUSER_ID(N'mes_agent') IS NULL CREATE LOGIN [mes_agent] WITH PASSWORD = N'CHANGE_ME', CHECK_POLICY = ON;",
        "USE [mes];",
        "IF DATABASE_PRINCIPAL_ID(N'mes_agent') IS NULL CREATE USER [mes_agent] FOR LOGIN [mes_agent];",
        "GRANT SELECT ON [production].[work_order] ([modified_date], [work_order_id], [stocked_qty]) TO [mes_agent];",
        "GRANT VIEW DEFINITION ON [production].[work_order] TO [mes_agent];",
    ], [
        "IF SUSER_ID(N'erp_agent') IS NULL CREATE LOGIN [erp_agent] WITH PASSWORD = N'<erp-password>', CHECK_POLICY = ON;",
        "USE [erp];",
        "IF DATABASE_PRINCIPAL_ID(N'erp_agent') IS NULL CREATE USER [erp_agent] FOR LOGIN [erp_agent];",
        "GRANT SELECT, INSERT, VIEW DEFINITION ON [staging].[stg_work_order] TO [erp_agent];",
        "GRANT SELECT, INSERT, UPDATE, VIEW DEFINITION ON [staging].[agent_watermark] TO [erp_agent];",
        "GRANT SELECT, INSERT, VIEW DEFINITION ON [staging].[agent_run] TO [erp_agent];",
        "GRANT SELECT, INSERT, VIEW DEFINITION ON [staging].[agent_quarantine] TO [erp_agent];",
        "GRANT UPDATE ON [staging].[agent_quarantine] (reason, replayed_at, replay_batch_id, replay_outcome) TO [erp_agent];",
        "GRANT SELECT, INSERT, DELETE, VIEW DEFINITION ON [staging].[agent_ledger] TO [erp_agent];",
        "GRANT SELECT, INSERT, UPDATE, DELETE, VIEW DEFINITION ON [staging].[agent_holder] TO [erp_agent];",
    ]),
    ("sqlite", [], []),
])
def test_grants_render_for_every_dialect_without_connecting(tmp_path, dialect, mes, erp):
    config = write(tmp_path, GRANTS)
    for system, expected in (("mes", mes), ("erp", erp)):
        result = cli("sql", "grants", "-c", str(config), "--system", system, "--dialect", dialect)
        assert result.exit_code == 0, result.output
        assert statements_of(result.output) == expected
        assert "s3cret-pw" not in result.output
        assert result.output.startswith("-- ")


def test_grants_name_the_login_from_options_and_refuse_free_text(tmp_path):
    config = write(tmp_path, GRANTS)
    result = cli("sql", "grants", "-c", str(config), "--system", "mes", "--dialect", "mysql", "--login", "mes_ro",
                 "--host", "10.1.2.%", "--password-placeholder", "{{MES_PW}}")
    assert statements_of(result.output)[0] == "CREATE USER IF NOT EXISTS 'mes_ro'@'10.1.2.%' IDENTIFIED BY '{{MES_PW}}';"
    result = cli("sql", "grants", "-c", str(config), "--system", "mes", "--login", "x; DROP ROLE y")
    assert result.exit_code == 2
    assert result.output == f"{config}:2: login 'x; DROP ROLE y' is not a plain identifier (letters, digits, _)\n"
    result = cli("sql", "grants", "-c", str(config), "--system", "mes", "--password-placeholder", "a'b")
    assert result.exit_code == 2
    assert "a password placeholder uses letters, digits" in result.output
    result = cli("sql", "grants", "-c", str(config), "--system", "erp", "--password-placeholder", "s3cret-pw")
    assert result.exit_code == 2
    assert "s3cret-pw" not in result.output


def test_sqlite_grants_explain_the_file_permissions(tmp_path):
    config = write(tmp_path, """\
        systems:
          mes: {url: "sqlite:///mes.db"}
          erp: {url: "sqlite:///erp.db", staging_schema: staging, attach: {staging: erp_staging.db}}
        flows:
          wo: {source: mes, target: erp, table: work_order, watermark: [id], key: [id], staging_table: stg_wo,
               columns: {order_no: id}}
        """)
    mes = cli("sql", "grants", "-c", str(config), "--system", "mes")
    assert mes.output.splitlines() == [
        "-- mes-erp-agent on system mes (SQLite): nothing to run. SQLite has no logins and no GRANT;",
        "-- access is the operating system's file permissions, so this is what the DBA (or the admin) sets instead:",
        "--   Source reads (flows: wo): the agent opens the database read-only (mode=ro), and",
        "--   its attached files too; give the agent's OS account read permission only on:",
        f"--     {tmp_path / 'mes.db'}",
    ]
    erp = cli("sql", "grants", "-c", str(config), "--system", "erp")
    assert erp.exit_code == 0 and statements_of(erp.output) == []
    assert "--   staging (an attached file, `attach:`); give its OS account write permission on that file" in erp.output


def test_sqlite_grants_of_a_system_that_is_source_and_target_read_its_files_and_write_only_its_staging_file(tmp_path):
    config = write(tmp_path, """\
        systems:
          mes: {url: "sqlite:///mes.db", staging_schema: mes_inbound, attach: {mes_inbound: mes_inbound.db}}
          erp: {url: "sqlite:///erp.db", staging_schema: staging, attach: {staging: erp_staging.db}}
        flows:
          wo: {source: mes, target: erp, table: work_order, watermark: [id], key: [id], staging_table: stg_wo,
               columns: {order_no: id}}
          released: {source: erp, target: mes, table: production_order, watermark: [id], key: [id],
                     staging_table: stg_released_order, columns: {order_no: id}}
        """)
    mes = cli("sql", "grants", "-c", str(config), "--system", "mes")
    assert mes.exit_code == 0, mes.output
    assert mes.output.splitlines() == [
        "-- mes-erp-agent on system mes (SQLite): nothing to run. SQLite has no logins and no GRANT;",
        "-- access is the operating system's file permissions, so this is what the DBA (or the admin) sets instead:",
        "--   Source reads (flows: wo): the agent opens the database read-only (mode=ro), and",
        "--   its attached files too; give the agent's OS account read permission only on:",
        f"--     {tmp_path / 'mes.db'}",
        "--   Staging writes (flows: released): the agent writes only the staging schema",
        "--   mes_inbound (an attached file, `attach:`); give its OS account write permission on that file",
        "--   and its folder (SQLite's journal), and read permission only on the other files.",
    ]


def test_ddl_for_another_dialect_needs_a_type_or_a_snapshot(tmp_path):
    config = write(tmp_path, GRANTS)
    result = cli("sql", "ddl", "-c", str(config), "--system", "erp", "--dialect", "mssql")
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"{config}:17: flow work_orders: staging column 'order_no' takes the type of source column 'work_order_id', "
        f"which is known only from the live database or a schema snapshot ({tmp_path / 'schema_snapshots' / 'mes.yaml'} "
        "is missing or unreadable); give it a `type:` to print the DDL without connecting",
    ]
    result = cli("sql", "ddl", "-c", str(config), "--system", "erp", "--dialect", "mssql", "--apply")
    assert result.exit_code == 2
    assert result.output == "--dialect prints the DDL without connecting; --apply runs it on the system itself\n"


def test_ddl_for_another_dialect_takes_source_types_from_the_schema_snapshot(db_factory, tmp_path):
    mes = db_factory("sqlite", "mes_snapshot")
    engine = sa.create_engine(mes)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE work_order (work_order_id bigint PRIMARY KEY, "
                             "modified_date timestamp NOT NULL, lot varchar(30))")
    engine.dispose()
    config = write(tmp_path, f"""\
        systems:
          mes: {{url: "{mes}"}}
          erp: {{url: "postgresql+psycopg://erp_agent@erp-db/erp", staging_schema: staging}}
        flows:
          wo: {{source: mes, target: erp, table: work_order, watermark: [modified_date, work_order_id],
               key: [work_order_id], staging_table: stg_wo, columns: {{order_no: work_order_id, lot: lot}}}}
        """)
    assert cli("snapshot", "-c", str(config), "--system", "mes").exit_code == 0
    result = cli("sql", "ddl", "-c", str(config), "--system", "erp", "--dialect", "mssql")
    assert result.exit_code == 0, result.output
    assert "    [order_no] bigint NULL,\n    [lot] nvarchar(30) NULL,\n" in result.output
    result = cli("sql", "ddl", "-c", str(config), "--system", "erp", "--dialect", "mysql")
    assert "    `order_no` bigint NULL,\n    `lot` varchar(30) NULL,\n" in result.output


# --- writes stay in the staging schema ------------------------------------------------------------------
STAGING = """\
systems:
  mes: {{url: "postgresql+psycopg://mes_agent@mes-db/mes"}}
  erp:
    url: "{erp}"
    staging_schema: {schema}
{extra}flows:
  wo:
    source: mes
    target: erp
    table: production.work_order
    watermark: [modified_date, work_order_id]
    key: [work_order_id]
    staging_table: {table}
    columns: {{order_no: work_order_id}}
"""
PG_ERP = "postgresql+psycopg://erp_agent@erp-db/erp"
MSSQL_ERP = "mssql+pyodbc://erp_agent@erp-db/ERP?driver=ODBC+Driver+18+for+SQL+Server"


def check(tmp_path: Path, erp: str = PG_ERP, schema: str = "staging", table: str = "stg_wo", extra: str = "") -> list[str]:
    path = tmp_path / "agent.yaml"
    path.write_text(STAGING.format(erp=erp, schema=schema, table=table, extra=extra), encoding="utf-8")
    result = cli("check-config", "-c", str(path))
    return [line.replace(str(path), "agent.yaml") for line in result.output.splitlines()[1:]] if result.exit_code == 2 else []


def test_a_staging_table_outside_the_staging_schema_is_refused(tmp_path):
    assert check(tmp_path, table="dbo.stg_wo", erp=MSSQL_ERP) == [
        "  agent.yaml:13: staging table 'dbo.stg_wo' is outside the staging schema 'staging'; the agent writes only "
        "to staging.<table>",
    ]
    assert check(tmp_path, table="staging.stg_wo") == []


def test_default_core_schemas_are_refused_unless_opted_in_by_name(tmp_path):
    assert check(tmp_path, schema="public") == [
        "  agent.yaml:5: staging schema 'public' is a core schema of the postgresql database (protected by default: "
        "public, pg_catalog, information_schema); use a dedicated staging schema such as `staging`, or, if the DBA "
        "wants the staging tables there, opt in explicitly with `allow_staging_in: [public]` under systems.erp",
    ]
    assert check(tmp_path, schema="dbo", erp=MSSQL_ERP)[0].startswith(
        "  agent.yaml:5: staging schema 'dbo' is a core schema of the mssql database (protected by default: dbo, sys, "
        "INFORMATION_SCHEMA, guest)")
    assert check(tmp_path, schema="public", extra="    allow_staging_in: [public]\n") == []


def test_a_schema_listed_as_protected_cannot_be_opted_in(tmp_path):
    assert check(tmp_path, schema="erp_core", extra="    protected_schemas: [erp_core]\n    allow_staging_in: [erp_core]\n") == [
        "  agent.yaml:5: staging schema 'erp_core' is listed under protected_schemas (ERP core tables); choose a "
        "dedicated staging schema",
    ]


def test_rowversion_is_for_sql_server_sources_and_replaces_lag(tmp_path):
    config = write(tmp_path, MSSQL.replace("    rowversion: true\n", "    rowversion: true\n    lag: 2s\n"), SCRAPPED)
    result = cli("check-config", "-c", str(config))
    assert result.exit_code == 2
    assert result.output.splitlines()[1] == (
        f"  {config}:15: `lag:` measures time, but flow work_orders has a rowversion watermark: MIN_ACTIVE_ROWVERSION() "
        "already keeps reads behind transactions in flight; remove `lag:`")
    (tmp_path / "pg").mkdir()
    pg = write(tmp_path / "pg", GRANTS.replace("    key: [work_order_id]\n", "    key: [work_order_id]\n    rowversion: true\n"))
    result = cli("check-config", "-c", str(pg))
    assert result.output.splitlines()[1] == (
        f"  {pg}:15: `rowversion: true` is for SQL Server rowversion columns; system mes is postgresql")


def test_a_rowversion_watermark_must_be_a_binary_column(mssql_config):
    flow = mssql_config.model.flows["work_orders"]
    timestamp = ColumnType("timestamp", precision=7)
    columns = {name: SourceColumn(name, sa.DateTime(), timestamp, False) for name in flow.source_columns}
    assert check_source_columns("work_orders", flow, "mes", columns) == [
        "flow work_orders: `rowversion: true`, but watermark column 'row_ver' of production.work_order on system mes "
        "is timestamp(7), not a rowversion",
    ]
    columns["row_ver"] = SourceColumn("row_ver", sa.LargeBinary(8), ColumnType("binary", length=8), False)
    assert check_source_columns("work_orders", flow, "mes", columns) == []

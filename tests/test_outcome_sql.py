"""The import-outcome SQL a DBA reviews (`render-sql`), compiled for SQL Server and parsed for every dialect; the
refusals of `outcomes --resubmit`; a vendor flow whose outcome is not watched; a flow's database that cannot be read."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa
import sqlglot
from sqlalchemy.dialects import mssql
from sqlalchemy.engine import make_url

from agent import review as sql_review
from agent.config import load_config
from helpers import Pair, cli, make_pair, prepare_erp, staging_engine, write_config
from outcome_support import FLOW, completion_table, interface_table, vendor_flow

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SQLGLOT = {"mssql": "tsql", "postgresql": "postgres", "mysql": "mysql", "sqlite": "sqlite"}
URLS = {"postgresql": "postgresql+psycopg://agent@db/{db}", "mysql": "mysql+pymysql://agent@db/{db}",
        "mssql": "mssql+pyodbc://agent@db/{db}?driver=ODBC+Driver+18+for+SQL+Server", "sqlite": "sqlite:///{db}.db"}

WIP_SECTION = """\
-- ====================================================================================================
-- import outcomes, flow wip_job_updates: the running agent's check and `mes-erp-agent outcomes`
-- ====================================================================================================

-- 1. the rows in error with the ERP's messages: the running agent's check every alerts.check_every (only while rows are in error \
or an import-error incident is open), and `mes-erp-agent outcomes`
--    system erp (mssql), template sql/mssql/outcome_errors.sql
--    :max_rows  rows listed at most: 1000 (the running agent's check), `outcomes --limit` (default 1000)
--    :flow      'wip_job_updates'
--    :error_0   3 (outcome.error, as the status column PROCESS_STATUS holds it)
SELECT TOP (:max_rows) l.entry_id AS row_id, l.source_key AS source_key, l.source_version AS source_version,
       l.staged_at AS staged_at, s.[PROCESS_STATUS] AS status, e.[ERROR_TYPE] AS error_text_0, e.[ERROR] AS error_text_1
FROM [wip_interface].[WIP_JOB_SCHEDULE_INTERFACE] s
JOIN [wip_interface].[agent_ledger] l ON l.entry_id = s.[SOURCE_LINE_ID] AND l.flow = :flow
LEFT JOIN [wip_interface].[WIP_INTERFACE_ERRORS] e ON e.[INTERFACE_ID] = s.[INTERFACE_ID]
WHERE s.[PROCESS_STATUS] IN (:error_0)
ORDER BY row_id, error_text_0, error_text_1;

-- 2. `outcomes --resubmit KEY...`: the rows in error with the keys given, listed in its transaction before the update (one :key_N per KEY)
--    system erp (mssql), template sql/mssql/outcome_errors.sql
--    :max_rows  rows listed at most: 1000 (the running agent's check), `outcomes --limit` (default 1000)
--    :flow      'wip_job_updates'
--    :error_0   3 (outcome.error, as the status column PROCESS_STATUS holds it)
--    :key_0     a KEY given to `outcomes --resubmit` (the key as `outcomes` lists it; several columns joined by |)
SELECT TOP (:max_rows) l.entry_id AS row_id, l.source_key AS source_key, l.source_version AS source_version,
       l.staged_at AS staged_at, s.[PROCESS_STATUS] AS status, e.[ERROR_TYPE] AS error_text_0, e.[ERROR] AS error_text_1
FROM [wip_interface].[WIP_JOB_SCHEDULE_INTERFACE] s
JOIN [wip_interface].[agent_ledger] l ON l.entry_id = s.[SOURCE_LINE_ID] AND l.flow = :flow
LEFT JOIN [wip_interface].[WIP_INTERFACE_ERRORS] e ON e.[INTERFACE_ID] = s.[INTERFACE_ID]
WHERE s.[PROCESS_STATUS] IN (:error_0)
  AND l.source_key IN (:key_0)
ORDER BY row_id, error_text_0, error_text_1;

-- 3. `outcomes --resubmit KEY...`, a person's command: the flow's `resubmit:` on its rows in error with the keys given (one :key_N per KEY)
--    system erp (mssql), template sql/mssql/outcome_resubmit.sql
--    :set_0    2 (outcome.resubmit: PROCESS_PHASE)
--    :set_1    1 (outcome.resubmit: PROCESS_STATUS)
--    :error_0  3 (outcome.error, as the status column PROCESS_STATUS holds it)
--    :flow     'wip_job_updates'
--    :key_0    a KEY given to `outcomes --resubmit` (the key as `outcomes` lists it; several columns joined by |)
UPDATE [wip_interface].[WIP_JOB_SCHEDULE_INTERFACE]
SET [PROCESS_PHASE] = :set_0, [PROCESS_STATUS] = :set_1
WHERE [PROCESS_STATUS] IN (:error_0)
  AND [SOURCE_LINE_ID] IN (
      SELECT l.entry_id FROM [wip_interface].[agent_ledger] l WHERE l.flow = :flow AND l.source_key IN (:key_0));
"""

WIP_COUNTS = """\
-- 3. status: the import outcome: pending rows and the oldest one, rows in error, rows staged in agent_ledger (done: staged minus \
both; also the running agent's check every alerts.check_every, and /metrics)
--    system erp (mssql), template sql/mssql/outcome_counts.sql
--    :done_0   4 (outcome.done, as the status column PROCESS_STATUS holds it)
--    :error_0  3 (outcome.error, as the status column PROCESS_STATUS holds it)
--    :flow     'wip_job_updates'
SELECT o.pending_rows, o.oldest_pending, o.error_rows, c.staged_rows
FROM (
    SELECT COALESCE(SUM(CASE WHEN (s.[PROCESS_STATUS] IS NULL OR s.[PROCESS_STATUS] NOT IN (:done_0, :error_0)) THEN 1 ELSE 0 \
END), 0) AS pending_rows,
           MIN(CASE WHEN (s.[PROCESS_STATUS] IS NULL OR s.[PROCESS_STATUS] NOT IN (:done_0, :error_0)) THEN l.staged_at END) AS \
oldest_pending,
           COALESCE(SUM(CASE WHEN s.[PROCESS_STATUS] IN (:error_0) THEN 1 ELSE 0 END), 0) AS error_rows
    FROM [wip_interface].[WIP_JOB_SCHEDULE_INTERFACE] s
    JOIN [wip_interface].[agent_ledger] l ON l.entry_id = s.[SOURCE_LINE_ID] AND l.flow = :flow
    WHERE (s.[PROCESS_STATUS] IS NULL OR s.[PROCESS_STATUS] NOT IN (:done_0, :error_0)) OR s.[PROCESS_STATUS] IN (:error_0)
) o
CROSS JOIN (SELECT COUNT(*) AS staged_rows FROM [wip_interface].[agent_ledger] WHERE flow = :flow) c;
"""


def test_render_sql_shows_the_outcome_statements_the_dba_signs_off():
    result = cli("render-sql", "-c", str(EXAMPLES / "oracle_ebs_wip_job.yaml"))
    assert result.exit_code == 0, result.output
    assert ("\n" + WIP_SECTION + "\n-- ") in result.output  # the `quarantine list|replay` section follows
    assert WIP_COUNTS in result.output


def as_dialect(document: str, dialect: str, folder: Path) -> Path:
    """An example configuration with both systems in `dialect` (render-sql connects to neither)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dialect}.yaml"
    text = re.sub(r'url: "[^"]+"', lambda m: f'url: "{URLS[dialect].format(db="erp" if "erp" in m.group(0) else "mes")}"',
                  document)
    if dialect == "sqlite":
        text = re.sub(r"(staging_schema: (\w+))", r"\1\n    attach: {\2: stg.db}", text)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("dialect", sorted(SQLGLOT))
def test_every_outcome_statement_of_the_examples_compiles_and_parses(dialect, tmp_path):
    """The vendor layouts (a done list, an error table) and the default layout, in every dialect's own SQL."""
    found = {}
    for example in sorted(EXAMPLES.glob("*.yaml")):
        config = load_config(as_dialect(example.read_text(encoding="utf-8"), dialect, tmp_path / example.stem))
        for name in config.model.flows:
            statements = sql_review.status_statements(config, name) + sql_review.outcome_statements(config, name)
            for s in statements:
                if s.template.startswith("outcome_"):
                    found.setdefault(s.template, 0)
                    found[s.template] += 1
                    if dialect == "mssql":  # every parameter is bound (as ?) by the mssql dialect
                        compiled = str(sa.text(s.sql).compile(dialect=mssql.dialect(paramstyle="qmark")))
                        assert re.search(r"(?<![:\w\\]):[A-Za-z_]", compiled) is None, compiled
                    parsed = sqlglot.parse(re.sub(r"(?<![:\w\\]):(\w+)", r"@\1", s.text), read=SQLGLOT[dialect])
                    assert len(parsed) == 1 and not isinstance(parsed[0], sqlglot.exp.Command), (example, s.text)
    assert found == {"outcome_counts": 3, "outcome_errors": 6, "outcome_resubmit": 3}


def sqlite_config(tmp_path: Path, **flow: object) -> Path:
    (tmp_path / "cfg").mkdir(exist_ok=True)
    document = {"source": "mes", "target": "erp", "table": "completion", "watermark": ["updated_at", "completion_id"],
                "key": ["completion_id"], "staging_table": "stg_completion", "columns": {"item": "item_no"}, **flow}
    pair = Pair("sqlite", "sqlite:///mes.db", "sqlite:///erp.db", None, "staging", {"staging": "stg.db"})
    return write_config(tmp_path / "cfg" / "agent.yaml", pair, {FLOW: document})


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if text in line)


def test_resubmit_refuses_a_flow_that_declares_no_resubmit_naming_the_config_line(tmp_path):
    path = sqlite_config(tmp_path)
    refused = cli("outcomes", "-c", str(path), "--flow", FLOW, "--resubmit", "3")
    assert (refused.exit_code, refused.output) == (2, (
        f"{path}:{line_of(path, f'  {FLOW}:')}: flow {FLOW}: it declares no `outcome:` with `resubmit:`, so the agent "
        "changes nothing in its staging table stg_completion. Resubmit the rows in the ERP, or declare the ERP's own "
        "procedure under `outcome:`, e.g. `resubmit: {stg_status: PENDING, stg_error: null}` (see examples/)\n"))
    path = sqlite_config(tmp_path, layout="vendor", reference="SOURCE_LINE_ID", staging_table="MTL_TRANSACTIONS_INTERFACE",
                         outcome={"status_column": "PROCESS_FLAG", "pending": [1, 2], "error": [3]})
    refused = cli("outcomes", "-c", str(path), "--flow", FLOW, "--resubmit", "3")
    assert (refused.exit_code, refused.output) == (2, (
        f"{path}:{line_of(path, 'outcome:')}: flow {FLOW}: its `outcome:` declares no `resubmit:`, so the agent changes "
        "nothing in its staging table MTL_TRANSACTIONS_INTERFACE. Resubmit the rows in the ERP, or declare the ERP's own procedure under "
        "`outcome:`, e.g. `resubmit: {PROCESS_FLAG: 1, ERROR_CODE: null, ERROR_EXPLANATION: null}` (see examples/)\n"))
    assert cli("outcomes", "-c", str(path), "--resubmit", "3").output == (
        "--resubmit needs --flow NAME and at least one KEY: `outcomes -c FILE --flow NAME --resubmit KEY...`\n")
    assert cli("outcomes", "-c", str(path), "--flow", FLOW, "3").output == (
        "KEY arguments are for --resubmit: `outcomes -c FILE --flow NAME --resubmit KEY...`\n")
    unknown = cli("outcomes", "-c", str(path), "--flow", "completion")
    assert (unknown.exit_code, unknown.output) == (2, f"{path}: no flow named 'completion'; did you mean `{FLOW}`?\n")


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_a_vendor_flow_without_outcome_is_not_watched_and_an_unreadable_database_exits_1(db_factory, tmp_path, kind):
    pair = make_pair(db_factory, kind, suffix=f"_nw_{kind[:2]}")
    mes = sa.create_engine(pair.mes_url)
    completion_table(pair.mes_schema).metadata.create_all(mes)
    mes.dispose()
    n = str.lower if kind == "postgresql" else str.upper
    engine = staging_engine(pair)
    if kind == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE SCHEMA staging")
    interface_table(n, pair.staging_schema).metadata.create_all(engine)
    engine.dispose()
    flow = {k: v for k, v in vendor_flow(pair, n).items() if k != "outcome"}
    config = write_config(tmp_path / "agent.yaml", pair, {FLOW: flow})
    prepare_erp(config)
    assert cli("run", "-c", str(config), "--once").exit_code == 0
    status = json.loads(cli("status", "-c", str(config), "--json").output)[0]
    assert {k: status[k] for k in ("pending_rows", "oldest_pending", "error_rows", "done_rows")} == dict.fromkeys(
        ("pending_rows", "oldest_pending", "error_rows", "done_rows"))
    listed = cli("outcomes", "-c", str(config))
    assert (listed.exit_code, listed.output) == (0, f"flow {FLOW}: import outcome not watched (layout: vendor without "
                                                    "`outcome:`)\n")
    assert "outcome_" not in cli("render-sql", "-c", str(config)).output
    if kind != "postgresql":
        return
    url = make_url(pair.erp_url)
    gone_url = url.set(database=f"{url.database}_gone")
    gone = write_config(tmp_path / "gone.yaml", replace(pair, erp_url=gone_url.render_as_string(hide_password=False)),
                        {FLOW: vendor_flow(pair, n)})
    down = cli("outcomes", "-c", str(gone))
    assert (down.exit_code, down.output) == (1, (
        f"flow {FLOW}: cannot read its import outcome in staging.{n('MTL_TRANSACTIONS_INTERFACE')} on system erp "
        f"({gone_url.render_as_string(hide_password=True)}): connection failed: connection to server at "
        f'"{url.host}", port {url.port} failed: FATAL:  database "{url.database}_gone" does not exist\n'))

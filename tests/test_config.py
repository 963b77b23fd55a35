"""Configuration errors a person can act on: every problem, with file:line, key and the nearest valid key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from agent.config import load_config
from agent.connect import connection_url
from agent.errors import ConfigError
from helpers import cli, make_pair, prepare_erp, work_order_flow, write_config

VALID = """\
systems:
  mes:
    url: "sqlite:///mes.db"
  erp:
    url: "sqlite:///erp.db"
    staging_schema: staging
    attach: {staging: erp_staging.db}
flows:
  work_order_confirmations:
    source: mes
    target: erp
    table: work_order
    watermark: [modified_date, work_order_id]
    key: [work_order_id]
    staging_table: stg_work_order
    columns:
      order_no: work_order_id
      qty_good: {from: stocked_qty, type: "decimal(18,3)"}
    lag: 2s
    overlap: 5m
    schedule: {every: 30s}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_valid_file_passes_check_config(tmp_path):
    path = write(tmp_path, VALID)
    result = cli("check-config", "-c", str(path))
    assert result.exit_code == 0
    assert result.output == f"{path}: OK (2 systems, 1 flows: work_order_confirmations)\n"
    flow = load_config(path).model.flows["work_order_confirmations"]
    assert (flow.lag.total_seconds(), flow.overlap.total_seconds(), flow.schedule.every.total_seconds()) == (2, 300, 30)


def test_every_problem_is_listed_with_line_key_and_suggestion(tmp_path, monkeypatch):
    monkeypatch.delenv("MEA_MISSING_VAR", raising=False)
    text = (VALID.replace('url: "sqlite:///erp.db"', 'url: "${MEA_MISSING_VAR}"')
            .replace("staging_schema: staging", "staging_schem: staging")
            .replace("    table: work_order", "    tabel: work_order")
            .replace('type: "decimal(18,3)"', 'type: "decimal(18"')
            .replace("lag: 2s", "lag: soon"))
    path = write(tmp_path, text)
    result = cli("check-config", "-c", str(path))
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"{path}: configuration is not valid (5 problems):",
        f"  {path}:5: environment variable MEA_MISSING_VAR is not set (referenced as ${{MEA_MISSING_VAR}})",
        f"  {path}:6: unknown key `systems.erp.staging_schem`; did you mean `staging_schema`?",
        f"  {path}:12: unknown key `flows.work_order_confirmations.tabel`; did you mean `table`?",
        f"  {path}:18: `flows.work_order_confirmations.columns.qty_good.type`: unknown column type 'decimal(18'; "
        "use one of: int, smallint, bigint, decimal(P,S), float, varchar(N), text, timestamp, timestamptz, date, "
        "time, boolean, varbinary(N)",
        f"  {path}:19: `flows.work_order_confirmations.lag`: expected a duration such as 2s, 5m, 1h, 500ms or 1d, got 'soon'",
    ]


def test_references_between_sections_are_checked(tmp_path):
    text = (VALID.replace("source: mes", "source: mse")
            .replace("staging_table: stg_work_order", "staging_table: dbo.stg_work_order"))
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert error.value.problems == [
        f"{path}:10: `source: mse` is not a system under `systems:`; did you mean `mes`?",
        f"{path}:15: staging table 'dbo.stg_work_order' is outside the staging schema 'staging'; "
        "the agent writes only to staging.<table>",
    ]


def test_missing_required_keys_and_const_rules(tmp_path):
    text = VALID.replace("    key: [work_order_id]\n", "").replace(
        "order_no: work_order_id", "order_no: {const: 7}")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert error.value.problems == [
        f"{path}:9: `flows.work_order_confirmations.key` is required",
        f"{path}:16: `flows.work_order_confirmations.columns.order_no`: a `const:` column needs a `type:` "
        "(the staging column type)",
    ]


def test_secrets_come_from_password_file_and_are_never_printed(tmp_path):
    (tmp_path / "erp.password").write_text("s3cret-Pa55\n")
    text = VALID.replace('url: "sqlite:///erp.db"', 'url: "postgresql+psycopg://agent@127.0.0.1:1/erp"\n    password_file: erp.password')
    path = write(tmp_path, text)
    config = load_config(path)
    assert connection_url(config, "erp").password == "s3cret-Pa55"
    assert "s3cret" not in config.redacted_url("erp")
    status = cli("status", "-c", str(path), "--json")
    assert status.exit_code == 1  # the ERP is unreachable: its flows' status cannot be read
    assert "s3cret" not in status.output
    assert '"url": "postgresql+psycopg://agent@127.0.0.1:1/erp"' in status.output


def test_a_source_column_that_does_not_exist_stops_the_run_before_any_data_moves(db_factory, tmp_path):
    pair = make_pair(db_factory, "postgresql")
    mes = sa.create_engine(pair.mes_url)
    from agent.demo import adventureworks

    adventureworks.create_and_load(mes, ["work_order"], schema=pair.mes_schema, limit=10)
    mes.dispose()
    flow = work_order_flow(pair)
    config = write_config(tmp_path / "agent.yaml", pair, {"work_order_confirmations": flow})
    prepare_erp(config)
    flow["columns"]["qty_rework"] = "rework_qty"
    flow["columns"]["line"] = "LineCode"
    write_config(config, pair, {"work_order_confirmations": flow})
    result = cli("run", "-c", str(config), "--once")
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"{config}: configuration does not match the databases; no data was moved:",
        "flow work_order_confirmations: column 'rework_qty' does not exist in source table production.work_order on system mes",
        "flow work_order_confirmations: column 'LineCode' does not exist in source table production.work_order on system mes",
    ]

    del flow["columns"]["qty_rework"], flow["columns"]["line"]
    flow["columns"]["qty_ordered"] = "order_qty"
    write_config(config, pair, {"work_order_confirmations": flow})
    result = cli("run", "-c", str(config), "--once")
    assert result.exit_code == 2
    assert result.output.splitlines()[1:] == [
        "flow work_order_confirmations: column 'qty_ordered' does not exist in staging table staging.stg_work_order "
        "on system erp",
    ]
    rows = cli("status", "-c", str(config), "--json").output
    assert '"rows_moved": 0' in rows


def test_the_documented_example_config_is_valid(monkeypatch):
    monkeypatch.setenv("ERP_AGENT_PASSWORD", "not-a-real-password")
    example = Path(__file__).resolve().parents[1] / "config.example.yaml"
    result = cli("check-config", "-c", str(example))
    assert result.exit_code == 0, result.output
    assert "not-a-real-password" not in result.output


def uncomment_erp_to_mes(example: str) -> str:
    """config.example.yaml with its commented ERP -> MES example switched on, as a user would."""
    lines, in_flow = [], False
    for line in example.splitlines():
        if line == "    # staging_schema: mes_inbound":
            line = "    staging_schema: mes_inbound"
        elif line == "  # released_orders:" or (in_flow and line.startswith("  #   ")):
            in_flow, line = True, "  " + line[4:]
        else:
            in_flow = False
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_the_commented_erp_to_mes_example_is_valid_once_switched_on(monkeypatch, tmp_path):
    monkeypatch.setenv("ERP_AGENT_PASSWORD", "not-a-real-password")
    example = (Path(__file__).resolve().parents[1] / "config.example.yaml").read_text(encoding="utf-8")
    path = tmp_path / "agent.yaml"
    path.write_text(uncomment_erp_to_mes(example), encoding="utf-8")
    assert cli("check-config", "-c", str(path)).exit_code == 0
    config = load_config(path)
    assert (config.model.flows["released_orders"].source, config.model.flows["released_orders"].target) == ("erp", "mes")
    # Each login gets both of its roles (printed without connecting).
    mes = cli("sql", "grants", "-c", str(path), "--system", "mes").output.splitlines()
    assert 'GRANT SELECT, INSERT ON TABLE "mes_inbound"."stg_released_order" TO "mes_agent";' in mes
    assert [line for line in mes if "INSERT" in line and line.startswith("GRANT") and '"mes_inbound".' not in line] == []
    erp = cli("sql", "grants", "-c", str(path), "--system", "erp").output.splitlines()
    assert ("GRANT SELECT ON [dbo].[production_order] ([changed_at], [order_no], [material_no], [order_qty], "
            "[scheduled_start], [due_date], [status]) TO [erp_agent];") in erp

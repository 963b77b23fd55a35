"""Enum labels are watched schema and a label longer than its staging column is quarantined (issue 8); an
unbounded decimal stays exact end to end, or is a configuration error where no exact type holds it (issue 9);
a database error on the write path is a flow failure with a message, never a traceback."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from agent.drift import snapshot
from agent.catalog.model import ColumnSnapshot, KeySnapshot, SystemSnapshot, TableSnapshot
from agent.types import ColumnType
from helpers import Pair, cli, make_pair, prepare_erp, staging_rows, table_name, write_config

ENUM_DDL = {
    "postgresql": ["CREATE TYPE production.st AS ENUM ('a', 'b')",
                   "CREATE TABLE production.job (job_id integer PRIMARY KEY, status production.st NOT NULL, "
                   "modified_at timestamp(6) NOT NULL)"],
    "mysql": ["CREATE TABLE {t} (job_id integer PRIMARY KEY, status enum('a','b') NOT NULL, "
              "modified_at datetime(6) NOT NULL)"],
}
ADD_LABEL = {
    "postgresql": "ALTER TYPE production.st ADD VALUE '{label}'",
    "mysql": "ALTER TABLE {t} MODIFY status enum({labels}) NOT NULL",
}


def execute(url: str, *statements: str) -> None:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")  # ALTER TYPE ... ADD VALUE outside a transaction
    try:
        with engine.connect() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def job_flow(pair: Pair, **columns: Any) -> dict[str, Any]:
    return {
        "source": "mes", "target": "erp", "table": table_name(pair, "job"), "watermark": ["modified_at", "job_id"],
        "key": ["job_id"], "staging_table": "stg_job", "columns": {"job_no": "job_id", **columns},
    }


def label_diffs(config: Path) -> list[tuple[Any, ...]]:
    result = cli("drift", "-c", str(config), "--json")
    assert result.exit_code == 3, result.output
    return [(c["kind"], c["column"], c["expected"], c["actual"], [(i["flow"], i["breaking"], i["reason"]) for i in c["impacts"]])
            for system in json.loads(result.output)["systems"] for c in system["changes"]]


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_enum_label_is_drift_and_a_label_too_long_for_staging_is_quarantined(kind, db_factory, tmp_path: Path):
    pair = make_pair(db_factory, kind, suffix=f"_enum_{kind}")
    table = table_name(pair, "job")
    execute(pair.mes_url, *[s.format(t=table) for s in ENUM_DDL[kind]],
            f"INSERT INTO {table} VALUES (1, 'a', '2026-03-02 06:00:00')")
    config = write_config(tmp_path / "agent.yaml", pair, {"jobs": job_flow(pair, status="status")})
    ddl = cli("sql", "ddl", "-c", str(config), "--system", "erp")
    assert '"status" varchar(1) NULL' in ddl.output.replace("`", '"')  # sized for the longest label
    prepare_erp(config)
    assert cli("run", "-c", str(config), "--once").exit_code == 0

    def add(label: str, labels: str) -> None:
        execute(pair.mes_url, ADD_LABEL[kind].format(label=label, labels=labels, t=table))

    add("c", "'a','b','c'")  # fits the varchar(1) staging column: drift, not breaking
    assert label_diffs(config) == [("enum_labels_changed", "status", "'a', 'b'", "'a', 'b', 'c'",
                                    [("jobs", False, "the flow reads this column; every label fits its staging column")])]
    assert cli("snapshot", "-c", str(config), "--system", "mes", "--accept", "--yes").exit_code == 0
    assert cli("drift", "-c", str(config)).exit_code == 0

    add("cancelled", "'a','b','c','cancelled'")  # does not fit: breaking
    assert label_diffs(config) == [("enum_labels_changed", "status", "'a', 'b', 'c'", "'a', 'b', 'c', 'cancelled'",
                                    [("jobs", True, "the flow reads this column and the new label 'cancelled' "
                                                    "(9 characters) does not fit its staging column (1 characters)")])]
    halted = cli("run", "-c", str(config), "--once")
    assert halted.exit_code == 3, halted.output
    assert cli("snapshot", "-c", str(config), "--system", "mes", "--accept", "--yes").exit_code == 0
    execute(pair.mes_url, f"INSERT INTO {table} VALUES (2, 'cancelled', '2026-03-02 07:00:00'), "
                          f"(3, 'c', '2026-03-02 08:00:00')")
    for _ in range(2):  # every run, not only the first
        result = cli("run", "-c", str(config), "--once")
        assert result.exit_code == 0, result.output
    assert [tuple(r) for r in staging_rows(pair, "stg_job", "job_no, status")] == [(1, "a"), (3, "c")]
    assert [tuple(r) for r in staging_rows(pair, "agent_quarantine", "source_key, reason", "source_key")] == [
        ("2", "status: 9 characters, the staging column holds at most 1 (source column status, value 'cancelled')"),
    ]


def test_a_label_mapped_by_code_or_sized_by_type_is_not_breaking(db_factory, tmp_path: Path):
    pair = make_pair(db_factory, "postgresql", suffix="_enum_sized")
    execute(pair.mes_url, *ENUM_DDL["postgresql"])
    flow = job_flow(pair, status={"from": "status", "type": "varchar(12)"},
                    status_code={"from": "status", "map": {"a": "A", "b": "B"}, "default": "?"})
    config = write_config(tmp_path / "agent.yaml", pair, {"jobs": flow})
    prepare_erp(config)
    execute(pair.mes_url, "ALTER TYPE production.st ADD VALUE 'cancelled'")
    assert label_diffs(config) == [("enum_labels_changed", "status", "'a', 'b'", "'a', 'b', 'cancelled'",
                                    [("jobs", False, "the flow reads this column; every label fits its staging column")])]


def test_snapshots_without_enums_keep_their_bytes_and_enums_add_labels(tmp_path: Path):
    job_id = ColumnSnapshot("job_id", 1, ColumnType("integer", precision=32), "integer", False)
    status = ColumnSnapshot("status", 2, ColumnType("text", length=10), "character varying(10)", True, collation="default")
    table = TableSnapshot("production.job", (job_id, status), KeySnapshot("job_pkey", ("job_id",)))
    text = snapshot.render(SystemSnapshot("mes", "postgresql", "15.8", {"production.job": table}))
    assert text.split("\n", 3)[3] == WITHOUT_ENUMS  # the bytes the agent wrote before it watched enum labels

    enum = replace(status, type=ColumnType("other"), native="production.st", collation=None, labels=("a", "it's"))
    enum_snapshot = SystemSnapshot("mes", "postgresql", "15.8", {"production.job": replace(table, columns=(job_id, enum))})
    with_enum = snapshot.render(enum_snapshot)
    assert "      collation: null\n      labels: [a, it's]\n    primary_key:" in with_enum
    assert with_enum.count("labels") == 1
    snapshot.write(tmp_path / "mes.yaml", enum_snapshot)
    assert snapshot.read(tmp_path / "mes.yaml", "mes") == enum_snapshot


WITHOUT_ENUMS = """\
format: 1
system: mes
dialect: postgresql
server_version: '15.8'
content_hash: sha256:8d17829a716bf6cd1fe9167e05b343989d75ca119d9b7d4a7c04892524d35131
tables:
  production.job:
    columns:
    - name: job_id
      position: 1
      type: {family: integer, precision: 32}
      native: integer
      nullable: false
      default: null
      identity: false
      computed: false
      collation: null
    - name: status
      position: 2
      type: {family: text, length: 10}
      native: character varying(10)
      nullable: true
      default: null
      identity: false
      computed: false
      collation: default
    primary_key: {name: job_pkey, columns: [job_id]}
    unique: []
    indexes: []
    foreign_keys: []
"""


NUMBERS = [Decimal("9.99"), Decimal("0.4"), Decimal("12345678901234567890.123456789012345678901234567890"), Decimal("-7")]


def price_source(pair: Pair) -> None:
    execute(pair.mes_url, "CREATE TABLE production.price (price_id integer PRIMARY KEY, price numeric NOT NULL, "
                          "modified_at timestamp NOT NULL)",
            "INSERT INTO production.price VALUES " + ", ".join(
                f"({i}, {n}, '2026-03-02 0{i}:00:00')" for i, n in enumerate(NUMBERS, start=1)))


def price_flow(**price: Any) -> dict[str, Any]:
    return {"source": "mes", "target": "erp", "table": "production.price", "watermark": ["modified_at", "price_id"],
            "key": ["price_id"], "staging_table": "stg_price",
            "columns": {"price_no": "price_id", "price": {"from": "price", **price} if price else "price"}}


def pg_mes_with(db_factory, target: str, suffix: str) -> Pair:
    """An MES on PostgreSQL (where `numeric` is unbounded) and an ERP of another kind."""
    mes = make_pair(db_factory, "postgresql", suffix=f"_{suffix}_pg")
    erp = mes if target == "postgresql" else make_pair(db_factory, target, suffix=f"_{suffix}")
    return Pair(erp.kind, mes.mes_url, erp.erp_url, mes.mes_schema, erp.staging_schema, erp.attach)


@pytest.mark.parametrize(("target", "rendered"), [("postgresql", '"price" numeric NULL'), ("sqlite", '"price" TEXT NULL')])
def test_unbounded_numeric_stays_exact(target, rendered, db_factory, tmp_path: Path):
    pair = pg_mes_with(db_factory, target, f"num_{target}")
    price_source(pair)
    config = write_config(tmp_path / "agent.yaml", pair, {"prices": price_flow()})
    assert rendered in cli("sql", "ddl", "-c", str(config), "--system", "erp").output
    prepare_erp(config)
    result = cli("run", "-c", str(config), "--once")
    assert result.exit_code == 0, result.output
    staged = staging_rows(pair, "stg_price", "price_no, price", "price_no")
    # PostgreSQL gives Decimals back; SQLite the exact decimal text.
    assert [(r[0], r[1] if target == "postgresql" else Decimal(r[1])) for r in staged] == list(enumerate(NUMBERS, 1))
    if target == "sqlite":
        assert [r[1] for r in staged] == [str(n) for n in NUMBERS]
    assert staging_rows(pair, "agent_quarantine", "reason", "quarantine_id") == []


def test_unbounded_numeric_without_an_exact_type_is_a_configuration_error(db_factory, tmp_path: Path):
    pair = pg_mes_with(db_factory, "mysql", "num_mysql")
    price_source(pair)
    config = write_config(tmp_path / "agent.yaml", pair, {"prices": price_flow()})
    problem = (
        f"{config}:{line_of(config, 'price:')}: flow prices: staging column 'price' (source column 'price') is a "
        "decimal without precision (its source column gives none), and {dialect} has no exact type that holds "
        "every such value; give the column a `type: decimal(P,S)` that fits the source's values"
    )
    ddl = cli("sql", "ddl", "-c", str(config), "--system", "erp")
    assert (ddl.exit_code, ddl.output.strip()) == (2, problem.format(dialect="mysql"))
    assert cli("snapshot", "-c", str(config), "--system", "mes").exit_code == 0  # the types `--dialect` prints from
    offline = cli("sql", "ddl", "-c", str(config), "--system", "erp", "--dialect", "mssql")
    assert (offline.exit_code, offline.output.strip()) == (2, problem.format(dialect="mssql"))

    # With a `type:` the DDL is written; a run whose configuration lost it again stops before moving anything.
    typed = write_config(tmp_path / "agent.yaml", pair, {"prices": price_flow(type="decimal(65,30)")})
    prepare_erp(typed)
    write_config(tmp_path / "agent.yaml", pair, {"prices": price_flow()})
    run = cli("run", "-c", str(config), "--once")
    assert run.exit_code == 2, run.output
    assert run.output.strip().endswith(problem.format(dialect="mysql"))
    assert staging_rows(pair, "stg_price", "price_no", "price_no") == []


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), start=1) if line.strip().startswith(text))


def test_a_copy_the_database_rejects_fails_the_flow_with_a_message(db_factory, tmp_path: Path):
    """A staging column the agent has no converter for (a DBA made it uuid): COPY fails, the flow fails, exit 1."""
    pair = make_pair(db_factory, "postgresql", suffix="_copy")
    execute(pair.mes_url, "CREATE TABLE production.job (job_id integer PRIMARY KEY, status varchar(10) NOT NULL, "
                          "modified_at timestamp NOT NULL)",
            "INSERT INTO production.job VALUES (1, 'abc', '2026-03-02 06:00:00')")
    config = write_config(tmp_path / "agent.yaml", pair, {"jobs": job_flow(pair, status="status")})
    result = cli("sql", "ddl", "-c", str(config), "--system", "erp", "--apply")
    assert result.exit_code == 0, result.output
    execute(pair.erp_url, "ALTER TABLE staging.stg_job ALTER COLUMN status TYPE uuid USING NULL")
    assert cli("snapshot", "-c", str(config), "--accept", "--yes").exit_code == 0

    failed = cli("run", "-c", str(config), "--once")
    assert failed.exit_code == 1, failed.output
    assert 'flow jobs failed: database error (InvalidTextRepresentation): invalid input syntax for type uuid: "abc"' \
        in failed.output
    assert [tuple(r) for r in staging_rows(pair, "agent_run", "outcome, message", "run_id")] == [
        ("failed", 'database error (InvalidTextRepresentation): invalid input syntax for type uuid: "abc"'),
    ]

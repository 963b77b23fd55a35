"""PostgreSQL's first try of a batch (sql/postgresql/write_staging_new.sql): a batch none of whose rows was staged
before is recorded and appended by one statement without the duplicate check; a batch holding a row staged before
is refused by agent_ledger's unique key inside a savepoint and then staged exactly as write_staging.sql stages it.
Real server; each batch goes through `write.insert_new_rows`, as every poll's does.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from agent import pipeline, write
from agent.config import load_config
from agent.connect import Systems
from agent.demo import adventureworks
from helpers import make_pair, prepare_erp, staging_engine, work_order_flow, write_config

STAMP = dt.datetime(2026, 3, 1, 6, 0, 0, 123456)


@pytest.fixture(scope="module")
def flow(db_factory, tmp_path_factory):
    pair = make_pair(db_factory, "postgresql")
    mes = sa.create_engine(pair.mes_url)
    adventureworks.create_and_load(mes, ["work_order"], schema=pair.mes_schema, limit=10)
    mes.dispose()
    config_path = write_config(tmp_path_factory.mktemp("new") / "agent.yaml", pair, {"work_orders": work_order_flow(pair)})
    prepare_erp(config_path)
    systems = Systems(load_config(config_path))
    ctx = pipeline.prepare(load_config(config_path), systems, "work_orders")
    erp = staging_engine(pair)
    yield ctx, erp
    erp.dispose()
    systems.dispose()


@pytest.fixture(autouse=True)
def empty_tables(flow):
    _ctx, erp = flow
    with erp.begin() as conn:
        conn.exec_driver_sql("TRUNCATE staging.stg_work_order, staging.agent_ledger")


def mapped(batch_id: str, key: int, version: str = "v1") -> tuple[Any, ...]:
    return (batch_id, "work_orders", str(key), version, "U", key, 707, 8, Decimal("7.125"), 1, "BRKN", STAMP, STAMP, STAMP,
            STAMP)


class Statements:
    """The ERP statements of the batches, as sent (first words), with what each did: 'ok' or the error's class."""

    def __init__(self, engine: sa.Engine):
        self.engine, self.sent = engine, []
        sa.event.listen(engine, "before_cursor_execute", self._sent)
        sa.event.listen(engine, "handle_error", self._failed)

    def _sent(self, _conn, _cursor, statement, *_rest) -> None:
        self.sent.append([_kind(statement), "ok"])

    def _failed(self, context) -> None:
        self.sent[-1][1] = type(context.original_exception).__name__

    def writes(self) -> list[tuple[str, str]]:
        return [(kind, result) for kind, result in self.sent if kind in ("all new", "skip staged", "analyze")]

    def close(self) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._sent)
        sa.event.remove(self.engine, "handle_error", self._failed)


def _kind(statement: str) -> str:
    if statement.lstrip().startswith("ANALYZE"):  # the batch table's statistics, for the statement that joins it
        return "analyze"
    if "INSERT INTO" in statement and "agent_ledger" in statement:
        return "skip staged" if "ON CONFLICT" in statement else "all new"
    return " ".join(statement.split()[:2])


def write_batch(ctx: pipeline.FlowContext, rows: list[tuple[Any, ...]], batch_id: str,
                expect_new: bool = True) -> tuple[int, list[tuple[str, str]]]:
    statements = Statements(ctx.target_engine)
    try:
        with ctx.target_engine.begin() as conn:
            written = write.insert_new_rows(conn, ctx.target_dialect, ctx.staging, ctx.control, rows, batch_id, expect_new)
    finally:
        statements.close()
    return written, statements.writes()


def staged(erp: sa.Engine) -> list[tuple[str, str, str]]:
    with erp.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT stg_batch_id, stg_source_key, stg_source_version FROM staging.stg_work_order ORDER BY stg_id"))]


def ledger(erp: sa.Engine) -> list[tuple[str, str, str]]:
    with erp.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT batch_id, source_key, source_version FROM staging.agent_ledger ORDER BY entry_id"))]


def test_a_batch_of_new_rows_is_staged_by_one_statement_without_the_duplicate_check(flow):
    ctx, erp = flow
    written, writes = write_batch(ctx, [mapped("A", key) for key in (3, 1, 2)], "A")
    assert (written, writes) == (3, [("all new", "ok")])
    assert staged(erp) == [("A", "3", "v1"), ("A", "1", "v1"), ("A", "2", "v1")]  # in the batch's (watermark) order
    assert ledger(erp) == staged(erp)


@pytest.mark.parametrize("where", ["first", "last"])
def test_a_batch_with_a_row_staged_before_stages_exactly_the_others_even_when_the_import_job_took_it(flow, where):
    """Keys 1 and 2 were staged, then the import job consumed (deleted) their staging rows. The next batch re-reads
    key 1 unchanged (first or last in the batch), key 2 in a new version, and brings keys 3 and 4: the first try is
    refused by the ledger's unique key and leaves nothing, and exactly key 2's new version and keys 3, 4 are staged."""
    ctx, erp = flow
    assert write_batch(ctx, [mapped("A", 1), mapped("A", 2)], "A") == (2, [("all new", "ok")])
    with erp.begin() as conn:
        conn.exec_driver_sql("DELETE FROM staging.stg_work_order")  # the import job took them
    others = [mapped("B", 2, "v2"), mapped("B", 3), mapped("B", 4)]
    batch = [mapped("B", 1), *others] if where == "first" else [*others, mapped("B", 1)]
    written, writes = write_batch(ctx, batch, "B")
    # the batch table's statistics only for the statement that joins it
    assert (written, writes) == (3, [("all new", "UniqueViolation"), ("analyze", "ok"), ("skip staged", "ok")])
    assert sorted(staged(erp)) == [("B", "2", "v2"), ("B", "3", "v1"), ("B", "4", "v1")]
    assert sorted(ledger(erp)) == [("A", "1", "v1"), ("A", "2", "v1"), ("B", "2", "v2"), ("B", "3", "v1"), ("B", "4", "v1")]


def test_a_batch_of_rows_all_staged_before_stages_nothing(flow):
    ctx, erp = flow
    rows = [mapped("A", key) for key in (1, 2)]
    assert write_batch(ctx, rows, "A") == (2, [("all new", "ok")])
    written, writes = write_batch(ctx, [mapped("B", key) for key in (1, 2)], "B")
    assert (written, writes) == (0, [("all new", "UniqueViolation"), ("analyze", "ok"), ("skip staged", "ok")])
    assert staged(erp) == ledger(erp) == [("A", "1", "v1"), ("A", "2", "v1")]


def test_a_refusal_by_the_staging_table_itself_comes_from_the_statement_with_the_duplicate_check(flow):
    """A staging row whose ledger entry is gone (pruned by hand) makes the staging table's own unique key refuse the
    batch: the first try's savepoint is rolled back and the batch fails as it did without the first try, with the
    staging key's error and nothing written."""
    ctx, erp = flow
    assert write_batch(ctx, [mapped("A", 1)], "A") == (1, [("all new", "ok")])
    with erp.begin() as conn:
        conn.exec_driver_sql("DELETE FROM staging.agent_ledger")
    statements = Statements(ctx.target_engine)
    try:
        with pytest.raises(sa.exc.IntegrityError) as refused, ctx.target_engine.begin() as conn:
            write.insert_new_rows(conn, ctx.target_dialect, ctx.staging, ctx.control, [mapped("B", 1), mapped("B", 2)], "B",
                                  expect_new=True)
    finally:
        statements.close()
    assert statements.writes() == [("all new", "UniqueViolation"), ("analyze", "ok"), ("skip staged", "UniqueViolation")]
    assert "stg_work_order" in str(refused.value.orig) and "agent_ledger" not in str(refused.value.orig)
    assert staged(erp) == [("A", "1", "v1")] and ledger(erp) == []


def test_a_batch_not_expected_new_makes_no_first_try(flow):
    """Backfill, replay and reconcile re-read rows that are mostly staged: a refused try would be wasted work and a
    unique-violation line in the server's log, so their batches go straight to the statement with the check."""
    ctx, erp = flow
    assert write_batch(ctx, [mapped("A", 1)], "A", expect_new=False) == (1, [("analyze", "ok"), ("skip staged", "ok")])
    assert write_batch(ctx, [mapped("B", 1), mapped("B", 2)], "B", expect_new=False) == (1, [("analyze", "ok"), ("skip staged", "ok")])
    assert staged(erp) == ledger(erp) == [("A", "1", "v1"), ("B", "2", "v1")]


@pytest.fixture(scope="module")
def runs(db_factory, tmp_path_factory):
    """Two flows of the same 10 MES rows in batches of 4, one with an overlap window reaching back past them all."""
    pair = make_pair(db_factory, "postgresql", suffix="_runs")
    mes = sa.create_engine(pair.mes_url)
    adventureworks.create_and_load(mes, ["work_order"], schema=pair.mes_schema, limit=10)
    mes.dispose()
    flows = {"work_orders": work_order_flow(pair, batch_size=4),
             "wo_overlap": work_order_flow(pair, batch_size=4, staging_table="stg_wo_overlap", overlap="3000d")}
    config_path = write_config(tmp_path_factory.mktemp("runs") / "agent.yaml", pair, flows, ledger={"keep": "3650d"})
    prepare_erp(config_path)
    config = load_config(config_path)
    systems = Systems(config)
    erp = staging_engine(pair)
    yield {name: pipeline.prepare(config, systems, name) for name in flows}, erp
    erp.dispose()
    systems.dispose()


def test_a_run_tries_all_new_only_after_the_watermark_and_not_again_after_a_batch_of_re_reads(runs):
    """The initial load tries each batch as all new. With the watermark set back by hand, the run's first batch is
    refused once (its rows were staged), and the batches after it, re-reads as well, go straight to the statement
    with the check. A run whose first page comes from an overlap window makes no first try for it."""
    contexts, erp = runs
    ctx = contexts["work_orders"]
    statements = Statements(ctx.target_engine)
    try:
        report = pipeline.run_flow(ctx)
        assert (report.outcome, report.rows_written) == ("ok", 10), report.message
        assert statements.writes() == [("all new", "ok")] * 3
        statements.sent.clear()
        with erp.begin() as conn:
            conn.exec_driver_sql("DELETE FROM staging.agent_watermark WHERE flow = 'work_orders'")  # all read again
        report = pipeline.run_flow(ctx)
        assert (report.outcome, report.rows_written, report.rows_duplicate) == ("ok", 0, 10), report.message
        assert statements.writes() == [("all new", "UniqueViolation"), *[("analyze", "ok"), ("skip staged", "ok")] * 3]
        statements.sent.clear()

        overlap = contexts["wo_overlap"]
        report = pipeline.run_flow(overlap)  # initial load: no watermark, no overlap window yet
        assert (report.outcome, report.rows_written) == ("ok", 10), report.message
        assert statements.writes() == [("all new", "ok")] * 3
        statements.sent.clear()
        report = pipeline.run_flow(overlap)  # the whole table is inside the overlap window, read from its start
        assert (report.outcome, report.rows_written, report.rows_duplicate) == ("ok", 0, 10), report.message
        assert statements.writes() == [("analyze", "ok"), ("skip staged", "ok")] * 3
    finally:
        statements.close()
    with erp.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM staging.stg_work_order").scalar() == 10
        assert conn.exec_driver_sql("SELECT count(*) FROM staging.stg_wo_overlap").scalar() == 10
        assert conn.exec_driver_sql("SELECT flow, count(*) FROM staging.agent_ledger GROUP BY flow ORDER BY flow").all() == [
            ("wo_overlap", 10), ("work_orders", 10)]

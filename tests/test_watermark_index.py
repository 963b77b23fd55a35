"""Every watermark read is an index range scan: a cheap EXPLAIN of the statement the agent really executes.

The read is captured as the driver receives it (SQLAlchemy's before_cursor_execute on the source engine) while
`BatchReader.read_page` runs, then explained with the same parameters on a 20,000-row work order table that
has the index the README tells DBAs to create (the watermark columns, in watermark order) and fresh statistics.
The plan must use that index, scan no table, sort nothing and examine at most 1.1 x the rows it returns (plus the
boundary). Dropping the index must make the same check fail: the check can see a regression.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from agent import dialects
from agent.catalog.keyset import missing_index_warning
from agent.catalog.query import describe_table
from agent.config import load_config
from agent.demo import adventureworks
from agent.read import BatchReader, Cursor, describe_source, source_sql_for
from helpers import make_pair, table_name, work_order_flow, write_config

ROWS = 20_000
BATCH = 500
INDEX = "ix_work_order_modified"  # adventureworks.define_table: (modified_date, work_order_id), the watermark


@pytest.fixture(scope="module", params=["postgresql", "mysql"])
def source(request, db_factory, tmp_path_factory):
    pair = make_pair(db_factory, request.param, suffix=f"_{request.param}")
    engine = sa.create_engine(pair.mes_url)
    adventureworks.create_and_load(engine, ["work_order"], schema=pair.mes_schema, limit=ROWS)
    analyze(engine, pair)
    config = load_config(write_config(tmp_path_factory.mktemp("wmix") / "agent.yaml", pair,
                                      {"work_orders": work_order_flow(pair, batch_size=BATCH)}))
    flow = config.model.flows["work_orders"]
    dialect = dialects.for_engine(engine)
    reader = BatchReader(engine, dialect, flow, describe_source(engine, dialect, flow), source_sql_for(dialect, flow))
    yield pair, engine, reader
    engine.dispose()


def analyze(engine: sa.Engine, pair) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(f"ANALYZE {'TABLE ' if pair.kind == 'mysql' else ''}{table_name(pair, 'work_order')}")


def captured_read(reader: BatchReader, cursor: Cursor) -> tuple[str, Any, int]:
    """The statement and parameters the driver got for one page, and how many rows the page had."""
    seen: list[tuple[str, Any]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _executemany):
        seen.append((statement, parameters))

    sa.event.listen(reader.engine, "before_cursor_execute", capture)
    try:
        rows = reader.read_page(cursor)
    finally:
        sa.event.remove(reader.engine, "before_cursor_execute", capture)
    assert len(seen) == 1, seen
    return *seen[0], len(rows)


def plan_of(engine: sa.Engine, kind: str, statement: str, parameters: Any) -> dict[str, Any]:
    """EXPLAIN ANALYZE of the read, as JSON (PostgreSQL's plan tree, MariaDB's query block)."""
    prefix = "EXPLAIN (ANALYZE, FORMAT JSON) " if kind == "postgresql" else "ANALYZE FORMAT=JSON "
    with engine.connect() as conn:
        raw = conn.exec_driver_sql(prefix + statement, parameters).scalar()
        conn.rollback()
    found = json.loads(raw) if isinstance(raw, str) else raw
    return found[0]["Plan"] if kind == "postgresql" else found["query_block"]


def scans(plan: Any) -> list[dict[str, Any]]:
    """Every table access of a plan: PostgreSQL nodes with a relation, MariaDB `table` objects."""
    found = []
    if isinstance(plan, dict):
        if "Relation Name" in plan or "table_name" in plan:
            found.append(plan)
        for value in plan.values():
            found += scans(value)
    elif isinstance(plan, list):
        for item in plan:
            found += scans(item)
    return found


def index_problems(kind: str, plan: dict[str, Any], returned: int) -> list[str]:
    """Why the plan is not one index range scan of the watermark index examining about the rows it returns."""
    text = json.dumps(plan)
    accesses = scans(plan)
    problems = []
    if len(accesses) != 1:
        problems.append(f"expected one table access, got {len(accesses)}")
    for access in accesses:
        if kind == "postgresql":
            if access.get("Node Type") not in ("Index Scan", "Index Only Scan") or access.get("Index Name") != INDEX:
                problems.append(f"{access.get('Node Type')} on {access.get('Relation Name')} (index {access.get('Index Name')})")
            examined = access.get("Actual Rows", 0) + access.get("Rows Removed by Filter", 0)
        else:
            if access.get("access_type") not in ("range", "index") or access.get("key") != INDEX:
                problems.append(f"access_type {access.get('access_type')} on {access.get('table_name')} (key {access.get('key')})")
            examined = access.get("r_rows", 0)
        if examined > 1.1 * returned + 1:
            problems.append(f"examined {examined} rows to return {returned}")
    if '"Sort"' in text or "filesort" in text:
        problems.append("the rows are sorted instead of read in index order")
    return problems


def index_warning(engine: sa.Engine, pair) -> str | None:
    live = describe_table(engine, dialects.for_engine(engine), pair.mes_schema, "work_order")
    return missing_index_warning("work_orders", "mes", ["modified_date", "work_order_id"], table_name(pair, "work_order"), live)


def boundary(engine: sa.Engine, pair) -> tuple[Any, ...]:
    """The watermark of the row three quarters into the table: a steady-state cursor with rows after it."""
    with engine.connect() as conn:
        return tuple(conn.execute(sa.text(
            f"SELECT modified_date, work_order_id FROM {table_name(pair, 'work_order')} "
            f"ORDER BY modified_date, work_order_id LIMIT 1 OFFSET {ROWS * 3 // 4}"
        )).one())


@pytest.mark.parametrize("mode", ["after", "start"])
def test_the_watermark_read_is_an_index_range_scan(source, mode):
    pair, engine, reader = source
    cursor = Cursor(after=boundary(engine, pair)) if mode == "after" else Cursor()
    statement, parameters, returned = captured_read(reader, cursor)
    assert returned == BATCH
    assert index_problems(pair.kind, plan_of(engine, pair.kind, statement, parameters), returned) == []
    assert index_warning(engine, pair) is None  # what `run` logs at start-up (pipeline.prepare)


def test_without_the_watermark_index_the_check_fails(source):
    pair, engine, reader = source
    statement, parameters, returned = captured_read(reader, Cursor(after=boundary(engine, pair)))
    table = table_name(pair, "work_order")
    drop = f"DROP INDEX {INDEX} ON {table}" if pair.kind == "mysql" else f"DROP INDEX {pair.mes_schema}.{INDEX}"
    with engine.begin() as conn:
        conn.exec_driver_sql(drop)
    try:
        analyze(engine, pair)
        assert index_problems(pair.kind, plan_of(engine, pair.kind, statement, parameters), returned) != []
        assert index_warning(engine, pair) == (
            f"flow work_orders: no index on table {table} (system mes) starts with the watermark columns (modified_date, "
            "work_order_id): every read scans the whole table. Have the DBA create one, e.g. CREATE INDEX "
            f"ix_work_order_watermark ON {table} (modified_date, work_order_id)"
        )
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE INDEX {INDEX} ON {table} (modified_date, work_order_id)")
        analyze(engine, pair)

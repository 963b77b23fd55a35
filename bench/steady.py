"""Steady-state figures on PostgreSQL after the initial load: empty polls, a 1,000-row poll, the drift gate's catalog
reads for 20 tables, EXPLAIN of the watermark read, prepared statements across polls. Each next to a hand-built
reference measured in the same run (references.py)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa

import common
import references
from agent import dialects, pipeline
from agent.catalog.query import CatalogQuery, WatchedTable
from agent.config import load_config
from agent.connect import Systems
from agent.drift import shared
from agent.drift.gate import DriftGate
from common import median

POLLS = 200
ROW_WARMUP = 5  # a process's first polls moving rows pay planning: psycopg prepares a statement once it ran 5 times
ROW_POLLS = 10
TABLES = 20


def figures(folder: Path, config_path: Path, mes_url: str, erp_url: str) -> list[tuple[str, str, str, str]]:
    config = load_config(config_path)
    systems = Systems(config)
    gate = DriftGate(config, systems)
    found: list[tuple[str, str, str, str]] = []
    try:
        context = pipeline.prepare(config, systems, "work_orders")
        engines = {"mes": systems.source("mes"), "erp": systems.target("erp"),
                   "mes gate": gate._engines["mes"], "erp gate": gate._engines["erp"]}
        counter = common.QueryCounter(engines)

        def poll() -> Any:
            return pipeline.run_flow(context, gate)

        walls, cpus = common.repeat(poll, POLLS)
        with counter.measure() as queries:
            report = poll()
        assert report.rows_read == 0, report.message
        hand = references.pg_hand_poll(mes_url, erp_url, POLLS)
        found += [
            ("poll finding nothing, gate included: wall", f"{median(walls) * 1000:.2f} ms",
             f"hand keyset {median(hand) * 1000:.2f} ms", f"p99 {common.p99(walls) * 1000:.2f} ms"),
            ("  agent CPU per empty poll", f"{median(cpus) * 1000:.2f} ms", "", "target <= 5 ms"),
            ("  queries per system per empty poll", _per_system(queries), "hand keyset: mes 1", "target <= 2 per system"),
        ]
        row_walls, read = [], None
        for _ in range(ROW_WARMUP + ROW_POLLS):
            common.append_rows(mes_url, "production.work_order", 1000)
            seen: list[tuple[str, Any]] = []
            listener = _capture(seen)
            sa.event.listen(engines["mes"], "before_cursor_execute", listener)
            wall, _cpu = common.timed(lambda: _expect_rows(poll(), 1000))
            sa.event.remove(engines["mes"], "before_cursor_execute", listener)
            row_walls.append(wall)
            read = next(s for s in seen if "ORDER BY" in s[0])
        hand_rows = references.pg_hand_poll_rows(mes_url, erp_url, 1000)
        first, steady = row_walls[:ROW_WARMUP], row_walls[ROW_WARMUP:]
        found += [
            ("poll moving 1,000 rows", f"{median(steady) * 1000:.1f} ms", f"hand keyset {hand_rows * 1000:.1f} ms",
             f"target <= 25 ms; slowest {max(steady) * 1000:.1f} ms"),
            (f"  the first {ROW_WARMUP} such polls of the process", f"{median(first) * 1000:.1f} ms", "", "not prepared yet"),
        ]
        assert read is not None
        found += prepared(engines["mes"], engines["erp"])
        found += explain(engines["mes"], *read)
    finally:
        gate.close()
        systems.dispose()
    found += catalog_figures(folder, mes_url, erp_url)
    return found


def _capture(seen: list[tuple[str, Any]]) -> Any:
    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        seen.append((statement, parameters))
    return capture


def _expect_rows(report: Any, rows: int) -> None:
    if report.rows_written != rows:
        raise SystemExit(f"the poll moved {report.rows_written} rows, not {rows}: {report.message}")


def _per_system(queries: dict[str, int]) -> str:
    mes, erp = queries["mes"] + queries["mes gate"], queries["erp"] + queries["erp gate"]
    return f"mes {mes}, erp {erp}"


def explain(engine: sa.Engine, statement: str, parameters: Any) -> list[tuple[str, str, str, str]]:
    """EXPLAIN ANALYZE of the first read of the last 1,000-row poll, as the agent sent it."""
    with engine.connect() as conn:
        plan = conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters).scalar()
        conn.commit()  # read-only; a rollback would drop psycopg's prepared statements
    plan = (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]
    nodes = [plan]
    while "Plans" in nodes[-1]:
        nodes.append(nodes[-1]["Plans"][0])
    scan = nodes[-1]
    examined = scan.get("Actual Rows", 0) + scan.get("Rows Removed by Filter", 0) + scan.get("Rows Removed by Index Recheck", 0)
    shape = " -> ".join(n["Node Type"] for n in nodes)
    return [("EXPLAIN of the watermark read", shape, f"index {scan.get('Index Name')}",
             "seq scan: " + ("yes" if any(n["Node Type"] == "Seq Scan" for n in nodes) else "no")),
            ("  rows examined / returned", f"{examined} / {plan.get('Actual Rows')}", "", "target <= 1.1x + boundary")]


def prepared(*engines: sa.Engine) -> list[tuple[str, str, str, str]]:
    """Statements psycopg keeps prepared on the pooled connections after the polls (the read among them)."""
    counts, reads = [], []
    for engine in engines:
        with engine.connect() as conn:
            names = [r[0] for r in conn.exec_driver_sql("SELECT statement FROM pg_prepared_statements")]
            conn.commit()
        counts.append(len(names))
        reads.append(any("ORDER BY" in n and "LIMIT" in n for n in names))
    return [("prepared statements kept across polls", f"mes {counts[0]}, erp {counts[1]}",
             "watermark read prepared: " + ("yes" if reads[0] else "no"), "")]


def catalog_figures(folder: Path, mes_url: str, erp_url: str) -> list[tuple[str, str, str, str]]:
    """The drift gate over 20 flows (20 source tables, 20 staging tables, control tables): one cycle polls each flow."""
    engine = sa.create_engine(mes_url)
    names = [f"work_order_{i}" for i in range(1, TABLES + 1)]
    with engine.begin() as conn:
        for name in names:
            conn.exec_driver_sql(f"CREATE TABLE IF NOT EXISTS production.{name} (LIKE production.work_order INCLUDING ALL)")
    engine.dispose()
    sub = folder / "twenty"
    sub.mkdir(exist_ok=True)
    config_path = common.agent_config(
        sub, {"mes": {"url": mes_url}, "erp": {"url": erp_url, "staging_schema": "staging20"}},
        {f"flow_{i}": common.work_order_flow(f"production.{name}", f"stg_{name}") for i, name in enumerate(names, 1)},
    )
    common.prepare_erp(config_path)
    config = load_config(config_path)
    systems = Systems(config)
    gate = DriftGate(config, systems)
    try:
        counter = common.QueryCounter({"mes gate": gate._engines["mes"], "erp gate": gate._engines["erp"],
                                       "mes": systems.source("mes"), "erp": systems.target("erp")})

        def separate() -> None:  # the long-running mode: each flow's poll checks on its own
            for flow in config.model.flows:
                assert gate(flow) is None

        def cycle() -> None:  # `run --once`: one gate cycle for all flows
            with gate.cycle():
                separate()
        def at_once() -> None:  # the long-running mode: 20 flows on one cadence poll at the same moment
            start = threading.Barrier(len(config.model.flows))

            def poll(flow: str) -> None:
                start.wait()
                assert gate(flow) is None
            threads = [threading.Thread(target=poll, args=(flow,)) for flow in config.model.flows]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        walls, _ = common.repeat(cycle, 20)
        burst_walls, _ = common.repeat(at_once, 10)
        with counter.measure() as queries:
            cycle()
        with counter.measure() as separate_queries:
            separate()
        with counter.measure() as burst_queries:
            at_once()
        dialect = dialects.for_engine(gate._engines["mes"])
        query = CatalogQuery.build("mes", dialect, [WatchedTable("mes", "production", n) for n in names])

        def one_query() -> None:
            with gate._engines["mes"].connect() as conn:
                query.fetch(conn)
                conn.commit()
        single, _ = common.repeat(one_query, 20)
        per_table, multi = references.inspector_catalog(mes_url, "production", names)
    finally:
        gate.close()
        systems.dispose()
    return [
        ("drift gate, 20 flows: catalog queries per cycle", _per_system(queries), "target: 1 per system",
         f"per-flow polls: {_per_system(separate_queries)}"),
        ("  gate cycle over 20 flows", f"{median(walls) * 1000:.1f} ms", "", ""),
        ("drift gate, 20 flows polling at once (long-running)", _per_system(burst_queries), "target: 1 per system",
         f"one check begun after all asked (window: {shared.QUIET * 1000:.0f} ms quiet, <= {shared.WINDOW * 1000:.0f} ms)"),
        ("  20 flows polling at once: gate wall", f"{median(burst_walls) * 1000:.1f} ms", "", ""),
        ("catalog of 20 tables: the agent's one query", f"{median(single) * 1000:.1f} ms",
         f"inspector per table {per_table * 1000:.0f} ms", f"get_multi_* {multi * 1000:.0f} ms"),
    ]



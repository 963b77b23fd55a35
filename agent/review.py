"""SQL for the DBA's review: what `render-sql`, `sql grants` and `sql ddl --dialect` print (no connection needed).

`render-sql` prints, per flow and in the dialect of each system, every statement the agent runs, built by
the same functions the run uses (`read.read_sql`, `write.batch_context`, the templates of `sql/<dialect>/`),
with its bind parameters and what each one holds. Values are never part of a statement's text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass


from agent import recovery
from agent.config import ROW_GONE, FlowConfig, LoadedConfig, OutcomeConfig, duration_text
from agent.dialects import Dialect
from agent.lock_sql import lock_statements as lock_sql
from agent.health.probe import newest_source_sql
from agent.outcome import outcome_source
from agent.read import read_sql, source_sql_for
from agent.staging import (
    StagingColumn, StagingTable, staging_table,
)
from agent.types import ColumnType
from agent.contract import ControlTables
from agent.ddl_offline import ddl_for_dialect, offline_staging_tables, snapshot_types, system_dialect
from agent.write import batch_context, first_try_joins

# `sql ddl --dialect` lives in agent/ddl_offline.py; these names stay importable from here.
__all__ = ["ddl_for_dialect", "offline_staging_tables", "system_dialect"]

_BIND = re.compile(r"(?<![:\w\\]):(\w+)")
_CURSORS = {
    "start": "initial load, first batch (no watermark stored yet)",
    "after": "every next batch: rows strictly after the last row read (keyset)",
    "from": "first batch of a run with `overlap:`: re-read the window behind the stored watermark",
}


@dataclass(frozen=True)
class Statement:
    """One statement the agent runs: where, from which template, why, its text and its bind parameters."""

    system: str
    dialect: str
    template: str
    purpose: str
    sql: str  # as handed to sqlalchemy.text (a plant query's `:` in literals is escaped as `\:`)
    params: tuple[tuple[str, str], ...]  # (name, what it holds), in order of first use

    @property
    def text(self) -> str:
        """The statement as the database receives it."""
        return self.sql.replace("\\:", ":")


def bind_names(sql: str) -> list[str]:
    return list(dict.fromkeys(_BIND.findall(sql)))


def flow_statements(config: LoadedConfig, name: str) -> list[Statement]:
    """Every statement one flow's runs execute, in the order a run executes them."""
    flow = config.model.flows[name]
    source, target = system_dialect(config, flow.source), system_dialect(config, flow.target)
    schema = config.model.systems[flow.target].staging_schema or ""
    meanings = _meanings(name, flow)
    found: list[Statement] = []

    def add(system: str, dialect: Dialect, template: str, purpose: str, sql: str) -> None:
        params = tuple((p, meanings(p)) for p in bind_names(sql))
        found.append(Statement(system, dialect.name, template, purpose, sql, params))

    control = ControlTables.in_schema(target, schema)
    add(flow.target, target, "watermark_select", "the flow's stored watermark, at the start of each run",
        target.render("watermark_select", watermark_table=control.watermark))
    if flow.lag and not flow.rowversion:
        add(flow.source, source, "server_time", f"the MES clock, once per run (rows younger than lag {duration_text(flow.lag)} wait)",
            source.render("server_time"))
    source_sql = source_sql_for(source, flow)
    for cursor in ("start", "after", *(("from",) if flow.overlap else ())):
        add(flow.source, source, "read_batch", f"read, cursor {cursor}: {_CURSORS[cursor]}",
            read_sql(source, flow, source_sql, cursor, bool(flow.lag)))
    batch = "each batch, one ERP transaction"
    _write_statements(add, name, flow, target, schema, batch, first_try=True)
    add(flow.target, target, "quarantine_insert", f"{batch}: rows that failed mapping, with the reason",
        target.render("quarantine_insert", quarantine_table=control.quarantine))
    add(flow.target, target, "watermark_insert", f"{batch}: the flow's first watermark",
        target.render("watermark_insert", watermark_table=control.watermark))
    add(flow.target, target, "watermark_update", f"{batch}: move the watermark forward",
        target.render("watermark_update", watermark_table=control.watermark))
    add(flow.target, target, "run_insert", f"{batch} (and a failed or halted run): its agent_run row",
        target.render("run_insert", run_table=control.run))
    prune = f"every ledger.prune_every ({duration_text(config.model.ledger.prune_every)}) and `ledger prune`"
    add(flow.target, target, "ledger_newest", f"{prune}: the flow's newest agent_ledger entry",
        target.render("ledger_newest", ledger_table=control.ledger))
    add(flow.target, target, "ledger_prune", f"{prune}: forget entries older than ledger.keep ({duration_text(config.model.ledger.keep)})",
        target.render("ledger_prune", ledger_table=control.ledger))
    if not flow.rowversion:
        add(flow.source, source, "source_newest", f"health, after a poll: the newest {flow.watermark[0]} in the source "
            "(lag = it minus the staged watermark; only for a timestamp or date watermark)", newest_source_sql(source, flow))
        families = recovery.families_of(snapshot_types(config, flow)[0])  # `reconcile`, `deletes`, `backfill`
        listed = {(s.template, s.sql) for s in found}
        for role, template, purpose, sql, params in recovery.recovery_statements(name, flow, source, target, schema, families):
            system, dialect = (flow.source, source) if role == "source" else (flow.target, target)
            if (template, sql) in listed:  # the same read or watermark select as the polls': listed once
                continue
            found.append(Statement(system, dialect.name, template, purpose, sql,
                                   tuple((p, params.get(p) or meanings(p)) for p in bind_names(sql))))
    return found


def _write_statements(add: Callable[[str, Dialect, str, str, str], None], name: str, flow: FlowConfig, target: Dialect,
                      schema: str, batch: str, first_try: bool) -> None:
    """The write path of one batch (write.insert_new_rows): batch table, ledger entries, staging rows. `first_try`:
    the batches read after the watermark, which PostgreSQL first tries as all new (replay's never are)."""
    control = ControlTables.in_schema(target, schema)
    staging = _staging_names(name, flow, schema)
    context = batch_context(target, staging, control)
    add(flow.target, target, "drop_batch_table", f"{batch}: drop a batch table a failed batch may have left "
        "(PostgreSQL keeps one per session)", target.render("drop_batch_table", **context))
    add(flow.target, target, "create_batch_table", f"{batch}: the session-private batch table (PostgreSQL: made once "
        "per session)", target.render("create_batch_table", **context))
    add(flow.target, target, "load_batch_table", f"{batch}: load the mapped rows (in bulk: COPY, LOAD DATA or multi-row "
        "inserts)", target.load_batch_sql(context["batch_table"], staging.insert_columns, staging.bind_types()))
    joins_first = first_try and first_try_joins(context)
    analyze = (f"{batch}: statistics of the loaded batch table, for the statements that join it (PostgreSQL only"
               + (")" if not first_try or joins_first else "; only after a refused first try)"))
    if not first_try or joins_first:
        add(flow.target, target, "analyze_batch_table", analyze, target.render("analyze_batch_table", **context))
    if first_try:
        add(flow.target, target, "write_staging_new", f"{batch} read after the watermark: first try, in a savepoint "
            "(PostgreSQL only): ledger entries and staging rows of a batch none of whose rows was staged before; "
            "agent_ledger's unique key refuses it when one was, and the statements below run instead",
            target.render("write_staging_new", **context))
    if first_try and not joins_first:
        add(flow.target, target, "analyze_batch_table", analyze, target.render("analyze_batch_table", **context))
    add(flow.target, target, "ledger_insert", f"{batch}: record in agent_ledger the rows not staged before (re-reads are "
        "skipped, whatever the import job did to the staging rows; on PostgreSQL part of write_staging)",
        target.render("ledger_insert", **context))
    add(flow.target, target, "write_staging", f"{batch}: append exactly the rows the ledger just recorded (PostgreSQL: "
        "the ledger entries and the staging rows in one statement)", target.render("write_staging", **context))
    add(flow.target, target, "drop_batch_table", f"{batch}: drop the batch table (PostgreSQL: the commit empties it)",
        target.render("drop_batch_table", **context))


def quarantine_statements(config: LoadedConfig, name: str) -> list[Statement]:
    """What `mes-erp-agent quarantine list` and `quarantine replay` run for one flow (replay never reads the MES
    rows again, nor the watermark: it maps the source rows agent_quarantine stored)."""
    flow = config.model.flows[name]
    target = system_dialect(config, flow.target)
    schema = config.model.systems[flow.target].staging_schema or ""
    control = ControlTables.in_schema(target, schema)
    general = _meanings(name, flow)
    meanings = {
        "batch_size": f"{flow.batch_size} (batch_size: quarantined rows per replay page)",
        "after_id": "the last quarantine_id of the previous page (0 at first)",
        "source_key": "the key of a quarantined row that maps now",
        "quarantine_id": "the quarantined row's id",
        "replayed_at": "now (UTC)",
        "replay_outcome": "'staged', or 'superseded' (a newer version of the key is staged)",
        "reason": "why the row still fails, with the current mapping",
        "batch_id": "the replay page's batch id (agent_run.batch_id, stg_batch_id)",
        "rows_duplicate": "rows of the page the ledger already had (staged by the running agent or another replay)",
    }
    found: list[Statement] = []

    def add(system: str, dialect: Dialect, template: str, purpose: str, sql: str) -> None:
        params = tuple((p, meanings.get(p) or general(p)) for p in bind_names(sql))
        found.append(Statement(system, dialect.name, template, purpose, sql, params))

    def render(template: str) -> str:
        return target.render(template, quarantine_table=control.quarantine, ledger_table=control.ledger)

    add(flow.target, target, "quarantine_list", "`quarantine list`: the flow's quarantined rows", render("quarantine_list"))
    add(flow.target, target, "replay_pending", "`quarantine replay`: the next page of rows not replayed yet",
        render("replay_pending"))
    add(flow.target, target, "replay_ledger_versions", "`quarantine replay`, per row that maps now: the versions of its "
        "key already staged (an older version is never staged after a newer one)", render("replay_ledger_versions"))
    page = "`quarantine replay`, each page, one ERP transaction"
    _write_statements(add, name, flow, target, schema, page, first_try=False)
    add(flow.target, target, "replay_mark", f"{page}: mark the rows staged or superseded", render("replay_mark"))
    add(flow.target, target, "replay_reason", f"{page}: the new reason of a row that still fails", render("replay_reason"))
    add(flow.target, target, "run_insert", f"{page}: its agent_run row", target.render("run_insert", run_table=control.run))
    return found


def lock_statements(config: LoadedConfig, name: str) -> list[Statement]:
    """The flow's lock and agent_holder (agent/lock_sql.py)."""
    return [Statement(system, dialect, template, purpose, sql, params)
            for system, dialect, template, purpose, sql, params in lock_sql(config, name)]


def status_statements(config: LoadedConfig, name: str) -> list[Statement]:
    """What `mes-erp-agent status` reads for one flow (after watermark_select)."""
    flow = config.model.flows[name]
    target = system_dialect(config, flow.target)
    schema = config.model.systems[flow.target].staging_schema or ""
    control = ControlTables.in_schema(target, schema)
    meanings = _meanings(name, flow)
    source = outcome_source(config, name, target)
    outcome = [("outcome_counts", "the import outcome: pending rows and the oldest one, rows in error, rows staged in "
                "agent_ledger (done: staged minus both; also the running agent's check every alerts.check_every, and "
                "/metrics)", source.counts_sql())] if source else []
    return [
        Statement(flow.target, target.name, template, "status: " + purpose, sql,
                  tuple((p, meanings(p)) for p in bind_names(sql)))
        for template, purpose, sql in (
            ("status_totals", "rows moved and quarantined", target.render("status_totals", run_table=control.run)),
            ("status_last_run", "the last run", target.render("status_last_run", run_table=control.run)),
            *outcome,
            ("status_quarantine", "rows in agent_quarantine now (also the running agent's quarantine check)",
             target.render("status_quarantine", quarantine_table=control.quarantine)),
        )
    ]


def outcome_statements(config: LoadedConfig, name: str) -> list[Statement]:
    """The rows in error (the running agent's import-error check, `outcomes`) and `outcomes --resubmit`."""
    flow = config.model.flows[name]
    target = system_dialect(config, flow.target)
    source = outcome_source(config, name, target)
    if source is None:
        return []
    meanings = _meanings(name, flow)
    found = [("outcome_errors", "the rows in error with the ERP's messages: the running agent's check every "
              "alerts.check_every (only while rows are in error or an import-error incident is open), and "
              "`mes-erp-agent outcomes`", source.errors_sql())]
    if source.resubmit:
        found += [("outcome_errors", "`outcomes --resubmit KEY...`: the rows in error with the keys given, listed in "
                   "its transaction before the update (one :key_N per KEY)", source.errors_sql(keys=1)),
                  ("outcome_resubmit", "`outcomes --resubmit KEY...`, a person's command: the flow's `resubmit:` on "
                   "its rows in error with the keys given (one :key_N per KEY)", source.resubmit_sql(keys=1))]
    return [Statement(flow.target, target.name, template, purpose, sql, tuple((p, meanings(p)) for p in bind_names(sql)))
            for template, purpose, sql in found]


def startup_statements(config: LoadedConfig, only: str | None = None) -> list[Statement]:
    """Per system, before any flow runs: the privilege check, and the drift gate's catalog reads."""
    flows = config.flows(only)
    targets = {flow.target for flow in flows.values()}
    found = []
    for system in sorted(targets | {flow.source for flow in flows.values()}):
        dialect = system_dialect(config, system)
        sql = dialect.render("privilege_check")
        if sql:
            staging = config.model.systems[system].staging_schema if system in targets else None
            meaning = f"{staging!r} (staging schema)" if staging else "'' (the agent only reads this system)"
            found.append(Statement(system, dialect.name, "privilege_check", "start-up: what this login may do beyond "
                                   "its grants (run warns, or refuses with --strict-privileges)", sql,
                                   tuple((p, meaning) for p in bind_names(sql))))
        found += _drift_statements(config, system, dialect, only)
    return found


def _drift_statements(config: LoadedConfig, system: str, dialect: Dialect, only: str | None) -> list[Statement]:
    """The drift gate's catalog queries (agent/drift): the same CatalogQuery the gate builds."""
    from agent.catalog.query import CatalogQuery
    from agent.drift.watch import watched_tables

    tables = watched_tables(config, system, only)
    if not tables:
        return []
    query = CatalogQuery.build(system, dialect, tables)
    sql = query.statement.text
    params = tuple((p, f"{query.params[p]!r}") for p in bind_names(sql))
    statements = [Statement(system, dialect.name, "catalog", "drift gate, before every run: the watched tables' "
                            "columns, keys and indexes (one catalog query)", sql, params)]
    version = dialect.render("server_version")
    statements.append(Statement(system, dialect.name, "server_version", "schema snapshot: the server's version",
                                version, ()))
    return statements


def render_sql_text(config: LoadedConfig, only: str | None = None) -> str:
    """The document a DBA signs off: every statement, per flow, with its bind parameters."""
    flows = config.flows(only)
    parts = [
        f"-- mes-erp-agent render-sql -c {config.path}" + (f" --flow {only}" if only else ""),
        "-- Every statement the agent runs, in each system's own SQL. Values are bind parameters (:name), never",
        "-- part of the text. The definitions of the flows' tables are read with the catalog query below (once per",
        "-- table at start-up, and by the drift gate before every run); the agent runs no other SQL. Drivers",
        "-- receive :name in their own style (%(name)s, ?); psycopg",
        "-- adds a type cast to typed parameters (%(name)s::TIMESTAMP WITHOUT TIME ZONE).",
    ]
    parts += _section("start-up, once per system", startup_statements(config, only))
    for name, flow in flows.items():
        source, target = system_dialect(config, flow.source), system_dialect(config, flow.target)
        title = f"flow {name}: {flow.source} ({source.name}) -> {flow.target} ({target.name})"
        parts += _section(title, flow_statements(config, name))
        parts += _section(f"flow {name}: its lock (one agent moves the flow; several agents may run)",
                          lock_statements(config, name))
        parts += _section(f"`mes-erp-agent status`, flow {name}", status_statements(config, name))
        outcomes = outcome_statements(config, name)
        if outcomes:
            parts += _section(f"import outcomes, flow {name}: the running agent's check and `mes-erp-agent outcomes`",
                              outcomes)
        parts += _section(f"`mes-erp-agent quarantine list|replay`, flow {name}", quarantine_statements(config, name))
    return "\n".join(parts) + "\n"


def _section(title: str, statements: list[Statement]) -> list[str]:
    lines = ["", "-- " + "=" * 100, f"-- {title}", "-- " + "=" * 100]
    for number, s in enumerate(statements, start=1):
        lines += ["", f"-- {number}. {s.purpose}", f"--    system {s.system} ({s.dialect}), template sql/{s.dialect}/{s.template}.sql"]
        if s.params:
            width = max(len(p) for p, _ in s.params) + 1
            lines += [f"--    :{p.ljust(width)} {meaning}" for p, meaning in s.params]
        else:
            lines.append("--    no bind parameters")
        lines.append(s.text + ";")
    return lines


def _meanings(name: str, flow: FlowConfig) -> Callable[[str], str]:
    watermark = flow.watermark
    outcome = flow.import_outcome
    insert_columns = _staging_names(name, flow, "").insert_columns
    probe = "; 0 once at start-up, to check the query runs" if flow.query else ""
    fixed = {
        "batch_size": f"{flow.batch_size} (batch_size{probe})",
        "lower_bound": f"stored {watermark[0]} minus overlap {duration_text(flow.overlap)}",
        "upper_bound": f"MES clock minus lag {duration_text(flow.lag)}",
        "flow": f"{name!r}",
        "source_key": "the row's key values as text (key: " + ", ".join(flow.key) + ")",
        "source_version": "the row's watermark values as text (" + ", ".join(watermark) + ")",
        "batch_id": "the batch's id",
        "source_row": "the source row as JSON",
        "reason": "why the row was quarantined",
        "watermark_columns": "the watermark column names as JSON",
        "watermark_values": "the watermark values as typed JSON",
        "updated_at": "now (UTC)",
        "revision": "the watermark revision read at the start (another agent moving it fails the batch)",
        "started_at": "batch start (UTC)",
        "finished_at": "batch end (UTC)",
        "watermark_before": "watermark before the batch (text)",
        "watermark_after": "watermark after the batch (text)",
        "outcome": "'ok', 'failed' or 'halted'",
        "message": "what went wrong, if anything",
        "staged_at": "now (UTC): when the agent staged the row",
        "cutoff": "the flow's newest agent_ledger entry minus ledger.keep (UTC)",
        "max_rows": "rows listed at most: 1000 (the running agent's check), `outcomes --limit` (default 1000)",
    }

    def meaning(param: str) -> str:
        if param in fixed:
            return fixed[param]
        if param.startswith("wm_") and param[3:].isdigit() and int(param[3:]) < len(watermark):
            return f"{watermark[int(param[3:])]} of the last row read"
        if param.startswith("p") and param[1:].isdigit() and int(param[1:]) < len(insert_columns):
            return f"staging column {insert_columns[int(param[1:])]} of each row (executemany)"
        if outcome is not None and (found := _outcome_meaning(outcome, param)):
            return found
        if param.startswith("rows_"):
            return f"the batch's {param.replace('_', ' ')}"
        return "see the template"

    return meaning


def _outcome_meaning(outcome: OutcomeConfig, param: str) -> str | None:
    """:pending_N, :done_N, :error_N (status values), :set_N (`resubmit:` values), :key_N (--resubmit's KEYs)."""
    kind, _, number = param.rpartition("_")
    if not number.isdigit():
        return None
    index = int(number)
    lists = {"pending": outcome.pending, "done": [] if outcome.done == ROW_GONE else outcome.done, "error": outcome.error}
    if kind in lists and index < len(lists[kind]):
        return f"{lists[kind][index]!r} (outcome.{kind}, as the status column {outcome.status_column} holds it)"
    if kind == "set" and outcome.resubmit and index < len(outcome.resubmit):
        column, value = list(outcome.resubmit.items())[index]
        return f"{'NULL' if value is None else repr(value)} (outcome.resubmit: {column})"
    if kind == "key":
        return "a KEY given to `outcomes --resubmit` (the key as `outcomes` lists it; several columns joined by |)"
    return None



def _staging_names(name: str, flow: FlowConfig, schema: str) -> StagingTable:
    """The staging table's names only (the text of the batch statements does not depend on column types)."""
    columns = tuple(StagingColumn(c, ColumnType("text"), True) for c in flow.columns)
    return staging_table(name, flow, schema, columns)

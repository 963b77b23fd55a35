"""Cross-checks between sections of a validated configuration, each problem as `file:line: message`.

A flow's systems exist and differ, its staging table lies in the target's staging schema (never a core
schema), its query file is one read-only SELECT with every column the flow reads (agent/source_query.py),
and `rowversion:` is only used where the database has one.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

from agent import dialects, source_query
from agent.config.loaded import LoadedConfig, suggest
from agent.config.basics import IDENTIFIER_PATTERN, NAME_PATTERN
from agent.config.models import FlowConfig, SystemConfig, split_table
from agent.config.interface import RECONCILE_MARGIN



def cross_check(loaded: LoadedConfig) -> list[str]:
    model, problems = loaded.model, []
    system_dialects = {}
    for name, system in model.systems.items():
        try:
            system_dialects[name] = dialects.for_url(make_url(system.url))
        except ValueError as exc:
            problems.append(f"{loaded.where('systems', name, 'url')}: {exc}")
    for name, flow in model.flows.items():
        at = ("flows", name)
        if not NAME_PATTERN.match(name):
            problems.append(f"{loaded.where(*at)}: flow name {name!r} must use only a-z, 0-9 and _")
        for role in ("source", "target"):
            system = getattr(flow, role)
            if system not in model.systems:
                problems.append(
                    f"{loaded.where(*at, role)}: `{role}: {system}` is not a system under `systems:`"
                    f"{suggest(system, model.systems)}"
                )
        if flow.source == flow.target:
            problems.append(f"{loaded.where(*at, 'target')}: a flow's source and target must be different systems")
        target = model.systems.get(flow.target)
        if target is not None:
            problems.extend(_check_staging_target(loaded, name, flow, target, system_dialects.get(flow.target)))
        source_dialect = system_dialects.get(flow.source)
        if flow.query is not None and not _is_file(loaded.resolve(flow.query)):
            problems.append(f"{loaded.where(*at, 'query')}: query file {loaded.resolve(flow.query)} does not exist")
        elif flow.query is not None and source_dialect is not None:
            problems.extend(_check_query(loaded, name, flow, source_dialect))
        if flow.rowversion and source_dialect is not None:
            problems.extend(_check_rowversion(loaded, name, flow, source_dialect))
        for column in flow.watermark + flow.key:
            if not IDENTIFIER_PATTERN.match(column):
                problems.append(f"{loaded.where(*at)}: column {column!r} is not a plain identifier")
        if flow.overlap and flow.overlap.total_seconds() < 0:
            problems.append(f"{loaded.where(*at, 'overlap')}: overlap cannot be negative")
        problems.extend(_check_ledger_keep(loaded, name, flow))
        problems.extend(_check_recovery(loaded, name, flow))
    return problems


def _check_ledger_keep(loaded: LoadedConfig, name: str, flow: FlowConfig) -> list[str]:
    """agent_ledger must remember a staged row for as long as a poll (or a reconcile pass) can read it again."""
    keep, window = loaded.model.ledger.keep, flow.overlap + flow.lag
    if flow.reconcile is not None:
        reconciled = window + flow.reconcile.window + RECONCILE_MARGIN
        if keep > reconciled:
            return []
        return [f"{loaded.where('ledger', 'keep')}: `ledger: {{keep: ...}}` ({keep}) must be longer than flow {name}'s "
                f"reconcile window plus overlap plus lag plus a day's margin for the MES clock ({reconciled}), or rows "
                "the reconcile pass compares would no longer be known as staged and would be staged again; raise "
                "`keep:` or shorten `reconcile: {window: ...}`"]
    if keep > window:
        return []
    return [f"{loaded.where('ledger', 'keep')}: `ledger: {{keep: ...}}` ({keep}) must be longer than flow {name}'s "
            f"overlap plus lag ({window}), or rows it re-reads would no longer be known as staged; raise `keep:`"]


def _check_recovery(loaded: LoadedConfig, name: str, flow: FlowConfig) -> list[str]:
    """`reconcile:` and `deletes:` compare buckets of a timestamp watermark; a vendor table needs a delete mapping."""
    problems = []
    for key in ("reconcile", "deletes"):
        if getattr(flow, key) is not None and flow.rowversion:
            problems.append(f"{loaded.where('flows', name, key)}: `{key}:` compares buckets of the first watermark "
                            f"column's time, but flow {name} has a rowversion watermark; remove `{key}:`")
    deletes = flow.deletes
    if deletes is None:
        return problems
    where = loaded.where("flows", name, "deletes")
    if deletes.detect and flow.vendor_layout and not deletes.constants:
        problems.append(f"{where}: flow {name} writes the ERP vendor's interface table (layout: vendor), which has no "
                        "stg_change column to mark a deletion: say how its import job recognises one with "
                        "`deletes: {detect: true, constants: {COLUMN: value}}` (e.g. a transaction type), or remove "
                        "`detect: true`")
    if deletes.detect:
        for column, mapping in flow.columns.items():
            if (mapping.required and mapping.source not in flow.key and mapping.default is None
                    and column not in deletes.constants):
                problems.append(f"{where}: flow {name}'s tombstones fill only the columns that come from the key, "
                                f"constants and defaults, but staging column `{column}` is `required: true` (NOT NULL); "
                                f"give it a `default:` or a value under `deletes: {{constants: {{{column}: ...}}}}`")
    for column in deletes.constants:
        if column not in flow.columns:
            problems.append(f"{loaded.where('flows', name, 'deletes', 'constants', column)}: `{column}` is not a staging "
                            f"column under flow {name}'s `columns:`; a tombstone writes only those"
                            f"{suggest(column, flow.columns)}")
    return problems


def _check_staging_target(
    loaded: LoadedConfig, name: str, flow: FlowConfig, target: SystemConfig, dialect: dialects.Dialect | None
) -> list[str]:
    at = ("flows", name)
    if target.staging_schema is None:
        return [
            f"{loaded.where('systems', flow.target)}: system `{flow.target}` is the target of flow `{name}` "
            "but has no `staging_schema:` (the only schema the agent may write to)"
        ]
    problems = []
    schema, table = split_table(flow.staging_table)
    if schema is not None and schema != target.staging_schema:
        problems.append(
            f"{loaded.where(*at, 'staging_table')}: staging table {flow.staging_table!r} is outside the staging "
            f"schema {target.staging_schema!r}; the agent writes only to {target.staging_schema}.<table>"
        )
    if not IDENTIFIER_PATTERN.match(table):
        problems.append(f"{loaded.where(*at, 'staging_table')}: {table!r} is not a plain identifier")
    staging = target.staging_schema.lower()
    where = loaded.where("systems", flow.target, "staging_schema")
    if staging in (s.lower() for s in target.protected_schemas):
        problems.append(
            f"{where}: staging schema {target.staging_schema!r} is listed under protected_schemas (ERP core tables); "
            f"choose a dedicated staging schema"
        )
    elif (dialect is not None and staging in (s.lower() for s in dialect.protected_schemas(make_url(target.url)))
          and staging not in (s.lower() for s in target.allow_staging_in)):
        problems.append(
            f"{where}: staging schema {target.staging_schema!r} is a core schema of the {dialect.name} database "
            f"(protected by default: {', '.join(dialect.protected_schemas(make_url(target.url)))}); use a "
            f"dedicated staging schema such as `staging`, or, if the DBA wants the staging tables there, opt in "
            f"explicitly with `allow_staging_in: [{target.staging_schema}]` under systems.{flow.target}"
        )
    return problems


def _check_query(loaded: LoadedConfig, name: str, flow: FlowConfig, dialect: dialects.Dialect) -> list[str]:
    """The query file is one read-only SELECT with every column the flow reads (file:line for each problem)."""
    assert flow.query is not None
    at = f"(query of flow {name}, {loaded.where('flows', name, 'query')})"
    found = source_query.check(flow.query, dialect)
    if found:
        return [f"{problem} {at}" for problem in found]
    query = source_query.load(flow.query, dialect)
    problems = []
    if query.uses_with and not dialect.derived_table_allows_with:
        problems.append(f"{query.where(1)}: WITH (a CTE) cannot stand inside a derived table on {dialect.name}, and "
                        f"the agent reads the query as one; write the CTE as a subquery in FROM {at}")
    select_line = min((o.line for o in query.outputs), default=1)
    for column in flow.source_columns:
        output = query.output(column, dialect)
        role = "watermark" if column in flow.watermark else "key" if column in flow.key else "mapped"
        if output is None:
            names = ", ".join(o.name for o in query.outputs)
            problems.append(f"{query.where(select_line)}: the query has no output column {column!r}, which flow {name} "
                            f"reads as a {role} column (its columns: {names}) {at}")
        elif output.origin is None and column in flow.watermark:
            problems.append(f"{query.where(output.line)}: watermark column {column!r} is an expression; the keyset read "
                            f"needs a plain table column (with an index) {at}")
    for staging, mapping in flow.columns.items():
        output = query.output(mapping.source, dialect) if mapping.source else None
        if output is not None and output.origin is None and mapping.type is None and mapping.map is None:
            problems.append(f"{query.where(output.line)}: {output.name!r} is an expression, so the agent cannot learn "
                            f"its type; give staging column {staging!r} a `type:` {at}")
    return problems


def _check_rowversion(loaded: LoadedConfig, name: str, flow: FlowConfig, dialect: dialects.Dialect) -> list[str]:
    where = loaded.where("flows", name, "rowversion")
    if not dialect.supports_rowversion_watermark:
        return [f"{where}: `rowversion: true` is for SQL Server rowversion columns; system {flow.source} is {dialect.name}"]
    problems = []
    for key in ("lag", "overlap"):
        if getattr(flow, key):
            problems.append(f"{loaded.where('flows', name, key)}: `{key}:` measures time, but flow {name} has a rowversion "
                            f"watermark: MIN_ACTIVE_ROWVERSION() already keeps reads behind transactions in flight; "
                            f"remove `{key}:`")
    return problems


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # e.g. a name longer than the file system allows: not a file the agent can read either
        return False

"""`mes-erp-agent outcomes`: the rows the ERP import job rejected, per flow, with the ERP's message and the MES row
each came from; and `outcomes --resubmit`, the flow's declared `resubmit:` on its rows in error with given keys.

The statements are agent/outcome.py's (`outcome_counts.sql`, `outcome_errors.sql`, `outcome_resubmit.sql`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from agent.config import LoadedConfig
from agent.connect import Systems
from agent.errors import AgentError, ConfigError, SecretUnavailable
from agent.outcome import ErrorRow, OutcomeSource, describe_key, key_values, live_types, outcome_source

DEFAULT_LIMIT = 1000  # rows in error listed per flow
_RESUBMIT_LISTED = 100_000  # rows in error with the given keys, listed before the update (every version of each)


def source_for(config: LoadedConfig, systems: Systems, name: str) -> OutcomeSource | None:
    """The flow's OutcomeSource with its staging table's live column types (one catalog query)."""
    flow = config.model.flows[name]
    if flow.import_outcome is None:
        return None
    dialect, schema = systems.dialect(flow.target), config.model.systems[flow.target].staging_schema or ""
    return outcome_source(config, name, dialect, live_types(systems.target(flow.target), dialect, schema,
                                                          flow.staging_table_name))


def read_outcomes(config: LoadedConfig, systems: Systems, name: str, limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    """One flow's counts and rows in error (`outcomes --json`); `error` instead when its database cannot be read."""
    flow = config.model.flows[name]
    schema = config.model.systems[flow.target].staging_schema or ""
    found: dict[str, Any] = {
        "flow": name, "system": flow.target, "table": f"{schema}.{flow.staging_table_name}", "layout": flow.layout,
        "source": flow.table or str(flow.query), "source_system": flow.source, "key_columns": list(flow.key),
        "watched": flow.import_outcome is not None,
    }
    try:
        source = source_for(config, systems, name)
        if source is None:
            return found
        with systems.target(flow.target).connect() as conn:
            counts = source.counts(conn)
            rows = source.errors(conn, limit) if counts.error_rows else []
    except SecretUnavailable:  # a configuration error (exit 2), not a database that is down
        raise
    except (sa.exc.SQLAlchemyError, AgentError, OSError) as exc:
        return {**found, "error": _first_line(exc), "url": config.redacted_url(flow.target)}
    return {
        **found, "status_column": source.outcome.status_column, "error_statuses": list(source.outcome.error),
        "pending_rows": counts.pending_rows, "error_rows": counts.error_rows, "done_rows": counts.done_rows,
        "rows": [row_dict(config, name, r, source) for r in rows],
    }


def row_dict(config: LoadedConfig, name: str, row: ErrorRow, source: OutcomeSource) -> dict[str, Any]:
    flow = config.model.flows[name]
    values = key_values(row.source_key)
    key = dict(zip(flow.key, values, strict=True)) if len(values) == len(flow.key) else {"key": row.source_key}
    return {
        "source_key": row.source_key, "key": key, "key_text": describe_key(flow, row.source_key),
        "source_version": row.source_version, "status": row.status, "error": row.error_text,
        "messages": list(row.messages), "staged_at": row.staged_at.isoformat() if row.staged_at else None,
        "row_id_column": source.reference or "stg_id", "row_id": row.row_id,
    }


@dataclass(frozen=True)
class Resubmitted:
    source: OutcomeSource
    rows: list[ErrorRow]  # the rows in error with the keys, before the update
    updated: int  # rows the update changed
    missing: list[str]  # keys with no row in error


def resubmit_refusal(config: LoadedConfig, name: str) -> str | None:
    """Why `outcomes --resubmit` refuses this flow (a configuration error naming the line), or None."""
    flow = config.model.flows[name]
    outcome = flow.import_outcome
    where = config.where("flows", name, "outcome", "resubmit")
    if outcome is None or outcome.resubmit is None:
        declared = "its `outcome:` declares no `resubmit:`" if flow.outcome is not None else (
            "it declares no `outcome:` with `resubmit:`")
        example = ("{PROCESS_FLAG: 1, ERROR_CODE: null, ERROR_EXPLANATION: null}" if flow.vendor_layout
                   else "{stg_status: PENDING, stg_error: null}")
        return (f"{where}: flow {name}: {declared}, so the agent changes nothing in its staging table "
                f"{flow.staging_table}. Resubmit the rows in the ERP, or declare the ERP's own procedure under "
                f"`outcome:`, e.g. `resubmit: {example}` (see examples/)")
    if not outcome.error:
        return f"{where}: flow {name}: its `outcome:` lists no `error:` statuses, so no row of it is ever in error"
    return None


def resubmit(config: LoadedConfig, systems: Systems, name: str, keys: Sequence[str]) -> Resubmitted:
    """The flow's `resubmit:` on its rows in error with these keys, in one ERP transaction."""
    refusal = resubmit_refusal(config, name)
    if refusal is not None:
        raise ConfigError([refusal])
    source = source_for(config, systems, name)
    assert source is not None
    keys = list(dict.fromkeys(keys))
    with systems.target(config.model.flows[name].target).begin() as conn:
        rows = source.errors(conn, _RESUBMIT_LISTED, keys)
        updated = source.resubmit_rows(conn, keys)
    found = {r.source_key for r in rows}
    return Resubmitted(source, rows, updated, [k for k in keys if k not in found])


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

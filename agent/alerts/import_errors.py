"""The ERP import-error incident: rows of a flow the ERP's import job rejected, with the ERP's own messages.

Granularity: one incident per wave of failures. The running agent's check lists the flow's rows in error; the
rows that no open incident of the flow lists yet open one new incident, which names each of them (up to
LISTED_ROWS in its text, every one in its data): key, version, the MES row it came from and the ERP's message.
An incident resolves when none of its rows is in error any more (resubmitted and taken, consumed, or removed).
So a set of failures is told once, however many checks see it (and across restarts: the outbox keeps the
incident and its rows), and a row that fails later is told when it fails.
Key: `import_errors:<flow>:<row>`, where <row> is the first row's agent_ledger entry id (vendor layout) or stg_id.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.alerts.kinds import Resolved, _iso, _short
from agent.alerts.model import Incident, utc
from agent.config import FlowConfig
from agent.outcome import ErrorRow, describe_key

KIND = "import_errors"
LISTED_ROWS = 20  # rows named in an incident's text; its data has all of them


def incident_rows(incident: Incident) -> set[int]:
    """The row ids an open import-error incident lists."""
    return {int(row[0]) for row in incident.data.get("rows", [])}


def import_errors(name: str, flow: FlowConfig, system: str, table: str, error_words: str, rows: Sequence[ErrorRow],
                  in_error: int, now: dt.datetime, config: Path) -> Incident:
    first = rows[0]
    n = len(rows)
    source = flow.table or f"the query {flow.query}"
    listed = []
    for row in rows[:LISTED_ROWS]:
        staged = f" (staged {utc(row.staged_at)})" if row.staged_at else ""
        listed += [f"  key {describe_key(flow, row.source_key)}, version {row.source_version}{staged}",
                   f"    ERP message: {row.error_text}"]
    if n > LISTED_ROWS:
        listed.append(f"  ... and {n - LISTED_ROWS} more: mes-erp-agent outcomes -c {config} --flow {name}")
    outcome = flow.import_outcome
    resubmit = outcome.resubmit if outcome else None
    if resubmit:
        sets = [f"{column} = {'NULL' if value is None else value}" for column, value in resubmit.items()]
        step = [*_wrapped("  3. Hand a fixed row back to the import job (the flow's `resubmit:` sets ", sets, "):"),
                f"       mes-erp-agent outcomes -c {config} --flow {name} --resubmit {first.source_key}"]
    else:
        step = ["  3. This flow declares no `resubmit:`: resubmit or remove the rows in the ERP, as its import job's",
                "     procedure says (or declare `resubmit:` under the flow's `outcome:`)."]
    body = "\n".join([
        f"ERP IMPORT ERRORS: {name}",
        f"The ERP import job rejected {_rows(n)} of flow {name} in {table} on system {system} ({error_words}); "
        f"{_rows(in_error)} of the flow {'is' if in_error == 1 else 'are'} in error now ({utc(now)}).",
        f"{'It' if n == 1 else 'Each'} came from {source} on system {flow.source}:",
        "",
        *listed,
        "",
        "Nothing is lost: each row stays where the import job left it, and the agent never stages it again.",
        "",
        "What to do:",
        "  1. Read the ERP's message; fix the cause in the ERP (item, organization, period...) or in the MES (a",
        "     corrected MES row is a new version and is staged like any change).",
        "  2. List every row of the flow in error with:",
        f"       mes-erp-agent outcomes -c {config} --flow {name}",
        *step,
        "  4. This incident resolves when " + ("this row is no longer in error." if n == 1
                                               else "none of these rows is in error any more."),
    ])
    if n == 1:
        title = f"ERP import error on {table}: flow {name}, key {first.source_key}: {_short(first.error_text)}"
    else:
        title = f"ERP import errors on {table}: {n} rows of flow {name}, first key {first.source_key}: {_short(first.error_text)}"
    data: dict[str, Any] = {
        "event": "opened", "kind": KIND, "flow": name, "system": system, "table": table, "in_error": in_error,
        "since": _iso(now), "rows": [[r.row_id, r.source_key, r.source_version, r.error_text] for r in rows],
    }
    return Incident(kind=KIND, key=f"{KIND}:{name}:{first.row_id}", title=title, body=body, opened_at=now, flow=name,
                    system=system, table=table, data=data)


def import_errors_resolved(incident: Incident, in_error: int, at: dt.datetime) -> Resolved:
    rows = incident.data.get("rows", [])
    keys = ", ".join(dict.fromkeys(str(r[1]) for r in rows[:LISTED_ROWS]))
    more = f" and {len(rows) - LISTED_ROWS} more" if len(rows) > LISTED_ROWS else ""
    which = f"key {keys}" if len(rows) == 1 else f"{len(rows)} rows, keys {keys}{more}"
    one = len(rows) == 1
    body = "\n".join([
        f"ERP IMPORT ERRORS CLEARED: {incident.flow}",
        f"{'The row' if one else 'The rows'} of flow {incident.flow} the ERP import job rejected in {incident.table} "
        f"({which}) {'is' if one else 'are'} no longer in error since {utc(at)} (resubmitted, consumed or removed); "
        f"{'it was' if one else 'they were'} reported at {utc(incident.opened_at)}.",
        f"{_rows(in_error).capitalize()} of the flow {'is' if in_error == 1 else 'are'} in error now.",
        "Nothing more to do; the agent alerts again if it happens again.",
    ])
    return Resolved(incident.key, f"ERP import errors cleared on {incident.table}: flow {incident.flow}, {which}", body,
                    {"event": "resolved", "kind": KIND, "flow": incident.flow, "in_error": in_error,
                     "resolved_at": _iso(at)}, at)


def _wrapped(head: str, items: Sequence[str], tail: str, width: int = 110) -> list[str]:
    """`head` then the items joined by `, ` then `tail`, wrapped between items (continuation lines indented)."""
    lines, line = [], head
    for i, item in enumerate(items):
        piece = item + (", " if i < len(items) - 1 else tail)
        if len(line) + len(piece.rstrip()) > width and line.strip():
            lines.append(line.rstrip())
            line = "     "
        line += piece
    return [*lines, line]


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"

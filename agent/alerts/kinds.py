"""The incidents of the long-running agent besides drift, as values for the IncidentBook (plain words, like the drift report).

Each says what happened, where (flow, system, table), since when, and what to do next; its resolution says
when it ended. Keys: `flow_failing:<flow>`, `quarantine:<flow>`, `backlog:<flow>`, `config_rejected`, `late_rows:<flow>`,
`outcome_unreadable:<flow>`;
the ERP's import errors are in import_errors.py (`import_errors:<flow>:<row>`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from agent.alerts.model import Incident, utc


@dataclass(frozen=True)
class Resolved:
    """What IncidentBook.resolve sends: title, body and the facts for machines."""

    key: str
    title: str
    body: str
    data: dict
    at: dt.datetime


def flow_failing(flow: str, system: str | None, table: str, error: str, since: dt.datetime, failing_for: dt.timedelta,
                 attempts: int, config: Path) -> Incident:
    where = f"system {system}" if system else "its source or target system"
    body = "\n".join([
        f"FLOW FAILING: {flow}",
        f"Flow {flow} ({table}) has failed every poll since {utc(since)} ({attempts} attempts, longer than "
        f"alerts.failing_for = {_duration(failing_for)}).",
        f"Last error, on {where}: {error}",
        "",
        "No rows are lost: the flow resumes from its committed watermark by itself when the database is back,",
        "and no half-written batch is ever visible in staging. Other flows keep running.",
        "",
        "What to do:",
        f"  1. Check that {where} is up and accepts the agent's login (network, password, account locked,",
        "     database restarting, disk full).",
        "  2. See the flow's state at any time with:",
        f"       mes-erp-agent status -c {config}",
        "  3. Nothing else: a recovery message follows when the flow polls successfully again.",
    ])
    return Incident(
        kind="flow_failing", key=f"flow_failing:{flow}", title=f"Flow {flow} failing on {where}: {_short(error)}",
        body=body, opened_at=since, flow=flow, system=system, table=table,
        data={"event": "opened", "kind": "flow_failing", "flow": flow, "system": system, "table": table,
              "error": error, "since": _iso(since), "attempts": attempts},
    )


def flow_recovered(incident: Incident, at: dt.datetime, attempts: int) -> Resolved:
    flow = incident.flow or ""
    lasted = _duration(at - incident.opened_at)
    body = "\n".join([
        f"FLOW RECOVERED: {flow}",
        f"Flow {flow} ({incident.table}) polls successfully again since {utc(at)}; it had failed since "
        f"{utc(incident.opened_at)} ({lasted}, {attempts} failed attempts).",
        "It resumed from its committed watermark: every change made meanwhile is staged once.",
        "Nothing more to do; the agent alerts again if it happens again.",
    ])
    return Resolved(incident.key, f"Flow {flow} recovered", body,
                    {"event": "resolved", "kind": "flow_failing", "flow": flow, "resolved_at": _iso(at),
                     "failed_since": _iso(incident.opened_at), "attempts": attempts}, at)


def quarantine(flow: str, system: str, table: str, rows: int, max_rows: int, oldest: dt.datetime | None,
               now: dt.datetime) -> Incident:
    since = oldest or now
    body = "\n".join([
        f"QUARANTINE ABOVE LIMIT: {flow}",
        f"{rows} rows of flow {flow} are in {table} on system {system} (not replayed), more than alerts.quarantine.max_rows = "
        f"{max_rows}; the oldest since {utc(since)}.",
        "These source rows failed mapping or validation and did not reach the staging table; the rest of their",
        "batches did.",
        "",
        "What to do:",
        "  1. Read the reasons:",
        f"       mes-erp-agent quarantine list -c FILE --flow {flow}",
        "  2. Fix the data in the MES (a corrected row is a new version and flows like any change), or fix the",
        "     flow's mapping (code maps, required fields) in the configuration and stage the rows that map now:",
        f"       mes-erp-agent quarantine replay -c FILE --flow {flow}",
        f"  3. This incident resolves when at most {max_rows} rows are left that were not replayed (or a DBA",
        f"     removed the handled rows from {table}).",
    ])
    return Incident(
        kind="quarantine", key=f"quarantine:{flow}", title=f"Flow {flow}: {rows} rows quarantined (limit {max_rows})",
        body=body, opened_at=since, flow=flow, system=system, table=table,
        data={"event": "opened", "kind": "quarantine", "flow": flow, "system": system, "table": table, "rows": rows,
              "max_rows": max_rows, "since": _iso(since)},
    )


def quarantine_resolved(incident: Incident, rows: int, max_rows: int, at: dt.datetime) -> Resolved:
    body = "\n".join([
        f"QUARANTINE BACK WITHIN LIMIT: {incident.flow}",
        f"{rows} rows of flow {incident.flow} are in {incident.table} now (limit {max_rows}), since {utc(at)}; it was "
        f"above the limit since {utc(incident.opened_at)}.",
        "Nothing more to do; the agent alerts again if it happens again.",
    ])
    return Resolved(incident.key, f"Flow {incident.flow}: quarantine within limit again", body,
                    {"event": "resolved", "kind": "quarantine", "flow": incident.flow, "rows": rows,
                     "resolved_at": _iso(at)}, at)


def backlog(flow: str, system: str, table: str, pending: int, oldest: dt.datetime, max_age: dt.timedelta,
            now: dt.datetime, waiting: str = "PENDING", query: str | None = None) -> Incident:
    """`waiting`: how the flow's pending rows are called (PENDING in the stg_* layout, `pending (PROCESS_FLAG 1, 2)`
    in a vendor interface table); `query`: what a person runs to look at them (default: the stg_* layout's)."""
    look = (query or f"SELECT stg_id, stg_source_key, stg_loaded_at, stg_error FROM {table}\n"
                     "WHERE stg_status = 'PENDING' ORDER BY stg_id;").splitlines()
    body = "\n".join([
        f"ERP BACKLOG: {flow}",
        f"{pending} staging rows of flow {flow} in {table} on system {system} are still {waiting}; the oldest was "
        f"staged {utc(oldest)}, {_duration(now - oldest)} ago, longer than alerts.backlog.max_pending_age = "
        f"{_duration(max_age)}.",
        "The agent delivered them; the ERP import job has not picked them up (the confirmation never arrived).",
        "",
        "What to do:",
        "  1. Check that the ERP import job for this staging table runs, and read its log.",
        "  2. Look at the waiting rows:",
        *(f"       {line}" for line in look),
        f"  3. This incident resolves when no {waiting} row is older than the limit.",
    ])
    return Incident(
        kind="backlog", key=f"backlog:{flow}", title=f"ERP backlog on {table}: {pending} rows {waiting} since {utc(oldest)}",
        body=body, opened_at=oldest, flow=flow, system=system, table=table,
        data={"event": "opened", "kind": "backlog", "flow": flow, "system": system, "table": table,
              "pending_rows": pending, "oldest_pending": _iso(oldest), "max_pending_age_seconds": max_age.total_seconds(),
              "waiting": waiting},
    )


def backlog_resolved(incident: Incident, pending: int, at: dt.datetime) -> Resolved:
    waiting = str(incident.data.get("waiting", "PENDING"))
    body = "\n".join([
        f"ERP BACKLOG CLEARED: {incident.flow}",
        f"No staging row of flow {incident.flow} in {incident.table} is {waiting} longer than the limit since "
        f"{utc(at)} ({pending} {waiting.split(' ')[0]} now); the backlog had lasted since {utc(incident.opened_at)}.",
        "Nothing more to do; the agent alerts again if it happens again.",
    ])
    return Resolved(incident.key, f"ERP backlog cleared on {incident.table}", body,
                    {"event": "resolved", "kind": "backlog", "flow": incident.flow, "pending_rows": pending,
                     "resolved_at": _iso(at)}, at)


def outcome_unreadable(flow: str, system: str, tables: list[str], columns: list[str], error: str, since: dt.datetime,
                       config: Path) -> Incident:
    """The target answers but refuses the flow's import-outcome queries (a vendor update changed a table or column of
    `outcome:`, a grant was revoked): rejected rows and the backlog of the flow would otherwise go unreported."""
    where = " and ".join(tables)
    body = "\n".join([
        f"IMPORT OUTCOMES UNREADABLE: {flow}",
        f"The agent cannot read what the import job made of the rows of flow {flow} in {where} on system {system}, "
        f"since {utc(since)}:",
        f"  {error}",
        "",
        "Until it can, rows the import job rejects raise no incident and the flow's backlog is not measured. The",
        "flow itself goes on staging rows: only the import outcome's queries fail.",
        "",
        "What to do:",
        f"  1. A vendor update or a DBA may have changed {where}: compare {'their' if len(tables) > 1 else 'its'} "
        "columns with the flow's",
        f"     `outcome:` in {config} ({', '.join(columns)}), and the agent's grants with",
        f"       mes-erp-agent sql grants -c {config} --system {system}",
        "  2. The same query, with its error, by hand:",
        f"       mes-erp-agent outcomes -c {config} --flow {flow}",
        "  3. Fix the table, the grants or the configuration (the running agent reloads a changed configuration by",
        "     itself). A message follows when the import outcome is read again.",
    ])
    return Incident(
        kind="outcome_unreadable", key=f"outcome_unreadable:{flow}",
        title=f"Import outcomes of flow {flow} unreadable on system {system}: {_short(error)}",
        body=body, opened_at=since, flow=flow, system=system, table=tables[0],
        data={"event": "opened", "kind": "outcome_unreadable", "flow": flow, "system": system, "tables": tables,
              "error": error, "since": _iso(since)},
    )


def outcome_readable(incident: Incident, at: dt.datetime) -> Resolved:
    body = "\n".join([
        f"IMPORT OUTCOMES READABLE AGAIN: {incident.flow}",
        f"The import outcome of flow {incident.flow} is read again since {utc(at)}; it could not be since "
        f"{utc(incident.opened_at)} ({_duration(at - incident.opened_at)}).",
        "Rows the import job rejected meanwhile are reported now, as the backlog is; nothing more to do.",
    ])
    return Resolved(incident.key, f"Import outcomes of flow {incident.flow} readable again", body,
                    {"event": "resolved", "kind": "outcome_unreadable", "flow": incident.flow, "resolved_at": _iso(at),
                     "since": _iso(incident.opened_at)}, at)


def config_rejected(config: Path, problems: list[str], at: dt.datetime) -> Incident:
    """A changed configuration file the running agent refused to load: it keeps running on the previous one."""
    listed = [f"  {n}. {p}" for n, p in enumerate(problems, 1)]
    body = "\n".join([
        f"CONFIGURATION REJECTED: {config}",
        f"The running agent did not load the changed file {config} at {utc(at)}: "
        f"{len(problems)} problem{'s' if len(problems) != 1 else ''}.",
        "It keeps running every flow on the configuration it loaded before; nothing was moved differently.",
        "",
        *listed,
        "",
        "What to do:",
        "  1. Fix the file; see every problem with file, line and key with:",
        f"       mes-erp-agent check-config -c {config}",
        "  2. Save it again: the agent reloads it, and this incident resolves when it loads.",
    ])
    return Incident(
        kind="config_rejected", key="config_rejected", title=f"Configuration rejected: {config.name} "
        f"({len(problems)} problem{'s' if len(problems) != 1 else ''})", body=body, opened_at=at,
        data={"event": "opened", "kind": "config_rejected", "config": str(config), "problems": problems,
              "since": _iso(at)},
    )


def late_rows(flow: str, system: str, table: str, staging: str, missing: int, staged: int, quarantined: int,
              first: str, last: str, column: str, overlap: dt.timedelta, at: dt.datetime, config: Path) -> Incident:
    """A reconcile pass found rows the polls had missed: they committed after the overlap window had passed them."""
    body = "\n".join([
        f"LATE ROWS RECOVERED: {flow}",
        f"Reconciliation found {missing} row{'s' if missing != 1 else ''} of flow {flow} ({table} on system {system}) "
        f"that no poll had staged, at {utc(at)}; {staged} staged into {staging}, {quarantined} quarantined.",
        f"Their {column} values ({first} .. {last}) were already more than overlap = {_duration(overlap)} behind the "
        "flow's watermark when they committed: the MES committed them later than the overlap window allows, so the",
        "overlap is too short for this MES.",
        "",
        "What to do:",
        f"  1. Raise `overlap:` of flow {flow} above the longest time an MES transaction runs between stamping "
        f"{column} and committing.",
        "  2. Keep `reconcile:` on for the flow: it catches what the overlap misses. Run a pass by hand with:",
        f"       mes-erp-agent reconcile -c {config} --flow {flow}",
        "  3. Nothing was lost or staged twice; this incident resolves when a reconcile pass finds nothing missing.",
    ])
    return Incident(
        kind="late_rows", key=f"late_rows:{flow}", title=f"Flow {flow}: {missing} late rows recovered (overlap too short)",
        body=body, opened_at=at, flow=flow, system=system, table=table,
        data={"event": "opened", "kind": "late_rows", "flow": flow, "system": system, "table": table,
              "rows_missing": missing, "rows_staged": staged, "rows_quarantined": quarantined, "first": first,
              "last": last, "overlap_seconds": overlap.total_seconds(), "since": _iso(at)},
    )


def late_rows_resolved(incident: Incident, at: dt.datetime) -> Resolved:
    body = "\n".join([
        f"NO LATE ROWS: {incident.flow}",
        f"A reconcile pass of flow {incident.flow} found nothing missing at {utc(at)}; late rows had been recovered "
        f"since {utc(incident.opened_at)}.",
        "Nothing more to do; the agent alerts again if it happens again.",
    ])
    return Resolved(incident.key, f"Flow {incident.flow}: no late rows", body,
                    {"event": "resolved", "kind": "late_rows", "flow": incident.flow, "resolved_at": _iso(at)}, at)


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _duration(delta: dt.timedelta) -> str:
    whole = round(delta.total_seconds())
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60}s" if whole % 60 else f"{whole // 60}m"
    return f"{whole // 3600}h {whole % 3600 // 60}m"


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="seconds")

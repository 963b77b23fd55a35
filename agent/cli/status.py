"""`status`: per flow, the watermark, the last run, rows moved and quarantined, the ERP import's outcome (pending
backlog, rows in error, rows done: from the ERP),
merged with what the running agent reports (state, last successful poll, lag, next run: its status file) and
the open incidents (the alert outbox). Works whether the agent runs or not."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from agent.alerts import IncidentBook
from agent.cli.common import age_text, config_option, console, errors, load_or_exit
from agent.config import LoadedConfig
from agent.connect import Systems, known_passwords, scrub
from agent.exit_codes import ExitCode
from agent.lock_holders import Holder, read_holders, utc_now
from agent.report import read_flow_status
from agent.runtime import is_alive, read_status, status_path

_STATES = {"ok": "ok", "catching_up": "catching up", "halted": "halted on drift", "starting": "starting",
           "standby": "standby (another agent holds it)"}
_LIVE_KEYS = ("state", "message", "failing_since", "consecutive_failures", "last_success_at", "last_poll_at",
              "lag_seconds", "next_run")


@click.command("status")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(config_path: Path, as_json: bool) -> None:
    """Per flow: state, last successful poll, rows moved, lag, quarantine, import outcome (pending, in error, done),
    open incidents, next run."""
    config = load_or_exit(config_path)
    systems = Systems(config)
    try:
        statuses = [read_flow_status(config, systems, name) for name in config.model.flows]
        _add_holders(config, systems, statuses)
    finally:
        systems.dispose()
    agent = _merge_agent_view(config, statuses)
    statuses = _scrubbed(statuses, known_passwords(config))
    if as_json:
        click.echo(json.dumps(statuses, indent=2, default=str))
    else:
        _print_statuses(statuses, agent, config.path)
    sys.exit(int(ExitCode.FLOW_FAILED if any("error" in s for s in statuses) else ExitCode.OK))


def _add_holders(config: LoadedConfig, systems: Systems, statuses: list[dict[str, Any]]) -> None:
    """`held_by`: the agent holding each flow's lock, as agent_holder shows it (None: free; absent: unreadable)."""
    rows: dict[str, list[Holder] | None] = {}
    stale_after = config.model.locks.stale_bound
    for s in statuses:
        system = config.model.flows[s["flow"]].target
        if system not in rows:
            try:
                rows[system] = read_holders(config, systems, system)
            except Exception:  # an ERP down (its figures say so), or an agent_holder not made yet by `sql ddl`
                rows[system] = None
        found = rows[system]
        if found is None:
            continue
        mine = [h for h in found if h.flow == s["flow"]]
        holder = max(mine, key=lambda h: h.heartbeat_at) if mine else None
        s["held_by"] = None if holder is None else {
            "host": holder.host, "pid": holder.pid, "agent_id": holder.agent_id, "session_id": holder.session_id,
            "since": f"{holder.since:%Y-%m-%d %H:%M:%S}Z", "heartbeat_at": f"{holder.heartbeat_at:%Y-%m-%d %H:%M:%S}Z",
            "stale": utc_now() - holder.heartbeat_at > stale_after}


def holder_line(s: dict[str, Any]) -> str | None:
    """`flow X: held by HOST (pid N) since T`, `free`, or `stale` (its holder stopped writing its heartbeat)."""
    if "held_by" not in s:
        return None
    held = s["held_by"]
    if held is None:
        return f"flow {s['flow']}: free (no agent holds it)"
    if held["stale"]:
        return (f"flow {s['flow']}: stale: held by {held['host']} (pid {held['pid']}) since {held['since']}, no heartbeat "
                f"since {held['heartbeat_at']} (that agent died or lost the ERP; another agent takes the flow over)")
    return f"flow {s['flow']}: held by {held['host']} (pid {held['pid']}) since {held['since']}"


def _merge_agent_view(config: LoadedConfig, statuses: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Adds the running agent's figures and the open incidents to each flow; returns the status file (or None)."""
    folder = config.resolve(config.model.alerts.dir)
    document = read_status(status_path(folder))
    running = document is not None and is_alive(document)
    live = {f["flow"]: f for f in (document or {}).get("flows", [])} if running else {}
    incidents = IncidentBook(folder, []).open_incidents()  # reads the outbox; sends nothing
    for s in statuses:
        flow = live.get(s["flow"], {})
        s["agent_running"] = running
        s["agent_last_seen"] = (document or {}).get("written_at")
        for key in _LIVE_KEYS:
            s[key] = flow.get(key)
        s["open_incidents"] = [i.title for i in incidents if s["flow"] in (i.flow or "").split(", ")]
    return document


def _scrubbed(statuses: list[dict[str, Any]], secrets: list[str]) -> list[dict[str, Any]]:
    """Every text without a password (driver messages may quote a connection string)."""
    return [{k: scrub(v, secrets) if isinstance(v, str) else v for k, v in s.items()} for s in statuses]


def _state_text(s: dict[str, Any]) -> str:
    if not s["agent_running"]:
        return "agent not running"
    if s["state"] == "failing":
        return f"failing since {s['failing_since']}"
    return _STATES.get(s["state"] or "", s["state"] or "-")


def _count(value: int | None) -> str:
    """A row count; `-` where the flow's import outcome is not watched (a vendor table without `outcome:`)."""
    return "-" if value is None else str(value)


def _print_statuses(statuses: list[dict[str, Any]], agent: dict[str, Any] | None, config_path: Path) -> None:
    table = Table(title="mes-erp-agent status")
    for column in ("flow", "state", "last success (UTC)", "watermark", "last run (UTC)", "outcome", "rows moved", "lag",
                   "quarantined", "in quarantine", "pending", "oldest pending age", "in error", "done", "open incidents",
                   "next run (UTC)"):
        table.add_column(column)
    for s in statuses:
        live = (_state_text(s), s["last_success_at"] or "-")
        if "error" in s:
            table.add_row(s["flow"], *live, "-", "-", "unreadable", "-", "-", "-", "-", "-", "-", "-", "-",
                          str(len(s["open_incidents"])), s["next_run"] or "-")
            continue
        table.add_row(s["flow"], *live, s["watermark"], s["last_run_at"] or "never", s["last_outcome"] or "-",
                      str(s["rows_moved"]), age_text(s["lag_seconds"]), str(s["rows_quarantined"]),
                      str(s["quarantine_rows"]), _count(s["pending_rows"]), age_text(s["oldest_pending_age_seconds"]),
                      _count(s["error_rows"]), _count(s["done_rows"]), str(len(s["open_incidents"])), s["next_run"] or "-")
    console.print(table)
    if agent is None:
        console.print("The agent has not run here yet (no status file): figures are from the ERP only.")
    elif not statuses or not statuses[0]["agent_running"]:
        console.print(f"The agent is not running (last seen {agent.get('written_at')} on {agent.get('host')}, "
                      f"pid {agent.get('pid')}): figures are from the ERP only. Start it with: mes-erp-agent run -c FILE")
    for s in statuses:
        line = holder_line(s)
        if line is not None:
            console.print(line, markup=False, highlight=False, soft_wrap=True)
        if "error" in s:
            errors.print(f"flow {s['flow']}: cannot read its status on system {s['system']} ({s['url']}): {s['error']}",
                         markup=False, highlight=False, soft_wrap=True)
        if s.get("error_rows"):
            console.print(f"flow {s['flow']}: {s['error_rows']} staged rows rejected by the ERP import job; see them with: "
                          f"mes-erp-agent outcomes -c {config_path} --flow {s['flow']}", markup=False, highlight=False,
                          soft_wrap=True)
        for title in s["open_incidents"]:
            console.print(f"flow {s['flow']}: open incident: {title}", markup=False, highlight=False, soft_wrap=True)
        if s.get("message") and s["state"] == "failing":
            console.print(f"flow {s['flow']}: {s['message']}", markup=False, highlight=False, soft_wrap=True)

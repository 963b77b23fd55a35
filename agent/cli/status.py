"""`status`: per flow, the watermark, the last run, rows moved and quarantined, the PENDING backlog."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from agent.cli.common import age_text, config_option, console, errors, load_or_exit
from agent.connect import Systems
from agent.exit_codes import ExitCode
from agent.report import read_flow_status


@click.command("status")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(config_path: Path, as_json: bool) -> None:
    """Per flow: watermark, last run, rows moved and quarantined, PENDING backlog and its age."""
    config = load_or_exit(config_path)
    systems = Systems(config)
    try:
        statuses = [read_flow_status(config, systems, name) for name in config.model.flows]
    finally:
        systems.dispose()
    if as_json:
        click.echo(json.dumps(statuses, indent=2, default=str))
    else:
        _print_statuses(statuses)
    sys.exit(int(ExitCode.FLOW_FAILED if any("error" in s for s in statuses) else ExitCode.OK))


def _print_statuses(statuses: list[dict[str, Any]]) -> None:
    table = Table(title="mes-erp-agent status")
    for column in ("flow", "watermark", "last run (UTC)", "outcome", "rows moved", "quarantined", "pending", "oldest pending age"):
        table.add_column(column)
    for s in statuses:
        if "error" in s:
            table.add_row(s["flow"], "-", "-", "unreadable", "-", "-", "-", "-")
            continue
        table.add_row(s["flow"], s["watermark"], s["last_run_at"] or "never", s["last_outcome"] or "-",
                      str(s["rows_moved"]), str(s["rows_quarantined"]), str(s["pending_rows"]),
                      age_text(s["oldest_pending_age_seconds"]))
    console.print(table)
    for s in statuses:
        if "error" in s:
            errors.print(f"flow {s['flow']}: cannot read its status on system {s['system']} ({s['url']}): {s['error']}",
                         markup=False, highlight=False, soft_wrap=True)

"""`quarantine list` and `quarantine replay`: what agent_quarantine holds, and staging it after the mapping was fixed.

Exit codes: 0 nothing left to do (every row replayed, or none to replay); 1 some rows still fail, or a database is
down; 2 configuration error (an unknown flow, a configuration that does not match the databases).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import sqlalchemy as sa
from rich.table import Table

from agent import pipeline, quarantine
from agent.cli.common import config_option, console, errors, fail, load_or_exit
from agent.config import LoadedConfig
from agent.connect import Systems, known_passwords, scrub
from agent.errors import AgentError, ConfigError, SchemaMismatch
from agent.exit_codes import ExitCode

LIST_COLUMNS = ("flow", "source key", "version", "quarantined (UTC)", "replayed", "reason")


@click.group("quarantine")
def quarantine_group() -> None:
    """Rows that failed mapping or validation (agent_quarantine): list them, replay them after a mapping fix."""


def _flows(config: LoadedConfig, flow_name: str | None) -> list[str]:
    try:
        return list(config.flows(flow_name) if flow_name else config.model.flows)
    except ConfigError as exc:
        fail("\n".join(exc.problems), ExitCode.CONFIG)


def _database_error(config: LoadedConfig, flow: str, system: str, exc: Exception) -> None:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    errors.print(f"flow {flow}: agent_quarantine on system {system} ({config.redacted_url(system)}) cannot be read or "
                 f"written: {scrub(text, known_passwords(config))}", markup=False, highlight=False, soft_wrap=True)


@quarantine_group.command("list")
@config_option
@click.option("--flow", "flow_name", help="Only this flow.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_command(config_path: Path, flow_name: str | None, as_json: bool) -> None:
    """Per quarantined row: flow, source key, version, when, whether it was replayed, the reason."""
    config = load_or_exit(config_path)
    names = _flows(config, flow_name)
    systems, rows, failed = Systems(config), [], False
    try:
        for name in names:
            try:
                rows += quarantine.list_rows(config, systems, name)
            except sa.exc.SQLAlchemyError as exc:
                failed = True
                _database_error(config, name, config.model.flows[name].target, exc)
    finally:
        systems.dispose()
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in rows], indent=2))
    elif console.is_terminal:
        table = Table(title="mes-erp-agent quarantine")
        for column in LIST_COLUMNS:
            table.add_column(column, overflow="fold")  # keys and versions whole, folded rather than cut
        for r in rows:
            table.add_row(r.flow, r.source_key, r.source_version, r.quarantined_at or "-", replayed_text(r), r.reason)
        console.print(table)
    else:  # piped: one tab-separated line per row, after a header line
        click.echo("\t".join(LIST_COLUMNS))
        for r in rows:
            click.echo("\t".join([r.flow, r.source_key, r.source_version, r.quarantined_at or "-", replayed_text(r),
                                  " ".join(r.reason.split())]))
    sys.exit(int(ExitCode.FLOW_FAILED if failed else ExitCode.OK))


def replayed_text(row: quarantine.QuarantinedRow) -> str:
    """`no`, or how and when: `staged 2026-03-02 06:11:00Z`, `superseded 2026-03-02 06:11:00Z`."""
    return f"{row.replay_outcome} {row.replayed_at}" if row.replayed else "no"


@quarantine_group.command("replay")
@config_option
@click.option("--flow", "flow_name", help="Only this flow.")
@click.option("--dry-run", is_flag=True, help="Map and decide, write nothing: what a replay would do.")
def replay_command(config_path: Path, flow_name: str | None, dry_run: bool) -> None:
    """Re-map the quarantined rows with the current mapping and stage those that now map, each exactly once."""
    config = load_or_exit(config_path)
    names = _flows(config, flow_name)
    systems, failed = Systems(config), False
    try:
        for name in names:
            try:
                report = quarantine.replay_flow(pipeline.prepare(config, systems, name), dry_run)
            except SchemaMismatch as exc:
                fail(f"{config.path}: configuration does not match the databases; nothing was replayed:\n{exc}",
                     ExitCode.CONFIG)
            except (sa.exc.SQLAlchemyError, AgentError, OSError) as exc:
                failed = True
                _database_error(config, name, config.model.flows[name].target, exc)
                continue
            _print_replay(report)
            failed = failed or report.count(quarantine.FAILING) > 0
    finally:
        systems.dispose()
    sys.exit(int(ExitCode.FLOW_FAILED if failed else ExitCode.OK))


_WOULD = {quarantine.STAGED: "would stage", quarantine.SUPERSEDED: "would skip, superseded",
          quarantine.FAILING: "still failing"}


def _print_replay(report: quarantine.ReplayReport) -> None:
    flow = f"flow {report.flow}" + (" (dry run: nothing written)" if report.dry_run else "")
    if not report.outcomes:
        click.echo(f"{flow}: nothing to replay")
        return
    click.echo(f"{flow}: {len(report.outcomes)} quarantined rows not replayed yet")
    for o in report.outcomes:
        what = _WOULD[o.outcome] if report.dry_run else o.outcome
        click.echo(f"  {what}: key {o.source_key}, version {o.source_version}" + (f": {o.detail}" if o.detail else ""))
    staged = report.count(quarantine.STAGED)
    already = f" ({report.already_staged} of them already in agent_ledger)" if report.already_staged else ""
    batches = f"; batches {', '.join(report.batches)}" if report.batches else ""
    click.echo(f"{flow}: {staged} {'would be ' if report.dry_run else ''}staged{already}, "
               f"{report.count(quarantine.SUPERSEDED)} superseded, {report.count(quarantine.FAILING)} still failing"
               + batches)

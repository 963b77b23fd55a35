"""The `mes-erp-agent` command: one module per command group, each a thin layer over the service code.

Exit codes (a contract plants' scripts rely on) are in agent/exit_codes.py. Only this package imports click.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from agent import __version__, log_context
from agent.cli.common import config_option, console, fail, load_or_exit
from agent.cli.demo import demo
from agent.cli.drift import drift_command, snapshot_command
from agent.cli.ledger import ledger_group
from agent.cli.outcomes import outcomes
from agent.cli.recover import backfill_command, reconcile_command
from agent.cli.quarantine import quarantine_group
from agent.cli.run import run
from agent.cli.service import service_group
from agent.cli.sql import render_sql, sql_group
from agent.cli.status import status
from agent.errors import SecretUnavailable
from agent.exit_codes import ExitCode


class _Commands(click.Group):
    """Every command that connects reads password files (agent/connect.py): one that cannot be read exits 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SecretUnavailable as exc:
            fail(str(exc), ExitCode.CONFIG)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mes-erp-agent")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.option("--log-format", default="text", show_default=True, type=click.Choice(log_context.LOG_FORMATS),
              help="json: one JSON object per line (time, level, logger, message, flow, batch_id) for log collectors.")
def main(log_level: str, log_format: str) -> None:
    """Moves MES changes into ERP staging tables: watermark reads, drift gate, exactly-once writes."""
    log_context.configure(log_level, log_format, sys.stderr)


@main.command("check-config")
@config_option
def check_config(config_path: Path) -> None:
    """Validate the configuration file: exit 0 when valid, 2 with every problem listed."""
    config = load_or_exit(config_path)
    flows = config.model.flows
    console.print(
        f"{config.path}: OK ({len(config.model.systems)} systems, {len(flows)} flows: {', '.join(flows)})",
        markup=False, highlight=False,
    )


for command in (sql_group, run, status, outcomes, demo, snapshot_command, drift_command, render_sql, ledger_group,
                service_group, reconcile_command, backfill_command, quarantine_group):
    main.add_command(command)

__all__ = ["main"]

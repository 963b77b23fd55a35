"""`ledger prune`: forget agent_ledger entries older than `ledger.keep` (the running agent does it every
`ledger.prune_every`; this is for plants that run `run --once` from a scheduler)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import sqlalchemy as sa

from agent import ledger
from agent.cli.common import config_option, errors, fail, load_or_exit, say
from agent.connect import Systems, known_passwords, scrub
from agent.contract import ControlTables
from agent.errors import ConfigError
from agent.exit_codes import ExitCode


@click.group("ledger")
def ledger_group() -> None:
    """The agent's record of what each flow staged (agent_ledger)."""


@ledger_group.command("prune")
@config_option
@click.option("--flow", "flow_name", help="Only this flow.")
def prune(config_path: Path, flow_name: str | None) -> None:
    """Delete each flow's entries staged more than `ledger.keep` before its newest one; exit 1 if a database is down."""
    config = load_or_exit(config_path)
    try:
        flows = config.flows(flow_name) if flow_name else config.model.flows
    except ConfigError as exc:
        fail("\n".join(exc.problems), ExitCode.CONFIG)
    keep, systems, failed = config.model.ledger.keep, Systems(config), False
    try:
        for name, flow in flows.items():
            dialect = systems.dialect(flow.target)
            control = ControlTables.in_schema(dialect, config.model.systems[flow.target].staging_schema or "")
            try:
                deleted = ledger.prune(systems.target(flow.target), dialect, control, name, keep)
            except sa.exc.SQLAlchemyError as exc:
                failed = True
                text = scrub(str(getattr(exc, "orig", exc)).strip().splitlines()[0], known_passwords(config))
                errors.print(f"flow {name}: agent_ledger on system {flow.target} not pruned: {text}", markup=False)
                continue
            say(f"flow {name}: {deleted} agent_ledger entries pruned (ledger.keep {keep})")
    finally:
        systems.dispose()
    sys.exit(int(ExitCode.FLOW_FAILED if failed else ExitCode.OK))

"""`run`: every flow once (`--once`), or the long-running service on each flow's schedule."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table

from agent import pipeline, privileges, report
from agent.cli.common import config_option, console, errors, fail, load_or_exit
from agent.connect import Systems
from agent.drift.gate import DriftGate
from agent.errors import ConfigError, SchemaMismatch, SnapshotError
from agent.exit_codes import ExitCode
from agent.locks import FlowLocks
from agent.stopping import StopRequest

_NUMBER_COLUMNS = ("read", "written", "already staged", "quarantined", "batches", "seconds")


@click.command("run")
@config_option
@click.option("--once", is_flag=True, help="Catch every flow up once, then exit (for cron, tests, first loads).")
@click.option("--flow", "flow_name", help="Only this flow.")
@click.option("--strict-privileges", is_flag=True,
              help="Refuse to start (exit 4) when a login can do more than `sql grants` gives it (default: warn).")
def run(config_path: Path, once: bool, flow_name: str | None, strict_privileges: bool) -> None:
    """Move changed MES rows into ERP staging: once (--once), or as a long-running service on each flow's schedule."""
    config = load_or_exit(config_path)
    try:
        config.flows(flow_name)
        privileges.startup_check(config, flow_name, strict_privileges)
    except privileges.PrivilegeExcess as exc:
        fail(str(exc), ExitCode.PRIVILEGES)
    except ConfigError as exc:
        fail(str(exc), ExitCode.CONFIG)
    if not once:
        from agent.runner import run_forever

        sys.exit(int(run_forever(config, flow_name)))
    systems = Systems(config)
    gate: DriftGate | None = None
    stop = StopRequest()
    restore_signals = stop.install_signal_handlers()  # SIGTERM/SIGINT: stop after the batch in flight, exit 130
    locks = FlowLocks(config, systems, flow_name, share=False)  # one agent per flow, the running ones included
    elsewhere: list[str] = []
    try:
        gate = DriftGate(config, systems, flow_name)
        elsewhere, unlocked = locks.take_all(config.flows(flow_name))
        with gate.cycle():  # one catalog read per system for all flows of this run
            reports = pipeline.run_once(config, systems, flow_name, gate=gate, stopping=stop.is_set,
                                        skip=[*elsewhere, *unlocked])
        reports += [report.FlowReport(name).finish(report.FAILED, message, log_failure=False)
                    for name, message in unlocked.items()]
    except SnapshotError as exc:
        fail(f"{config.path}: cannot check for schema drift; no data was moved:\n{exc}", ExitCode.CONFIG)
    except (ConfigError, SchemaMismatch) as exc:
        fail(f"{config.path}: configuration does not match the databases; no data was moved:\n{exc}", ExitCode.CONFIG)
    finally:
        locks.close()
        if gate is not None:
            gate.close()  # alerts still being sent get `alerts.exit_wait`; the rest go out at the next run
        systems.dispose()
        restore_signals()
    _print_reports(reports)
    for name in elsewhere:
        holder = locks.holder_of(name)
        who = holder.describe() if holder is not None else "another agent (agent_holder does not name it yet)"
        errors.print(f"flow {name} is held by {who}; nothing was run. That agent moves the flow; this one runs it when "
                     "the flow is free (that agent stopped or died).", markup=False, highlight=False, soft_wrap=True)
    if stop.is_set():
        errors.print(f"stopped by {stop.reason} after the last committed batch; the next run goes on from there",
                     markup=False, highlight=False)
        sys.exit(int(ExitCode.INTERRUPTED))
    code = exit_code_for(reports)
    sys.exit(int(ExitCode.HELD_ELSEWHERE if code == ExitCode.OK and elsewhere else code))


def exit_code_for(reports: list[report.FlowReport]) -> ExitCode:
    outcomes = {r.outcome for r in reports}
    if report.FAILED in outcomes:
        return ExitCode.FLOW_FAILED
    if report.HALTED in outcomes:
        return ExitCode.DRIFT
    return ExitCode.OK


def _print_reports(reports: list[report.FlowReport]) -> None:
    table = Table(title="mes-erp-agent run", show_lines=False)
    for column in ("flow", "outcome", *_NUMBER_COLUMNS[:5], "seconds", "watermark"):
        table.add_column(column, justify="right" if column in _NUMBER_COLUMNS else "left")
    for r in reports:
        table.add_row(r.flow, r.outcome, str(r.rows_read), str(r.rows_written), str(r.rows_duplicate),
                      str(r.rows_quarantined), str(r.batches), f"{r.seconds:.2f}", r.watermark_after)
    console.print(table)
    for r in reports:
        if r.message:
            errors.print(f"flow {r.flow} {r.outcome}: {r.message}", markup=False, highlight=False)

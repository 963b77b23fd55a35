"""The `mes-erp-agent` command.

Exit codes (a contract plants' scripts rely on): 0 success; 1 a flow failed; 2 configuration error
(file, key or a table/column that does not exist); 3 a flow halted on schema drift; 4 `run --strict-privileges`
refused to start: a login can do more than the agent's grants (agent/privileges.py).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from agent import __version__, pipeline, report, watermark
from agent import privileges, sql_review  # DBA review commands and the start-up privilege check
from agent.config import LoadedConfig, load_config
from agent.connect import Systems
from agent.errors import ConfigError, SchemaMismatch, SecretUnavailable, SnapshotError
from agent.read import check_source_columns, describe_source
from agent.staging import StagingTable, ddl_statements, staging_table_for

EXIT_OK, EXIT_FLOW_FAILED, EXIT_CONFIG, EXIT_DRIFT = 0, 1, 2, 3

# Piped output (logs, CI, scripts) gets wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 200)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
config_option = click.option(
    "-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="The agent's YAML configuration file.",
)


def fail(message: str, code: int) -> NoReturn:
    errors.print(message, markup=False, highlight=False, soft_wrap=True)
    sys.exit(code)


def load_or_exit(path: Path) -> LoadedConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        fail(_problem_list(path, exc.problems), EXIT_CONFIG)


def _problem_list(path: Path, problems: list[str]) -> str:
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    return f"{path}: configuration is not valid ({count}):\n" + "\n".join(f"  {p}" for p in problems)


class _Commands(click.Group):
    """Every command that connects reads password files (agent/connect.py): one that cannot be read exits 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SecretUnavailable as exc:
            fail(str(exc), EXIT_CONFIG)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mes-erp-agent")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def main(log_level: str) -> None:
    """Moves MES changes into ERP staging tables: watermark reads, drift gate, exactly-once writes."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


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


@main.group("sql")
def sql_group() -> None:
    """SQL for the DBA: staging and control table DDL, least-privilege grants."""


@sql_group.command("ddl")
@config_option
@click.option("--system", required=True, help="The ERP system (a `systems:` name) whose staging tables to create.")
@click.option("--apply", is_flag=True, help="Run the statements (demos and tests; in a plant a DBA runs them).")
@sql_review.dialect_option
def sql_ddl(config_path: Path, system: str, apply: bool, dialect_name: str | None) -> None:
    """Print the CREATE statements for a system's staging schema, control tables and staging tables."""
    config = load_or_exit(config_path)
    if system not in config.model.systems:
        fail(f"{config.path}: no system named {system!r} under `systems:`", EXIT_CONFIG)
    schema = config.model.systems[system].staging_schema
    if schema is None:
        fail(f"{config.where('systems', system)}: system {system} has no `staging_schema:`", EXIT_CONFIG)
    if dialect_name:  # no connection: staging types from `type:` or the source's schema snapshot
        if apply:
            fail("--dialect prints the DDL without connecting; --apply runs it on the system itself", EXIT_CONFIG)
        try:
            statements = sql_review.ddl_for_dialect(config, system, dialect_name)
        except SchemaMismatch as exc:
            fail(str(exc), EXIT_CONFIG)
        console.print(";\n\n".join(statements) + ";", markup=False, highlight=False, soft_wrap=True)
        return
    systems = Systems(config)
    try:
        tables = pipeline.staging_tables_of(config, systems, system)
        dialect = systems.dialect(system)
        statements = ddl_statements(dialect, schema, tables)
        console.print(";\n\n".join(statements) + ";", markup=False, highlight=False, soft_wrap=True)
        if apply:
            with systems.target(system).begin() as conn:
                for statement in statements:
                    conn.exec_driver_sql(statement)
            errors.print(f"applied {len(statements)} statements on system {system} ({config.redacted_url(system)})")
    except SchemaMismatch as exc:
        fail(str(exc), EXIT_CONFIG)
    finally:
        systems.dispose()


@main.command("run")
@config_option
@click.option("--once", is_flag=True, help="Catch every flow up once, then exit (for cron, tests, first loads).")
@click.option("--flow", "flow_name", help="Only this flow.")
@click.option("--strict-privileges", is_flag=True,
              help="Refuse to start (exit 4) when a login can do more than `sql grants` gives it (default: warn).")
def run(config_path: Path, once: bool, flow_name: str | None, strict_privileges: bool) -> None:
    """Move changed MES rows into ERP staging: once (--once), or as a long-running service on each flow's schedule."""
    config = load_or_exit(config_path)
    try:
        privileges.startup_check(config, flow_name, strict_privileges)
    except privileges.PrivilegeExcess as exc:
        fail(str(exc), privileges.EXIT_PRIVILEGES)
    if not once:
        from agent.schedule import run_forever

        sys.exit(run_forever(config, flow_name))
    systems = Systems(config)
    try:
        reports = pipeline.run_once(config, systems, flow_name, gate=build_gate(config, systems, flow_name))
    except SnapshotError as exc:
        fail(f"{config.path}: cannot check for schema drift; no data was moved:\n{exc}", EXIT_CONFIG)
    except (ConfigError, SchemaMismatch) as exc:
        fail(f"{config.path}: configuration does not match the databases; no data was moved:\n{exc}", EXIT_CONFIG)
    finally:
        systems.dispose()
    _print_reports(reports)
    sys.exit(exit_code_for(reports))


def build_gate(config: LoadedConfig, systems: Systems, only: str | None = None) -> pipeline.Gate | None:
    """The drift gate run before every flow run (schema snapshots against the live databases).

    Raises SnapshotError (a configuration error) when a system has no usable snapshot.
    """
    from agent.drift.gate import DriftGate

    return DriftGate(config, systems, only)


def exit_code_for(reports: list[report.FlowReport]) -> int:
    outcomes = {r.outcome for r in reports}
    if report.FAILED in outcomes:
        return EXIT_FLOW_FAILED
    if report.HALTED in outcomes:
        return EXIT_DRIFT
    return EXIT_OK


def _print_reports(reports: list[report.FlowReport]) -> None:
    table = Table(title="mes-erp-agent run", show_lines=False)
    for column in ("flow", "outcome", "read", "written", "already staged", "quarantined", "batches", "seconds", "watermark"):
        table.add_column(column, justify="right" if column in ("read", "written", "already staged", "quarantined", "batches", "seconds") else "left")
    for r in reports:
        table.add_row(r.flow, r.outcome, str(r.rows_read), str(r.rows_written), str(r.rows_duplicate),
                      str(r.rows_quarantined), str(r.batches), f"{r.seconds:.2f}", r.watermark_after)
    console.print(table)
    for r in reports:
        if r.message:
            errors.print(f"flow {r.flow} {r.outcome}: {r.message}", markup=False, highlight=False)


@main.command("status")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(config_path: Path, as_json: bool) -> None:
    """Per flow: watermark, last run, rows moved and quarantined, PENDING backlog and its age."""
    config = load_or_exit(config_path)
    systems = Systems(config)
    try:
        statuses = [_flow_status(config, systems, name) for name in config.model.flows]
    finally:
        systems.dispose()
    unreadable = [s for s in statuses if "error" in s]
    if as_json:
        click.echo(json.dumps(statuses, indent=2, default=str))
    else:
        _print_statuses(statuses)
    sys.exit(EXIT_FLOW_FAILED if unreadable else EXIT_OK)


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
                      _age_text(s["oldest_pending_age_seconds"]))
    console.print(table)
    for s in statuses:
        if "error" in s:
            errors.print(f"flow {s['flow']}: cannot read its status on system {s['system']} ({s['url']}): {s['error']}",
                         markup=False, highlight=False, soft_wrap=True)


def _flow_status(config: LoadedConfig, systems: Systems, name: str) -> dict[str, Any]:
    flow = config.model.flows[name]
    dialect = systems.dialect(flow.target)
    schema = config.model.systems[flow.target].staging_schema or ""
    control = watermark.ControlTables.in_schema(dialect, schema)
    try:
        with systems.target(flow.target).connect() as conn:
            position = watermark.load(conn, dialect, control, name, flow.watermark)
            result = report.flow_status(conn, dialect, control, dialect.table(schema, flow.staging_table_name), name, position.describe())
            return result.as_dict()
    except SecretUnavailable:  # a configuration error (exit 2), not a database that is down
        raise
    except Exception as exc:  # status must show every flow, even one whose database is down
        return {"flow": name, "error": str(getattr(exc, "orig", exc)).splitlines()[0], "system": flow.target,
                "url": config.redacted_url(flow.target)}


def _age_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


@main.command("demo")
@click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-run"),
              show_default=True, help="Folder for the demo's SQLite databases and configuration.")
@click.option("--seconds", default=20, show_default=True, help="How long to simulate shop-floor activity.")
def demo(folder: Path, seconds: int) -> None:
    """Embedded demo, no server needed: SQLite MES and ERP with real AdventureWorks data, live."""
    from agent.demo.run import run_demo

    sys.exit(run_demo(folder, seconds, console))


# Schema snapshots and drift (agent/drift/commands.py).
from agent.drift.commands import drift_command, snapshot_command  # noqa: E402

main.add_command(snapshot_command)
main.add_command(drift_command)

# SQL for the DBA's review (agent/sql_review.py).
main.add_command(sql_review.render_sql)
sql_group.add_command(sql_review.sql_grants)

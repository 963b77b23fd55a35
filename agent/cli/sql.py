"""`sql ddl`, `sql grants` and `render-sql`: the SQL a DBA reviews and runs."""

from __future__ import annotations

from pathlib import Path

import click

from agent import grants, pipeline, review, source_query
from agent.cli.common import config_option, console, dialect_option, errors, fail, load_or_exit
from agent.connect import Systems
from agent.errors import ConfigError, SchemaMismatch
from agent.exit_codes import ExitCode
from agent.staging import ddl_statements, needs_quarantine_upgrade, vendor_table_notes


@click.group("sql")
def sql_group() -> None:
    """SQL for the DBA: staging and control table DDL, least-privilege grants."""


@sql_group.command("ddl")
@config_option
@click.option("--system", required=True, help="The ERP system (a `systems:` name) whose staging tables to create.")
@click.option("--apply", is_flag=True, help="Run the statements (demos and tests; in a plant a DBA runs them).")
@dialect_option
def sql_ddl(config_path: Path, system: str, apply: bool, dialect_name: str | None) -> None:
    """Print the CREATE statements for a system's staging schema, control tables and staging tables."""
    config = load_or_exit(config_path)
    if system not in config.model.systems:
        fail(f"{config.path}: no system named {system!r} under `systems:`", ExitCode.CONFIG)
    schema = config.model.systems[system].staging_schema
    if schema is None:
        fail(f"{config.where('systems', system)}: system {system} has no `staging_schema:`", ExitCode.CONFIG)
    if dialect_name:  # no connection: staging types from `type:` or the source's schema snapshot
        if apply:
            fail("--dialect prints the DDL without connecting; --apply runs it on the system itself", ExitCode.CONFIG)
        try:
            statements = review.ddl_for_dialect(config, system, dialect_name)
        except SchemaMismatch as exc:
            fail(str(exc), ExitCode.CONFIG)
        _print_script(statements)
        return
    systems = Systems(config)
    try:
        tables = pipeline.staging_tables_of(config, systems, system)
        upgrade = needs_quarantine_upgrade(systems.target(system), schema)
        statements = ddl_statements(systems.dialect(system), schema, tables, quarantine_upgrade=upgrade)
        _print_script(statements + vendor_table_notes(tables))
        if apply:
            with systems.target(system).begin() as conn:
                for statement in statements:
                    conn.exec_driver_sql(statement)
            errors.print(f"applied {len(statements)} statements on system {system} ({config.redacted_url(system)})")
    except (SchemaMismatch, ConfigError) as exc:
        fail(str(exc), ExitCode.CONFIG)
    finally:
        systems.dispose()


def _print_script(statements: list[str]) -> None:
    """Statements end with `;`; a note (comment lines only: a vendor table, which gets no DDL) does not."""
    text = "\n\n".join(s if _only_comments(s) else s + ";" for s in statements)
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _only_comments(statement: str) -> bool:
    return all(line.lstrip().startswith("--") for line in statement.splitlines() if line.strip())


@sql_group.command("grants")
@config_option
@click.option("--system", required=True, help="The system (a `systems:` name) whose login to create.")
@dialect_option
@click.option("--login", help="Login (role) name; default `grants: {login:}` of the system, else the url's user.")
@click.option("--password-placeholder", help="Text written where the password goes (default CHANGE_ME).")
@click.option("--host", help="MySQL/MariaDB: the account's host part (default %).")
def sql_grants(
    config_path: Path, system: str, dialect_name: str | None, login: str | None, password_placeholder: str | None,
    host: str | None,
) -> None:
    """Print the least-privilege login and grants for the configured flows on one system."""
    from agent import dialects

    config = load_or_exit(config_path)
    if system not in config.model.systems:
        fail(f"{config.path}: no system named {system!r} under `systems:`", ExitCode.CONFIG)
    dialect = dialects.for_name(dialect_name) if dialect_name else review.system_dialect(config, system)
    try:
        login_ = grants.login_for(config, system, dialect, login, password_placeholder, host)
        script = grants.grants_script(config, system, dialect, login_)
    except ConfigError as exc:
        fail("\n".join(exc.problems), ExitCode.CONFIG)
    click.echo(script)


@click.command("render-sql")
@config_option
@click.option("--flow", "flow_name", help="Only this flow (and the start-up statements of its systems).")
def render_sql(config_path: Path, flow_name: str | None) -> None:
    """Print every statement the agent runs, per flow, in each system's SQL, with its bind parameters."""
    config = load_or_exit(config_path)
    try:
        text = review.render_sql_text(config, flow_name)
    except (ConfigError, source_query.QueryRefused) as exc:
        fail(str(exc), ExitCode.CONFIG)
    click.echo(text, nl=False)

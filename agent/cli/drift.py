"""`mes-erp-agent snapshot` and `mes-erp-agent drift`: schema snapshots and the drift report.

Exit codes follow the CLI contract: 0 fine, 1 a database could not be read (or --accept was declined),
2 configuration error (including a missing or hand-edited snapshot), 3 schema drift.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import NoReturn

import click
import sqlalchemy as sa

from agent.cli.common import config_option, load_or_exit
from agent.config import LoadedConfig
from agent.connect import Systems
from agent.drift import live_schema, require_every_table, snapshot_systems
from agent.drift import snapshot as snapshot_files
from agent.drift.compare import compare_system
from agent.drift.gate import DriftGate, drift_report
from agent.catalog.model import SystemSnapshot
from agent.drift.render import as_dict, text, to_json
from agent.drift.watch import uses_by_system
from agent.errors import ConfigError, SnapshotError
from agent.exit_codes import ExitCode

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_DRIFT = ExitCode.OK, ExitCode.FLOW_FAILED, ExitCode.CONFIG, ExitCode.DRIFT


def _fail(message: str, code: ExitCode) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(int(code))


@click.command("snapshot")
@config_option
@click.option("--system", "system_name", help="Only this system (a `systems:` name); default: every system a flow uses.")
@click.option("--accept", is_flag=True, help="After a reviewed schema change: show the differences and rewrite the snapshot.")
@click.option("--yes", is_flag=True, help="With --accept: do not ask for confirmation.")
@click.option("--check", is_flag=True, help="Only compare (for CI or before a vendor update): exit 0 same, 3 different.")
def snapshot_command(config_path: Path, system_name: str | None, accept: bool, yes: bool, check: bool) -> None:
    """Write schema_snapshots/<system>.yaml: the reviewed schema of every table the flows read or write."""
    if accept and check:
        _fail("--accept and --check exclude each other: --check only compares, --accept writes", EXIT_CONFIG)
    config = load_or_exit(config_path)
    systems = Systems(config)
    codes = []
    try:
        for system in snapshot_systems(config, system_name):
            live = live_schema(config, systems, system)
            require_every_table(config, live)
            codes.append(_snapshot_one(config, system, live, accept=accept, yes=yes, check=check))
    except SnapshotError as exc:
        _fail(str(exc), EXIT_CONFIG)
    except ConfigError as exc:
        _fail("\n".join(exc.problems), EXIT_CONFIG)
    except sa.exc.SQLAlchemyError as exc:
        _fail(f"cannot read the schema: {_db_error(exc)}", EXIT_FAILED)
    finally:
        systems.dispose()
    sys.exit(int(max(codes, key=lambda c: (c == EXIT_CONFIG, c)) if codes else EXIT_OK))


def _snapshot_one(config: LoadedConfig, system: str, live: SystemSnapshot, accept: bool, yes: bool, check: bool) -> ExitCode:
    path = snapshot_files.snapshot_path(config, system)
    new_text = snapshot_files.render(live)
    if not path.is_file():
        if check:
            click.echo(f"system {system}: MISSING {path}; create it with: mes-erp-agent snapshot -c {config.path} --system {system}")
            return EXIT_CONFIG
        snapshot_files.write(path, live)
        click.echo(f"system {system}: wrote {path} ({_tables(live)})")
        return EXIT_OK
    old_text = path.read_text(encoding="utf-8")
    if old_text == new_text:
        click.echo(f"system {system}: {path} matches the live schema ({_tables(live)})")
        return EXIT_OK
    try:
        reviewed = snapshot_files.read(path, system, config.path)
    except SnapshotError as exc:
        if not accept:
            raise
        click.echo(f"system {system}: the current snapshot cannot be used ({exc}); it will be replaced.")
        reviewed = None
    if reviewed is not None and reviewed.schema_equals(live):
        note = f"server version {reviewed.server_version} -> {live.server_version}; the schema is unchanged"
        if check:
            click.echo(f"system {system}: {path} matches the live schema ({note}; `snapshot` updates the header)")
        else:
            snapshot_files.write(path, live)
            click.echo(f"system {system}: updated the header of {path} ({note})")
        return EXIT_OK
    if reviewed is not None:
        diffs = tuple(compare_system(reviewed, live.tables, uses_by_system(config).get(system, {})))
        click.echo(text(drift_report(config, system, live.dialect, diffs)))
        click.echo("")
    click.echo("".join(difflib.unified_diff(
        old_text.splitlines(keepends=True), new_text.splitlines(keepends=True),
        fromfile=f"{path} (reviewed)", tofile=f"system {system} (live)",
    )))
    if check:
        click.echo(f"system {system}: the live schema DIFFERS from {path}")
        return EXIT_DRIFT
    if not accept:
        click.echo(
            f"system {system}: the live schema differs from {path}; nothing written. After review, accept it with:\n"
            f"    mes-erp-agent snapshot -c {config.path} --system {system} --accept"
        )
        return EXIT_DRIFT
    if not yes and not click.confirm(f"Accept this schema of system {system} and rewrite {path}?", default=False):
        click.echo(f"system {system}: not accepted; nothing written")
        return EXIT_FAILED
    snapshot_files.write(path, live)
    click.echo(f"system {system}: accepted; wrote {path}. Halted flows resume at their next poll.")
    return EXIT_OK


@click.command("drift")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def drift_command(config_path: Path, as_json: bool) -> None:
    """Compare every system's live schema with its snapshot: exit 0 no drift, 3 drift."""
    config = load_or_exit(config_path)
    systems = Systems(config)
    try:
        gate = DriftGate(config, systems)
        reports = [gate.report(system, gate.compare(system)) for system in gate.queries]
    except SnapshotError as exc:
        _fail(str(exc), EXIT_CONFIG)
    except sa.exc.SQLAlchemyError as exc:
        _fail(f"cannot read the schema: {_db_error(exc)}", EXIT_FAILED)
    finally:
        systems.dispose()
    drift = any(r.drift for r in reports)
    if as_json:
        click.echo(to_json({"drift": drift, "systems": [as_dict(r) for r in reports]}))
    else:
        click.echo("\n\n".join(text(r) for r in reports))
    sys.exit(int(EXIT_DRIFT if drift else EXIT_OK))


def _tables(schema: SystemSnapshot) -> str:
    count = len(schema.tables)
    return f"{count} table{'s' if count != 1 else ''}"


def _db_error(exc: sa.exc.SQLAlchemyError) -> str:
    original = getattr(exc, "orig", None) or exc
    return f"{type(original).__name__}: {str(original).strip().splitlines()[0]}"

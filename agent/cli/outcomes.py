"""`outcomes`: per flow, the rows the ERP import job rejected, with the ERP's message and the MES row each came from;
`outcomes --flow NAME --resubmit KEY...`: the flow's declared `resubmit:` on its rows in error with those keys."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa

from agent import import_outcomes
from agent.cli.common import config_option, errors, fail, load_or_exit, say
from agent.config import LoadedConfig
from agent.connect import Systems, known_passwords, scrub
from agent.errors import AgentError, ConfigError, SecretUnavailable
from agent.exit_codes import ExitCode


@click.command("outcomes")
@config_option
@click.option("--flow", "flow_name", help="Only this flow (required with --resubmit).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--limit", default=import_outcomes.DEFAULT_LIMIT, show_default=True, type=click.IntRange(min=1),
              help="Rows in error listed per flow.")
@click.option("--resubmit", is_flag=True, help="Run the flow's `resubmit:` on its rows in error with the KEYs given.")
@click.argument("keys", nargs=-1)
def outcomes(config_path: Path, flow_name: str | None, as_json: bool, limit: int, resubmit: bool, keys: tuple[str, ...]) -> None:
    """Rows the ERP import job rejected, with its message and their MES row; or resubmit some (--resubmit KEY...).

    KEY is the row's key as `outcomes` lists it (a key of several columns: the values joined by `|`)."""
    config = load_or_exit(config_path)
    try:
        flows = list(config.flows(flow_name)) if flow_name else list(config.model.flows)
    except ConfigError as exc:
        fail(str(exc), ExitCode.CONFIG)
    if keys and not resubmit:
        fail("KEY arguments are for --resubmit: `outcomes -c FILE --flow NAME --resubmit KEY...`", ExitCode.CONFIG)
    if resubmit:
        if flow_name is None or not keys:
            fail("--resubmit needs --flow NAME and at least one KEY: `outcomes -c FILE --flow NAME --resubmit KEY...`",
                 ExitCode.CONFIG)
        _resubmit(config, flow_name, list(keys), as_json)
        return
    systems = Systems(config)
    try:
        found = [import_outcomes.read_outcomes(config, systems, name, limit) for name in flows]
    finally:
        systems.dispose()
    found = [_scrubbed(f, known_passwords(config)) for f in found]
    if as_json:
        click.echo(json.dumps(found, indent=2, default=str))
    else:
        for flow in found:
            _print_flow(flow, limit)
    sys.exit(int(ExitCode.FLOW_FAILED if any("error" in f for f in found) else ExitCode.OK))


def _print_flow(f: dict[str, Any], limit: int) -> None:
    where = f"{f['table']} on system {f['system']}"
    if "error" in f:
        errors.print(f"flow {f['flow']}: cannot read its import outcome in {where} ({f['url']}): {f['error']}",
                     markup=False, highlight=False, soft_wrap=True)
        return
    if not f["watched"]:
        say(f"flow {f['flow']}: import outcome not watched (layout: vendor without `outcome:`)")
        return
    counts = f"{f['pending_rows']} pending, {f['done_rows']} done"
    if not f["error_rows"]:
        say(f"flow {f['flow']}: no row in error in {where}; {counts}")
        return
    statuses = ", ".join(str(s) for s in f["error_statuses"])
    say(f"flow {f['flow']}: {_rows(f['error_rows'])} in error in {where} ({f['status_column']} {statuses}); {counts}")
    for row in f["rows"]:
        say("  " + _mes_row(f, row))
        say(f"    ERP message: {row['error']}")
    if f["error_rows"] > len(f["rows"]):
        say(f"  ... and {f['error_rows'] - len(f['rows'])} more (--limit {limit})")


def _mes_row(f: dict[str, Any], row: dict[str, Any]) -> str:
    staged = f"staged {row['staged_at'][:19].replace('T', ' ')} UTC, " if row["staged_at"] else ""
    return (f"MES row {f['source']} on system {f['source_system']}: {row['key_text']}, version {row['source_version']} "
            f"({staged}{row['row_id_column']} {row['row_id']})")


def _resubmit(config: LoadedConfig, name: str, keys: list[str], as_json: bool) -> None:
    refusal = import_outcomes.resubmit_refusal(config, name)
    if refusal is not None:
        fail(refusal, ExitCode.CONFIG)
    flow = config.model.flows[name]
    systems = Systems(config)
    try:
        done = import_outcomes.resubmit(config, systems, name, keys)
    except SecretUnavailable:
        raise
    except (sa.exc.SQLAlchemyError, AgentError, OSError) as exc:
        message = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        fail(scrub(f"flow {name}: nothing resubmitted: cannot update its staging table on system {flow.target} "
                   f"({config.redacted_url(flow.target)}): {message}", known_passwords(config)), ExitCode.FLOW_FAILED)
    finally:
        systems.dispose()
    source = done.source
    assert source.resubmit is not None
    sets = ", ".join(f"{c} = {'NULL' if v is None else v}" for c, v in source.resubmit.items())
    listed = {"source": flow.table or str(flow.query), "source_system": flow.source}
    rows = [import_outcomes.row_dict(config, name, r, source) for r in done.rows]
    if as_json:
        click.echo(json.dumps({"flow": name, "table": source.staging_name, "system": flow.target, "resubmitted": done.updated,
                               "set": source.resubmit, "rows": rows, "missing": done.missing}, indent=2, default=str))
        return
    say(f"flow {name}: resubmitted {_rows(done.updated)} in error in {source.staging_name} on system {flow.target}: "
        f"set {sets}")
    for row in rows:
        say(f"  {_mes_row(listed, row)}; was: {row['error']}")
    for key in done.missing:
        say(f"flow {name}: no row in error has key {key}; nothing changed for it")


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def _scrubbed(found: dict[str, Any], secrets: list[str]) -> dict[str, Any]:
    return {k: scrub(v, secrets) if isinstance(v, str) else v for k, v in found.items()}

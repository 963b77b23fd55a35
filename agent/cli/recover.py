"""`reconcile` and `backfill`: recovery past the polls (agent/recovery), by hand or from a plant's scheduler.

`reconcile` compares each flow's source with what agent_ledger says was staged, stages what the polls missed and,
for flows with `deletes: {detect: true}`, writes tombstones for keys gone from the source. `backfill` reads a range
of a flow's first watermark column again without moving its watermark, resumable after a crash.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from agent import alerts, pipeline, privileges, recovery
from agent.cli.common import config_option, console, errors, fail, load_or_exit, say
from agent.config import RECONCILE_MARGIN, LoadedConfig, duration_text, parse_duration
from agent.connect import Systems
from agent.contract import version_text
from agent.drift.gate import DriftGate
from agent.errors import AgentError, ConfigError, SchemaMismatch, SnapshotError
from agent.exit_codes import ExitCode
from agent.report import FAILED
from agent.stopping import StopRequest

DEFAULT_WINDOW = dt.timedelta(days=7)
strict_option = click.option(
    "--strict-privileges", is_flag=True,
    help="Refuse to start (exit 4) when a login can do more than `sql grants` gives it (default: warn).")


def _check_privileges(config: LoadedConfig, flow_name: str | None, strict: bool) -> None:
    """As `run` does at start-up: the logins may do what the grants give, and no more."""
    try:
        privileges.startup_check(config, flow_name, strict)
    except privileges.PrivilegeExcess as exc:
        fail(str(exc), ExitCode.PRIVILEGES)


@contextmanager
def _flows_of(config: LoadedConfig, flow_name: str | None,
              book: alerts.IncidentBook | None = None) -> Iterator[tuple[Systems, DriftGate]]:
    """Engines and the drift gate (sharing the command's IncidentBook: one writer of the alert state)."""
    systems = Systems(config)
    gate: DriftGate | None = None
    try:
        gate = DriftGate(config, systems, flow_name, book=book)
        yield systems, gate
    except SnapshotError as exc:
        fail(f"{config.path}: cannot check for schema drift; no data was moved:\n{exc}", ExitCode.CONFIG)
    except (ConfigError, SchemaMismatch) as exc:
        fail(f"{config.path}: configuration does not match the databases; no data was moved:\n{exc}", ExitCode.CONFIG)
    finally:
        if gate is not None:
            gate.close()
        systems.dispose()


def _since(text: str | None) -> tuple[dt.timedelta | None, dt.datetime | None]:
    """`--since 3d` (back from the watermark minus overlap) or `--since 2026-05-01[T06:00:00]`."""
    if text is None:
        return None, None
    try:
        return parse_duration(text), None
    except ValueError:
        pass
    try:
        return None, dt.datetime.fromisoformat(text.strip())
    except ValueError:
        fail(f"--since {text!r}: expected a duration (3d, 12h) or a timestamp (2026-05-01T06:00:00)", ExitCode.CONFIG)


@click.command("reconcile")
@config_option
@click.option("--flow", "flow_name", help="Only this flow.")
@click.option("--since", "since_text", help="Compare from this value of the first watermark column (2026-05-01T06:00:00), "
              "or this long below the watermark minus overlap (3d); default: the flow's reconcile.window (7d).")
@strict_option
def reconcile_command(config_path: Path, flow_name: str | None, since_text: str | None, strict_privileges: bool) -> None:
    """Stage what the polls missed (and tombstones for deleted keys, with `deletes: {detect: true}`); exit 0, 1 when a
    pass failed, 3 when a flow is halted on drift."""
    config = load_or_exit(config_path)
    try:
        flows = config.flows(flow_name)
    except ConfigError as exc:
        fail("\n".join(exc.problems), ExitCode.CONFIG)
    window, since = _since(since_text)
    keep = config.model.ledger.keep - RECONCILE_MARGIN
    if window is not None and window > keep:
        fail(f"--since {since_text}: reaches further back than agent_ledger remembers (ledger.keep {config.model.ledger.keep} "
             f"less a day's margin); rows staged before then would be staged again", ExitCode.CONFIG)
    _check_privileges(config, flow_name, strict_privileges)
    book = alerts.book_for(config)
    code = ExitCode.OK
    try:
        with _flows_of(config, flow_name, book) as (systems, gate):
            for name, flow in flows.items():
                reason = gate(name)
                if reason:
                    say(f"flow {name}: halted on schema drift, not reconciled: {reason.splitlines()[0]}")
                    code = max(code, ExitCode.DRIFT)
                    continue
                ctx = pipeline.prepare(config, systems, name)
                default = flow.reconcile.window if flow.reconcile else DEFAULT_WINDOW
                report = recovery.reconcile(ctx, window or default, since, keep)
                _print_pass(report)
                recovery.record_incident(book, report, ctx, config.path)
                if report.fixed:
                    say(f"flow {name}: incident late_rows:{name} raised: overlap ({duration_text(flow.overlap)}) is too short "
                        "for this MES")
                passes = [report]
                if flow.deletes is not None and flow.deletes.detect:
                    passes.append(recovery.detect_deletes(ctx))
                    _print_pass(passes[-1])
                if any(p.outcome == FAILED for p in passes):
                    code = max(code, ExitCode.FLOW_FAILED)
    finally:
        book.close()
    sys.exit(int(code))


def _print_pass(report: recovery.PassReport) -> None:
    if report.outcome == FAILED:
        errors.print(f"flow {report.flow}: {report.kind} failed: {report.message}", markup=False, highlight=False)
        return
    if report.lower is None:
        say(f"flow {report.flow}: {report.kind}: nothing staged yet, nothing to compare")
        return
    span = f"{report.column} [{version_text((report.lower,))}, {version_text((report.upper,))})"
    found = (f"rows missing: {report.rows_missing}, staged: {report.rows_staged}, quarantined: {report.rows_quarantined}"
             if report.kind == recovery.RECONCILE else f"keys gone: {report.keys_gone}, tombstones staged: {report.tombstones}")
    say(f"flow {report.flow}: {report.kind} {span}: {report.buckets_compared} buckets compared, "
        f"{report.buckets_differing} differed; {found}")


@click.command("backfill")
@config_option
@click.option("--flow", "flow_name", required=True, help="The flow to backfill.")
@click.option("--from", "lower_text", required=True, help="First value of the first watermark column (inclusive).")
@click.option("--to", "upper_text", required=True, help="Last value of the first watermark column (inclusive).")
@strict_option
def backfill_command(config_path: Path, flow_name: str, lower_text: str, upper_text: str, strict_privileges: bool) -> None:
    """Read a range of the flow's first watermark column again and stage what agent_ledger does not know, without
    moving the watermark; rerun the same command to resume after a crash."""
    config = load_or_exit(config_path)
    try:
        config.flows(flow_name)
    except ConfigError as exc:
        fail("\n".join(exc.problems), ExitCode.CONFIG)
    _check_privileges(config, flow_name, strict_privileges)
    stop = StopRequest()
    restore = stop.install_signal_handlers()
    try:
        with _flows_of(config, flow_name) as (systems, gate):
            reason = gate(flow_name)
            if reason:
                fail(f"flow {flow_name}: halted on schema drift, not backfilled:\n{reason}", ExitCode.DRIFT)
            ctx = pipeline.prepare(config, systems, flow_name)
            lower, upper = recovery.parse_bound(ctx, lower_text), recovery.parse_bound(ctx, upper_text)
            column = ctx.flow.watermark[0]
            with _progress(flow_name, f"{column} {version_text((lower,))} .. {version_text((upper,))}") as (start, batch):
                done = recovery.backfill(ctx, lower, upper, start, batch, stop.is_set)
    except recovery.BackfillRefused as exc:
        fail(str(exc), ExitCode.CONFIG)
    except (AgentError, sa.exc.SQLAlchemyError, OSError) as exc:
        fail(f"flow {flow_name}: backfill failed: {pipeline.describe_error(exc)}; rerun the same command to resume", ExitCode.FLOW_FAILED)
    finally:
        restore()
    totals = (f"{done.rows_read} rows read in {done.batches} batches, {done.rows_written} staged, {done.rows_duplicate} "
              f"already staged, {done.rows_quarantined} quarantined")
    if stop.is_set():
        say(f"backfill {flow_name}: stopped by {stop.reason} after {totals}; rerun the same command to resume")
        sys.exit(int(ExitCode.INTERRUPTED))
    say(f"backfill {flow_name}: done, {totals}; the live watermark stays at {done.live_watermark}")
    sys.exit(int(ExitCode.OK))


Listener = Callable[[recovery.BackfillProgress], None]


@contextmanager
def _progress(flow: str, span: str) -> Iterator[tuple[Listener, Listener]]:
    """A rich progress bar on a terminal; one line per batch when piped (logs, CI, scripts)."""
    def started(p: recovery.BackfillProgress) -> None:
        say(f"backfill {flow}: {span}, {p.total} rows in the source")
        if p.resumed_after:
            say(f"backfill {flow}: resuming after {p.resumed_after} (an earlier backfill of this range did not finish)")
        sys.stdout.flush()

    if not console.is_terminal:
        def line(p: recovery.BackfillProgress) -> None:
            say(f"backfill {flow}: {p.rows_read}/{p.total} rows read, {p.rows_written} staged, {p.rows_duplicate} "
                f"already staged, {p.rows_quarantined} quarantined")
            sys.stdout.flush()

        yield started, line
        return
    bar = Progress(TextColumn(f"backfill {flow}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
                   TimeRemainingColumn(), console=console)
    task: list[Any] = []

    def start_bar(p: recovery.BackfillProgress) -> None:
        started(p)
        task.append(bar.add_task("rows", total=p.total, note=""))

    def advance(p: recovery.BackfillProgress) -> None:
        bar.update(task[0], completed=p.rows_read, total=max(p.total, p.rows_read),
                   note=f"{p.rows_written} staged, {p.rows_duplicate} already staged, {p.rows_quarantined} quarantined")

    with bar:
        yield start_bar, advance

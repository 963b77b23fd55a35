"""Step 5: the checks that every simulated change arrived exactly once, one work order's staging rows, the ERP's
schedule changes in the MES inbound table, the quarantine by reason, what to try next, and the demo's exit code."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from rich.markup import escape
from rich.text import Text

from agent import report
from agent.demo.erp_schedule import TABLE as SCHEDULE_TABLE
from agent.demo.folder import ERP_FILE, INBOUND_FILE, MES_FILE, STAGING_FILE, shown
from agent.demo.inbound import show_schedule_changes
from agent.demo.planner import PlannerCounters
from agent.demo.polls import Poll
from agent.demo.screen import FlowStats, Printer, flow_table, latency_note, number, record_table, rows_table
from agent.demo.shopfloor import QUARANTINED, STAGED, Change, ChangeLog, Counters
from agent.demo.staging_reader import ERP_SYSTEM, MES_SYSTEM, StagingReader
from agent.exit_codes import ExitCode

# "What to try next": one MES change by hand (modified_date in the MES clock's local time, stored as the loader does).
TRY_A_CHANGE_SQL = ("UPDATE work_order SET scrapped_qty = 2, scrap_reason_id = 7, "
                    "modified_date = strftime('%Y-%m-%d %H:%M:%f', 'now', 'localtime') || '000' WHERE work_order_id = 72591")
# And one ERP schedule change by hand: the first released order is due two days later (ERP clock: local time).
TRY_A_RESCHEDULE_SQL = ("UPDATE production_order SET due_date = date(due_date, '+2 days'), "
                        "modified_at = strftime('%Y-%m-%d %H:%M:%f', 'now', 'localtime') || '000' WHERE order_no = 1000001")


class Summary:
    def __init__(self, folder: Path, flows: dict[str, FlowStats], log: ChangeLog, reader: StagingReader,
                 printer: Printer, counters: Counters | None, planner: PlannerCounters | None = None):
        self.folder, self.flows, self.log, self.reader, self.printer = folder, flows, log, reader, printer
        self.counters = counters  # the shop floor's, when it ran
        self.planner = planner  # the ERP planner's, when it ran
        self.console = printer.console

    def show(self) -> bool:
        """Print the summary; True when every check passed."""
        flows = list(self.flows.values())
        self.printer.step(5, "Summary", "")
        self.console.print(flow_table(flows))
        if any(f.latencies for f in flows):
            self.console.print(latency_note(flows))
        checks_ok = self._check_staging(flows)
        checks_ok = self._check_changes() and checks_ok
        self._show_order_story()
        schedule = next((f for f in flows if f.table == SCHEDULE_TABLE), None)
        if schedule is not None:
            changes = [c for c in self.log.changes() if c.table == SCHEDULE_TABLE]
            checks_ok = show_schedule_changes(self.console, self.printer, self.reader, schedule, changes) and checks_ok
        self._show_quarantine()
        self._what_next()
        return checks_ok

    def _check_staging(self, flows: list[FlowStats]) -> bool:
        """Every staging table holds each (key, version) once, as many rows as the agent wrote."""
        self.console.print()
        ok = True
        for f in flows:
            with self.reader.engine(f.name).connect() as conn:
                total, distinct = conn.execute(sa.text(
                    f"SELECT COUNT(*), COUNT(DISTINCT stg_source_key || '|' || stg_source_version) "
                    f"FROM {self.reader.staging_sql(f.name)} WHERE stg_flow = :flow"), {"flow": f.name}).one()
            if total != distinct or total != f.staged:
                ok = False
                self.printer.say(f"[bold red]CHECK FAILED[/] {f.staging}: {number(total)} rows, {number(distinct)} "
                                 f"distinct (key, version), {number(f.staged)} written by the agent")
            else:
                self.printer.say(f"[green]check[/] {f.staging}: {number(total)} rows = {number(f.initial_rows)} history "
                                 f"+ {number(f.live_staged)} live changes, each (key, version) once")
        return ok

    def _check_changes(self) -> bool:
        """Every simulated change arrived, staged or quarantined as the simulator meant it (MES, then ERP changes)."""
        changes = self.log.changes()
        if not changes:
            return True
        source_of = {f.table: f.source for f in self.flows.values()}
        ok = True
        for system in (MES_SYSTEM, ERP_SYSTEM):
            ok = self._check_changes_of(system.upper(), [c for c in changes if source_of.get(c.table) == system]) and ok
        self.console.print(Text(
            "Polling stages each row's state at each poll: a row changed twice between two polls arrives once, in "
            "its latest state. So that you can follow every change, the simulators change a row again only after "
            "its previous state reached the other system.", style="dim"))
        return ok

    def _check_changes_of(self, system: str, changes: list[Change]) -> bool:
        if not changes:
            return True
        missing = [c for c in changes if c.arrived_at is None]
        unexpected = [c for c in changes if c.arrived_at is not None and c.outcome != c.expected]
        if missing or unexpected:
            self.printer.say(f"[bold red]CHECK FAILED[/] of {len(changes)} simulated {system} changes, {len(missing)} "
                             f"did not arrive and {len(unexpected)} arrived other than expected:")
            for c in (missing + unexpected)[:10]:
                self.console.print(f"  {c.table} {c.key} {c.version}: {c.what} ({c.outcome or 'missing'})",
                                   markup=False, highlight=False)
        else:
            staged = sum(1 for c in changes if c.outcome == STAGED)
            quarantined = sum(1 for c in changes if c.outcome == QUARANTINED)
            self.printer.say(f"[green]check[/] all {len(changes)} simulated {system} changes arrived exactly once: "
                             f"{staged} staged, {quarantined} quarantined as expected")
        return not (missing or unexpected)

    def _show_order_story(self) -> None:
        """One simulated work order as the ERP sees it: a staging row per version, its operations."""
        order = story_order(self.log.changes())
        if order is None:
            return
        wo_flow = next(f for f in self.flows.values() if f.table == "work_order")
        op_flow = next(f for f in self.flows.values() if f.table == "work_order_routing")
        with self.reader.engine(wo_flow.name).connect() as conn:
            versions = conn.execute(sa.text(
                f"SELECT * FROM {self.reader.staging_sql(wo_flow.name)} WHERE stg_flow = :flow AND stg_source_key = :key "
                "ORDER BY stg_id"), {"flow": wo_flow.name, "key": order}).all()
            operations = conn.execute(sa.text(
                f"SELECT stg_id, stg_source_version, operation_no, work_center, labor_hours, actual_cost "
                f"FROM {self.reader.staging_sql(op_flow.name)} WHERE stg_flow = :flow AND order_no = :order "
                "ORDER BY stg_id"), {"flow": op_flow.name, "order": int(order)}).all()
            held = conn.execute(sa.text(
                f"SELECT source_version, reason FROM {self.reader.quarantine_sql(op_flow.name)} "
                "WHERE flow = :flow AND source_key LIKE :prefix ORDER BY quarantine_id"),
                {"flow": op_flow.name, "prefix": f"{order}|%"}).all()
        self.console.print()
        self.printer.say(f"[bold]Work order {order} in the ERP staging tables[/]: one staging row per MES version "
                         "(interface tables are append-only event logs), PENDING until the ERP's import job takes it")
        self.console.print(record_table(f"{wo_flow.staging}, stg_source_key = '{order}'", versions))
        if operations:
            self.console.print(rows_table(
                f"{op_flow.staging}, order_no = {order}",
                ["stg_id", "stg_source_version", "operation_no", "work_center", "labor_hours", "actual_cost"], operations))
        if held:
            self.console.print(rows_table(f"agent_quarantine, operations of order {order}", ["source_version", "reason"],
                                          held))

    def _show_quarantine(self) -> None:
        rows: list[sa.Row] = []
        for flow in {f.target: f.name for f in self.flows.values()}.values():  # one quarantine per target system
            with self.reader.engine(flow).connect() as conn:
                rows += conn.execute(sa.text(
                    f"SELECT flow, reason, COUNT(*) AS n, MIN(source_key) AS example "
                    f"FROM {self.reader.quarantine_sql(flow)} GROUP BY flow, reason ORDER BY flow, n DESC")).all()
        self.console.print()
        if not rows:
            self.printer.say("[bold]Quarantine[/]: empty (no row failed mapping or validation)")
            return
        self.printer.say("[bold]Quarantine[/] (agent_quarantine in each staging schema): rows that failed mapping or "
                         "validation, with "
                         "the source row as JSON and the reason; the rest of their batch went through")
        self.console.print(rows_table("agent_quarantine by reason", ["flow", "reason", "rows", "e.g. source key"],
                                      [(r.flow, r.reason, r.n, r.example) for r in rows]))
        if self.counters and self.counters.operations_without_hours:
            self.console.print(Text(
                f"A quarantined row is not lost: when the MES corrects it, the correction is a new version and flows like "
                f"any change ({self.counters.operations_corrected} of {self.counters.operations_without_hours} "
                "operations confirmed without labor hours were corrected during the demo).", style="dim"))

    def _what_next(self) -> None:
        command = self.printer.command
        mes_db = shlex.quote(shown(self.folder / MES_FILE))
        staging_db = shlex.quote(shown(self.folder / STAGING_FILE))
        erp_db = shlex.quote(shown(self.folder / ERP_FILE))
        inbound_db = shlex.quote(shown(self.folder / INBOUND_FILE))
        lines = [
            (command("status"), "per flow: watermark, last run, rows moved, quarantined, PENDING backlog"),
            (command("run", "--once"), "catch every flow up once: 0 rows, nothing changed since"),
            (f"sqlite3 {mes_db} \"{TRY_A_CHANGE_SQL}\"", f"change a work order in the MES; then "
             f"`{command('run', '--once')}` stages exactly that row, as a new version"),
            (command("run"), "the long-running agent: each flow on its schedule (Ctrl+C stops it)"),
            (f"sqlite3 {erp_db} \"{TRY_A_RESCHEDULE_SQL}\"", f"reschedule a production order in the ERP; then "
             f"`{command('run', '--once')}` stages exactly that order in the MES inbound table, as a new version"),
            (f"sqlite3 {inbound_db} \"SELECT stg_id, stg_source_key, stg_source_version, qty, due_date, stg_status FROM "
             "stg_production_order ORDER BY stg_id DESC LIMIT 10\"", "the newest rows in the MES inbound table"),
            (command("sql ddl", "--system", ERP_SYSTEM), "the staging DDL a DBA runs on the ERP (`--system mes`: the MES "
             "inbound schema)"),
            (command("sql grants", "--system", MES_SYSTEM), "what the agent may do on the MES, which is both a source "
             "(read-only) and a target (its inbound schema only)"),
            (command("drift"), "the drift gate's check: live schemas against the snapshots"),
            (f"sqlite3 {staging_db} \"SELECT stg_id, stg_source_key, stg_source_version, stg_status, qty_good, "
             "scrap_reason FROM stg_work_order ORDER BY stg_id DESC LIMIT 10\"", "the newest staging rows"),
            (f"sqlite3 {staging_db} \"SELECT flow, source_key, reason, source_row FROM agent_quarantine\"",
             "quarantined rows and why"),
            (f"sqlite3 {staging_db} \"SELECT flow, rows_read, rows_written, rows_quarantined, watermark_after FROM "
             "agent_run ORDER BY run_id DESC LIMIT 10\"", "what each batch did"),
        ]
        self.console.print()
        self.printer.say(f"[bold]What to try next[/] (the configuration is {escape(shown(self.printer.config_path))}: "
                         "open it, every key is explained; sqlite3 is SQLite's command-line shell, any SQLite tool will do)")
        for line, what in lines:
            self.console.print(Text("  " + line, style="bold"), soft_wrap=True)
            self.console.print(Text("      " + what, style="dim"))


def story_order(changes: Sequence[Change]) -> str | None:
    """The simulated order with the most to show: completed, a quarantined then corrected operation, scrap."""
    by_order: dict[str, list[Change]] = {}
    for c in changes:
        if c.arrived_at is not None:
            by_order.setdefault(c.key.split("|")[0], []).append(c)
    best, best_score = None, -1.0
    for order, items in by_order.items():
        versions = sum(1 for c in items if c.table == "work_order")
        if versions == 0:
            continue
        operations = sum(1 for c in items if c.table == "work_order_routing")
        score = (versions >= 2) * 8 + any(c.outcome == QUARANTINED for c in items) * 4 + (operations > 0) * 2 \
            + any("scrapped" in c.what for c in items) + min(operations, 7) / 10
        if score > best_score:
            best, best_score = order, score
    return best


def exit_code_of(flows: Sequence[FlowStats], polls: Sequence[Poll], checks_ok: bool) -> ExitCode:
    """1 when a poll failed or a check did not pass, 3 when a flow halted on drift, else 0."""
    outcomes = {f.outcome for f in flows} | {p.report.outcome for p in polls}
    if report.FAILED in outcomes:
        return ExitCode.FLOW_FAILED
    if report.HALTED in outcomes:
        return ExitCode.DRIFT
    return ExitCode.OK if checks_ok else ExitCode.FLOW_FAILED

"""`mes-erp-agent demo`: an MES and an ERP in SQLite, real production data, a shop floor, the agent, live.

Steps, in order (each one is what a plant does with the real product):
1. the MES: a SQLite database with the AdventureWorks Production tables (real data, all orders closed);
2. the ERP: the demo configuration (`demo.yaml`, commented) and the staging tables, created by the same
   code as `mes-erp-agent sql ddl --apply`;
3. schema snapshots for the drift gate (`capture_schema_snapshots`, after the DDL, before the first run),
   then the initial load, as `mes-erp-agent run --once`;
4. the shop floor (`agent.demo.shopfloor`) changes the MES for `seconds` while the agent polls each flow
   on its own schedule (`pipeline.run_flow`, the same call the long-running `mes-erp-agent run` makes);
   then a last catch-up once the last changes are older than the flows' lag;
5. a summary that checks every simulated change arrived exactly once, a work order's rows as staged,
   the quarantine with its reasons, and what to try next.

`run_demo` is the CLI entry point (returns the exit code); `Demo(...).run()` returns the details (tests).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import shutil
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.padding import Padding
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from agent import pipeline, report
from agent.config import LoadedConfig, load_config
from agent.connect import Systems
from agent.demo import adventureworks
from agent.demo.screen import (
    Events, FlowStats, flow_table, latency_note, live_view, number, poll_line, record_table, rows_table, seconds_text,
    simulator_line,
)
from agent.demo.shopfloor import QUARANTINED, STAGED, Change, ChangeLog, RowIdentity, ShopFloor
from agent.drift.gate import DriftGate
from agent.errors import ConfigError, SchemaMismatch
from agent.exit_codes import ExitCode
from agent.staging import ddl_statements
from agent.contract import ControlTables

CONFIG_NAME = "demo.yaml"
EDITED_CONFIG_NAME = "demo.yaml.edited"
MARKER_NAME = ".mes-erp-agent-demo"
MES_FILE, ERP_FILE, STAGING_FILE = "mes.db", "erp.db", "erp_staging.db"
ERP_SYSTEM = "erp"
# Everything a demo run creates in its folder; a new run in the same folder removes exactly these.
DEMO_FILES = tuple(
    f"{name}{suffix}" for name in (MES_FILE, ERP_FILE, STAGING_FILE) for suffix in ("", "-journal", "-wal", "-shm")
) + (CONFIG_NAME, MARKER_NAME)
DEMO_FOLDERS = ("schema_snapshots", "alerts")  # written by the agent (drift gate) next to the config
TEMPLATE_FOLDER_TEXT = "demo-run/demo.yaml"  # in demo.yaml's comments; replaced by the real path
# "What to try next": one MES change by hand (modified_date in the MES clock's local time, stored as the loader does).
TRY_A_CHANGE_SQL = ("UPDATE work_order SET scrapped_qty = 2, scrap_reason_id = 7, "
                    "modified_date = strftime('%Y-%m-%d %H:%M:%f', 'now', 'localtime') || '000' WHERE work_order_id = 72591")
CATCH_UP_MARGIN = 0.25  # seconds past the lag before the last poll, for the MES clock's millisecond rounding


class FolderRefused(Exception):
    """The folder holds something the demo did not make; nothing was changed."""


class DemoFailed(Exception):
    """Something outside the agent went wrong (the simulator, the computer's clock); the message says what."""


def run_demo(folder: Path, seconds: int, console: Console) -> int:
    """The `mes-erp-agent demo` command: the exit code (0 success, 1 a flow or the check failed, 2 refused)."""
    return Demo(folder, seconds, console).run().exit_code


def capture_schema_snapshots(config: LoadedConfig, systems: Systems) -> list[Path]:
    """Schema snapshots of every system the flows use, which the drift gate compares before each flow run.

    The demo's one step between the DDL and the first run; in a plant this is `mes-erp-agent snapshot`.
    """
    from agent.drift import capture_snapshots

    return capture_snapshots(config, systems)


@dataclass
class DemoResult:
    exit_code: int
    folder: Path
    config_path: Path | None = None
    mes_counts: dict[str, int] = field(default_factory=dict)
    flows: dict[str, FlowStats] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)


class Demo:
    def __init__(self, folder: Path, seconds: float, console: Console, seed: int = 7):
        self.folder = Path(folder)
        self.seconds = max(0.0, float(seconds))
        self.console = console
        self.tty = console.is_terminal and not console.is_dumb_terminal
        self.seed = seed
        self.result = DemoResult(ExitCode.OK, self.folder)
        self.log = ChangeLog()
        self.events = Events()
        self.flows: dict[str, FlowStats] = {}
        self.contexts: dict[str, pipeline.FlowContext] = {}
        self.reports: list[report.FlowReport] = []
        self.phase = "initial load"
        self.started = time.monotonic()
        self.shopfloor: ShopFloor | None = None
        self.systems: Systems | None = None
        self.config: LoadedConfig | None = None
        self._progress: Any = None
        self._progress_tasks: dict[str, Any] = {}
        self.identities: dict[str, RowIdentity] = {}

    # --- the whole demo ----------------------------------------------------------------------------
    def run(self) -> DemoResult:
        # The screen shows every poll; the agent's per-run INFO log lines would repeat them (and break the live view).
        agent_log = logging.getLogger("mes_erp_agent")
        quieted, previous_level = agent_log.getEffectiveLevel() == logging.INFO, agent_log.level
        if quieted:
            agent_log.setLevel(logging.WARNING)
        try:
            self.result.exit_code = self._run()
        except FolderRefused as exc:
            self._say(f"[bold red]Not starting:[/] {_escape(str(exc))}")
            self.result.exit_code = ExitCode.CONFIG
        except DemoFailed as exc:
            self._say(f"[bold red]The demo stopped:[/] {_escape(str(exc))}")
            self.result.exit_code = ExitCode.FLOW_FAILED
        except (ConfigError, SchemaMismatch) as exc:
            self._say(f"[bold red]The demo configuration does not match its databases (a bug in the demo):[/]\n"
                      f"{_escape(str(exc))}")
            self.result.exit_code = ExitCode.CONFIG
        except KeyboardInterrupt:
            self._say("\n[yellow]Interrupted.[/] The databases stay in the folder as they are; "
                      "`mes-erp-agent demo` starts over.")
            self.result.exit_code = ExitCode.INTERRUPTED
        except Exception:
            self.console.print(Text("The demo failed unexpectedly:\n" + traceback.format_exc(), style="red"))
            self.result.exit_code = ExitCode.FLOW_FAILED
        finally:
            if self.shopfloor is not None and self.shopfloor.is_alive():
                self.shopfloor.stop()
                self.shopfloor.join(timeout=10)
            if self.systems is not None:
                self.systems.dispose()
            if quieted:
                agent_log.setLevel(previous_level)
        self.result.flows = self.flows
        self.result.changes = self.log.changes()
        return self.result

    def _run(self) -> int:
        replaced = self.prepare_folder()
        self._header()
        if replaced:
            self._say(f"[yellow]{_escape(replaced)}[/]")
        self.build_mes()
        config = self.write_config()
        self.systems = Systems(config)
        self.create_staging_tables(config, self.systems)
        snapshots = capture_schema_snapshots(config, self.systems)
        self._detail("schema snapshots, which the drift gate compares with the live tables before every run: "
                     + ", ".join(self._shown(p) for p in snapshots))
        self.prepare_flows(config, self.systems)
        gate = DriftGate(config, self.systems)
        self.initial_load(gate)
        if self.seconds > 0 and all(f.outcome == report.OK for f in self.flows.values()):
            self.live(gate)
        return self.summary()

    # --- 1. folder and MES -------------------------------------------------------------------------
    def prepare_folder(self) -> str | None:
        """Create the folder, or clear a previous demo's files from it. Refuses any other non-empty folder."""
        folder = self.folder
        if folder.exists() and not folder.is_dir():
            raise FolderRefused(f"{self._shown(folder)} is a file. Choose a folder: mes-erp-agent demo --dir NEW-FOLDER")
        if not folder.exists():
            folder.mkdir(parents=True)
            return None
        if not any(folder.iterdir()):
            return None
        marker = folder / MARKER_NAME
        if not marker.is_file():
            raise FolderRefused(
                f"{self._shown(folder)} already exists and was not made by `mes-erp-agent demo`; nothing in it was "
                "changed. Choose another folder: mes-erp-agent demo --dir NEW-FOLDER"
            )
        note = f"{self._shown(folder)} holds a previous demo: starting over (its databases are replaced)."
        config = folder / CONFIG_NAME
        if config.is_file() and _sha256(config.read_bytes()) not in marker.read_text(encoding="utf-8"):
            config.replace(folder / EDITED_CONFIG_NAME)
            note += f" Your edited {CONFIG_NAME} is kept as {self._shown(folder / EDITED_CONFIG_NAME)}."
        for name in DEMO_FILES:
            (folder / name).unlink(missing_ok=True)
        for name in DEMO_FOLDERS:
            if (folder / name).is_dir():
                shutil.rmtree(folder / name)
        return note

    def build_mes(self) -> None:
        started = time.monotonic()
        self._step(1, "MES database", f"{self._shown(self.folder / MES_FILE)}: loading the AdventureWorks Production tables")
        engine = sa.create_engine(f"sqlite:///{(self.folder / MES_FILE).resolve()}")
        try:
            counts = adventureworks.create_and_load(engine, adventureworks.TABLES)
        finally:
            engine.dispose()
        self.result.mes_counts = counts
        self._detail(
            f"{number(counts['work_order'])} work orders (history: all closed), {number(counts['work_order_routing'])} "
            f"operations, {number(counts['product'])} products, {number(counts['scrap_reason'])} scrap reasons, "
            f"{number(counts['location'])} locations, in {seconds_text(time.monotonic() - started)}"
        )

    # --- 2. configuration and ERP staging tables --------------------------------------------------------
    def write_config(self) -> LoadedConfig:
        path = self.folder / CONFIG_NAME
        template = resources.files("agent.demo").joinpath("demo.yaml").read_text(encoding="utf-8")
        text = template.replace(TEMPLATE_FOLDER_TEXT, self._shown(path))
        path.write_text(text, encoding="utf-8")
        (self.folder / MARKER_NAME).write_text(
            "This folder was made by `mes-erp-agent demo`; running the demo again here replaces its databases.\n"
            f"{CONFIG_NAME} as written (sha256): {_sha256(text.encode('utf-8'))}\n",
            encoding="utf-8",
        )
        self.config = config = load_config(path)
        self.result.config_path = config.path
        return config

    def create_staging_tables(self, config: LoadedConfig, systems: Systems) -> None:
        """Exactly what `mes-erp-agent sql ddl -c demo.yaml --system erp --apply` runs."""
        self._step(2, "ERP staging tables", f"{self._shown(self.folder / ERP_FILE)} with the staging schema in "
                   f"{self._shown(self.folder / STAGING_FILE)}; configuration {self._shown(config.path)}")
        schema = config.model.systems[ERP_SYSTEM].staging_schema
        assert schema is not None
        tables = pipeline.staging_tables_of(config, systems, ERP_SYSTEM)
        statements = ddl_statements(systems.dialect(ERP_SYSTEM), schema, tables)
        with systems.target(ERP_SYSTEM).begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
        names = [f"{schema}.{t.name}" for t in tables] + [f"{schema}.agent_{n}" for n in ("watermark", "run", "quarantine")]
        self._detail(f"{len(statements)} statements, as `{self._command('sql ddl', '--system', ERP_SYSTEM, '--apply')}`: "
                     + ", ".join(names))

    def prepare_flows(self, config: LoadedConfig, systems: Systems) -> None:
        identities = {}
        for name, flow in config.flows().items():
            ctx = pipeline.prepare(config, systems, name)
            self.contexts[name] = ctx
            every = flow.schedule.every.total_seconds() if flow.schedule and flow.schedule.every else 60.0
            assert flow.table is not None, "demo flows read tables"
            self.flows[name] = FlowStats(name, flow.table, f"{ctx.staging.schema}.{ctx.staging.name}", every,
                                         flow.lag.total_seconds())
            identities[flow.table] = RowIdentity(tuple(flow.key), tuple(flow.watermark))
        self.identities = identities

    # --- 3. initial load ---------------------------------------------------------------------------------
    def initial_load(self, gate: pipeline.Gate | None) -> None:
        self._step(3, "Initial load", f"every flow catches up on the MES history, as `{self._command('run', '--once')}`")
        progress = None
        if self.tty:
            progress = Progress(TextColumn("  {task.description:<26}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("rows"), TimeElapsedColumn(), console=self.console)
            for name, f in self.flows.items():
                self._progress_tasks[name] = progress.add_task(name, total=self.result.mes_counts.get(f.table))
        self._progress = progress
        with progress or nullcontext():
            for name, ctx in self.contexts.items():
                started = time.monotonic()
                flow_report = pipeline.run_flow(ctx, gate, self.on_batch)
                f = self.flows[name]
                f.initial_seconds = time.monotonic() - started
                self._after_poll(f, flow_report, count_poll=False)
        self._progress = None
        for f in self.flows.values():
            rate = f" ({f.initial_rows / f.initial_seconds:,.0f} rows/s)" if f.initial_seconds > 0 and f.initial_rows else ""
            self._detail(f"{f.name:<26} {number(f.initial_rows)} rows staged, {number(f.quarantined)} quarantined, "
                         f"in {f.initial_batches} batches, {seconds_text(f.initial_seconds)}{rate}")
            self._remember_positions(f)

    # --- 4. the shop floor, live ---------------------------------------------------------------------------
    def live(self, gate: pipeline.Gate | None) -> None:
        cadence = ", ".join(f"{f.name} every {f.every:g} s" for f in self.flows.values())
        self._step(4, f"Shop floor, {self.seconds:g} s", "a simulator starts, confirms and completes work orders in the "
                   f"MES while the agent polls each flow on its own schedule: {cadence}")
        mes_db = (self.folder / MES_FILE).resolve()
        self.shopfloor = ShopFloor(mes_db, self.log, self.identities, on_event=lambda text: self.events.add("MES", text),
                                   seed=self.seed)
        self.shopfloor.prepare()
        self.phase = "shop floor running"
        # The live view goes away at the end: the summary below shows the final numbers.
        view = Live(get_renderable=self._live_view, console=self.console, refresh_per_second=8, transient=True) \
            if self.tty else nullcontext()
        with view:
            self.started = time.monotonic()
            self.shopfloor.start()
            end = self.started + self.seconds
            for f in self.flows.values():
                f.next_due = self.started
            while (now := time.monotonic()) < end and self.shopfloor.is_alive():
                for f in self.flows.values():
                    if f.next_due <= now:
                        self.poll(f, gate)
                        f.next_due += f.every
                        if f.next_due <= time.monotonic():  # a slow poll: skip missed times, like the scheduler
                            f.next_due = time.monotonic() + f.every
                wake = min([f.next_due for f in self.flows.values()] + [end])
                time.sleep(max(0.0, min(wake - time.monotonic(), 0.1)))
            self.shopfloor.stop()
            self.shopfloor.join()
            if self.shopfloor.error is not None:
                raise DemoFailed(f"the shop floor simulator failed: {self.shopfloor.error}") from self.shopfloor.error
            self.phase = "last catch-up"
            self._catch_up(gate)
            self.phase = "done"
        self._detail(simulator_line(self.shopfloor.counters).plain)

    def _catch_up(self, gate: pipeline.Gate | None) -> None:
        """After the shop floor stops, wait until its last change is older than the lag, then poll every flow."""
        last = self.log.last_commit()
        if last is not None:
            lag = max(f.lag for f in self.flows.values())
            wait = last + lag + CATCH_UP_MARGIN - time.monotonic()
            if wait > 0:
                if not self.tty:
                    self.console.print(f"  shop floor stopped; the last changes wait {lag:g} s (lag), then every flow polls once more")
                time.sleep(wait)
        for f in self.flows.values():
            self.poll(f, gate)

    def poll(self, f: FlowStats, gate: pipeline.Gate | None) -> None:
        before = (f.live_staged, f.quarantined, len(f.latencies))
        flow_report = pipeline.run_flow(self.contexts[f.name], gate, self.on_batch)
        self._after_poll(f, flow_report, count_poll=True)
        if flow_report.rows_read and not self.tty:
            self.console.print(poll_line(
                f, time.monotonic() - self.started, flow_report.rows_read, f.live_staged - before[0],
                f.quarantined - before[1], flow_report.rows_duplicate, f.latencies[before[2]:],
            ), markup=False, highlight=False)

    def _after_poll(self, f: FlowStats, flow_report: report.FlowReport, count_poll: bool) -> None:
        self.reports.append(flow_report)
        f.polls += 1 if count_poll else 0
        f.watermark = flow_report.watermark_after or f.watermark
        f.outcome, f.message = flow_report.outcome, flow_report.message
        if flow_report.outcome != report.OK:
            self.events.add("ERP", f"{f.name} {flow_report.outcome}: {flow_report.message}")
            if not self.tty:
                self.console.print(Text(f"  {f.name} {flow_report.outcome}: {flow_report.message}", style="bold red"))
        if flow_report.rows_read or f.pending is None:
            f.pending = self._pending(f)

    def on_batch(self, batch: report.BatchReport) -> None:
        """Right after a batch's ERP commit: count it and, live, match its rows to the MES changes."""
        committed = time.monotonic()
        f = self.flows[batch.flow]
        f.batches += 1
        f.quarantined += batch.rows_quarantined
        if self.phase == "initial load":
            f.initial_rows += batch.rows_written
            f.initial_batches += 1
            if self._progress is not None:
                self._progress.advance(self._progress_tasks[f.name], batch.rows_read)
            return
        f.live_staged += batch.rows_written
        latencies = []
        for key, version in self._new_staging_rows(f):
            change = self.log.arrive(f.table, key, version, STAGED, committed)
            if change is not None and change.latency is not None and change.outcome == STAGED:
                latencies.append(change.latency)
        quarantined = 0
        for key, version in self._new_quarantine_rows(f):
            quarantined += 1
            self.log.arrive(f.table, key, version, QUARANTINED, committed)
        f.latencies.extend(latencies)
        text = f"{f.name}: batch of {batch.rows_read} -> {batch.rows_written} staged"
        if quarantined:
            text += f", {quarantined} quarantined"
        if latencies:
            low, high = min(latencies), max(latencies)
            text += f" (latency {low:.2f} s)" if len(latencies) == 1 else f" (latency {low:.2f}-{high:.2f} s)"
        self.events.add("ERP", text)

    # --- reading the ERP (a read-only connection, as `status` would) ------------------------------------------
    def _erp(self) -> sa.Engine:
        assert self.systems is not None
        return self.systems.source(ERP_SYSTEM)

    def _staging_sql(self, f: FlowStats) -> str:
        ctx = self.contexts[f.name]
        return ctx.target_dialect.table(ctx.staging.schema, ctx.staging.name)

    def _control(self, f: FlowStats) -> ControlTables:
        return self.contexts[f.name].control

    def _remember_positions(self, f: FlowStats) -> None:
        with self._erp().connect() as conn:
            f.last_stg_id = conn.execute(sa.text(f"SELECT COALESCE(MAX(stg_id), 0) FROM {self._staging_sql(f)}")).scalar_one()
            f.last_quarantine_id = conn.execute(sa.text(
                f"SELECT COALESCE(MAX(quarantine_id), 0) FROM {self._control(f).quarantine}")).scalar_one()

    def _new_staging_rows(self, f: FlowStats) -> list[tuple[str, str]]:
        with self._erp().connect() as conn:
            rows = conn.execute(sa.text(
                f"SELECT stg_id, stg_source_key, stg_source_version FROM {self._staging_sql(f)} "
                "WHERE stg_id > :last AND stg_flow = :flow ORDER BY stg_id"), {"last": f.last_stg_id, "flow": f.name}).all()
        if rows:
            f.last_stg_id = rows[-1].stg_id
        return [(r.stg_source_key, r.stg_source_version) for r in rows]

    def _new_quarantine_rows(self, f: FlowStats) -> list[tuple[str, str]]:
        with self._erp().connect() as conn:
            rows = conn.execute(sa.text(
                f"SELECT quarantine_id, source_key, source_version FROM {self._control(f).quarantine} "
                "WHERE quarantine_id > :last AND flow = :flow ORDER BY quarantine_id"),
                {"last": f.last_quarantine_id, "flow": f.name}).all()
        if rows:
            f.last_quarantine_id = rows[-1].quarantine_id
        return [(r.source_key, r.source_version) for r in rows]

    def _pending(self, f: FlowStats) -> int | None:
        ctx = self.contexts[f.name]
        with self._erp().connect() as conn:
            status = report.flow_status(conn, ctx.target_dialect, ctx.control, self._staging_sql(f), f.name, f.watermark)
        return status.pending_rows

    # --- 5. summary ------------------------------------------------------------------------------------
    def summary(self) -> int:
        flows = list(self.flows.values())
        self._step(5, "Summary", "")
        self.console.print(flow_table(flows))
        if any(f.latencies for f in flows):
            self.console.print(latency_note(flows))
        checks_ok = self._check_arrivals(flows)
        self._show_order_story()
        self._show_quarantine()
        self._what_next()
        return self._exit_code(checks_ok)

    def _check_arrivals(self, flows: list[FlowStats]) -> bool:
        """Every simulated change arrived once, as expected; every staging table holds each version once."""
        self.console.print()
        ok = True
        for f in flows:
            with self._erp().connect() as conn:
                total, distinct = conn.execute(sa.text(
                    f"SELECT COUNT(*), COUNT(DISTINCT stg_source_key || '|' || stg_source_version) "
                    f"FROM {self._staging_sql(f)} WHERE stg_flow = :flow"), {"flow": f.name}).one()
            if total != distinct or total != f.staged:
                ok = False
                self._say(f"[bold red]CHECK FAILED[/] {f.staging}: {number(total)} rows, {number(distinct)} distinct "
                          f"(key, version), {number(f.staged)} written by the agent")
            else:
                self._say(f"[green]check[/] {f.staging}: {number(total)} rows = {number(f.initial_rows)} history + "
                          f"{number(f.live_staged)} live changes, each (key, version) once")
        changes = self.log.changes()
        if changes:
            missing = [c for c in changes if c.arrived_at is None]
            unexpected = [c for c in changes if c.arrived_at is not None and c.outcome != c.expected]
            staged = sum(1 for c in changes if c.outcome == STAGED)
            quarantined = sum(1 for c in changes if c.outcome == QUARANTINED)
            if missing or unexpected:
                ok = False
                self._say(f"[bold red]CHECK FAILED[/] of {len(changes)} simulated MES changes, {len(missing)} did not arrive "
                          f"and {len(unexpected)} arrived other than expected:")
                for c in (missing + unexpected)[:10]:
                    self.console.print(f"  {c.table} {c.key} {c.version}: {c.what} ({c.outcome or 'missing'})",
                                       markup=False, highlight=False)
            else:
                self._say(f"[green]check[/] all {len(changes)} simulated MES changes arrived exactly once: "
                          f"{staged} staged, {quarantined} quarantined as expected")
            self.console.print(Text(
                "Polling stages each row's state at each poll: a row changed twice between two polls arrives once, in "
                "its latest state. So that you can follow every change, the simulator changes a row again only after "
                "its previous state reached the ERP.", style="dim"))
        return ok

    def _show_order_story(self) -> None:
        """One simulated work order as the ERP sees it: a staging row per version, its operations."""
        order = self._story_order()
        if order is None:
            return
        wo_flow = next(f for f in self.flows.values() if f.table == "work_order")
        op_flow = next(f for f in self.flows.values() if f.table == "work_order_routing")
        with self._erp().connect() as conn:
            versions = conn.execute(sa.text(
                f"SELECT * FROM {self._staging_sql(wo_flow)} WHERE stg_flow = :flow AND stg_source_key = :key "
                "ORDER BY stg_id"), {"flow": wo_flow.name, "key": order}).all()
            operations = conn.execute(sa.text(
                f"SELECT stg_id, stg_source_version, operation_no, work_center, labor_hours, actual_cost "
                f"FROM {self._staging_sql(op_flow)} WHERE stg_flow = :flow AND order_no = :order ORDER BY stg_id"),
                {"flow": op_flow.name, "order": int(order)}).all()
            held = conn.execute(sa.text(
                f"SELECT source_version, reason FROM {self._control(op_flow).quarantine} "
                "WHERE flow = :flow AND source_key LIKE :prefix ORDER BY quarantine_id"),
                {"flow": op_flow.name, "prefix": f"{order}|%"}).all()
        self.console.print()
        self._say(f"[bold]Work order {order} in the ERP staging tables[/]: one staging row per MES version (interface "
                  "tables are append-only event logs), PENDING until the ERP's import job takes it")
        self.console.print(record_table(f"{wo_flow.staging}, stg_source_key = '{order}'", versions))
        if operations:
            self.console.print(rows_table(
                f"{op_flow.staging}, order_no = {order}",
                ["stg_id", "stg_source_version", "operation_no", "work_center", "labor_hours", "actual_cost"], operations))
        if held:
            self.console.print(rows_table(f"agent_quarantine, operations of order {order}", ["source_version", "reason"],
                                          held))

    def _story_order(self) -> str | None:
        """The simulated order with the most to show: completed, a quarantined then corrected operation, scrap."""
        changes = [c for c in self.log.changes() if c.arrived_at is not None]
        by_order: dict[str, list[Change]] = {}
        for c in changes:
            by_order.setdefault(c.key.split("|")[0], []).append(c)
        best, best_score = None, -1
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

    def _show_quarantine(self) -> None:
        with self._erp().connect() as conn:
            control = next(iter(self.contexts.values())).control
            rows = conn.execute(sa.text(
                f"SELECT flow, reason, COUNT(*) AS n, MIN(source_key) AS example FROM {control.quarantine} "
                "GROUP BY flow, reason ORDER BY flow, n DESC")).all()
        self.console.print()
        if not rows:
            self._say("[bold]Quarantine[/]: empty (no row failed mapping or validation)")
            return
        self._say("[bold]Quarantine[/] (staging.agent_quarantine): rows that failed mapping or validation, with the source "
                  "row as JSON and the reason; the rest of their batch went through")
        self.console.print(rows_table("agent_quarantine by reason", ["flow", "reason", "rows", "e.g. source key"],
                                      [(r.flow, r.reason, r.n, r.example) for r in rows]))
        counters = self.shopfloor.counters if self.shopfloor else None
        if counters and counters.operations_without_hours:
            self.console.print(Text(
                f"A quarantined row is not lost: when the MES corrects it, the correction is a new version and flows like "
                f"any change ({counters.operations_corrected} of {counters.operations_without_hours} operations confirmed "
                "without labor hours were corrected during the demo).", style="dim"))

    def _what_next(self) -> None:
        config = self._shown(self.config.path) if self.config else CONFIG_NAME
        mes_db = shlex.quote(self._shown(self.folder / MES_FILE))
        staging_db = shlex.quote(self._shown(self.folder / STAGING_FILE))
        lines = [
            (self._command("status"), "per flow: watermark, last run, rows moved, quarantined, PENDING backlog"),
            (self._command("run", "--once"), "catch every flow up once: 0 rows, nothing changed since"),
            (f"sqlite3 {mes_db} \"{TRY_A_CHANGE_SQL}\"", f"change a work order in the MES; then "
             f"`{self._command('run', '--once')}` stages exactly that row, as a new version"),
            (self._command("run"), "the long-running agent: each flow on its schedule (Ctrl+C stops it)"),
            (self._command("sql ddl", "--system", ERP_SYSTEM), "the staging DDL a DBA runs on the ERP"),
            (self._command("drift"), "the drift gate's check: live schemas against the snapshots"),
            (f"sqlite3 {staging_db} \"SELECT stg_id, stg_source_key, stg_source_version, stg_status, qty_good, "
             "scrap_reason FROM stg_work_order ORDER BY stg_id DESC LIMIT 10\"", "the newest staging rows"),
            (f"sqlite3 {staging_db} \"SELECT flow, source_key, reason, source_row FROM agent_quarantine\"",
             "quarantined rows and why"),
            (f"sqlite3 {staging_db} \"SELECT flow, rows_read, rows_written, rows_quarantined, watermark_after FROM "
             "agent_run ORDER BY run_id DESC LIMIT 10\"", "what each batch did"),
        ]
        self.console.print()
        self._say(f"[bold]What to try next[/] (the configuration is {_escape(config)}: open it, every key is explained; "
                  "sqlite3 is SQLite's command-line shell, any SQLite tool will do)")
        for command, what in lines:
            self.console.print(Text("  " + command, style="bold"), soft_wrap=True)
            self.console.print(Text("      " + what, style="dim"))

    def _exit_code(self, checks_ok: bool) -> int:
        outcomes = {f.outcome for f in self.flows.values()} | {r.outcome for r in self.reports}
        if report.FAILED in outcomes:
            return ExitCode.FLOW_FAILED
        if report.HALTED in outcomes:
            return ExitCode.DRIFT
        return ExitCode.OK if checks_ok else ExitCode.FLOW_FAILED

    # --- output helpers -------------------------------------------------------------------------------
    def _live_view(self) -> Any:
        assert self.shopfloor is not None
        return live_view(list(self.flows.values()), self.shopfloor.counters, self.events, self.started, self.seconds,
                         self.phase)

    def _header(self) -> None:
        folder = self._shown(self.folder)
        self._say("[bold]mes-erp-agent demo[/]: an MES and an ERP, both SQLite databases, no server needed")
        self.console.print(Text(
            f"In {folder}/ the demo builds an MES database with real manufacturing data (Microsoft AdventureWorks "
            "Production tables, MIT license) and an ERP database with staging tables, then a simulated shop floor "
            "changes the MES while the agent moves every new or changed row into the ERP staging tables, exactly "
            "once, and shows it live.", style="dim"))

    def _step(self, n: int, title: str, text: str) -> None:
        self.console.print()
        self._say(f"[bold cyan]{n}/5 {title}[/]" + (f"  {_escape(text)}" if text else ""))

    def _detail(self, text: str) -> None:
        if self.tty:
            self.console.print(Padding(Text(text), (0, 0, 0, 4)))
        else:
            self.console.print(Text("    " + text), soft_wrap=True)

    def _say(self, markup: str) -> None:
        self.console.print(markup, highlight=False)

    def _command(self, command: str, *args: str) -> str:
        config = self._shown(self.config.path) if self.config else str(self.folder / CONFIG_NAME)
        return " ".join(["mes-erp-agent", command, "-c", shlex.quote(config), *args])

    @staticmethod
    def _shown(path: Path) -> str:
        """A path as the user should type it: relative to the current folder when inside it."""
        absolute = Path(os.path.abspath(path))
        try:
            return str(absolute.relative_to(Path.cwd()))
        except ValueError:
            return str(absolute)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _escape(text: str) -> str:
    return escape(text)

"""`mes-erp-agent demo`: an MES and an ERP in SQLite, real production data, a shop floor, the agent, live.

Steps, in order (each one is what a plant does with the real product), each in its own module:
1. the MES: a SQLite database with the AdventureWorks Production tables (real data, all orders closed) (`setup`);
2. the ERP: its schedule of released production orders (`erp_schedule`), the demo configuration (`demo.yaml`,
   commented) and the staging tables of both directions (the ERP's staging schema, the MES's inbound schema),
   created by the same code as `mes-erp-agent sql ddl --apply`, then the schema snapshots for the drift gate;
3. the initial load, as `mes-erp-agent run --once` (`initial_load`);
4. the shop floor (`shopfloor`) changes the MES and the ERP planner (`planner`) the ERP's schedule for `seconds`
   while the long-running service's own scheduler polls each flow on its schedule (`live`); then a last poll of
   each flow once the last changes are older than the flows' lag;
5. a summary that checks every simulated change arrived exactly once, a work order's rows as staged, each ERP
   schedule change in the MES inbound table, the quarantine with its reasons, and what to try next (`summary`,
   `inbound`).
`folder` keeps the demo to a folder it made; `polls` counts what each poll did; `screen` draws.

`run_demo` is the CLI entry point (returns the exit code); `Demo(...).run()` returns the details (tests).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from agent import report
from agent.connect import Systems
from agent.demo.folder import (
    CONFIG_NAME, EDITED_CONFIG_NAME, ERP_FILE, MARKER_NAME, MES_FILE, FolderRefused, prepare_folder, shown,
)
from agent.demo.initial_load import run_initial_load
from agent.demo.erp_schedule import TABLE as SCHEDULE_TABLE
from agent.demo.live import DemoFailed, LiveRun
from agent.demo.planner import Planner
from agent.demo.polls import Poll, PollRecorder
from agent.demo.screen import Events, FlowStats, Printer
from agent.demo.setup import (
    build_erp_schedule, build_mes, capture_schema_snapshots, create_staging_tables, prepare_flows, write_config,
)
from agent.demo.shopfloor import Change, ChangeLog, ShopFloor
from agent.demo.staging_reader import StagingReader
from agent.demo.summary import TRY_A_CHANGE_SQL, TRY_A_RESCHEDULE_SQL, Summary, exit_code_of
from agent.drift.gate import DriftGate
from agent.errors import ConfigError, SchemaMismatch
from agent.exit_codes import ExitCode

__all__ = ["CONFIG_NAME", "EDITED_CONFIG_NAME", "MARKER_NAME", "TRY_A_CHANGE_SQL", "TRY_A_RESCHEDULE_SQL", "Demo",
           "DemoResult", "FolderRefused", "capture_schema_snapshots", "run_demo"]

# The screen shows every poll; these loggers' per-poll INFO lines would repeat them (and break the live view).
PER_POLL_LOGGERS = ("mes_erp_agent", "apscheduler")


def run_demo(folder: Path, seconds: int, console: Console) -> int:
    """The `mes-erp-agent demo` command: the exit code (agent.exit_codes.ExitCode)."""
    return Demo(folder, seconds, console).run().exit_code


@dataclass
class DemoResult:
    exit_code: int
    folder: Path
    config_path: Path | None = None
    mes_counts: dict[str, int] = field(default_factory=dict)
    erp_counts: dict[str, int] = field(default_factory=dict)  # the ERP's core tables the demo made: production_order
    flows: dict[str, FlowStats] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    polls: list[Poll] = field(default_factory=list)  # every run of every flow, in the order they ended


class Demo:
    def __init__(self, folder: Path, seconds: float, console: Console, seed: int = 7):
        self.folder = Path(folder)
        self.seconds = max(0.0, float(seconds))
        self.console = console
        self.printer = Printer(console, self.folder / CONFIG_NAME)
        self.seed = seed
        self.result = DemoResult(ExitCode.OK, self.folder)
        self.log = ChangeLog()
        self.events = Events()
        self.recorder: PollRecorder | None = None
        self.shopfloor: ShopFloor | None = None
        self.planner: Planner | None = None
        self.systems: Systems | None = None
        self.gate: DriftGate | None = None

    def run(self) -> DemoResult:
        with _per_poll_logs_quieted():
            try:
                self.result.exit_code = self._run()
            except FolderRefused as exc:
                self.printer.say(f"[bold red]Not starting:[/] {escape(str(exc))}")
                self.result.exit_code = ExitCode.CONFIG
            except DemoFailed as exc:
                self.printer.say(f"[bold red]The demo stopped:[/] {escape(str(exc))}")
                self.result.exit_code = ExitCode.FLOW_FAILED
            except (ConfigError, SchemaMismatch) as exc:
                self.printer.say("[bold red]The demo configuration does not match its databases (a bug in the demo):[/]\n"
                                 f"{escape(str(exc))}")
                self.result.exit_code = ExitCode.CONFIG
            except KeyboardInterrupt:
                self.printer.say("\n[yellow]Interrupted.[/] The databases stay in the folder as they are; "
                                 "`mes-erp-agent demo` starts over.")
                self.result.exit_code = ExitCode.INTERRUPTED
            except Exception:
                self.console.print(Text("The demo failed unexpectedly:\n" + traceback.format_exc(), style="red"))
                self.result.exit_code = ExitCode.FLOW_FAILED
            finally:
                self._close()
        if self.recorder is not None:
            self.result.flows = self.recorder.flows
            self.result.polls = list(self.recorder.polls)
        self.result.changes = self.log.changes()
        return self.result

    def _run(self) -> int:
        replaced = self.prepare_folder()
        self._header()
        if replaced:
            self.printer.say(f"[yellow]{escape(replaced)}[/]")
        self.result.mes_counts = build_mes(self.folder, self.printer)
        self.result.erp_counts = {SCHEDULE_TABLE: build_erp_schedule(self.folder)}
        config = write_config(self.folder)
        self.result.config_path = self.printer.config_path = config.path
        self.systems = systems = Systems(config)
        create_staging_tables(self.folder, config, systems, self.printer, self.result.erp_counts[SCHEDULE_TABLE])
        snapshots = capture_schema_snapshots(config, systems)
        self.printer.detail("schema snapshots, which the drift gate compares with the live tables before every run: "
                            + ", ".join(shown(p) for p in snapshots))
        prepared = prepare_flows(config, systems)
        reader = StagingReader(systems, prepared.contexts)
        self.recorder = recorder = PollRecorder(prepared.flows, self.log, self.events, reader, self.printer)
        self.gate = gate = DriftGate(config, systems)
        run_initial_load(prepared.contexts, gate, recorder, self.printer, {**self.result.mes_counts,
                                                                           **self.result.erp_counts})
        if self.seconds > 0 and all(f.outcome == report.OK for f in recorder.flows.values()):
            self.shopfloor = ShopFloor((self.folder / MES_FILE).resolve(), self.log, prepared.identities,
                                       on_event=lambda text: self.events.add("MES", text), seed=self.seed)
            if SCHEDULE_TABLE in prepared.identities:
                self.planner = Planner((self.folder / ERP_FILE).resolve(), self.log, prepared.identities[SCHEDULE_TABLE],
                                       product_names(), on_event=lambda text: self.events.add("ERP", text),
                                       seed=self.seed + 4)
            LiveRun(config, systems, gate, recorder, self.shopfloor, self.seconds, self.planner).run()
        summary = Summary(self.folder, recorder.flows, self.log, reader, self.printer,
                          self.shopfloor.counters if self.shopfloor else None,
                          self.planner.counters if self.planner else None)
        checks_ok = summary.show()
        return exit_code_of(list(recorder.flows.values()), recorder.polls, checks_ok)

    def prepare_folder(self) -> str | None:
        """Create the folder, or clear a previous demo's files from it. Refuses any other non-empty folder."""
        return prepare_folder(self.folder)

    def _header(self) -> None:
        self.printer.say("[bold]mes-erp-agent demo[/]: an MES and an ERP, both SQLite databases, no server needed")
        self.console.print(Text(
            f"In {shown(self.folder)}/ the demo builds an MES database with real manufacturing data (Microsoft "
            "AdventureWorks Production tables, MIT license) and an ERP database with a production schedule and staging "
            "tables, then a simulated shop floor changes the MES and a simulated planner the ERP's schedule while the "
            "agent moves every new or changed row, exactly once, into the ERP staging tables (MES -> ERP) and the MES "
            "inbound table (ERP -> MES), and shows it live.", style="dim"))

    def _close(self) -> None:
        for simulator in (self.shopfloor, self.planner):
            if simulator is not None and simulator.is_alive():
                simulator.stop()
                simulator.join(timeout=10)
        if self.gate is not None:
            self.gate.close()
        if self.systems is not None:
            self.systems.dispose()


@contextmanager
def _per_poll_logs_quieted() -> Iterator[None]:
    """At the default INFO level, show only warnings and errors of the agent and the scheduler meanwhile."""
    quieted = [log for log in map(logging.getLogger, PER_POLL_LOGGERS) if log.getEffectiveLevel() == logging.INFO]
    levels = [log.level for log in quieted]
    for log in quieted:
        log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for log, level in zip(quieted, levels, strict=True):
            log.setLevel(level)


def product_names() -> dict[int, str]:
    """AdventureWorks product names, for the planner's messages."""
    from agent.demo import adventureworks

    return {p["product_id"]: p["name"] for p in adventureworks.iter_rows("product")}

"""The platform-independent lifecycle under the Windows service (and the systemd one): start, ready, heartbeat,
reload, stop. The Lifecycle's own states run on a fake clock; ServiceHost runs a real SQLite flow in a thread,
as the Windows service control manager runs it (no signal handlers there), and is stopped the way SvcStop does.
The Windows-only pieces are absent here, and nothing breaks without pywin32."""

from __future__ import annotations

import datetime as dt
import importlib.util
import logging
import threading

import pytest
import sqlalchemy as sa

from agent import alerts
from agent.alerts import eventlog
from agent.alerts.model import OPENED, RESOLVED, Incident, Message
from agent.config import load_config
from agent.demo import adventureworks
from agent.exit_codes import ExitCode
from agent.lifecycle import READY, RELOADING, STARTING, STOPPED, STOPPING, Lifecycle
from agent.service import ServiceHost, WindowsService, default_account
from agent.service.host import file_log_handler
from helpers import make_pair, prepare_erp, scalar, work_order_flow, write_config
from service_support import wait_until


MINIMAL = """\
systems:
  mes:
    url: sqlite:///mes.db
  erp:
    url: sqlite:///erp.db
    staging_schema: staging
    attach: {staging: erp_staging.db}
flows:
  work_orders:
    source: mes
    target: erp
    table: work_order
    watermark: [modified_date, work_order_id]
    key: [work_order_id]
    staging_table: stg_work_order
    columns: {order_no: work_order_id}
"""


class Recorder:
    """A service manager that writes down what it is told (it stands for systemd or the SCM, not for a database)."""

    def __init__(self) -> None:
        self.told: list[tuple] = []

    def ready(self, status: str) -> None:
        self.told.append(("ready", status))

    def status(self, text: str) -> None:
        self.told.append(("status", text))

    def heartbeat(self) -> None:
        self.told.append(("heartbeat",))

    def reloading(self, monotonic_usec: int) -> None:
        self.told.append(("reloading", monotonic_usec))

    def stopping(self) -> None:
        self.told.append(("stopping",))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_lifecycle_is_ready_once_beats_only_while_ready_and_stops_once(caplog):
    clock, told = Clock(), Recorder()
    lifecycle = Lifecycle(told, heartbeat_every=0.5, clock=clock)
    stops: list[str] = []
    lifecycle.on_stop(lambda: stops.append("scheduler shut down"))
    lifecycle.heartbeat()  # not ready yet: a watchdog must not be fed by an agent still preparing its flows
    clock.now = 101.5
    lifecycle.ready("running 2 flows")
    lifecycle.ready("running 2 flows")  # once
    clock.now = 102.0
    lifecycle.heartbeat()
    with caplog.at_level(logging.WARNING, logger="mes_erp_agent"):
        lifecycle.request_reload()  # no reload hook in this version: the agent runs on, and says so
    assert caplog.messages == ["reload requested (SIGHUP): this version applies a changed configuration at a restart "
                               "only (systemctl restart); the agent runs on with the configuration it started with"]
    lifecycle.on_reload(lambda: "running 3 flows")
    clock.now = 103.25
    lifecycle.request_reload()
    clock.now = 105.0
    lifecycle.request_stop()  # SIGTERM, SIGINT and the Windows service's stop all call this
    lifecycle.request_stop()
    lifecycle.heartbeat()  # stopping: no more heartbeats
    lifecycle.ready("running 3 flows")  # nor a late ready
    late: list[str] = []
    lifecycle.on_stop(lambda: late.append("at once"))  # asked for after the stop: runs at once
    clock.now = 106.0
    lifecycle.stopped()
    assert told.told == [("ready", "running 2 flows"), ("heartbeat",), ("reloading", 103_250_000),
                         ("ready", "running 3 flows"), ("stopping",)]
    assert stops == ["scheduler shut down"] and late == ["at once"]
    assert lifecycle.history == [(STARTING, 100.0), (READY, 101.5), (RELOADING, 103.25), (READY, 103.25),
                                 (STOPPING, 105.0), (STOPPED, 106.0)]
    assert (lifecycle.since(READY), lifecycle.since(STOPPING), lifecycle.state) == (103.25, 105.0, STOPPED)


def test_a_failed_reload_keeps_the_agent_ready_with_its_status():
    told = Recorder()
    lifecycle = Lifecycle(told, clock=Clock())
    lifecycle.ready("running 2 flows")

    def broken() -> str:
        raise RuntimeError("invalid configuration")

    lifecycle.on_reload(broken)
    with pytest.raises(RuntimeError):
        lifecycle.request_reload()
    assert lifecycle.state == READY
    assert told.told == [("ready", "running 2 flows"), ("reloading", 100_000_000), ("ready", "running 2 flows")]


def test_a_stop_before_ready_is_told_and_never_followed_by_ready():
    told = Recorder()
    lifecycle = Lifecycle(told, clock=Clock())
    lifecycle.stopped()  # e.g. the configuration was not valid
    lifecycle.ready("running 1 flows")
    assert told.told == [("stopping",)]
    assert [state for state, _ in lifecycle.history] == [STARTING, STOPPING, STOPPED]


def plant(db_factory, tmp_path, suffix: str):
    pair = make_pair(db_factory, "sqlite", suffix=suffix)
    mes = sa.create_engine(pair.mes_url)
    adventureworks.create_and_load(mes, ["work_order"], schema=pair.mes_schema, limit=50)
    mes.dispose()
    config = write_config(tmp_path / "agent.yaml", pair, {"work_orders": work_order_flow(pair, schedule={"every": "300ms"})})
    prepare_erp(config)
    return pair, config


def test_the_service_host_runs_the_flows_until_the_windows_stop_control(db_factory, tmp_path):
    """What SvcRun and SvcStop do, without pywin32: run in a thread that is not the main thread, stop from another."""
    pair, config = plant(db_factory, tmp_path, "_host")
    told = Recorder()
    host = ServiceHost(config, told, heartbeat_every=0.2)
    codes: list[ExitCode] = []
    thread = threading.Thread(target=lambda: codes.append(host.run()), name="SvcRun")
    thread.start()
    try:
        wait_until(lambda: ("ready", "running 1 flows") in told.told, 60, "ready")
        wait_until(lambda: scalar(pair.erp_url, f"SELECT COUNT(*) FROM {pair.staging_schema}.stg_work_order", pair) == 50,
                   60, "the work orders in staging")
        wait_until(lambda: told.told.count(("heartbeat",)) >= 2, 10, "heartbeats")
    finally:
        host.stop()  # SvcStop
        thread.join(60)
    assert not thread.is_alive() and codes == [ExitCode.OK]
    assert told.told[0] == ("ready", "running 1 flows") and told.told[-1] == ("stopping",)
    assert set(told.told[1:-1]) == {("heartbeat",)}
    assert [state for state, _ in host.lifecycle.history] == [STARTING, READY, STOPPING, STOPPED]


def test_the_service_host_with_an_invalid_configuration_stops_with_exit_2_and_names_file_and_line(tmp_path, caplog):
    config = tmp_path / "agent.yaml"
    config.write_text(MINIMAL + "alert:\n  dir: x\n", encoding="utf-8")
    told = Recorder()
    with caplog.at_level(logging.ERROR, logger="mes_erp_agent"):
        assert ServiceHost(config, told).run() == ExitCode.CONFIG
    assert caplog.messages == [f"{config}: not starting: the configuration is not valid:\n"
                               f"{config}:17: unknown key `alert`; did you mean `alerts`?"]
    assert told.told == [("stopping",)]


def test_the_event_log_channel_is_absent_here_and_the_alert_code_runs_without_pywin32(tmp_path):
    assert importlib.util.find_spec("win32evtlogutil") is None  # pywin32 is a dependency on Windows only
    assert eventlog.for_platform() == []
    assert eventlog.for_platform("win32") == []  # Windows without pywin32 (a broken install): no channel, no crash
    config = tmp_path / "agent.yaml"
    config.write_text(MINIMAL, encoding="utf-8")
    loaded = load_config(config)
    assert [channel.name for channel in alerts.channels_for(loaded)] == ["dir"]
    book = alerts.book_for(loaded)
    incident = Incident("drift", "drift:mes", "Schema drift on mes", "production.work_order changed",
                        dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.timezone.utc))
    assert book.open(incident)
    book.close()
    assert sorted(p.name for p in (tmp_path / "alerts").iterdir()) == [
        "drift-mes-20261201T080000Z.json", "drift-mes-20261201T080000Z.txt", "incidents.state.json"]


def test_the_event_log_event_of_an_alert():
    incident = Incident("drift", "drift:mes", "Schema drift on mes", "body", dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc))
    opened = Message(OPENED, incident, "Schema drift on mes", "production.work_order: column qty changed type", {},
                     incident.opened_at, 1)
    resolved = Message(RESOLVED, incident, "RESOLVED: Schema drift on mes", "resolved at 09:00", {}, incident.opened_at, 1)
    assert eventlog.event_for(opened) == (
        eventlog.ERROR, 0xCFFF0001, ["Schema drift on mes\n\nproduction.work_order: column qty changed type"])
    assert eventlog.event_for(resolved) == (eventlog.INFORMATION, 0x4FFF0001, ["RESOLVED: Schema drift on mes\n\nresolved at 09:00"])
    long = Message(OPENED, incident, "t", "x" * 40_000, {}, incident.opened_at, 2)
    text = eventlog.event_for(long)[2][0]
    assert len(text) == 31_000 + len("\n[cut: the full report is in the alerts folder]")
    assert eventlog.EventLogChannel().describe() == "Windows Event Log (Application, source mes-erp-agent)"


def test_the_windows_service_module_imports_without_pywin32_and_defines_nothing_windows_only():
    from agent.service import windows

    assert not hasattr(windows, "AgentService") and not hasattr(windows, "install")
    assert (windows.START_WAIT_HINT_MS, windows.STOP_WAIT_HINT_MS) == (120_000, 45_000)


def test_what_service_install_registers_on_windows(tmp_path):
    config = tmp_path / "ProgramData" / "mes-erp-agent" / "agent.yaml"
    spec = WindowsService("mes-erp-agent", default_account("mes-erp-agent"), config)
    assert spec.describe() == [
        "Windows service mes-erp-agent, as `mes-erp-agent service install` registers it:",
        "  display name:   mes-erp-agent",
        f"  description:    Moves MES changes into ERP staging tables ({config})",
        "  start type:     automatic (delayed start: after the network is up)",
        "  account:        NT SERVICE\\mes-erp-agent",
        "  host:           pythonservice.exe (pywin32), class agent.service.windows.AgentService",
        f"  configuration:  {config} (HKLM\\SYSTEM\\CurrentControlSet\\Services\\mes-erp-agent\\Parameters, value config)",
        f"  log file:       {config.parent / 'logs' / 'mes-erp-agent.log'}",
        "  event log:      Windows Logs > Application, source mes-erp-agent (start, stop, every alert)",
        "  stop:           the clean stop of SIGTERM (within 30 s)",
        "  recovery:       sc.exe failure mes-erp-agent reset= 86400 actions= restart/5000/restart/5000/restart/60000",
    ]
    assert WindowsService("line2", "x", config).display_name == "mes-erp-agent (line2)"
    needs = {account: WindowsService("a", account, config).needs_password
             for account in ("NT SERVICE\\a", "NT AUTHORITY\\NetworkService", "LocalSystem", "PLANT\\svc-mes$", "PLANT\\svc")}
    assert needs == {"NT SERVICE\\a": False, "NT AUTHORITY\\NetworkService": False, "LocalSystem": False,
                     "PLANT\\svc-mes$": False, "PLANT\\svc": True}


def test_the_windows_service_log_file_rotates_and_makes_its_folder(tmp_path):
    handler = file_log_handler(tmp_path / "logs" / "mes-erp-agent.log")
    logger = logging.getLogger("mea_test_service_log")
    logger.addHandler(handler)
    try:
        logger.warning("flow %s failed", "work_orders")
    finally:
        logger.removeHandler(handler)
        handler.close()
    line = (tmp_path / "logs" / "mes-erp-agent.log").read_text(encoding="utf-8")
    assert line.endswith(" WARNING mea_test_service_log: flow work_orders failed\n")
    assert (handler.maxBytes, handler.backupCount) == (10 * 1024 * 1024, 5)

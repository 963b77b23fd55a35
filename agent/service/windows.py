"""The Windows service: thin glue between the service control manager (SCM, through pywin32) and ServiceHost.

Everything here only translates: the SCM's start runs `ServiceHost.run()` (the lifecycle `mes-erp-agent run` has on
Linux), RUNNING is reported once every flow is prepared (READY), the stop and shutdown controls call
`ServiceHost.stop()` (the same clean stop as SIGTERM), and STOP_PENDING is reported while it stops. A non-zero
exit code makes the service stop with an error, so the SCM's recovery actions (`sc.exe failure`) restart it.

pywin32 exists on Windows only (a dependency with `platform_system == "Windows"`); elsewhere this module defines
nothing but what it imports, so that importing it never fails. It cannot run in this project's CI (Linux): the
platform-independent parts it uses (ServiceHost, Lifecycle, WindowsService) are tested there.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

from agent.exit_codes import ExitCode
from agent.service.host import ServiceHost, file_log_handler
from agent.service.unit import CLEAN_STOP_BOUND, STOP_MARGIN
from agent.service.windows_spec import CONFIG_OPTION, EVENT_SOURCE, RECOVERY, SERVICE_CLASS, WindowsService

START_WAIT_HINT_MS = 120_000  # preparing every flow may wait for a database; the SCM waits this long between checkpoints
STOP_WAIT_HINT_MS = int((CLEAN_STOP_BOUND + STOP_MARGIN).total_seconds() * 1000)

if sys.platform == "win32":
    import servicemanager
    import win32evtlogutil
    import win32service
    import win32serviceutil

    class ScmManager:
        """The SCM as the lifecycle's service manager: it knows running and stop-pending, nothing like a watchdog."""

        def __init__(self, service: AgentService):
            self.service = service

        def ready(self, status: str) -> None:
            self.service.ReportServiceStatus(win32service.SERVICE_RUNNING)
            servicemanager.LogInfoMsg(f"{self.service.name}: {status}")

        def status(self, text: str) -> None:
            pass

        def heartbeat(self) -> None:
            pass

        def reloading(self, monotonic_usec: int) -> None:
            pass

        def stopping(self) -> None:
            self.service.ReportServiceStatus(win32service.SERVICE_STOP_PENDING, waitHint=STOP_WAIT_HINT_MS)

    class AgentService(win32serviceutil.ServiceFramework):
        _svc_name_ = "mes-erp-agent"
        _svc_display_name_ = "mes-erp-agent"

        def __init__(self, args: list[str]):
            self._svc_name_ = args[0]  # the registered name: several agents may run under their own names
            super().__init__(args)
            self.name = args[0]
            config = win32serviceutil.GetServiceCustomOption(self.name, CONFIG_OPTION)
            self.host = ServiceHost(Path(config), ScmManager(self))

        def SvcRun(self) -> None:  # instead of the framework's: RUNNING only once every flow is prepared
            self.ReportServiceStatus(win32service.SERVICE_START_PENDING, waitHint=START_WAIT_HINT_MS)
            log_file = WindowsService(self.name, "", self.host.config_path).log_file
            logging.basicConfig(level=logging.INFO, handlers=[file_log_handler(log_file)])
            code = self.host.run()
            if code != ExitCode.OK:  # the SCM records the failure and its recovery actions restart the service
                raise RuntimeError(f"{self.name} stopped with exit code {int(code)}; its log says why")

        def SvcStop(self) -> None:
            self.host.stop()

        def SvcShutdown(self) -> None:
            self.host.stop()

    def install(service: WindowsService, password: str | None) -> list[str]:
        win32serviceutil.InstallService(
            SERVICE_CLASS, service.name, service.display_name, startType=win32service.SERVICE_AUTO_START,
            userName=service.account, password=password, description=service.description, delayedstart=True,
        )
        win32serviceutil.SetServiceCustomOption(service.name, CONFIG_OPTION, str(service.config))
        win32evtlogutil.AddSourceToRegistry(EVENT_SOURCE)  # the messages of win32evtlog.pyd: "%1"
        for command in (["sc.exe", "failure", service.name, *RECOVERY], ["sc.exe", "failureflag", service.name, "1"]):
            subprocess.run(command, check=True, capture_output=True)
        return [f"registered the Windows service {service.name} ({service.account}, automatic, delayed start)",
                "next, as Administrator:",
                f"  icacls {service.config.parent} /grant \"{service.account}:(OI)(CI)M\"",
                f"  sc.exe start {service.name}",
                "  services.msc shows it; Event Viewer > Windows Logs > Application, source "
                f"{EVENT_SOURCE}, its start, stop and alerts; {service.log_file} its log"]

    def uninstall(name: str) -> list[str]:
        if win32serviceutil.QueryServiceStatus(name)[1] != win32service.SERVICE_STOPPED:
            raise RuntimeError(f"{name} is running: stop it first (sc.exe stop {name}), then uninstall again")
        win32serviceutil.RemoveService(name)  # and its event log source
        return [f"removed the Windows service {name}"]

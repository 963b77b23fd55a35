"""What `service install` registers on Windows, as a value: `service print` shows it, agent/service/windows.py
registers it with pywin32. Plain data, so that it is the same (and tested) on every platform."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.service.unit import CLEAN_STOP_BOUND, DEFAULT_NAME

SERVICE_CLASS = "agent.service.windows.AgentService"  # what pywin32's service host (pythonservice.exe) imports
CONFIG_OPTION = "config"  # HKLM\SYSTEM\CurrentControlSet\Services\<name>\Parameters, read at every start
EVENT_SOURCE = "mes-erp-agent"  # Windows Logs > Application: the service's start and stop, and every alert
RECOVERY = ("reset=", "86400", "actions=", "restart/5000/restart/5000/restart/60000")  # `sc.exe failure <name> ...`
_BUILT_IN = ("NT SERVICE\\", "NT AUTHORITY\\")


@dataclass(frozen=True)
class WindowsService:
    name: str
    account: str
    config: Path

    @property
    def display_name(self) -> str:
        return "mes-erp-agent" if self.name == DEFAULT_NAME else f"mes-erp-agent ({self.name})"

    @property
    def description(self) -> str:
        return f"Moves MES changes into ERP staging tables ({self.config})"

    @property
    def log_file(self) -> Path:
        return self.config.parent / "logs" / "mes-erp-agent.log"

    @property
    def needs_password(self) -> bool:
        """A virtual account (NT SERVICE\\<name>), a built-in one or a group managed service account (ending in $)
        has no password; any other account's is asked for at install."""
        return not (self.account.upper().startswith(_BUILT_IN) or self.account == "LocalSystem" or self.account.endswith("$"))

    def describe(self) -> list[str]:
        return [
            f"Windows service {self.name}, as `mes-erp-agent service install` registers it:",
            f"  display name:   {self.display_name}",
            f"  description:    {self.description}",
            "  start type:     automatic (delayed start: after the network is up)",
            f"  account:        {self.account}",
            f"  host:           pythonservice.exe (pywin32), class {SERVICE_CLASS}",
            f"  configuration:  {self.config} (HKLM\\SYSTEM\\CurrentControlSet\\Services\\{self.name}\\Parameters, "
            f"value {CONFIG_OPTION})",
            f"  log file:       {self.log_file}",
            f"  event log:      Windows Logs > Application, source {EVENT_SOURCE} (start, stop, every alert)",
            f"  stop:           the clean stop of SIGTERM (within {CLEAN_STOP_BOUND.seconds} s)",
            f"  recovery:       sc.exe failure {self.name} {' '.join(RECOVERY)}",
        ]


def default_account(name: str) -> str:
    """The service's own virtual account: no password, no logon rights elsewhere, its own ACL entries."""
    return f"NT SERVICE\\{name}"

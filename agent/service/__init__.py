"""Install the agent as a service: `mes-erp-agent service print|install|uninstall`.

unit.py          the systemd unit of a configuration (Type=notify, watchdog, hardening, ReadWritePaths=)
install.py       Linux: write or remove the unit, `systemctl daemon-reload`, the next commands
host.py          ServiceHost: the platform-independent core a service manager runs (load, check, run, stop)
windows_spec.py  what is registered on Windows, as a value
windows.py       the Windows service through pywin32: thin, and defined on Windows only

The lifecycle underneath (ready, heartbeat, stop, reload) is agent/lifecycle, driven by agent/runner.py.
"""

from __future__ import annotations

from agent.service.host import ServiceHost
from agent.service.install import InstallFailed, install_unit, uninstall_unit
from agent.service.unit import DEFAULT_NAME, DEFAULT_USER, DEFAULT_WATCHDOG, UNIT_DIR, Unit, UnitSettings, systemd_unit
from agent.service.windows_spec import WindowsService, default_account

__all__ = [
    "DEFAULT_NAME", "DEFAULT_USER", "DEFAULT_WATCHDOG", "UNIT_DIR", "InstallFailed", "ServiceHost", "Unit",
    "UnitSettings", "WindowsService", "default_account", "install_unit", "systemd_unit", "uninstall_unit",
]

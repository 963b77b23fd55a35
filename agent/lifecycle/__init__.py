"""The running agent's lifecycle (start, ready, heartbeat, reload, stop) and who is told about it.

states.py  Lifecycle: the states, the stop request every stop path shares, the scheduler hooks
notify.py  systemd's notify protocol (READY=1, STATUS=, WATCHDOG=1, RELOADING=1, STOPPING=1), by hand

Platform-independent: the Windows service (agent/service/windows.py) passes its own ServiceManager.
"""

from __future__ import annotations

from agent.lifecycle.notify import NoServiceManager, Systemd
from agent.lifecycle.states import READY, RELOADING, STARTING, STOPPED, STOPPING, Lifecycle, ServiceManager

__all__ = ["READY", "RELOADING", "STARTING", "STOPPED", "STOPPING", "Lifecycle", "NoServiceManager", "ServiceManager",
           "Systemd"]

"""systemd's notify protocol (sd_notify), written by hand: one datagram per message to $NOTIFY_SOCKET.

A message is newline-separated `NAME=value` assignments (`READY=1\\nSTATUS=running 4 flows`). The socket is a
Unix datagram socket: a path, or an abstract name written `@name` (a leading NUL byte on the wire). The
watchdog is on when systemd sets WATCHDOG_USEC (`WatchdogSec=`), for this process when WATCHDOG_PID is unset or
names it; the agent then sends WATCHDOG=1 at half that interval, as sd_watchdog_enabled(3) recommends.

Without NOTIFY_SOCKET (not started by systemd, or `Type=simple`) nothing is sent. A message that cannot be
sent is logged once and never raised: the service manager's bookkeeping must not stop a flow.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("mes_erp_agent")


class Systemd:
    """The service manager of a `Type=notify` unit, reached through its notify socket."""

    def __init__(self, address: str):
        self.address = address
        self._warned = False

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def heartbeat(self) -> None:
        self.send("WATCHDOG=1")

    def reloading(self, monotonic_usec: int) -> None:
        # systemd 253+ wants the time with RELOADING=1 (Type=notify-reload); older ones ignore it.
        self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}", "STATUS=reloading the configuration")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def send(self, *assignments: str) -> None:
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(assignments).encode("utf-8"), target)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot tell systemd %s through NOTIFY_SOCKET=%s (%s); the agent runs on, but systemd may "
                            "consider it not started or hung", assignments[0], self.address, exc)


class NoServiceManager:
    """Nobody to tell: the agent runs in a terminal, under cron, or under a manager without a notify protocol."""

    def ready(self, status: str) -> None:
        pass

    def status(self, text: str) -> None:
        pass

    def heartbeat(self) -> None:
        pass

    def reloading(self, monotonic_usec: int) -> None:
        pass

    def stopping(self) -> None:
        pass


def from_environment(environ: Mapping[str, str] = os.environ) -> Systemd | NoServiceManager:
    address = environ.get("NOTIFY_SOCKET", "")
    if not address:
        return NoServiceManager()
    if not address.startswith(("/", "@")):  # e.g. vsock: addresses of systemd 254+ for virtual machines
        log.warning("NOTIFY_SOCKET=%s is not a Unix socket path or @abstract name; systemd is not told the agent's "
                    "state", address)
        return NoServiceManager()
    return Systemd(address)


def watchdog_interval(environ: Mapping[str, str] = os.environ) -> float | None:
    """Seconds between two WATCHDOG=1 (half of WATCHDOG_USEC), or None when the watchdog is off for this process."""
    usec, pid = environ.get("WATCHDOG_USEC", ""), environ.get("WATCHDOG_PID", "")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("WATCHDOG_USEC=%s is not a number of microseconds; no watchdog heartbeats are sent", usec)
        return None
    return value / 2_000_000 if value > 0 else None

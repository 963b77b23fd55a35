"""The long-running agent as a real subprocess, with real alert receivers (HTTP webhook, aiosmtpd) and its /healthz."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent / "alerts"))

from alert_support import SmtpServer, WebhookServer, free_port, subject

__all__ = ["Service", "SmtpServer", "WebhookServer", "free_port", "http_get", "subject", "wait_until"]


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Polls `condition` every 0.1 s; returns the time.monotonic() it held. Fails the test with `what` otherwise."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return time.monotonic()
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g}s waiting for: {what}")


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class Service:
    """`mes-erp-agent run -c config` in a subprocess; its log (stderr) is read when it stops."""

    config: Path
    http_port: int
    process: subprocess.Popen | None = None
    log: str = ""
    seen: list[int] = field(default_factory=list)

    def start(self) -> Service:
        self._log_file = (self.config.parent / "agent.log").open("w+b")  # a file: a pipe nobody reads fills up and blocks
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
        self.process = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(self.config)],
                                        stdout=subprocess.DEVNULL, stderr=self._log_file, env=env)
        return self

    def healthz(self) -> int:
        try:
            return http_get(f"http://127.0.0.1:{self.http_port}/healthz")[0]
        except OSError:
            return 0  # not serving yet

    def healthz_body(self) -> dict[str, Any]:
        return json.loads(http_get(f"http://127.0.0.1:{self.http_port}/healthz")[1])

    def metrics(self) -> str:
        return http_get(f"http://127.0.0.1:{self.http_port}/metrics")[1].decode()

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        self._log_file.seek(0)
        self.log = self._log_file.read().decode()
        self._log_file.close()
        return self.process.returncode

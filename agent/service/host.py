"""What a service manager runs, on any platform: the platform-independent core of the Windows service.

`ServiceHost(config_path, manager).run()` loads and checks the configuration as `mes-erp-agent run` does, then runs
every flow on its schedule (`run_forever`) under a Lifecycle that tells `manager` (the Windows service control
manager) start, ready and stop; `stop()` is the service's stop control: the same request as SIGTERM. Windows has
no terminal for the log: `file_log_handler` writes it to a file beside the configuration, rotated.
"""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

from agent import privileges
from agent.config import load_config
from agent.errors import ConfigError
from agent.exit_codes import ExitCode
from agent.lifecycle import Lifecycle, ServiceManager
from agent.log_context import TEXT_FORMAT, ContextFilter
from agent.runner import run_forever

log = logging.getLogger("mes_erp_agent")
LOG_BYTES, LOG_FILES = 10 * 1024 * 1024, 5  # 10 MB a file, 5 old files kept


class ServiceHost:
    def __init__(self, config_path: Path, manager: ServiceManager | None = None, heartbeat_every: float | None = None):
        self.config_path = config_path
        self.lifecycle = Lifecycle(manager, heartbeat_every)

    def run(self) -> ExitCode:
        """Until `stop()`; the exit code of `mes-erp-agent run`."""
        try:
            try:
                config = load_config(self.config_path)
                privileges.startup_check(config)  # warns about a login that can do more than its grants
            except ConfigError as exc:
                log.error("%s: not starting: the configuration is not valid:\n%s", self.config_path, exc)
                return ExitCode.CONFIG
            return run_forever(config, lifecycle=self.lifecycle)
        finally:
            self.lifecycle.stopped()

    def stop(self) -> None:
        """The service's stop (and shutdown) control: the same clean stop as SIGTERM."""
        self.lifecycle.request_stop()


def file_log_handler(path: Path) -> logging.Handler:
    """The agent's text log in `path` (folders made), with flow and batch ids, rotated at 10 MB, 5 files kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=LOG_BYTES, backupCount=LOG_FILES, encoding="utf-8")
    handler.addFilter(ContextFilter())
    handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    return handler

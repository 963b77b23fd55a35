"""The systemd unit of one agent: `service print` shows it for review, `service install` writes it.

Everything in it comes from the loaded configuration and the running installation: ExecStart= is this
installation's `mes-erp-agent` (or `python -m agent` of this Python), WorkingDirectory= the configuration's folder,
and ReadWritePaths= exactly the folders the agent writes: `alerts.dir` (incident reports, the alert outbox, the
status file), `snapshots.dir`, and the folder of every SQLite database file the configuration names (SQLite
writes its journal beside the file). The rest of the file system is read-only to the service (ProtectSystem=strict).
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from agent.config import LoadedConfig
from agent.errors import ConfigError
from agent.exit_codes import ExitCode

DEFAULT_NAME = "mes-erp-agent"
DEFAULT_USER = "mes-erp-agent"
DEFAULT_WATCHDOG = timedelta(seconds=60)
RESTART_WAIT = timedelta(seconds=5)
# The agent's clean stop finishes (or rolls back) the batch in flight within 30 s; systemd waits 15 s longer
# before it kills the process, so that a clean stop is never cut short.
CLEAN_STOP_BOUND = timedelta(seconds=30)  # the default `stop_timeout`
STOP_MARGIN = timedelta(seconds=15)  # systemd waits this much longer than the agent's own bound before SIGKILL
UNIT_DIR = Path("/etc/systemd/system")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
_HIDDEN = (  # what the hardening hides from the service, and why
    ("ProtectHome=true hides /home, /root and /run/user from the service", ("/home", "/root", "/run/user")),
    ("PrivateTmp=true gives the service its own empty /tmp and /var/tmp", ("/tmp", "/var/tmp")),
)


@dataclass(frozen=True)
class UnitSettings:
    name: str = DEFAULT_NAME
    user: str = DEFAULT_USER
    watchdog: timedelta = DEFAULT_WATCHDOG  # 0: no watchdog

    @property
    def file_name(self) -> str:
        return f"{self.name}.service"


@dataclass(frozen=True)
class Unit:
    text: str
    folders: list[Path]  # ReadWritePaths=, in the order of the file
    warnings: list[str]  # paths the hardening hides from the service


def agent_command() -> list[str]:
    """This installation of the agent: its console script beside this Python, else `python -m agent` of this Python."""
    python = os.path.abspath(sys.executable)  # not resolved: a virtual environment's python is a symlink on purpose
    script = Path(python).parent / "mes-erp-agent"
    return [str(script)] if script.is_file() else [python, "-m", "agent"]


def writable_folders(config: LoadedConfig) -> list[tuple[Path, tuple[str, ...]]]:
    """The folders the running agent writes, each with the configuration key it comes from (for file:line)."""
    model = config.model
    found: list[tuple[Path, tuple[str, ...]]] = [
        (config.resolve(model.alerts.dir), ("alerts", "dir")), (config.resolve(model.snapshots.dir), ("snapshots", "dir"))]
    for name, system in model.systems.items():
        url = config.configured_url(name)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            database = url.database.removeprefix("file:").split("?")[0]  # a `file:` URI names the file the same way
            found.append((config.resolve(Path(database)).parent, ("systems", name, "url")))
        for schema, path in system.attach.items():
            found.append((config.resolve(path).parent, ("systems", name, "attach", schema)))
    unique: dict[Path, tuple[str, ...]] = {}
    for folder, loc in found:
        unique.setdefault(folder, loc)
    return list(unique.items())


def systemd_unit(config: LoadedConfig, settings: UnitSettings, command: list[str] | None = None) -> Unit:
    """Raises ConfigError (file:line) for a path a unit file cannot hold."""
    command = command or agent_command()
    folders = writable_folders(config)
    problems = [f"{config.where(*loc)}: {'.'.join(loc)}: {_unit_problem(folder)}"
                for folder, loc in folders if _unit_problem(folder)]
    for path in (config.path, *map(Path, command)):
        if _unit_problem(path):
            problems.append(f"{path}: {_unit_problem(path)}")
    if problems:
        raise ConfigError(problems)
    exec_start = " ".join(_word(part, exec_line=True) for part in [*command, "run", "-c", str(config.path)])
    lines = [
        f"# {settings.file_name}: `mes-erp-agent service print -c {config.path}` wrote it; review it, then",
        f"# `mes-erp-agent service install -c {config.path}`. Local changes go in `systemctl edit {settings.name}`.",
        "[Unit]",
        f"Description=mes-erp-agent: MES changes into ERP staging tables ({_specifiers(str(config.path))})",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "# READY=1 once every flow is prepared, WATCHDOG=1 from the scheduler loop, STOPPING=1 at stop.",
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={exec_start}",
        "# SIGHUP asks the agent to reload its configuration.",
        "ExecReload=/bin/kill -HUP $MAINPID",
        f"WorkingDirectory={_specifiers(str(config.folder))}",
        f"User={settings.user}",
        f"Group={settings.user}",
        "Restart=on-failure",
        f"RestartSec={_seconds(RESTART_WAIT)}",
        "# Exit 2 (a configuration error) and 4 (a login with more rights than its grants) need a person: no restart.",
        f"RestartPreventExitStatus={int(ExitCode.CONFIG)} {int(ExitCode.PRIVILEGES)}",
        f"WatchdogSec={_seconds(settings.watchdog)}",
        f"# A clean stop takes at most {_seconds(config.model.stop_timeout)} (`stop_timeout`: the batch in flight is "
        "finished or rolled back).",
        f"TimeoutStopSec={_seconds(config.model.stop_timeout + STOP_MARGIN)}",
        "NoNewPrivileges=true",
        "ProtectSystem=strict",
        "ProtectHome=true",
        "PrivateTmp=true",
        "# What the agent writes: alerts.dir (incidents, alert outbox, status file), snapshots.dir, SQLite files' folders.",
        "ReadWritePaths=" + " ".join(_word(str(folder)) for folder, _ in folders),
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    paths = [config.path, config.folder, Path(command[0]), *(folder for folder, _ in folders)]
    return Unit("\n".join(lines) + "\n", [folder for folder, _ in folders], _hidden(paths))


def _hidden(paths: list[Path]) -> list[str]:
    warnings = []
    for why, prefixes in _HIDDEN:
        hidden = [str(p) for p in dict.fromkeys(paths) if any(p == Path(x) or Path(x) in p.parents for x in prefixes)]
        if hidden:
            warnings.append(f"{why}; it cannot reach: {', '.join(hidden)} (move them, e.g. to /etc/mes-erp-agent, "
                            "/var/lib/mes-erp-agent, /opt/mes-erp-agent)")
    return warnings


def _unit_problem(path: Path) -> str | None:
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in str(path)):
        return f"the path {str(path)!r} holds a control character (a line break, a tab, ...), which a systemd unit cannot hold"
    return None


def _specifiers(text: str) -> str:
    """`%` starts a specifier (%n, %h, ...) in a unit file: a literal one is written `%%`."""
    return text.replace("%", "%%")


def _word(text: str, exec_line: bool = False) -> str:
    """One word of a space-separated list: quoted when it holds blanks, quotes or backslashes; `$` doubled in Exec lines."""
    text = _specifiers(text)
    if exec_line:
        text = text.replace("$", "$$")
    if re.search(r"[\s\"'\\;]", text) or not text:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _seconds(value: timedelta) -> str:
    milliseconds = round(value.total_seconds() * 1000)
    return f"{milliseconds // 1000}s" if milliseconds % 1000 == 0 else f"{milliseconds}ms"

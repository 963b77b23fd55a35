"""What every command shares: the consoles, the `-c` option, loading the configuration, failing with an exit code.

Nothing below the CLI imports this package: commands call the service layers, never the other way round.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click
from rich.console import Console

from agent.config import LoadedConfig, load_config
from agent.dialects import DIALECTS
from agent.errors import ConfigError
from agent.exit_codes import ExitCode

# Piped output (logs, CI, scripts) gets wide tables instead of rich's 80-column default. No emoji codes: rich would
# print `agent.yaml:100:` as `agent.yaml💯` (markup=False does not stop it).
console = Console(width=None if sys.stdout.isatty() else 200, emoji=False)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else 200, emoji=False)

config_option = click.option(
    "-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="The agent's YAML configuration file.",
)
dialect_option = click.option(
    "--dialect", "dialect_name", type=click.Choice(sorted(DIALECTS)),
    help="Print for this database instead of the system's own, without connecting (e.g. a SQL Server script "
         "prepared on a laptop).",
)


class CommandFailed(Exception):
    """Ends a command: `message` goes to standard error, `code` is the process exit code."""

    def __init__(self, message: str, code: ExitCode):
        super().__init__(message)
        self.message = message
        self.code = code


def fail(message: str, code: ExitCode) -> NoReturn:
    errors.print(message, markup=False, highlight=False, soft_wrap=True)
    sys.exit(int(code))


def say(message: str) -> None:
    """A line on standard output, exactly as given (no rich markup or highlighting)."""
    console.print(message, markup=False, highlight=False, soft_wrap=True)


def load_or_exit(path: Path) -> LoadedConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        fail(problem_list(path, exc.problems), ExitCode.CONFIG)


def problem_list(path: Path, problems: list[str]) -> str:
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    return f"{path}: configuration is not valid ({count}):\n" + "\n".join(f"  {p}" for p in problems)


def age_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"

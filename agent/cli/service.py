"""`service print|install|uninstall`: the agent as a systemd unit (Linux) or a Windows service (pywin32)."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from agent import service
from agent.cli.common import config_option, errors, fail, load_or_exit, say
from agent.config import LoadedConfig, parse_duration
from agent.errors import ConfigError
from agent.exit_codes import ExitCode
from agent.service.unit import NAME_PATTERN


def _name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if not NAME_PATTERN.match(value):
        raise click.BadParameter(f"{value!r}: a service name has letters, digits, `_`, `.` and `-` only")
    return value


def _duration(_ctx: click.Context, _param: click.Parameter, value: str) -> timedelta:
    try:
        duration = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if duration < timedelta(0):
        raise click.BadParameter(f"{value!r}: a watchdog interval cannot be negative (0 turns it off)")
    return duration


name_option = click.option("--name", default=service.DEFAULT_NAME, show_default=True, callback=_name,
                           help="The unit's (Windows: the service's) name; one per agent on this machine.")
user_option = click.option("--user", help=f"The account it runs as (Linux: User= and Group=, default {service.DEFAULT_USER}; "
                                          "Windows: default NT SERVICE\\<name>, a virtual account).")
watchdog_option = click.option("--watchdog", default="60s", show_default=True, callback=_duration,
                               help="WatchdogSec=: systemd restarts an agent whose scheduler sent no heartbeat for this "
                                    "long; 0 turns the watchdog off.")
unit_dir_option = click.option("--unit-dir", type=click.Path(file_okay=False, path_type=Path), default=service.UNIT_DIR,
                               show_default=True, help="Linux: the folder of the unit file.")


@click.group("service")
def service_group() -> None:
    """Run the agent as a service: a systemd unit (Linux) or a Windows service."""


@service_group.command("print")
@config_option
@name_option
@user_option
@watchdog_option
def print_command(config_path: Path, name: str, user: str | None, watchdog: timedelta) -> None:
    """Print the systemd unit (Linux) or the Windows service's registration for review; changes nothing."""
    config = load_or_exit(config_path)
    if sys.platform == "win32":
        for line in _windows_service(config, name, user).describe():
            say(line)
        return
    unit = _unit(config, service.UnitSettings(name, user or service.DEFAULT_USER, watchdog))
    click.echo(unit.text, nl=False)


@service_group.command("install")
@config_option
@name_option
@user_option
@watchdog_option
@unit_dir_option
def install_command(config_path: Path, name: str, user: str | None, watchdog: timedelta, unit_dir: Path) -> None:
    """Linux: write the unit, run `systemctl daemon-reload`, say what to run next. Windows: register the service."""
    config = load_or_exit(config_path)
    if sys.platform == "win32":
        from agent.service import windows

        spec = _windows_service(config, name, user)
        password = click.prompt(f"password of {spec.account}", hide_input=True) if spec.needs_password else None
        _say_all(_windows_call("install", windows.install, spec, password))
        return
    settings = service.UnitSettings(name, user or service.DEFAULT_USER, watchdog)
    unit = _unit(config, settings)
    try:
        lines = service.install_unit(unit, settings, unit_dir)
    except service.InstallFailed as exc:
        fail(str(exc), ExitCode.FLOW_FAILED)
    _say_all(lines)


@service_group.command("uninstall")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="The agent's configuration (not needed: the unit is found by --name).")
@name_option
@unit_dir_option
def uninstall_command(config_path: Path | None, name: str, unit_dir: Path) -> None:
    """Linux: remove the unit (after `systemctl disable --now NAME`). Windows: remove the stopped service."""
    if config_path is not None:
        load_or_exit(config_path)
    if sys.platform == "win32":
        from agent.service import windows

        _say_all(_windows_call("uninstall", windows.uninstall, name))
        return
    try:
        lines = service.uninstall_unit(service.UnitSettings(name), unit_dir)
    except service.InstallFailed as exc:
        fail(str(exc), ExitCode.FLOW_FAILED)
    _say_all(lines)


def _unit(config: LoadedConfig, settings: service.UnitSettings) -> service.Unit:
    try:
        unit = service.systemd_unit(config, settings)
    except ConfigError as exc:
        fail(f"{config.path}: no systemd unit can be written for this configuration:\n"
             + "\n".join(f"  {problem}" for problem in exc.problems), ExitCode.CONFIG)
    for warning in unit.warnings:
        errors.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    return unit


def _windows_service(config: LoadedConfig, name: str, user: str | None) -> service.WindowsService:
    return service.WindowsService(name, user or service.default_account(name), config.path)


def _windows_call(what: str, function: Any, *args: Any) -> list[str]:
    try:
        return list(function(*args))
    except Exception as exc:  # pywin32 raises pywintypes.error with the Windows message; sc.exe a CalledProcessError
        fail(f"service {what} failed: {exc} (run it as Administrator)", ExitCode.FLOW_FAILED)


def _say_all(lines: list[str]) -> None:
    for line in lines:
        say(line)

"""`service install` and `service uninstall` on Linux: the unit file, `systemctl daemon-reload`, what to run next.

Each returns the lines to print; InstallFailed carries a message when the file cannot be written or removed, or
systemctl refuses. Where systemctl is missing or systemd does not run (a container, a build host), the unit file is
still written or removed and daemon-reload is skipped with the reason: the admin runs it on the server.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

from agent.service.unit import Unit, UnitSettings

SYSTEMD_RUNTIME = Path("/run/systemd/system")  # exists exactly when systemd is the running init (sd_booted)


class InstallFailed(Exception):
    """`str()` says what failed and what to do."""


def install_unit(unit: Unit, settings: UnitSettings, unit_dir: Path) -> list[str]:
    path = unit_dir / settings.file_name
    try:
        before = path.read_text(encoding="utf-8") if path.exists() else None
        path.write_text(unit.text, encoding="utf-8")
    except OSError as exc:
        raise InstallFailed(f"cannot write {path} ({exc.strerror}): run it as root (sudo), or choose --unit-dir") from None
    done = "wrote" if before is None else ("unchanged" if before == unit.text else "replaced")
    reloaded, reload_line = _daemon_reload()
    steps = []
    if not _user_exists(settings.user):
        steps.append(f"useradd --system --no-create-home --shell /usr/sbin/nologin {settings.user}")
    steps.append(f"install -d -o {settings.user} -g {settings.user} " + " ".join(shlex.quote(str(f)) for f in unit.folders))
    if not reloaded:
        steps.append("systemctl daemon-reload")
    steps += [f"systemctl enable --now {settings.name}", f"journalctl -u {settings.name} -f"]
    return [f"{done} {path}", reload_line, "next, as root:", *(f"  {step}" for step in steps)]


def uninstall_unit(settings: UnitSettings, unit_dir: Path) -> list[str]:
    path = unit_dir / settings.file_name
    checked = _systemd_here() is None
    if checked:
        for question, state in (("is-active", "running"), ("is-enabled", "enabled")):
            if _systemctl(question, "--quiet", settings.name).returncode == 0:
                raise InstallFailed(f"{settings.name} is {state}: run `systemctl disable --now {settings.name}` first "
                                    "(it stops the service and takes it out of multi-user.target), then uninstall again")
    if not path.exists():
        raise InstallFailed(f"there is no {path}: nothing removed (check --name and --unit-dir)")
    try:
        path.unlink()
    except OSError as exc:
        raise InstallFailed(f"cannot remove {path} ({exc.strerror}): run it as root (sudo)") from None
    lines = [f"removed {path}", _daemon_reload()[1]]
    if not checked:
        lines.append(f"not checked here whether {settings.name} still runs: on the server, "
                     f"`systemctl disable --now {settings.name}` comes before `service uninstall`")
    return lines


def _systemd_here() -> str | None:
    """None when systemctl can talk to a running systemd, else why not."""
    if shutil.which("systemctl") is None:
        return "systemctl is not installed here"
    if not SYSTEMD_RUNTIME.is_dir():
        return f"systemd is not running here (no {SYSTEMD_RUNTIME})"
    return None


def _daemon_reload() -> tuple[bool, str]:
    why_not = _systemd_here()
    if why_not is not None:
        return False, f"skipped `systemctl daemon-reload`: {why_not}"
    result = _systemctl("daemon-reload")
    if result.returncode != 0:
        first = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[0]
        raise InstallFailed(f"`systemctl daemon-reload` failed: {first}")
    return True, "ran `systemctl daemon-reload`"


def _systemctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=60, check=False)


def _user_exists(user: str) -> bool:
    import pwd  # Linux only, like everything in this module

    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


"""Engines for the configured systems: sources read-only, targets with UTC sessions, one pool per role.

The only place that reads a `password_file`: when an engine is created, so commands that never connect
(`check-config`, `render-sql`, `sql grants`, `sql ddl --dialect`) never need the secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from agent import dialects
from agent.config import LoadedConfig
from agent.dialects.base import Dialect, Role
from agent.errors import SecretUnavailable


@dataclass
class Systems:
    """Lazily created engines per (system, role); `dispose()` closes them all."""

    config: LoadedConfig
    _engines: dict[tuple[str, Role], Engine] = field(default_factory=dict)

    def source(self, name: str) -> Engine:
        return self._engine(name, "source")

    def target(self, name: str) -> Engine:
        return self._engine(name, "target")

    def dialect(self, name: str) -> Dialect:
        return dialects.for_url(self.config.configured_url(name))

    def _engine(self, name: str, role: Role) -> Engine:
        if (name, role) not in self._engines:
            self._engines[(name, role)] = create_engine(self.config, name, role)
        return self._engines[(name, role)]

    def dispose(self) -> None:
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()


def create_engine(config: LoadedConfig, name: str, role: Role) -> Engine:
    system = config.model.systems[name]
    url = connection_url(config, name)
    dialect = dialects.for_url(url)
    attach = {schema: str(config.resolve(path)) for schema, path in system.attach.items()}
    url = dialect.engine_url(dialect.resolve_url(url, config.folder), role, attach)
    engine = sa.create_engine(url, connect_args=dialect.connect_args(role), pool_pre_ping=True, hide_parameters=True)

    dialect.configure_engine(engine, role, attach)
    return engine


def connection_url(config: LoadedConfig, name: str) -> URL:
    """The configured URL plus the password from `password_file`, read now. Never log it: use `redacted_url`.

    Raises SecretUnavailable (a configuration error: exit 2) when the file cannot be read.
    """
    url = config.configured_url(name)
    password_file = config.model.systems[name].password_file
    if password_file is None:
        return url
    return url.set(password=_first_line(config, name, config.resolve(password_file)))


def _first_line(config: LoadedConfig, name: str, path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise SecretUnavailable(_unreadable(config, name, f"{path} does not exist", create=True)) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise SecretUnavailable(_unreadable(config, name, f"{path} cannot be read ({reason})")) from None
    password = lines[0].strip() if lines else ""
    if not password:
        raise SecretUnavailable(_unreadable(config, name, f"{path} holds no password on its first line"))
    return password


def _unreadable(config: LoadedConfig, name: str, reason: str, create: bool = False) -> str:
    login = config.configured_url(name).username
    whose = f"login {login}" if login else f"the login of system {name}"
    if create:
        what_to_do = (f"create it with the password of {whose} on its first line, readable only by the agent's "
                      "service account")
    else:
        what_to_do = (f"write the password of {whose} on its first line and make the file readable only by the agent's "
                      "service account")
    where = config.where("systems", name, "password_file")
    return f"{where}: cannot read the password of system {name}: {reason}; {what_to_do}"


def known_passwords(config: LoadedConfig) -> list[str]:
    """Every system's password that can be read now, to scrub it from messages (logs, alerts, status)."""
    found = []
    for name in config.model.systems:
        try:
            password = connection_url(config, name).password
        except SecretUnavailable:
            continue
        if password:
            found.append(str(password))
    return found


def scrub(text: str, secrets: list[str] | tuple[str, ...]) -> str:
    """`text` with every secret replaced by ***."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text

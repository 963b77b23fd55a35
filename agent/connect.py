"""Engines for the configured systems: sources read-only, targets with UTC sessions, one pool per role."""

from __future__ import annotations

from dataclasses import dataclass, field
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from agent import dialects
from agent.config import LoadedConfig
from agent.dialects.base import Dialect, Role


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
        return dialects.for_url(self.config.system_url(name))

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
    url = config.system_url(name)
    dialect = dialects.for_url(url)
    attach = {schema: str(config.resolve(path)) for schema, path in system.attach.items()}
    url = dialect.engine_url(dialect.resolve_url(url, config.folder), role, attach)
    engine = sa.create_engine(url, connect_args=dialect.connect_args(role), pool_pre_ping=True, hide_parameters=True)

    dialect.configure_engine(engine, role, attach)
    return engine

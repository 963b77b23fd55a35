"""A loaded configuration: the validated models plus where they came from (for paths and file:line messages)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from agent.config.models import AgentConfig, FlowConfig
from agent.errors import ConfigError


@dataclass(frozen=True)
class LoadedConfig:
    """The validated configuration plus where it came from (for paths and messages)."""

    path: Path
    model: AgentConfig
    lines: dict[tuple[str, ...], int]

    @property
    def folder(self) -> Path:
        return self.path.parent

    def resolve(self, relative: Path) -> Path:
        return relative if relative.is_absolute() else (self.folder / relative).resolve()

    def where(self, *loc: str) -> str:
        """`file:line` of the deepest key of `loc` present in the file."""
        return f"{self.path}:{line_of(self.lines, loc)}"

    def configured_url(self, name: str) -> URL:
        """The system's URL as the file gives it (${ENV} expanded): enough for its dialect, host and login. The
        configuration never reads `password_file`; agent/connect.py adds that password when it opens an engine."""
        return make_url(self.model.systems[name].url)

    def redacted_url(self, name: str) -> str:
        return make_url(self.model.systems[name].url).render_as_string(hide_password=True)

    def flows(self, only: str | None = None) -> dict[str, FlowConfig]:
        if only is None:
            return {name: flow for name, flow in self.model.flows.items() if flow.enabled}
        if only not in self.model.flows:
            raise ConfigError([f"{self.path}: no flow named {only!r}{suggest(only, self.model.flows)}"])
        return {only: self.model.flows[only]}


def line_of(lines: dict[tuple[str, ...], int], loc: tuple[str, ...]) -> int:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def suggest(word: str, candidates: Iterable[str]) -> str:
    """`; did you mean `x`?` for the nearest candidate, or nothing."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""

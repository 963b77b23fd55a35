"""Named failures. Each carries what a person needs: what happened, where, what to do next."""

from __future__ import annotations


class AgentError(Exception):
    """Base class; `str(error)` is the message shown to a person."""


class ConfigError(AgentError):
    """The configuration file is invalid. `problems` lists every finding (file:line: message)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class SchemaMismatch(AgentError):
    """A table or column named in the configuration does not exist in the live database."""


class WatermarkKeyChanged(AgentError):
    """The stored watermark was taken on other columns than the flow now names."""


class UnsortedBatch(AgentError):
    """The source returned rows out of watermark order: the keyset read cannot be trusted."""


class ConcurrentAgent(AgentError):
    """The watermark moved under us: another agent instance is writing the same flow."""


class UnsupportedValue(AgentError):
    """A watermark value has a type the agent cannot store exactly."""


class BulkLoadChanged(AgentError):
    """A bulk load (MySQL's LOAD DATA LOCAL, which turns conversion errors into warnings) did not load every value
    exactly: the batch is rolled back."""


class SnapshotError(ConfigError):
    """A schema snapshot is missing, incomplete or was edited by hand: the gate cannot check that system."""

    def __init__(self, problem: str):
        super().__init__([problem])


class SecretUnavailable(ConfigError):
    """A system's `password_file` cannot be read at the moment the agent connects to that system."""

    def __init__(self, problem: str):
        super().__init__([problem])


def mark_system(exc: BaseException, system: str) -> None:
    """Remember on `exc` which system it came from (the first mark wins): a failing flow's log line and alert name it."""
    if getattr(exc, "agent_system", None) is None:
        exc.agent_system = system  # type: ignore[attr-defined]


def system_of(exc: BaseException) -> str | None:
    """The system `mark_system` recorded on `exc`, or None."""
    return getattr(exc, "agent_system", None)

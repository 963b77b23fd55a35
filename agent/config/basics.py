"""Building blocks of the configuration models: the base model, durations, paths and name patterns."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

NAME_PATTERN = re.compile(r"^[a-z0-9_]+$")
IDENTIFIER_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS: dict[str | None, Decimal | int] = {"ms": Decimal("0.001"), "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
# Far beyond any lag, overlap or poll interval, and far below what timedelta (and the scheduler) can hold.
MAX_DURATION = timedelta(days=3650)
_MAX_DURATION_TEXT = "3650d (about 10 years)"


def parse_duration(value: Any) -> timedelta:
    """`2s`, `5m`, `1h`, `500ms`, `1d`, or a number of seconds; at most MAX_DURATION either way."""
    if isinstance(value, timedelta):
        return value
    seconds = _duration_seconds(value)
    if seconds.is_nan():
        raise ValueError(f"expected a duration such as 2s, 5m, 1h, 500ms or 1d, got {_shown(value)}")
    if abs(seconds) > Decimal(MAX_DURATION.total_seconds()):  # infinity too
        raise ValueError(f"expected a duration of at most {_MAX_DURATION_TEXT}, got {_shown(value)}")
    return timedelta(seconds=float(seconds))


def duration_text(duration: timedelta) -> str:
    """A duration as a configuration file writes it: 30s, 5m, 2h, 7d (the largest whole unit), else seconds (0.5s)."""
    seconds = duration.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _duration_seconds(value: Any) -> Decimal:
    """The value in seconds, exactly (a huge number must not overflow before it is compared with the bound)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Decimal(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"expected a duration such as 2s, 5m, 1h, 500ms or 1d, got {_shown(value)}")
    number, unit = match.groups()
    try:
        return Decimal(number) * _DURATION_UNITS[unit]
    except InvalidOperation as exc:  # too many digits for the decimal context
        raise ValueError(f"expected a duration of at most {_MAX_DURATION_TEXT}, got {_shown(value)}") from exc


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _path_text(value: Any) -> Any:
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("a path cannot hold a NUL character (\\0)")
    return value


FilePath = Annotated[Path, BeforeValidator(_path_text)]  # a file or folder; relative to the configuration file


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

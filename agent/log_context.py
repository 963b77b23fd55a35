"""Which flow and batch a log line belongs to, and the log formats (`--log-format text|json`).

The pipeline marks the running flow and batch with context variables (per thread, so flows running in
the scheduler's worker threads never see each other's ids); a filter copies them onto every record, so
the plant's log collector can group the JSON lines of one flow or batch without parsing messages.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_flow: contextvars.ContextVar[str | None] = contextvars.ContextVar("mes_erp_agent_flow", default=None)
_batch: contextvars.ContextVar[str | None] = contextvars.ContextVar("mes_erp_agent_batch", default=None)


@contextmanager
def flow(name: str) -> Iterator[None]:
    """Log lines inside carry `flow`."""
    token = _flow.set(name)
    try:
        yield
    finally:
        _flow.reset(token)


@contextmanager
def batch(batch_id: str) -> Iterator[None]:
    """Log lines inside carry `batch_id` (the agent_run.batch_id and stg_batch_id of the batch)."""
    token = _batch.set(batch_id)
    try:
        yield
    finally:
        _batch.reset(token)


def current() -> tuple[str | None, str | None]:
    """(flow, batch_id) of the code running now; None outside a flow or batch."""
    return _flow.get(), _batch.get()


class ContextFilter(logging.Filter):
    """Adds `flow` and `batch_id` to every record (None outside a flow or batch); drops nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.flow, record.batch_id = current()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO-8601), level, logger, message, flow, batch_id.

    An exception adds `error` (its type and first line), never a traceback: a log collector indexes
    messages, and a traceback spreads one event over many lines.
    """

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "flow": getattr(record, "flow", None),
            "batch_id": getattr(record, "batch_id", None),
        }
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            line["error"] = f"{type(error).__name__}: {first}" if first else type(error).__name__
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(level: str, log_format: str, stream: TextIO) -> None:
    """The process's logging, as `logging.basicConfig` does it (a no-op when the root logger already has handlers)."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format {log_format!r}: expected one of {', '.join(LOG_FORMATS)}")
    logging.basicConfig(level=level.upper(), handlers=[handler(log_format, stream)])


def handler(log_format: str, stream: TextIO) -> logging.Handler:
    """A handler on `stream` in the given format, with the flow and batch ids on its records."""
    made = logging.StreamHandler(stream)
    made.addFilter(ContextFilter())
    made.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    return made

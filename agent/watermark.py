"""A flow's position in its source table, stored in the ERP next to the rows it describes.

The watermark is the keyset value of the last row written: the flow's ordered `watermark:` columns.
It is loaded at the start of a run and advanced inside each batch's write transaction, so the staging
rows and the position commit together or not at all. Values round-trip exactly (typed JSON).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from agent.contract import ControlTables, version_text
from agent.dialects import Dialect
from agent.errors import ConcurrentAgent, UnsupportedValue, WatermarkKeyChanged

_UPDATED_AT: dict[str, sa.types.TypeEngine] = {"updated_at": sa.DateTime()}  # bound through the dialect, which keeps its microseconds


@dataclass(frozen=True)
class Watermark:
    flow: str
    columns: tuple[str, ...]
    values: tuple[Any, ...] | None  # None: nothing read yet (initial load)
    revision: int = 0  # 0: no row stored yet

    def describe(self) -> str:
        if self.values is None:
            return "(initial load)"
        return ", ".join(f"{c}={version_text((v,))}" for c, v in zip(self.columns, self.values, strict=True))


# type name -> (is this type, value to JSON text, JSON text to value)
_ENCODERS: dict[str, tuple[Callable[[Any], bool], Callable[[Any], Any], Callable[[Any], Any]]] = {
    "null": (lambda v: v is None, lambda v: None, lambda s: None),
    "bool": (lambda v: isinstance(v, bool), lambda v: v, lambda s: bool(s)),
    "int": (lambda v: isinstance(v, int), str, int),
    "decimal": (lambda v: isinstance(v, Decimal), str, Decimal),
    "float": (lambda v: isinstance(v, float), repr, float),
    "datetime": (lambda v: isinstance(v, dt.datetime), lambda v: v.isoformat(timespec="microseconds"), dt.datetime.fromisoformat),
    "date": (lambda v: isinstance(v, dt.date), dt.date.isoformat, dt.date.fromisoformat),
    "time": (lambda v: isinstance(v, dt.time), lambda v: v.isoformat(timespec="microseconds"), dt.time.fromisoformat),
    "text": (lambda v: isinstance(v, str), str, str),
    "bytes": (lambda v: isinstance(v, (bytes, bytearray, memoryview)), lambda v: bytes(v).hex(), bytes.fromhex),
}


def encode(values: tuple[Any, ...]) -> str:
    """Typed JSON, e.g. `[{"type": "datetime", "value": "2025-06-01T00:00:00.123456"}, ...]`."""
    return json.dumps([_encode_one(v) for v in values])


def _encode_one(value: Any) -> dict[str, Any]:
    for type_name, (matches, to_text, _) in _ENCODERS.items():
        if matches(value):
            return {"type": type_name, "value": to_text(value)}
    raise UnsupportedValue(
        f"watermark value {value!r} has type {type(value).__name__}, which the agent cannot store exactly; "
        "use timestamp, integer, decimal, text or rowversion columns as watermark"
    )


def decode(text: str) -> tuple[Any, ...]:
    return tuple(_ENCODERS[item["type"]][2](item["value"]) for item in json.loads(text))


def load(conn: Connection, dialect: Dialect, tables: ControlTables, flow: str, columns: list[str]) -> Watermark:
    sql = dialect.render("watermark_select", watermark_table=tables.watermark)
    row = conn.execute(sa.text(sql), {"flow": flow}).first()
    if row is None:
        return Watermark(flow, tuple(columns), None, 0)
    stored_columns = tuple(json.loads(row.watermark_columns))
    if stored_columns != tuple(columns):
        raise WatermarkKeyChanged(
            f"flow {flow}: the stored watermark is on columns ({', '.join(stored_columns)}) but the configuration "
            f"now names ({', '.join(columns)}). The flow is halted so that it neither skips nor reloads rows. "
            f"Restore the previous `watermark:` or, to start this flow over on the new columns, have the DBA delete "
            f"its row from agent_watermark (flow = '{flow}') after checking the staging table."
        )
    return Watermark(flow, stored_columns, decode(row.watermark_values), int(row.revision))


def advance(
    conn: Connection, dialect: Dialect, tables: ControlTables, before: Watermark, values: tuple[Any, ...],
    now: dt.datetime,
) -> Watermark:
    """Store `values` as the flow's new position (caller's transaction). Fails if another agent moved it."""
    params = {"flow": before.flow, "watermark_values": encode(values), "updated_at": now}
    if before.revision == 0:
        statement = dialect.statement("watermark_insert", _UPDATED_AT, watermark_table=tables.watermark)
        conn.execute(statement, {**params, "watermark_columns": json.dumps(list(before.columns))})
    else:
        statement = dialect.statement("watermark_update", _UPDATED_AT, watermark_table=tables.watermark)
        result = conn.execute(statement, {**params, "revision": before.revision})
        if result.rowcount != 1:
            raise ConcurrentAgent(
                f"flow {before.flow}: its watermark in agent_watermark changed while this batch was written "
                "(another mes-erp-agent is running the same flow against the same ERP). This batch was rolled "
                "back. Run one agent per flow."
            )
    return Watermark(before.flow, before.columns, values, before.revision + 1)

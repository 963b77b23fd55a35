"""A quarantined source row as JSON (agent_quarantine.source_row) that reads back with its values' exact types.

The row stays a plain, readable JSON object of source column -> value, as before: text, integers, floats,
booleans and NULL are JSON's own; a timestamp, date or time is ISO-8601 text, a decimal plain decimal text and
binary `0x...` hex. Where a value is not one of JSON's own types, the reserved key `"$types"` names its type,
e.g. `{"measured": "1.2340", "modified_at": "2026-03-02T06:03:00", "$types": {"measured": "decimal",
"modified_at": "datetime"}}`, so `quarantine replay` re-maps exactly the values that were read: a Decimal as a
Decimal, a timestamp as a datetime with its microseconds and zone.

Rows written before `$types` existed are read back by the families of the flow's source columns (`legacy`).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

TYPES_KEY = "$types"


def _hex(value: Any) -> str:
    return "0x" + bytes(value).hex().upper()


def _unhex(text: str) -> bytes:
    if not text.startswith("0x"):
        raise ValueError(f"binary value {text[:20]!r} does not start with 0x")
    return bytes.fromhex(text[2:])


# type name -> (is this type, value to JSON, JSON back to the value). Order matters: bool before int,
# datetime before date.
_TYPED: dict[str, tuple[Callable[[Any], bool], Callable[[Any], Any], Callable[[Any], Any]]] = {
    "datetime": (lambda v: isinstance(v, dt.datetime), lambda v: v.isoformat(), dt.datetime.fromisoformat),
    "date": (lambda v: isinstance(v, dt.date), dt.date.isoformat, dt.date.fromisoformat),
    "time": (lambda v: isinstance(v, dt.time), lambda v: v.isoformat(), dt.time.fromisoformat),
    "decimal": (lambda v: isinstance(v, Decimal), lambda v: format(v, "f"), Decimal),
    "bytes": (lambda v: isinstance(v, (bytes, bytearray, memoryview)), _hex, _unhex),
    "uuid": (lambda v: isinstance(v, uuid.UUID), str, uuid.UUID),
    "interval": (lambda v: isinstance(v, dt.timedelta), lambda v: [v.days, v.seconds, v.microseconds],
                 lambda v: dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2])),
}
_NATIVE = (str, int, float, bool, type(None))
# Source column family -> how a legacy row's text becomes the value (other families keep the JSON value).
_LEGACY = {"timestamp": "datetime", "date": "date", "time": "time", "decimal": "decimal", "binary": "bytes"}


def encode(columns: Sequence[str], row: Sequence[Any]) -> str:
    """The row as a JSON object in column order, plus `$types` for values that are not JSON's own types."""
    document: dict[str, Any] = {}
    types: dict[str, str] = {}
    for column, value in zip(columns, row, strict=True):
        if isinstance(value, _NATIVE):
            document[column] = value
            continue
        for name, (matches, to_json, _) in _TYPED.items():
            if matches(value):
                document[column], types[column] = to_json(value), name
                break
        else:  # a type the agent has no exact form for (a driver's own object): its text, as before
            document[column] = str(value)
    if types:
        document[TYPES_KEY] = types
    return json.dumps(document)


def decode(text: str, legacy: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Column -> value as it was read. `legacy`: column -> source column family, for rows without `$types`.

    Raises ValueError when the text is not such an object or a value does not read back as its type."""
    document = json.loads(text)
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    types = document.pop(TYPES_KEY, None)
    if types is None:
        types = {c: _LEGACY[f] for c, f in (legacy or {}).items() if f in _LEGACY and isinstance(document.get(c), str)}
    for column, name in types.items():
        if column in document and document[column] is not None:
            if name not in _TYPED:
                raise ValueError(f"column {column}: unknown type {name!r}")
            document[column] = _TYPED[name][2](document[column])
    return document

"""Normalized column types, shared by mapping, DDL rendering and the drift gate.

A `ColumnType` is the database-neutral meaning of a column type: its family plus
length, precision, scale and time zone. Dialects turn it into native type text
(`agent.dialects.*.render_type`) and turn reflected types back into it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

import sqlalchemy as sa

FAMILIES = ("integer", "decimal", "float", "text", "timestamp", "date", "time", "boolean", "binary")

# The database-neutral type names of `type:`. A vendor's own names (nvarchar, datetime2, int8, mediumint,
# money, ...) are synonyms its dialect declares (`Dialect.type_synonyms`), passed to `parse_type`.
_INTEGER_BITS = {"tinyint": 8, "smallint": 16, "int": 32, "integer": 32, "bigint": 64}
_INTEGER_NAMES = {8: "tinyint", 16: "smallint", 24: "mediumint", 32: "int", 64: "bigint"}
_TEXT_NAMES = {"varchar", "char", "text", "string", "character varying", "character"}
_TIMESTAMP_NAMES = {"timestamp", "timestamptz"}
_DECIMAL_NAMES = {"decimal", "numeric"}
_FLOAT_NAMES = {"float", "real", "double", "double precision"}
_BINARY_NAMES = {"binary", "varbinary"}
_BOOLEAN_NAMES = {"boolean", "bool"}
# A synonym is a neutral name (the vendor's length or precision still applies) or a whole type.
TypeSynonyms = Mapping[str, "str | ColumnType"]

_TYPE_TEXT = re.compile(r"^\s*([a-z][a-z0-9 ]*?)\s*(?:\(\s*(\w+)\s*(?:,\s*(\d+)\s*)?\))?\s*(with time zone|without time zone)?\s*$")


@dataclass(frozen=True)
class ColumnType:
    family: str
    length: int | None = None  # text/binary: max characters/bytes; None = unbounded
    precision: int | None = None  # decimal digits; timestamp fractional-second digits; integer bits
    scale: int | None = None
    timezone: bool = False
    unsigned: bool = False  # integers: 0 .. 2**bits - 1 instead of -2**(bits-1) .. 2**(bits-1) - 1

    def describe(self) -> str:
        """Short human text, e.g. `decimal(18,3)`, `text(50)`, `timestamp(6) with time zone`."""
        if self.family == "decimal" and self.precision is not None:
            return f"decimal({self.precision},{self.scale or 0})"
        if self.family in ("text", "binary") and self.length is not None:
            return f"{self.family}({self.length})"
        if self.family == "integer" and self.precision:
            return _INTEGER_NAMES.get(self.precision, "integer") + (" unsigned" if self.unsigned else "")
        if self.family == "timestamp":
            base = "timestamp" if self.precision is None else f"timestamp({self.precision})"
            return base + (" with time zone" if self.timezone else "")
        return self.family

    def as_dict(self) -> dict[str, object]:
        return {
            "family": self.family,
            "length": self.length,
            "precision": self.precision,
            "scale": self.scale,
            "timezone": self.timezone,
            # Only when true, so that snapshots of signed columns stay as they were.
            **({"unsigned": True} if self.unsigned else {}),
        }


def integer_range(column_type: ColumnType) -> tuple[int, int]:
    """Lowest and highest value of an integer type from its bits (32 when unknown) and signedness."""
    bits = column_type.precision or 32
    if column_type.unsigned:
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def parse_type(text: str, synonyms: TypeSynonyms | None = None) -> ColumnType:
    """Parse type text such as `decimal(18,3)`, `varchar(20)`, `bigint`, with a dialect's `synonyms` for its
    own names (`nvarchar(20)`, `datetime2`, `money`).

    Raises ValueError with the accepted forms when the text is not understood.
    """
    lowered = text.lower().strip()
    unsigned = lowered.endswith(" unsigned")
    match = _TYPE_TEXT.match(lowered.removesuffix(" unsigned") if unsigned else lowered)
    if not match:
        raise ValueError(_type_help(text))
    name, first, second, zone = match.groups()
    name = name.strip()
    synonym = (synonyms or {}).get(name)
    if isinstance(synonym, ColumnType):
        if first or zone:
            raise ValueError(_type_help(text))
        return replace(synonym, unsigned=True) if unsigned and synonym.family == "integer" else synonym
    if synonym is not None:
        name = synonym
    if name in _INTEGER_BITS:
        return ColumnType("integer", precision=_INTEGER_BITS[name], unsigned=unsigned)
    if unsigned:
        raise ValueError(_type_help(text))
    if name in _DECIMAL_NAMES:
        if not first:  # `numeric` without precision: unbounded, as PostgreSQL and SQLite mean it
            return ColumnType("decimal")
        return ColumnType("decimal", precision=int(first), scale=int(second) if second else 0)
    if name in _FLOAT_NAMES:
        return ColumnType("float")
    if name in _TEXT_NAMES:
        length = None if first in (None, "max") else int(first)
        return ColumnType("text", length=length)
    if name in _BINARY_NAMES:
        return ColumnType("binary", length=None if first in (None, "max") else int(first))
    if name in _TIMESTAMP_NAMES:
        timezone = name == "timestamptz" or zone == "with time zone"
        return ColumnType("timestamp", precision=int(first) if first else 6, timezone=timezone)
    if name == "date":
        return ColumnType("date")
    if name == "time":
        return ColumnType("time")
    if name in _BOOLEAN_NAMES:
        return ColumnType("boolean")
    raise ValueError(_type_help(text))


def _type_help(text: str) -> str:
    return (
        f"unknown column type {text!r}; use one of: int, smallint, bigint, decimal(P,S), float, "
        "varchar(N), text, timestamp, timestamptz, date, time, boolean, varbinary(N)"
    )


def with_length(column_type: ColumnType, length: int | None) -> ColumnType:
    return replace(column_type, length=length)


def to_sqlalchemy(column_type: ColumnType) -> sa.types.TypeEngine:
    """The SQLAlchemy type used to bind and read values of this column (not for DDL: see dialects)."""
    family = column_type.family
    if family == "integer":
        wide = (column_type.precision or 32) > (31 if column_type.unsigned else 32)  # int unsigned exceeds int32
        return sa.BigInteger() if wide else sa.Integer()
    if family == "decimal":
        return sa.Numeric(column_type.precision, column_type.scale, asdecimal=True)
    if family == "float":
        return sa.Float()
    if family == "timestamp":
        return sa.DateTime(timezone=column_type.timezone)
    if family == "date":
        return sa.Date()
    if family == "time":
        return sa.Time()
    if family == "boolean":
        return sa.Boolean()
    if family == "binary":
        return sa.LargeBinary(column_type.length)
    return sa.String(column_type.length)

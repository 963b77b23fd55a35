"""Map/validate stage: source rows to staging rows, or to quarantine with a reason a person understands.

Each staging column gets one converter, built once per flow from its mapping and its staging type.
A converter either returns the value to write or raises `Rejected` with the reason.

The staging type is the live staging column's (what the database accepts). When the mapping gives the
column another type (its `type:`, or the source column's type, which a vendor update may have changed),
a value is converted to that type first, then to the live one: it must satisfy both.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from agent import row_json
from agent.config import ColumnMapping, FlowConfig
from agent.contract import CHANGE_UPSERT, FAST_TEXT, KEY_TEXT_MAX, VERSION_TEXT_MAX, canonical_text, version_text
from agent.types import ColumnType, integer_range
_TRUE = {"1", "true", "t", "y", "yes"}
_FALSE = {"0", "false", "f", "n", "no"}


# (native type, lowest, highest value) of the staging column an integer type becomes: the target dialect's
# `integer_column`. Without a dialect: the type's own range, from its bits and signedness.
IntegerColumn = Callable[[ColumnType], tuple[str, int, int]]


def neutral_integer_column(column_type: ColumnType) -> tuple[str, int, int]:
    return (column_type.describe(), *integer_range(column_type))


class Rejected(Exception):
    """A value that cannot go to staging; the message is the reason stored in agent_quarantine."""


@dataclass(frozen=True)
class QuarantinedRow:
    source_key: str
    source_version: str
    source_row: str  # JSON of the source row (agent/row_json.py)
    reason: str


@dataclass(frozen=True)
class MappedBatch:
    rows: list[tuple[Any, ...]]  # staging rows: CONTROL_COLUMNS, then the mapped columns
    quarantined: list[QuarantinedRow]


def staging_type(mapping: ColumnMapping, source_type: ColumnType | None) -> ColumnType:
    """The staging column's type: its `type:`, else text for code maps, else the source column's type."""
    if mapping.column_type is not None:
        return mapping.column_type
    if mapping.map is not None:
        values = [str(v) for v in mapping.map.values()] + ([str(mapping.default)] if mapping.default is not None else [])
        return ColumnType("text", length=max([len(v) for v in values] + [1]))
    assert source_type is not None, "checked before mapping: the source column exists"
    return source_type


class RowMapper:
    """Maps one flow's source rows (tuples in `source_columns` order) to staging rows."""

    def __init__(
        self, flow_name: str, flow: FlowConfig, source_columns: Sequence[str], staging_types: dict[str, ColumnType],
        trusted_source_types: dict[str, ColumnType] | None = None,
        configured_types: dict[str, ColumnType] | None = None, source_types: dict[str, ColumnType | None] | None = None,
        integer_column: IntegerColumn = neutral_integer_column,
    ):
        """`staging_types`: the live staging columns' types. `trusted_source_types`: the source columns' declared
        types, given only where the database enforces them; a value whose type always fits its staging column is
        then copied without checks. `configured_types`: the types the mapping gives the staging columns, where
        they differ from the live ones. `source_types`: the source columns' declared types, for reasons.
        `integer_column`: the target dialect's integer staging columns, whose ranges validation enforces."""
        self.flow_name = flow_name
        self.flow = flow
        self.source_columns = list(source_columns)
        self.key_positions = [self.source_columns.index(c) for c in flow.key]
        self.watermark_positions = [self.source_columns.index(c) for c in flow.watermark]
        self.staging_columns = list(flow.columns)
        trusted, configured, declared = trusted_source_types or {}, configured_types or {}, source_types or {}
        self.converters = [
            _column_converter(
                name, mapping, staging_types[name], self.source_columns, trusted.get(mapping.source or ""),
                configured.get(name), declared.get(mapping.source or ""), integer_column,
            )
            for name, mapping in flow.columns.items()
        ]

        self._key_text = _compiled_text(self.key_positions)
        self._version_text = _compiled_text(self.watermark_positions)
        self._staging_row = _compiled_row(self.flow_name, self.converters)

    def map_batch(self, rows: Sequence[tuple[Any, ...]], batch_id: str) -> MappedBatch:
        mapped, quarantined = [], []
        key_text, version_text_of, staging_row = self._key_text, self._version_text, self._staging_row
        for row in rows:
            source_key, source_version = key_text(row), version_text_of(row)
            try:
                if len(source_key) > KEY_TEXT_MAX or len(source_version) > VERSION_TEXT_MAX:
                    _check_control_lengths(source_key, source_version)
                mapped.append(staging_row(row, batch_id, source_key, source_version))
            except Rejected as reason:
                quarantined.append(QuarantinedRow(source_key, source_version, self._row_json(row), str(reason)))
        return MappedBatch(mapped, quarantined)

    def _row_json(self, row: tuple[Any, ...]) -> str:
        return row_json.encode(self.source_columns, row)  # reads back with the values' types (quarantine replay)


def _compiled_text(positions: Sequence[int]) -> Callable[[Sequence[Any]], str]:
    """`version_text` of the values at `positions` of a row, as one function compiled once per flow."""
    parts = [f"_text.get(type(row[{p}]), _canonical)(row[{p}])" for p in positions]
    body = parts[0] if len(parts) == 1 else f"'|'.join([{', '.join(parts)}])"
    return _compile(f"def text(row):\n    return {body}\n", "text", {"_text": FAST_TEXT, "_canonical": canonical_text})


def _compiled_row(flow_name: str, converters: Sequence[Callable[[tuple[Any, ...]], Any]]) -> Callable[..., tuple[Any, ...]]:
    """The staging row of a source row (control columns, then each converter's value), compiled once per flow; a plain
    copy (an itemgetter) becomes `row[i]`. Raises Rejected from the first converter that rejects its value."""
    names: dict[str, Any] = {"_flow": flow_name, "_change": CHANGE_UPSERT}
    values = []
    for i, convert in enumerate(converters):
        if isinstance(convert, operator.itemgetter):
            position = convert(range(1 << 30))  # an itemgetter of one position returns that position here
            values.append(f"row[{int(position)}]")
        else:
            names[f"_c{i}"] = convert
            values.append(f"_c{i}(row)")
    body = f"(batch_id, _flow, key, version, _change{''.join(', ' + v for v in values)})"
    return _compile(f"def staging_row(row, batch_id, key, version):\n    return {body}\n", "staging_row", names)


def _compile(source: str, name: str, names: dict[str, Any]) -> Any:
    exec(compile(source, f"<mapping {name}>", "exec"), names)  # code built above from positions only
    return names[name]


def _json_value(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "0x" + bytes(value).hex().upper()
    return str(value)


def _check_control_lengths(source_key: str, source_version: str) -> None:
    if len(source_key) > KEY_TEXT_MAX:
        raise Rejected(f"source key is {len(source_key)} characters as text; stg_source_key holds at most {KEY_TEXT_MAX}")
    if len(source_version) > VERSION_TEXT_MAX:
        raise Rejected(
            f"watermark value is {len(source_version)} characters as text; stg_source_version holds at most {VERSION_TEXT_MAX}"
        )


def _column_converter(
    name: str, mapping: ColumnMapping, target: ColumnType, source_columns: list[str], source_type: ColumnType | None,
    configured: ColumnType | None = None, declared_source: ColumnType | None = None,
    integer_column: IntegerColumn = neutral_integer_column,
) -> Callable[[tuple[Any, ...]], Any]:
    to_target = _type_converter(target, integer_column)
    if configured is not None and configured != target:
        to_configured = _type_converter(configured, integer_column)
        to_target = _composed(to_configured, to_target)
    if mapping.source is None:
        constant = to_target(mapping.const)
        return lambda row: constant
    position = source_columns.index(mapping.source)
    if _plain_copy(mapping) and source_type is not None and always_fits(source_type, target, integer_column):
        return operator.itemgetter(position)
    source = mapping.source
    code_map = mapping.map
    where = _where_text(source, declared_source, target)

    def convert(row: tuple[Any, ...]) -> Any:
        value = row[position]
        if mapping.trim and isinstance(value, str):
            value = value.strip()
        if code_map is not None and value is not None:
            code = version_text((value,))
            if code in code_map:
                value = code_map[code]
            elif mapping.default is not None:
                value = mapping.default
            else:
                raise Rejected(f"{name}: code {code!r} from {source} is not in the column's map and it has no default")
        elif value is None and mapping.default is not None and code_map is None:
            value = mapping.default
        if value is None:
            if mapping.required:
                raise Rejected(f"{name}: required, but source column {source} is NULL")
            return None
        try:
            return to_target(value)
        except Rejected as reason:
            raise Rejected(f"{name}: {reason} ({where}value {_show(value)})") from None

    return convert


def _where_text(source: str, source_type: ColumnType | None, target: ColumnType) -> str:
    """Where a rejected value came from; both types when a type change crosses families (decimal into int)."""
    if source_type is not None and source_type.family != target.family:
        return f"source column {source} is {source_type.describe()}, the staging column {target.describe()}; "
    return f"source column {source}, "


def _plain_copy(mapping: ColumnMapping) -> bool:
    return mapping.map is None and mapping.default is None and not mapping.required and not mapping.trim


def always_fits(source: ColumnType, target: ColumnType, integer_column: IntegerColumn = neutral_integer_column) -> bool:
    """Every value of a column declared `source` is valid, unchanged, for a column declared `target`."""
    if source.family != target.family:
        return False
    family = source.family
    if family == "integer":
        low, high = integer_range(source)
        _, lowest, highest = integer_column(target)
        return lowest <= low and high <= highest
    if family == "text":
        return target.length is None or (source.length is not None and source.length <= target.length)
    if family == "decimal":
        if target.precision is None:  # unbounded: holds every decimal
            return True
        if source.precision is None:
            return False
        source_scale, target_scale = source.scale or 0, target.scale or 0
        return source_scale <= target_scale and source.precision - source_scale <= target.precision - target_scale
    if family == "timestamp":
        return source.timezone == target.timezone and _fraction_digits(source) <= _fraction_digits(target)
    return family in ("date", "boolean", "float")


def _fraction_digits(column_type: ColumnType) -> int:
    """Fractional-second digits a timestamp keeps (microseconds when the type does not say)."""
    return 6 if column_type.precision is None else min(column_type.precision, 6)


def _show(value: Any) -> str:
    text = _json_value(value) if not isinstance(value, str) else value
    return repr(text[:60] + "..." if len(text) > 60 else text)


def _type_converter(target: ColumnType, integer_column: IntegerColumn = neutral_integer_column) -> Callable[[Any], Any]:
    family = target.family
    if family == "integer":
        return _integer(*integer_column(target))
    if family == "decimal":
        return _decimal(target)
    if family == "text":
        return _text(target)
    if family == "timestamp":
        return _timestamp(target)
    if family == "date":
        return _date
    if family == "boolean":
        return _boolean
    if family == "float":
        return _float
    return lambda value: value


def _integer(native: str, low: int, high: int) -> Callable[[Any], int]:

    def convert(value: Any) -> int:
        if isinstance(value, bool):
            number = int(value)
        elif isinstance(value, int):
            number = value
        else:
            try:
                decimal = Decimal(str(value).strip())
            except InvalidOperation:
                raise Rejected("not a whole number") from None
            if decimal != decimal.to_integral_value():
                raise Rejected("not a whole number")
            number = int(decimal)
        if not low <= number <= high:
            raise Rejected(f"{number} is outside the range of {native} ({low} to {high})")
        return number

    return convert


def _composed(first: Callable[[Any], Any], then: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: then(first(value))


def _decimal(target: ColumnType) -> Callable[[Any], Decimal]:
    precision, scale = target.precision, target.scale or 0
    quantum = Decimal(1).scaleb(-scale)
    limit = Decimal(10) ** ((precision or 0) - scale)

    def convert(value: Any) -> Decimal:
        if type(value) is int:  # a whole number has no decimal places to lose: only its size can be wrong
            if precision is not None and abs(value) >= limit:
                raise Rejected(f"too large for {target.describe()}")
            return Decimal(value)
        try:
            number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
        except InvalidOperation:
            raise Rejected("not a number") from None
        if not number.is_finite():
            raise Rejected("not a finite number")
        if precision is None:  # unbounded (PostgreSQL `numeric`): every finite value, exactly
            return number
        exponent = number.as_tuple().exponent
        assert isinstance(exponent, int), "a finite number has an integer exponent (not 'n', 'N' or 'F')"
        rounded = number.quantize(quantum) if exponent < -scale else number
        if rounded != number:
            raise Rejected(f"has more than {scale} decimal places ({target.describe()})")
        if abs(number) >= limit:
            raise Rejected(f"too large for {target.describe()}")
        return number

    return convert


def _text(target: ColumnType) -> Callable[[Any], str]:
    length = target.length

    def convert(value: Any) -> str:
        text = value if isinstance(value, str) else _json_value(value) if not isinstance(value, (int, float)) else str(value)
        if length is not None and len(text) > length:
            raise Rejected(f"{len(text)} characters, the staging column holds at most {length}")
        return text

    return convert


def _timestamp(target: ColumnType) -> Callable[[Any], dt.datetime]:
    # A finer fraction than the column keeps would be rounded by the database: a changed value, so refuse it.
    step = 10 ** (6 - _fraction_digits(target))

    def convert(value: Any) -> dt.datetime:
        moment = _as_datetime(value)
        if moment.microsecond % step:
            raise Rejected(f"has a finer fraction of a second than the staging column keeps ({target.describe()})")
        return moment

    return convert


def _as_datetime(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    try:
        return dt.datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise Rejected("not a timestamp (expected ISO-8601, e.g. 2025-06-01 14:30:00)") from None


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        if value.time() != dt.time(0):
            raise Rejected("has a time of day; the staging column is a date")
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise Rejected("not a date (expected YYYY-MM-DD)") from None


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise Rejected("not a yes/no value (expected 1/0, true/false, Y/N)")


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise Rejected("not a number") from None

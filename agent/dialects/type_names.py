"""How a dialect spells column types in DDL: one `TypeName` per family, a table per dialect (as Alembic keeps
its type synonyms as data). `Dialect.render_type` looks the family up; integers pick their width separately
(`Dialect.integer_types`), since the width decides the range validation enforces."""

from __future__ import annotations

from dataclasses import dataclass

from agent.types import ColumnType


@dataclass(frozen=True)
class TypeName:
    plain: str  # without a length or precision (unbounded text, a decimal without precision)
    sized: str | None = None  # with {length}, {precision},{scale} or, for timestamps, {precision}
    max_size: int | None = None  # text/binary: the longest length `sized` takes; decimal/timestamp: the largest precision
    zoned: str | None = None  # timestamps with a time zone, with {precision}
    default_precision: int | None = None  # decimal: when the type gives none (None: `plain`); timestamp: fraction digits

    def render(self, column_type: ColumnType) -> str:
        family = column_type.family
        if family in ("text", "binary"):
            length = column_type.length
            fits = length is not None and (self.max_size is None or length <= self.max_size)
            return self.sized.format(length=length) if self.sized and fits else self.plain
        if family == "decimal":
            precision = column_type.precision if column_type.precision is not None else self.default_precision
            if precision is None or self.sized is None:
                return self.plain
            if self.max_size is not None:
                precision = min(precision, self.max_size)
            return self.sized.format(precision=precision, scale=column_type.scale or 0)
        if family == "timestamp":
            digits = self.default_precision if column_type.precision is None else column_type.precision
            if digits is not None and self.max_size is not None:
                digits = min(digits, self.max_size)
            template = self.zoned if column_type.timezone and self.zoned else self.sized or self.plain
            return template.format(precision=digits)
        return self.plain


TypeNames = dict[str, TypeName]  # family -> how it is spelled; every family but integer (see integer_types)

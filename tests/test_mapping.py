"""Which source columns are copied without checks: only where every declared value fits the staging column."""

from __future__ import annotations

import pytest

from agent.mapping import always_fits
from agent.types import ColumnType, parse_type


@pytest.mark.parametrize(("source", "target", "fits"), [
    ("smallint", "int", True),
    ("bigint", "int", False),
    ("tinyint", "int", True),  # signed or unsigned (the dialect says which), 8 bits fit in an int
    ("varchar(20)", "varchar(20)", True),
    ("varchar(40)", "varchar(12)", False),
    ("text", "varchar(4000)", False),
    ("varchar(40)", "text", True),
    ("decimal(9,2)", "decimal(18,3)", True),
    ("decimal(10,4)", "decimal(8,2)", False),
    ("decimal(18,3)", "decimal(18,3)", True),
    ("decimal(20,2)", "decimal(18,2)", False),
    ("timestamp", "timestamp", True),
    ("timestamp", "timestamptz", False),
    ("int", "decimal(18,3)", False),  # another family: converted and checked
    ("date", "date", True),
])
def test_always_fits(source, target, fits):
    assert always_fits(parse_type(source), parse_type(target)) is fits


def test_unknown_precision_is_never_trusted():
    assert not always_fits(ColumnType("decimal"), parse_type("decimal(38,10)"))

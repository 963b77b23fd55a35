"""Each dialect's DDL type names are a table (agent/dialects/<name>.py `type_names`): the rendering of the
same normalized types in every dialect, exactly as `sql ddl` prints them."""

from __future__ import annotations

import pytest

from agent import dialects
from agent.types import ColumnType as C

TYPES = [
    C("decimal", precision=18, scale=3), C("decimal"), C("text", length=50), C("text"), C("text", length=16384),
    C("binary", length=16), C("timestamp", precision=3), C("timestamp", timezone=True), C("timestamp", precision=9),
    C("float"), C("date"), C("time"), C("boolean"), C("integer", precision=32, unsigned=True),
]
EXPECTED = {
    "postgresql": ["numeric(18,3)", "numeric", "varchar(50)", "text", "varchar(16384)", "bytea",
                   "timestamp(3) without time zone", "timestamp(6) with time zone", "timestamp(6) without time zone",
                   "double precision", "date", "time", "boolean", "bigint"],
    "mysql": ["decimal(18,3)", "decimal(38,0)", "varchar(50)", "longtext", "longtext", "varbinary(16)", "datetime(3)",
              "datetime(6)", "datetime(6)", "double", "date", "time(6)", "boolean", "int unsigned"],
    "sqlite": ["DECIMAL(18,3)", "TEXT", "VARCHAR(50)", "TEXT", "VARCHAR(16384)", "BLOB", "TIMESTAMP", "TIMESTAMP",
               "TIMESTAMP", "REAL", "DATE", "TIME", "BOOLEAN", "INTEGER"],
    "mssql": ["decimal(18,3)", "decimal(38,0)", "nvarchar(50)", "nvarchar(max)", "nvarchar(max)", "varbinary(16)",
              "datetime2(3)", "datetimeoffset(7)", "datetime2(7)", "float", "date", "time(7)", "bit", "bigint"],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_family_renders_from_the_dialect_table(name: str):
    dialect = dialects.for_name(name)
    assert [dialect.render_type(t) for t in TYPES] == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_family_but_integer_has_a_row(name: str):
    families = {"decimal", "float", "text", "timestamp", "date", "time", "boolean", "binary"}
    assert set(dialects.for_name(name).type_names) == families


@pytest.mark.parametrize(("text", "expected"), [
    ("nvarchar(20)", C("text", length=20)), ("datetime2(3)", C("timestamp", precision=3)),
    ("datetimeoffset", C("timestamp", precision=6, timezone=True)), ("money", C("decimal", precision=19, scale=4)),
    ("int8", C("integer", precision=64)), ("mediumint unsigned", C("integer", precision=24, unsigned=True)),
    ("longtext", C("text")), ("decimal(18,3)", C("decimal", precision=18, scale=3)),
])
def test_a_type_in_the_configuration_may_use_any_supported_databases_names(text: str, expected: C):
    assert dialects.parse_any_type(text) == expected


def test_vendor_names_belong_to_their_dialect_not_to_the_neutral_types():
    from agent.types import parse_type

    with pytest.raises(ValueError, match="unknown column type 'nvarchar"):
        parse_type("nvarchar(20)")
    assert parse_type("nvarchar(20)", dialects.for_name("mssql").type_synonyms) == C("text", length=20)
    with pytest.raises(ValueError):
        parse_type("nvarchar(20)", dialects.for_name("postgresql").type_synonyms)

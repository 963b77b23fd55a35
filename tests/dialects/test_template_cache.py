"""Rendering a template with the same plain context twice renders it once (a poll sends the same statements every
time); a context holding anything else is rendered every time, so that what it holds now is what the text says."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from agent.dialects import templates

STAGING = {"schema": '"staging"', "staging_table": '"staging"."stg_x"', "staging_table_unqualified": '"stg_x"',
           "staging_name": "staging.stg_x", "unique_name": '"uq_stg_x_source"', "pending_index": '"ix_stg_x_pending"',
           "pending_index_name": "ix_stg_x_pending"}


@dataclass
class Column:
    name: str
    type: str
    nullable: bool


@pytest.fixture
def renders(monkeypatch) -> list[str]:
    seen: list[str] = []
    real = templates._render

    def counting(dialect_name: str, template: str, keep_comments: bool, context: dict[str, Any]) -> str:
        seen.append(template)
        return real(dialect_name, template, keep_comments, context)

    templates._render_plain.cache_clear()
    monkeypatch.setattr(templates, "_render", counting)
    yield seen
    templates._render_plain.cache_clear()


def test_a_plain_context_is_rendered_once_and_a_changed_one_again(renders):
    columns = [{"name": '"qty"', "type": "numeric(18,3)", "nullable": True}]
    first = templates.render("postgresql", "ddl_staging_table", columns=columns, **STAGING)
    assert templates.render("postgresql", "ddl_staging_table", columns=columns, **STAGING) == first
    assert renders == ["ddl_staging_table"]
    columns[0]["nullable"] = False  # the same list, changed: a new text, never the one kept for the old values
    changed = templates.render("postgresql", "ddl_staging_table", columns=columns, **STAGING)
    assert '"qty" numeric(18,3) NOT NULL,' in changed and '"qty" numeric(18,3) NULL,' in first
    assert renders == ["ddl_staging_table", "ddl_staging_table"]


def test_a_context_holding_other_objects_is_rendered_every_time(renders):
    column = Column('"qty"', "numeric(18,3)", True)
    first = templates.render("postgresql", "ddl_staging_table", columns=[column], **STAGING)
    column.nullable = False
    second = templates.render("postgresql", "ddl_staging_table", columns=[column], **STAGING)
    assert '"qty" numeric(18,3) NULL,' in first and '"qty" numeric(18,3) NOT NULL,' in second
    assert renders == ["ddl_staging_table", "ddl_staging_table"]


def test_values_that_compare_equal_but_render_differently_are_kept_apart(renders):
    """True == 1 == 1.0 in Python; as template values they are different texts."""
    texts = [templates.render("postgresql", "ddl_staging_table", columns=[{"name": '"q"', "type": v, "nullable": True}],
                              **STAGING) for v in (True, 1, 1.0)]
    assert ['"q" True NULL,' in texts[0], '"q" 1 NULL,' in texts[1], '"q" 1.0 NULL,' in texts[2]] == [True] * 3
    assert len(renders) == 3

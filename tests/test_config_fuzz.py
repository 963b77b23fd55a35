"""Whatever is wrong in a configuration file, `check-config` ends in exit 0 or 2, never in a traceback.

Hypothesis mutates config.example.yaml: keys deleted or renamed, values replaced by other types, YAML tags
and huge numbers, the text cut off (with a tab or other characters appended). Every run either passes or
lists its problems as `file:line: message`. Derandomized: CI sees the same examples on every run.
"""

from __future__ import annotations

import re
import traceback
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agent.cli import main

EXAMPLE_TEXT = (Path(__file__).resolve().parents[1] / "config.example.yaml").read_text(encoding="utf-8")
# Raw YAML put in place of a value: tags (fitting their value or not, unknown, bare) and numbers no field can hold.
RAW_VALUES = [
    "!!timestamp 2s", "!!timestamp 2024-01-31", "!!binary aGVsbG8=", "!!binary not*base64", "!foo x", "!foo",
    "!!int 2s", "!!int 7", "!!float x", "!!bool maybe", "!!null x", "!!str 5", "!!map x", "!!seq x", "!!set x",
    "!!python/object:os.system x", "!", "! x", "1180591620717411303424", "1180591620717411303424s", "-1180591620717411303424",
    "1e400", ".inf", "-.inf", ".nan", "2024-13-45", "99999999999999999999999999999999d", "0.0000001ms", "[]", "{}",
    "'${MEA_FUZZ_UNSET}'", "*undefined_alias", "&a [*a]", "=", "<<", "&x !!int 2s", "&y !foo",
]
TEXT_ALPHABET = st.characters(codec="utf-8", exclude_categories=("Cs",))
CUT_TAILS = ["", "\t", " ", "\n", "\t\n", ":", "'", '"', "[", "{", "- ", "!", "&", "*", "#", "%", "@", "`"]
MAX_EXAMPLES = 400


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory):
    """One file rewritten by every example; ${ERP_AGENT_PASSWORD} of the example is set, MEA_FUZZ_UNSET is not."""
    mp = pytest.MonkeyPatch()
    mp.setenv("ERP_AGENT_PASSWORD", "not-a-real-password")
    mp.delenv("MEA_FUZZ_UNSET", raising=False)
    yield tmp_path_factory.mktemp("fuzz") / "agent.yaml"
    mp.undo()


def plain_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.integers(), st.integers(min_value=2**63), st.floats(), st.booleans(), st.none(),
        st.text(TEXT_ALPHABET, max_size=12),
        st.sampled_from(["2s", "5m", "halt", "staging", "dbo", "sqlite:///x.db", "postgresql://u@h/db", "0 6 * * *",
                         "int", "decimal(18,3)", "a.b", "mes", "erp", "public"]),
    )
    return st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(TEXT_ALPHABET, max_size=8), scalars,
                                                                              max_size=3))


def paths(document: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key or list position in the document, outermost first."""
    found = []
    items = document.items() if isinstance(document, dict) else enumerate(document) if isinstance(document, list) else []
    for key, value in items:
        found.append(prefix + (key,))
        found += paths(value, prefix + (key,))
    return found


def parent_of(document: Any, path: tuple) -> Any:
    for part in path[:-1]:
        document = document[part]
    return document


def typo(key: str, data: st.DataObject) -> str:
    how = data.draw(st.sampled_from(["drop", "double", "swap", "other"]))
    if how == "other" or len(key) < 2:
        return data.draw(st.sampled_from(["tabel", "sytems", "flow", "columns", "url", "x", "", "1", "null", "<<"]))
    i = data.draw(st.integers(0, len(key) - 2))
    if how == "drop":
        return key[:i] + key[i + 1:]
    if how == "double":
        return key[:i] + key[i] + key[i:]
    return key[:i] + key[i + 1] + key[i] + key[i + 2:]


def mutate(document: Any, data: st.DataObject, raw: list[str]) -> None:
    """One mutation in place: delete, rename or replace what is at a drawn path."""
    candidates = paths(document)
    if not candidates:
        return
    path = data.draw(st.sampled_from(candidates))
    parent, last = parent_of(document, path), path[-1]
    action = data.draw(st.sampled_from(["delete", "rename", "replace", "raw"]))
    if action == "delete":
        del parent[last]
    elif action == "rename" and isinstance(parent, dict):
        parent[typo(str(last), data)] = parent.pop(last)
    elif action == "raw":
        raw.append(data.draw(st.sampled_from(RAW_VALUES)))
        parent[last] = f"__RAW_{len(raw) - 1}__"
    else:
        parent[last] = data.draw(plain_values())


def mutated_text(data: st.DataObject) -> str:
    """The example, changed structurally (dumped again, comments lost) and/or cut off somewhere."""
    text = EXAMPLE_TEXT
    if data.draw(st.booleans()):
        document, raw = yaml.safe_load(EXAMPLE_TEXT), []
        for _ in range(data.draw(st.integers(1, 4))):
            mutate(document, data, raw)
        text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
        for i, snippet in enumerate(raw):
            text = text.replace(f"__RAW_{i}__", snippet)
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(text)))
        text = text[:cut] + data.draw(st.sampled_from(CUT_TAILS))
    return text


def check_config(path: Path) -> Result:
    return CliRunner().invoke(main, ["check-config", "-c", str(path)])


def assert_exit_0_or_problems_with_lines(result: Result, path: Path, text: str) -> None:
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        trace = "".join(traceback.format_exception(result.exception))
        raise AssertionError(f"traceback for this file:\n{text}\n{trace}")
    assert result.exit_code in (0, 2), (text, result.output)
    lines = result.output.splitlines()
    if result.exit_code == 0:
        assert lines[0].startswith(f"{path}: OK ("), (text, result.output)
        return
    count = len(lines) - 1
    assert lines[0] == f"{path}: configuration is not valid ({count} problem{'s' if count != 1 else ''}):", (text, lines)
    for line in lines[1:]:
        assert re.match(r"^  \S.*?:\d+: \S", line), (text, line)


@settings(derandomize=True, max_examples=MAX_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_mutated_example_gives_exit_0_or_2_with_file_and_line(config_path, data):
    text = mutated_text(data)
    config_path.write_text(text, encoding="utf-8")
    result = check_config(config_path)
    event(f"exit {result.exit_code}")  # pytest --hypothesis-show-statistics shows the share of each
    assert_exit_0_or_problems_with_lines(result, config_path, text)

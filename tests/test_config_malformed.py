"""Malformed configuration files give exit 2 and `file:line: message` a person can act on, never a traceback.

The cases of the defect report, each on config.example.yaml: huge durations, YAML tags that do not fit their
value (or that PyYAML does not know), a bare `!`, and a file cut off with a tab appended.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import cli

EXAMPLE = (Path(__file__).resolve().parents[1] / "config.example.yaml").read_text(encoding="utf-8")
WO = "flows.work_order_confirmations"
HUGE = "1180591620717411303424"


@pytest.fixture(autouse=True)
def example_environment(monkeypatch):
    monkeypatch.setenv("ERP_AGENT_PASSWORD", "not-a-real-password")


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def check(tmp_path: Path, text: str) -> tuple[int, list[str]]:
    path = tmp_path / "agent.yaml"
    path.write_text(text, encoding="utf-8")
    result = cli("check-config", "-c", str(path))
    return result.exit_code, result.output.splitlines()


def problems_of(tmp_path: Path, old: str, new: str) -> tuple[int, list[str], int]:
    """Exit code, output lines and the line of the change, for the example with `old` replaced by `new`."""
    assert EXAMPLE.count(old) == 1, old
    text = EXAMPLE.replace(old, new)
    code, lines = check(tmp_path, text)
    return code, lines, line_of(text, new.splitlines()[0])


def one_problem(tmp_path: Path, line: int, message: str) -> list[str]:
    path = tmp_path / "agent.yaml"
    return [f"{path}: configuration is not valid (1 problem):", f"  {path}:{line}: {message}"]


CASES = {
    "huge lag": ("lag: 2s ", f"lag: {HUGE}s ",
                 f"`{WO}.lag`: expected a duration of at most 3650d (about 10 years), got '{HUGE}s'"),
    "huge every": ("{every: 30s}", f"{{every: {HUGE}}}",
                   f"`{WO}.schedule.every`: expected a duration of at most 3650d (about 10 years), got {HUGE}"),
    "infinite lag": ("lag: 2s ", "lag: .inf ",
                     f"`{WO}.lag`: expected a duration of at most 3650d (about 10 years), got inf"),
    "too many digits": ("overlap: 5m ", f"overlap: {'9' * 40}.5d ",
                        f"`{WO}.overlap`: expected a duration of at most 3650d (about 10 years), got "
                        f"'{'9' * 40}.5d'"),
    "!!timestamp": ("lag: 2s ", "lag: !!timestamp 2s ",
                    f"`{WO}.lag`: the YAML tag !!timestamp asks for a date or time (2024-01-31, 2024-01-31 06:00:00), "
                    "and '2s' is not; remove the tag or fix the value"),
    "!!binary": ("staging_schema: staging", "staging_schema: !!binary not*base64",
                 "`systems.erp.staging_schema`: the YAML tag !!binary asks for base64 data, and 'not*base64' is not; "
                 "remove the tag or fix the value"),
    "!foo": ("staging_schema: staging", "staging_schema: !foo staging",
             "`systems.erp.staging_schema`: unknown YAML tag !foo; remove it (the configuration uses plain YAML values)"),
    "!foo on a list": ("key: [work_order_id]", "key: !foo [work_order_id]",
                       f"`{WO}.key`: the YAML tag !foo does not fit here; remove it (the configuration uses plain "
                       "mappings and lists)"),
    "!!int 2s": ("lag: 2s ", "lag: !!int 2s ",
                 f"`{WO}.lag`: the YAML tag !!int asks for an integer, and '2s' is not; remove the tag or fix the value"),
    "!!bool": ("enabled: true ", "enabled: !!bool maybe ",
               f"`{WO}.enabled`: the YAML tag !!bool asks for true or false, and 'maybe' is not; remove the tag or fix "
               "the value"),
    "bare ! at the end of a line": ("on_drift: halt ", "on_drift: ! ",
                                    f"`{WO}.on_drift`: Input should be 'halt', 'halt_on_breaking' or 'warn'"),
    "bare ! before a value": ("batch_size: 5000 ", "batch_size: ! many ",
                              f"`{WO}.batch_size`: Input should be a valid integer, unable to parse string as an integer"),
    "not a date": ("lag: 2s ", "lag: 2024-13-45 ",
                   f"`{WO}.lag`: '2024-13-45' reads as a date or time (2024-01-31, 2024-01-31 06:00:00) but is not a "
                   "valid one; put it in quotes if it is text"),
    "merge key": ("    lag: 2s ", "    <<: {lag: 2s}\n   ",
                  f"`{WO}`: `<<` (a YAML merge key) is not supported; write the keys out"),
    "recursive alias": ("key: [work_order_id]", "key: &k [work_order_id, *k]",
                        f"`{WO}.key.1`: this alias refers to a value that contains it; write the value out"),
    "a list as key": ("    lag: 2s ", "    ? [lag]\n    : 2s\n   ",
                      f"`{WO}`: a key must be a plain word, not a list or mapping"),
    "NUL in a path": ("password_file: secrets/mes.password", 'password_file: "secrets/mes\\0.password"',
                      "`systems.mes.password_file`: a path cannot hold a NUL character (\\0)"),
}


@pytest.mark.parametrize("old, new, message", CASES.values(), ids=CASES.keys())
def test_a_malformed_value_is_one_problem_at_its_line(tmp_path, old, new, message):
    code, lines, line = problems_of(tmp_path, old, new)
    assert (code, lines) == (2, one_problem(tmp_path, line, message))


def test_a_file_cut_off_with_a_tab_appended(tmp_path):
    # Cut in the comment after `systems:`: PyYAML reads `systems:` as null and re-serializing that node failed.
    cut = EXAMPLE.index("systems:                      #") + len("systems:                      #")
    code, lines = check(tmp_path, EXAMPLE[:cut] + "\t")
    path, line = tmp_path / "agent.yaml", line_of(EXAMPLE, "systems:                      #")
    assert (code, lines) == (2, [
        f"{path}: configuration is not valid (2 problems):",
        f"  {path}:{line}: `systems`: Input should be a valid dictionary",
        f"  {path}:{line}: `flows` is required",
    ])


def test_a_file_cut_off_mid_value_with_a_tab_appended(tmp_path):
    cut = EXAMPLE.index("watermark: [modified_date") + len("watermark: [modif")
    code, lines = check(tmp_path, EXAMPLE[:cut] + "\t")
    path = tmp_path / "agent.yaml"
    assert (code, lines) == (2, one_problem(
        tmp_path, line_of(EXAMPLE, "watermark: [modified_date"), "not valid YAML: found character '\\t' that cannot "
        "start any token"))
    assert path.is_file()


def test_a_key_with_line_breaks_is_shown_escaped_on_its_problem_line(tmp_path):
    code, lines, line = problems_of(tmp_path, "staging_schema: staging", '"staging\\u0085schema\\n": staging')
    assert (code, lines) == (2, one_problem(
        tmp_path, line, "unknown key `systems.erp.staging\\x85schema\\n`; did you mean `staging_schema`?"))


def test_a_file_that_is_not_utf8_or_holds_nothing(tmp_path):
    path = tmp_path / "agent.yaml"
    path.write_bytes(EXAMPLE.encode("utf-8").replace(b"staging_schema: staging", b"staging_schema: stag\xe9ing"))
    result = cli("check-config", "-c", str(path))
    assert (result.exit_code, result.output.splitlines()) == (2, one_problem(
        tmp_path, line_of(EXAMPLE, "staging_schema: staging"), "not UTF-8 text; save the file as UTF-8"))
    path.write_text("# only a comment\n", encoding="utf-8")
    result = cli("check-config", "-c", str(path))
    assert (result.exit_code, result.output.splitlines()) == (2, one_problem(
        tmp_path, 1, "the file holds no configuration (it is empty or only comments); see config.example.yaml for a "
        "complete example"))


def test_a_control_character_is_named_with_its_line(tmp_path):
    code, lines, line = problems_of(tmp_path, "key: [work_order_id]", "key: [work_order_id\x07]")
    assert (code, lines) == (2, one_problem(
        tmp_path, line, "not valid YAML: special characters are not allowed (character U+0007); remove it"))


def test_a_query_file_that_is_not_utf8(tmp_path):
    (tmp_path / "flows.sql").write_bytes(b"SELECT work_order_id\n-- caf\xe9\nFROM production.work_order\n")
    code, lines, line = problems_of(tmp_path, "    table: production.work_order        # schema.table in the source",
                                    "    query: flows.sql")
    assert (code, lines) == (2, one_problem(tmp_path, 2, "")[:1] + [
        f"  {tmp_path / 'flows.sql'}:2: not UTF-8 text; save the query file as UTF-8 (query of flow "
        f"work_order_confirmations, {tmp_path / 'agent.yaml'}:{line})"
    ])


def test_a_plain_equals_sign_or_merge_sign_as_a_value_is_text(tmp_path):
    # PyYAML resolves a plain `=` to a tag it has no constructor for; it is just text in a configuration.
    code, lines, line = problems_of(tmp_path, "on_drift: halt ", "on_drift: = ")
    assert (code, lines) == (2, one_problem(
        tmp_path, line, f"`{WO}.on_drift`: Input should be 'halt', 'halt_on_breaking' or 'warn'"))
    code, lines, _ = problems_of(tmp_path, "staging_schema: staging", "staging_schema: staging\n    grants: {login: agent, "
                                                                       "password_placeholder: =}")
    assert (code, lines) == (0, [f"{tmp_path / 'agent.yaml'}: OK (2 systems, 2 flows: work_order_confirmations, "
                                 "quality_holds)"])


def test_a_location_on_line_100_prints_as_it_is(tmp_path):
    """rich would turn `:100:` into an emoji; a file:line must reach the admin unchanged."""
    path = tmp_path / "agent.yaml"
    lines = ["systems:", "  mes: {url: \"sqlite:///mes.db\"}", "  erp: {url: \"sqlite:///erp.db\", staging_schema: staging}",
             "flows:", *["# padding"] * 94, "  wo: {source: mes, target: erp, table: wo, watermark: [a], key: [a],",
             "       staging_table: stg_wo, columns: {x: a}, batch_size: lots}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = cli("check-config", "-c", str(path))
    assert result.exit_code == 2
    assert f"{path}:100: `flows.wo.batch_size`" in result.output, result.output

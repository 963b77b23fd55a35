"""Command output is plain text: a problem on line 100 of a configuration reads `agent.yaml:100:`, not an emoji.

rich replaces `:name:` emoji codes by default, and `:100:` (and `:1234:`) are such codes; markup=False does not
turn that off. Found by tests/test_config_fuzz.py.
"""

from __future__ import annotations

from helpers import cli


def test_a_problem_on_line_100_is_reported_with_its_line_number_not_an_emoji(tmp_path):
    config = tmp_path / "agent.yaml"
    config.write_text("# padding\n" * 99 + "retry: !!timestamp 2s\n", encoding="utf-8")
    result = cli("check-config", "-c", str(config))
    assert result.exit_code == 2, result.output
    assert f"{config}:100: " in result.output, result.output
    assert "\U0001f4af" not in result.output

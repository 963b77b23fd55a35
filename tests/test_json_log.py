"""`--log-format json`: one JSON object per line, with the flow and batch ids on every line logged while a flow
and a batch run, for the plant's log collector. Real flows on SQLite, in process and as the command."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from agent import log_context
from health_support import FLOW, ROWS, Agent, new_agent, new_pair, quarantined_in_source, source_down
from helpers import cli, staging_engine

KEYS = ["time", "level", "logger", "message", "flow", "batch_id"]
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")


@pytest.fixture
def agent(db_factory, tmp_path, request) -> Iterator[Agent]:
    made = new_agent(new_pair(db_factory, "sqlite", request.node.name[5:25]), tmp_path / "agent")
    yield made
    made.close()


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The agent's log lines at DEBUG, in the JSON format."""
    lines = io.StringIO()
    handler = log_context.handler("json", lines)
    logger = logging.getLogger("mes_erp_agent")
    level = logger.level
    logger.setLevel(logging.DEBUG)  # setLevel, not `.level =`: it clears the loggers' isEnabledFor caches
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


def parsed(lines: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in lines.getvalue().splitlines()]


def runs(agent: Agent) -> list[tuple]:
    engine = staging_engine(agent.pair)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT batch_id, rows_read, rows_written, rows_quarantined, watermark_after "
                                    "FROM staging.agent_run WHERE outcome = 'ok' ORDER BY run_id")).all()
    engine.dispose()
    return [tuple(r) for r in rows]


def test_every_line_of_a_poll_names_its_flow_and_every_batch_line_its_batch(agent, json_log):
    logging.getLogger("mes_erp_agent").info("before any flow")
    report = agent.poll()
    lines = parsed(json_log)
    assert all(list(line) == KEYS and TIME.match(line["time"]) for line in lines), lines
    assert lines[0] | {"time": None} == {"time": None, "level": "INFO", "logger": "mes_erp_agent",
                                          "message": "before any flow", "flow": None, "batch_id": None}
    quarantined = quarantined_in_source(agent.pair)
    batches = runs(agent)
    assert [b[1] for b in batches] == [50, 50, 20]
    assert [(line["level"], line["flow"], line["batch_id"], line["message"]) for line in lines[1:]] == [
        *[("DEBUG", FLOW, batch_id, f"flow {FLOW}: batch {batch_id} committed: {read} read, {written} written, 0 already "
           f"staged, {rejected} quarantined; watermark {watermark}")
          for batch_id, read, written, rejected, watermark in batches],
        ("INFO", FLOW, None, f"flow {FLOW}: {ROWS} read, {ROWS - quarantined} written, 0 already staged, {quarantined} "
         f"quarantined in 3 batches ({report.seconds:.1f}s); watermark {report.watermark_after}"),
    ]


def test_a_failed_poll_is_one_error_line_with_its_flow(agent, json_log):
    agent.poll()
    json_log.truncate(0)
    json_log.seek(0)
    with source_down(agent) as error:
        report = agent.poll()
    assert [(line["level"], line["flow"], line["batch_id"], line["message"]) for line in parsed(json_log)] == [
        ("ERROR", FLOW, None, f"flow {FLOW} failed: {error}"),
    ]
    assert report.message == error


def test_the_command_logs_json_lines_and_keeps_the_text_format_by_default(agent):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "agent"]
    config = str(agent.config.path)
    as_json = subprocess.run([*command, "--log-format", "json", "run", "-c", config, "--once"],
                             capture_output=True, text=True, timeout=120, env=env)
    assert as_json.returncode == 0, as_json.stderr
    quarantined = quarantined_in_source(agent.pair)
    lines = [json.loads(line) for line in as_json.stderr.splitlines()]
    assert [(line["level"], line["flow"], line["batch_id"], line["message"].split(" in 3 batches")[0]) for line in lines] == [
        ("INFO", FLOW, None, f"flow {FLOW}: {ROWS} read, {ROWS - quarantined} written, 0 already staged, "
         f"{quarantined} quarantined"),
    ]
    as_text = subprocess.run([*command, "run", "-c", config, "--once"], capture_output=True, text=True, timeout=120, env=env)
    assert as_text.returncode == 0, as_text.stderr
    assert as_text.stderr == ""  # a poll that finds nothing logs at DEBUG only
    debug = subprocess.run([*command, "--log-level", "DEBUG", "run", "-c", config, "--once"], capture_output=True,
                           text=True, timeout=120, env=env)
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} DEBUG mes_erp_agent: flow work_orders: 0 read, ",
                     debug.stderr, re.MULTILINE), debug.stderr


def test_an_unknown_log_format_is_refused():
    result = cli("--log-format", "xml", "check-config", "-c", "agent.yaml")
    assert result.exit_code == 2
    assert "Invalid value for '--log-format': 'xml' is not one of 'text', 'json'." in result.output

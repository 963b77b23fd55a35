"""/healthz and /metrics served by the real HTTP server, for a real flow on PostgreSQL under the agent's own
login: scraped and parsed with prometheus-client's text parser; 503 while the source refuses connections, 200
after it recovers; the login's password appears in no metric, health body, status output or log line."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from agent import log_context
from agent.config import HttpConfig
from agent.health import FlowHealth, HealthServer, HttpBindError, probe
from health_support import (
    FLOW, ROWS, Agent, agent_for, agent_login, new_pair, password_config, quarantined_in_source, source_down,
)
from helpers import cli, scalar, table_name

STATES = ("starting", "ok", "catching_up", "failing", "halted", "standby")


def get(url: str) -> tuple[int, str, str]:
    """(status, content type, body) of a GET, 5xx included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode("utf-8")


def scrape(server: HealthServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics: (name, sorted labels) -> value, parsed by prometheus-client."""
    status, content_type, body = get(server.url + "/metrics")
    assert (status, content_type) == (200, CONTENT_TYPE_LATEST)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def flow_samples(samples: dict, state: str) -> dict[str, float]:
    """The agent's per-flow samples by name, without the _created timestamps and the histogram's buckets."""
    found = {name: value for (name, labels), value in samples.items()
             if labels == (("flow", FLOW),) and not name.endswith(("_created", "_bucket"))}
    states = {dict(labels)["state"]: value for (name, labels), value in samples.items() if name.endswith("flow_state")}
    assert states == {s: (1.0 if s == state else 0.0) for s in STATES}
    return found


@pytest.fixture(scope="module")
def login_agent(db_factory, tmp_path_factory) -> Iterator[tuple[Agent, str, HealthServer, io.StringIO]]:
    pair = new_pair(db_factory, "postgresql", "http")
    folder = tmp_path_factory.mktemp("http")
    with agent_login(pair, folder / "admin") as login:
        config = password_config(login, folder / "agent", http={"bind": "127.0.0.1:0"})
        result = cli("snapshot", "-c", str(config))  # as the agent's login, like an admin before go-live
        assert result.exit_code == 0, result.output
        agent = agent_for(config, pair)
        log_lines = io.StringIO()
        handler = log_context.handler("json", log_lines)
        logger = logging.getLogger("mes_erp_agent")
        logger.addHandler(handler)
        level = logger.level
        logger.setLevel(logging.DEBUG)
        server = HealthServer(agent.health, agent.config.model.http).start()
        try:
            yield agent, login.password, server, log_lines
        finally:
            server.stop()
            logger.removeHandler(handler)
            logger.setLevel(level)
            agent.close()


def test_healthz_is_503_while_the_source_refuses_connections_and_200_after_it_recovers(login_agent):
    agent, _password, server, _log = login_agent
    status, content_type, body = get(server.url + "/healthz")
    assert (status, content_type, json.loads(body)["status"]) == (503, "application/json", "unhealthy")
    assert [(f["flow"], f["state"]) for f in json.loads(body)["flows"]] == [(FLOW, "starting")]

    report = agent.poll()
    assert report.outcome == "ok", report.message
    status, _, body = get(server.url + "/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok", "flows": agent.health.snapshot()})
    assert json.loads(body)["flows"][0]["state"] == "ok"

    with source_down(agent) as error:
        agent.clock.advance(60)
        assert agent.poll().outcome == "failed"
        status, _, body = get(server.url + "/healthz")
        flow = json.loads(body)["flows"][0]
        assert (status, json.loads(body)["status"], flow["state"], flow["message"], flow["failing_since"]) == (
            503, "unhealthy", "failing", error, "2026-03-01T06:01:00Z")

    agent.clock.advance(60)
    assert agent.poll().outcome == "ok"
    status, _, body = get(server.url + "/healthz")
    assert (status, json.loads(body)["flows"][0]["state"], json.loads(body)["flows"][0]["failing_since"]) == (200, "ok", None)
    assert get(server.url + "/nothing")[0] == 404


def test_metrics_are_scraped_and_parsed_with_exact_values(login_agent):
    agent, _password, server, _log = login_agent
    quarantined = quarantined_in_source(agent.pair)
    loaded_at = scalar(agent.pair.erp_url, f"SELECT MIN(stg_loaded_at) FROM {agent.pair.staging_schema}.stg_work_order")
    now = loaded_at.replace(tzinfo=dt.timezone.utc) + dt.timedelta(seconds=42)
    assert agent.job.context is not None
    agent.health.record_measurement(FLOW, probe.measure(agent.job.context, now))
    samples = scrape(server)
    polls = 3  # the test above: ok, failed, ok
    assert flow_samples(samples, "ok") == {
        "mes_erp_agent_rows_staged_total": ROWS - quarantined,
        "mes_erp_agent_rows_quarantined_total": quarantined,
        "mes_erp_agent_batches_total": 3.0,
        "mes_erp_agent_failures_total": 1.0,
        "mes_erp_agent_lag_seconds": 0.0,
        "mes_erp_agent_drift_halted": 0.0,
        "mes_erp_agent_backlog_rows": ROWS - quarantined,
        "mes_erp_agent_backlog_oldest_age_seconds": 42.0,
        "mes_erp_agent_flow_up": 1.0,
        "mes_erp_agent_poll_duration_seconds_count": polls,
        "mes_erp_agent_poll_duration_seconds_sum": pytest.approx(samples[("mes_erp_agent_poll_duration_seconds_sum",
                                                                          (("flow", FLOW),))]),
    }
    buckets = {dict(labels)["le"]: value for (name, labels), value in samples.items()
               if name == "mes_erp_agent_poll_duration_seconds_bucket"}
    assert buckets["+Inf"] == polls and list(buckets.values()) == sorted(buckets.values())

    # A change an hour after the staged watermark, not polled yet: lag 3600 s; polled, 0 again.
    work_order = table_name(agent.pair, "work_order")
    agent.mes(f"UPDATE {work_order} SET modified_date = (SELECT MAX(modified_date) FROM {work_order}) + interval '1 hour' "
              f"WHERE work_order_id = (SELECT MIN(work_order_id) FROM {work_order} WHERE scrap_reason_id IS NULL)")
    agent.health.record_measurement(FLOW, probe.measure(agent.job.context, now))
    assert flow_samples(scrape(server), "ok")["mes_erp_agent_lag_seconds"] == 3600.0
    agent.poll()
    agent.health.record_measurement(FLOW, probe.measure(agent.job.context, now))
    after = flow_samples(scrape(server), "ok")
    assert (after["mes_erp_agent_lag_seconds"], after["mes_erp_agent_rows_staged_total"],
            after["mes_erp_agent_batches_total"]) == (0.0, ROWS - quarantined + 1, 4.0)


def test_no_metric_health_body_status_output_or_log_line_contains_the_password(login_agent, tmp_path):
    agent, password, server, log = login_agent
    config = str(agent.config.path)
    agent.mes(f"UPDATE {table_name(agent.pair, 'work_order')} SET modified_date = modified_date + interval '2 hours' "
              "WHERE work_order_id <= 10")
    service_log = subprocess.run(
        [sys.executable, "-m", "agent", "--log-format", "json", "--log-level", "DEBUG", "run", "-c", config, "--once"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert service_log.returncode == 0, service_log.stderr[-3000:]
    json_lines = [json.loads(line) for line in service_log.stderr.splitlines()]
    assert any(line["flow"] == FLOW and line["batch_id"] for line in json_lines)
    with source_down(agent):  # failure messages too
        agent.poll()
        failing_health = get(server.url + "/healthz")[2]
    outputs = {
        "/metrics": get(server.url + "/metrics")[2],
        "/healthz while failing": failing_health,
        "/healthz": get(server.url + "/healthz")[2],
        "status": cli("status", "-c", config).output,
        "status --json": cli("status", "-c", config, "--json").output,
        "JSON log of run --once": service_log.stdout + service_log.stderr,
        "JSON log of the polls": log.getvalue(),
    }
    assert json.loads(outputs["/healthz while failing"])["flows"][0]["state"] == "failing"
    assert '"level": "ERROR"' in outputs["JSON log of the polls"]
    assert [where for where, text in outputs.items() if password in text] == []


def test_a_port_in_use_is_a_clear_message_not_a_traceback():
    first = HealthServer(FlowHealth({"a": 1}), HttpConfig(bind="127.0.0.1:0")).start()
    port = first.port
    try:
        with pytest.raises(HttpBindError) as refused:
            HealthServer(FlowHealth({"a": 1}), HttpConfig(bind=f"127.0.0.1:{port}")).start()
    finally:
        first.stop()
    assert str(refused.value) == (
        f"cannot serve /healthz and /metrics on 127.0.0.1:{port} (`http: bind:` in the configuration): the "
        "address is already in use, by another program or a second agent; stop it or choose another port")


def test_two_agents_in_one_process_keep_their_own_metrics():
    one, two = FlowHealth({"one": 10}), FlowHealth({"two": 10})
    one.metrics.add_batch("one", 7, 1)
    assert b'mes_erp_agent_rows_staged_total{flow="one"} 7.0' in one.metrics.exposition()
    assert b'flow="one"' not in two.metrics.exposition()
    assert b'mes_erp_agent_rows_staged_total{flow="two"} 0.0' in two.metrics.exposition()


def test_check_config_explains_a_bad_bind(tmp_path: Path):
    config = tmp_path / "agent.yaml"
    config.write_text(
        "systems:\n  mes: {url: 'sqlite:///mes.db'}\n  erp: {url: 'sqlite:///erp.db', staging_schema: staging}\n"
        "flows:\n  wo: {source: mes, target: erp, table: work_order, watermark: [modified_date], key: [id],\n"
        "       staging_table: stg_wo, columns: {id: id}}\nhttp:\n  bind: localhost\n", encoding="utf-8")
    result = cli("check-config", "-c", str(config))
    assert (result.exit_code, result.output) == (2, (
        f"{config}: configuration is not valid (1 problem):\n"
        f"  {config}:8: `http.bind`: expected host:port such as 127.0.0.1:9464 (or [::1]:9464), got 'localhost'\n"))
    config.write_text(config.read_text(encoding="utf-8").replace("localhost", "'[::1]:9464'"), encoding="utf-8")
    assert cli("check-config", "-c", str(config)).exit_code == 0

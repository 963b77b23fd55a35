"""ERP backlog and quarantine incidents from the running agent, for real (PostgreSQL and MariaDB, `mes-erp-agent run`
as a subprocess, an HTTP webhook): PENDING rows older than `alerts.backlog.max_pending_age` alert once and resolve once
when the ERP's import job takes them; quarantined rows above `alerts.quarantine.max_rows` likewise, resolved when
a DBA removes the handled ones. `status` shows the running agent's view, then says it is not running.
Also the `config_rejected` incident's message (the reload that raises it comes later) and the flow's backoff."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import time
import logging
from pathlib import Path

import pytest
import sqlalchemy as sa

from agent.alerts import kinds
from agent.config import FlowRetry
from agent.report import FlowReport
from agent.retry import FailureStreak
from health_support import ROWS, flow_config, new_pair, quarantined_in_source
from helpers import cli, prepare_erp, write_config
from service_support import Service, WebhookServer, free_port, wait_until


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_backlog_and_quarantine_alert_once_and_resolve_once(db_factory, tmp_path, kind):
    pair = new_pair(db_factory, kind, f"bl_{kind[:2]}")
    staging = f"{pair.staging_schema}.stg_work_order"
    webhook = WebhookServer().start()
    service = Service(tmp_path / "agent.yaml", free_port())
    flow = flow_config(pair, schedule={"every": "1s"})
    write_config(service.config, pair, {"work_orders": flow}, http={"bind": f"127.0.0.1:{service.http_port}"},
                 alerts={"webhook": {"url": webhook.url()}, "check_every": "500ms", "backlog": {"max_pending_age": "2s"},
                         "quarantine": {"max_rows": 0}})
    prepare_erp(service.config)
    erp = sa.create_engine(pair.erp_url)
    quarantined = quarantined_in_source(pair)
    assert quarantined > 0
    # The initial load runs before the service, so that its first check already sees every quarantined row (a check
    # during the load would open the incident with the count of the batches committed so far: seen in CI).
    assert cli("run", "-c", str(service.config), "--once").exit_code == 0
    try:
        service.start()
        wait_until(lambda: len(webhook.posts) == 2, 30, "the backlog and quarantine alerts")
        running = json.loads(cli("status", "-c", str(service.config), "--json").output)[0]
        with erp.begin() as conn:  # the ERP's import job takes the rows
            conn.execute(sa.text(f"UPDATE {staging} SET stg_status = 'DONE'"))
        with erp.begin() as conn:  # a DBA removes the handled quarantine rows
            conn.execute(sa.text(f"DELETE FROM {pair.staging_schema}.agent_quarantine"))
        wait_until(lambda: len(webhook.posts) == 4, 30, "both resolutions")
        time.sleep(3)  # more checks run: nothing is sent again
    finally:
        code = service.stop() if service.process else None
        webhook.stop()
        erp.dispose()
    assert code == 0, service.log[-3000:]
    titles = sorted(b["title"] for b in webhook.bodies())
    assert len(titles) == 4, titles
    backlog, quarantine = [t for t in titles if "backlog" in t], [t for t in titles if "quarantin" in t]
    assert backlog[0] == f"ERP backlog cleared on {staging}"
    assert backlog[1].startswith(f"ERP backlog on {staging}: {ROWS - quarantined} rows PENDING since ")
    assert quarantine == [f"Flow work_orders: {quarantined} rows quarantined (limit 0)",
                          "Flow work_orders: quarantine within limit again"]
    assert running["agent_running"] is True and running["state"] == "ok" and running["quarantine_rows"] == quarantined
    assert running["next_run"] is not None and running["last_success_at"] is not None
    assert sorted(running["open_incidents"]) == sorted(t for t in titles if "cleared" not in t and "again" not in t)
    stopped = cli("status", "-c", str(service.config))
    assert "The agent is not running (last seen " in stopped.output


def test_the_config_rejected_incident_says_what_where_since_and_what_to_do():
    at = dt.datetime(2026, 11, 25, 10, 15, tzinfo=dt.timezone.utc)
    incident = kinds.config_rejected(Path("/opt/mes-erp-agent/agent.yaml"),
                                     ["agent.yaml:12: flows.work_orders.batch_size: expected an integer"], at)
    assert (incident.kind, incident.key, incident.title) == (
        "config_rejected", "config_rejected", "Configuration rejected: agent.yaml (1 problem)")
    assert incident.body == """\
CONFIGURATION REJECTED: /opt/mes-erp-agent/agent.yaml
The running agent did not load the changed file /opt/mes-erp-agent/agent.yaml at 2026-11-25 10:15:00 UTC: 1 problem.
It keeps running every flow on the configuration it loaded before; nothing was moved differently.

  1. agent.yaml:12: flows.work_orders.batch_size: expected an integer

What to do:
  1. Fix the file; see every problem with file, line and key with:
       mes-erp-agent check-config -c /opt/mes-erp-agent/agent.yaml
  2. Save it again: the agent reloads it, and this incident resolves when it loads."""


def test_a_failing_flow_backs_off_and_logs_once_each_way(caplog):
    now = [0.0]
    streak = FailureStreak("orders", FlowRetry(first_wait=dt.timedelta(seconds=1), max_wait=dt.timedelta(seconds=8)),
                           ["s3cret"], clock=lambda: now[0])
    failed = FlowReport("orders", outcome="failed", message="login agent:s3cret refused\nsecond line", system="erp")
    caplog.set_level(logging.DEBUG, logger="mes_erp_agent")
    waits = []
    for _ in range(6):
        waits.append(streak.failed(failed))
        assert streak.waiting()
        now[0] += waits[-1]
        assert not streak.waiting()
    assert [1 <= w <= 2 for w in waits[:1]] == [True] and waits[-2:] == [8.0, 8.0]
    assert all(b >= a or b == 8.0 for a, b in itertools.pairwise(waits))
    streak.succeeded()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == ["ERROR", *["DEBUG"] * 5, "INFO"]
    assert lines[0][1].startswith("flow orders is failing on system erp: login agent:*** refused. It retries by itself")
    assert lines[-1][1] == (f"flow orders recovered after {round(sum(waits))}s and 6 failed attempts; it resumed from "
                            "its committed watermark")
    assert not any("s3cret" in message for _, message in lines)

"""Drift alerts reach real servers through the real drift gate: an SMTP server (aiosmtpd) and an HTTP webhook."""

from __future__ import annotations

import datetime as dt
import json
import logging

import pytest

from agent.alerts import AppriseChannel, DeliveryPolicy, DirChannel, Incident, IncidentBook
from alert_support import SmtpServer, body_of, subject, WebhookServer, free_port, new_plant, wait_for
from helpers import cli, staging_rows

ALTER = "ALTER TABLE production.work_order ALTER COLUMN scrapped_qty TYPE numeric(9,2)"
FAST_RETRY = {"first_wait": "100ms", "max_wait": "300ms"}


@pytest.fixture
def webhook():
    server = WebhookServer().start()
    yield server
    server.stop()


def test_a_drift_alert_and_its_resolution_reach_smtp_and_webhook_exactly_once(db_factory, tmp_path, webhook):
    smtp = SmtpServer(free_port()).start()
    try:
        plant = new_plant(db_factory, "postgresql", tmp_path, "_both", {
            "webhook": {"url": webhook.url()},
            "email": {"host": "127.0.0.1", "port": smtp.port, "starttls": False, "from": "agent@plant.local",
                      "to": ["it@plant.local", "shift@plant.local"]},
        })
        assert plant.run().exit_code == 0
        assert smtp.mails == [] and webhook.posts == []

        plant.mes(ALTER)
        assert plant.run().exit_code == 3  # `run --once` ends after the alerts went out
        report = plant.report_text()
        assert "  1. production.work_order, column scrapped_qty: data type changed\n" in report
        [mail] = smtp.mails
        assert subject(mail) == "Schema drift on system mes: production.work_order, column scrapped_qty"
        assert (mail["From"], mail["To"]) == ("agent@plant.local", "it@plant.local, shift@plant.local")
        assert body_of(mail) == report
        [(path, card, _at)] = webhook.posts
        assert path == "/hook"
        detected = json.loads(plant.report_text(".json"))["detected_at"]
        since = dt.datetime.fromisoformat(detected).strftime("%Y-%m-%d %H:%M:%S UTC")
        assert card == {
            "text": f"Schema drift on system mes: production.work_order, column scrapped_qty\n```\n{report}```",
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": "Schema drift on system mes: production.work_order, column scrapped_qty",
            "title": "Schema drift on system mes: production.work_order, column scrapped_qty",
            "themeColor": "C4314B",
            "sections": [{
                "facts": [{"name": "flow", "value": "work_orders"}, {"name": "system", "value": "mes"},
                          {"name": "table", "value": "production.work_order"},
                          {"name": "column", "value": "scrapped_qty"}, {"name": "since", "value": since}],
                "text": f"<pre>{report.rstrip()}</pre>",
            }],
        }

        assert plant.run().exit_code == 3  # the same drift on the next poll: nothing sent again
        assert len(smtp.mails) == 1 and len(webhook.posts) == 1

        assert plant.accept().exit_code == 0
        assert plant.run().exit_code == 0
        resolved = (tmp_path / "alerts" / next(n for n in plant.reports() if n.endswith("-resolved.txt"))).read_text()
        assert resolved.startswith("SCHEMA DRIFT RESOLVED on system mes (postgresql)\n")
        assert [subject(m) for m in smtp.mails] == [
            "Schema drift on system mes: production.work_order, column scrapped_qty",
            "Schema drift resolved on system mes",
        ]
        assert body_of(smtp.mails[1]) == resolved
        assert [b["title"] for b in webhook.bodies()] == [
            "Schema drift on system mes: production.work_order, column scrapped_qty",
            "Schema drift resolved on system mes",
        ]
        assert webhook.bodies()[1]["themeColor"] == "2EB886"

        assert plant.run().exit_code == 0
        assert len(smtp.mails) == 2 and len(webhook.posts) == 2
        state = json.loads((tmp_path / "alerts" / "incidents.state.json").read_text())
        assert state["incidents"] == []  # told everywhere: nothing left in the outbox
    finally:
        smtp.stop()


def test_an_smtp_server_that_is_down_stops_no_flow_and_gets_the_alert_when_back(db_factory, tmp_path, caplog):
    port = free_port()  # nothing listens here yet
    plant = new_plant(db_factory, "sqlite", tmp_path, "_down", {
        "email": {"host": "127.0.0.1", "port": port, "starttls": False, "from": "agent@plant.local",
                  "to": ["it@plant.local"]},
        "retry": FAST_RETRY, "exit_wait": "1s",
    }, on_drift="warn")
    plant.mes("ALTER TABLE work_order ADD COLUMN note TEXT", "UPDATE work_order SET modified_date = '2030-01-01 00:00:00.000000'"
              " WHERE work_order_id IN (3, 4)")
    with caplog.at_level(logging.INFO, logger="mes_erp_agent"):
        result = plant.run()
    assert result.exit_code == 0, result.output  # the flow ran: SMTP being down is not its problem
    assert len(staging_rows(plant.pair)) == 50
    failures = [r.getMessage() for r in caplog.records if "could not send" in r.getMessage()]
    assert failures == [
        f"alert channel email (SMTP 127.0.0.1:{port}) could not send 'Schema drift on system mes: work_order, column "
        "note': ConnectionRefusedError: [Errno 111] Connection refused. Retrying with backoff up to every 0.3s; the "
        "message waits in the outbox and flows keep running. Check the channel's settings under `alerts:`."
    ]  # once per failure streak, although it was tried several times
    assert [r.getMessage() for r in caplog.records if "not delivered yet" in r.getMessage()] == [
        f"1 alert message not delivered yet; kept in {tmp_path}/alerts/incidents.state.json, the agent sends it "
        "when it next starts"
    ]
    assert len(plant.reports()) == 2  # the report files were written regardless

    smtp = SmtpServer(port).start()
    try:
        assert plant.run().exit_code == 0  # the next start sends what waited
        assert [subject(m) for m in smtp.mails] == ["Schema drift on system mes: work_order, column note"]
        assert plant.run().exit_code == 0
        assert len(smtp.mails) == 1
    finally:
        smtp.stop()


def test_no_alert_log_line_or_file_contains_the_smtp_password(db_factory, tmp_path, caplog, webhook):
    password = "pw-7Qz4-k2Vx9-appears-nowhere-else"
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "smtp.password").write_text(password + "\n")
    smtp = SmtpServer(free_port(), password=password).start()
    try:
        plant = new_plant(db_factory, "sqlite", tmp_path, "_pw", {
            "webhook": {"url": webhook.url()},
            "email": {"host": "127.0.0.1", "port": smtp.port, "starttls": False, "from": "agent@plant.local",
                      "to": ["it@plant.local"], "username": "agent", "password_file": "secrets/smtp.password"},
            "retry": FAST_RETRY,
        })
        outputs = []
        with caplog.at_level(logging.DEBUG):
            plant.mes("CREATE INDEX ix_work_order_due ON work_order (due_date)")
            outputs.append(plant.run().output)
            outputs.append(cli_status(plant))
            assert plant.accept().exit_code == 0
            outputs.append(plant.run().output)
        assert smtp.logins == [("agent", password)] * 2  # the password was used: one login per message
        assert [subject(m) for m in smtp.mails] == [
            "Schema drift on system mes: work_order, index ix_work_order_due", "Schema drift resolved on system mes"]
        everything = [caplog.text, *outputs, *(m.as_string() for m in smtp.mails), json.dumps(webhook.bodies())]
        everything += [p.read_text(errors="replace") for p in tmp_path.rglob("*")
                       if p.is_file() and p.name != "smtp.password" and p.suffix in (".txt", ".json", ".yaml", ".log")]
        assert len(everything) > 8
        assert [text for text in everything if password in text] == []
    finally:
        smtp.stop()


def cli_status(plant) -> str:
    return cli("status", "-c", str(plant.config)).output


def test_apprise_urls_deliver_through_apprise(tmp_path, webhook):
    channel = AppriseChannel(f"json://127.0.0.1:{webhook.port}/apprise")
    book = IncidentBook(tmp_path, [DirChannel(tmp_path), channel], DeliveryPolicy(first_wait=0.1, max_wait=0.3))
    incident = Incident("flow_failing", "flow_failing:work_orders", "Flow work_orders failing since 10:00",
                        "The MES database cannot be reached.", dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc),
                        flow="work_orders", system="mes")
    assert book.open(incident)
    assert wait_for(lambda: len(webhook.posts) == 1)
    book.close(wait=2)
    [(path, body, _at)] = webhook.posts
    assert path == "/apprise"
    assert (body["title"], body["message"], body["type"]) == (
        "Flow work_orders failing since 10:00", "The MES database cannot be reached.", "failure")
    assert channel.describe() == "apprise (json://…)"
    assert channel.name.startswith("apprise-json-") and "127.0.0.1" not in channel.name


def test_check_config_names_an_smtp_login_without_its_password_file(tmp_path):
    config = tmp_path / "agent.yaml"
    config.write_text(
        "systems:\n  mes: {url: 'sqlite:///mes.db'}\n  erp: {url: 'sqlite:///erp.db', staging_schema: staging,"
        " attach: {staging: stg.db}}\nflows:\n  f: {source: mes, target: erp, table: t, watermark: [m, i], key: [i],"
        " staging_table: s, columns: {i: i}}\nalerts:\n  email: {host: smtp.plant.local, from: a@plant.local,"
        " to: [it@plant.local], username: agent}\n  rate_limit: {messages: 0}\n"
    )
    result = cli("check-config", "-c", str(config))
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"{config}: configuration is not valid (2 problems):",
        f"  {config}:7: `alerts.email`: set both `username` and `password_file` (for SMTP login), or neither",
        f"  {config}:8: `alerts.rate_limit.messages`: Input should be greater than or equal to 1",
    ]

"""The IncidentBook: once per channel on open and on resolve, across polls, restarts, threads; rate limits; retries."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time

import pytest

from agent.alerts import DeliveryPolicy, DirChannel, EmailChannel, Incident, IncidentBook, WebhookChannel
from alert_support import SmtpServer, body_of, subject, WebhookServer, free_port, wait_for

FAST = DeliveryPolicy(first_wait=0.1, max_wait=0.3, exit_wait=2)
OPENED_AT = dt.datetime(2030, 1, 1, 6, 0, tzinfo=dt.timezone.utc)


def failing(flow: str = "work_orders") -> Incident:
    return Incident(
        kind="flow_failing", key=f"flow_failing:{flow}", title=f"Flow {flow} failing since 2030-01-01 06:00:00 UTC",
        body=f"Flow {flow} has failed for 5 minutes: the MES database cannot be reached.\nWhat to do: check the server.",
        opened_at=OPENED_AT, flow=flow, system="mes", data={"event": "flow_failing", "flow": flow},
    )


@pytest.fixture
def webhook():
    server = WebhookServer().start()
    yield server
    server.stop()


def book_on(folder, webhook: WebhookServer, policy: DeliveryPolicy = FAST) -> IncidentBook:
    return IncidentBook(folder, [DirChannel(folder), WebhookChannel(webhook.url())], policy)


def titles(webhook: WebhookServer) -> list[str]:
    return [body["title"] for body in webhook.bodies()]


def test_open_and_resolve_are_each_sent_once_per_channel(tmp_path, webhook):
    book = book_on(tmp_path, webhook)
    assert book.open(failing()) is True
    assert book.open(failing()) is False  # the next poll finds the same failure: nothing sent
    assert wait_for(lambda: len(webhook.posts) == 1)
    assert book.resolve("flow_failing:work_orders", at=dt.datetime(2030, 1, 1, 6, 30, tzinfo=dt.timezone.utc))
    assert book.resolve("flow_failing:work_orders") is False
    book.close()
    assert titles(webhook) == ["Flow work_orders failing since 2030-01-01 06:00:00 UTC",
                               "RESOLVED: Flow work_orders failing since 2030-01-01 06:00:00 UTC"]
    assert webhook.bodies()[1]["text"] == (
        "RESOLVED: Flow work_orders failing since 2030-01-01 06:00:00 UTC\n```\n"
        "RESOLVED: Flow work_orders failing since 2030-01-01 06:00:00 UTC\n"
        "Open since 2030-01-01 06:00:00 UTC, resolved 2030-01-01 06:30:00 UTC.\n"
        "Nothing more to do; the agent alerts again if it happens again.\n```"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "flow_failing-work_orders-20300101T060000Z-resolved.json", "flow_failing-work_orders-20300101T060000Z-resolved.txt",
        "flow_failing-work_orders-20300101T060000Z.json", "flow_failing-work_orders-20300101T060000Z.txt",
        "incidents.state.json",
    ]
    assert (tmp_path / "flow_failing-work_orders-20300101T060000Z.txt").read_text() == failing().body + "\n"
    assert json.loads((tmp_path / "flow_failing-work_orders-20300101T060000Z.json").read_text()) == failing().data


def test_a_restarted_agent_sends_nothing_for_an_open_incident_and_still_sends_its_resolution(tmp_path, webhook):
    first = book_on(tmp_path, webhook)
    first.open(failing())
    first.close()
    assert len(webhook.posts) == 1
    state = json.loads((tmp_path / "incidents.state.json").read_text())
    assert [(r["incident"]["key"], r["resolution"], r["sent"]) for r in state["incidents"]] == [
        ("flow_failing:work_orders", None, {"dir": ["opened"], "webhook": ["opened"]})]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []  # written by temp file + os.replace

    again = book_on(tmp_path, webhook)
    assert again.current("flow_failing:work_orders") == failing()
    assert again.open(failing()) is False
    assert again.resolve("flow_failing:work_orders") is True
    again.close()
    assert titles(webhook) == ["Flow work_orders failing since 2030-01-01 06:00:00 UTC",
                               "RESOLVED: Flow work_orders failing since 2030-01-01 06:00:00 UTC"]
    assert json.loads((tmp_path / "incidents.state.json").read_text())["incidents"] == []


def test_a_resolution_not_delivered_before_exit_is_sent_by_the_next_start(tmp_path, webhook):
    down = IncidentBook(tmp_path, [WebhookChannel(f"http://127.0.0.1:{free_port()}/hook")], FAST)
    down.open(failing())
    down.resolve("flow_failing:work_orders")
    down.close(wait=0.2)
    assert down.pending() == 2
    # The same channel name ("webhook"), now pointing at a server that answers: nothing to call, it just goes out.
    restarted = book_on(tmp_path, webhook)
    assert wait_for(lambda: len(webhook.posts) == 2)
    restarted.close()
    assert titles(webhook) == ["Flow work_orders failing since 2030-01-01 06:00:00 UTC",
                               "RESOLVED: Flow work_orders failing since 2030-01-01 06:00:00 UTC"]
    assert restarted.pending() == 0


def test_the_rate_limit_holds_messages_back_without_dropping_them(tmp_path, webhook, caplog):
    book = book_on(tmp_path, webhook, DeliveryPolicy(messages=2, per=1.5, first_wait=0.1, max_wait=0.3, exit_wait=5))
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="mes_erp_agent"):
        for flow in ("a", "b", "c"):
            book.open(failing(flow))
        assert wait_for(lambda: len(webhook.posts) == 2, timeout=1)
        time.sleep(0.5)
        assert len(webhook.posts) == 2  # the third waits in the outbox
        assert wait_for(lambda: len(webhook.posts) == 3, timeout=3)
        book.close()
    arrivals = [at - started for _path, _body, at in webhook.posts]
    assert arrivals[1] < 1.0 and arrivals[2] >= 1.5
    assert titles(webhook) == [f"Flow {f} failing since 2030-01-01 06:00:00 UTC" for f in "abc"]
    assert next(r.getMessage() for r in caplog.records if "rate limit" in r.getMessage()).startswith(
        "alert channel webhook (127.0.0.1): rate limit of 2 messages per 1.5s reached; "
        "'Flow c failing since 2030-01-01 06:00:00 UTC' waits ")


def test_a_failing_channel_is_logged_once_per_streak_retried_and_delivered_when_back(tmp_path, caplog):
    port = free_port()
    book = IncidentBook(tmp_path, [EmailChannel("127.0.0.1", port, "agent@plant.local", ("it@plant.local",),
                                                starttls=False)], FAST)
    with caplog.at_level(logging.DEBUG, logger="mes_erp_agent"):
        assert book.open(failing()) is True  # returns at once: the flow is not held up by SMTP
        time.sleep(1.0)  # several attempts fail meanwhile
        smtp = SmtpServer(port).start()
        try:
            assert wait_for(lambda: len(smtp.mails) == 1)
            book.close()
        finally:
            smtp.stop()
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert messages == [
        f"alert channel email (SMTP 127.0.0.1:{port}) could not send 'Flow work_orders failing since 2030-01-01 "
        "06:00:00 UTC': ConnectionRefusedError: [Errno 111] Connection refused. Retrying with backoff up to every "
        "0.3s; the message waits in the outbox and flows keep running. Check the channel's settings under `alerts:`.",
        messages[1],
    ]
    assert messages[1].startswith(f"alert channel email (SMTP 127.0.0.1:{port}) delivers again (after ")
    assert sum("attempt" in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records) >= 2
    assert subject(smtp.mails[0]) == "Flow work_orders failing since 2030-01-01 06:00:00 UTC"
    assert body_of(smtp.mails[0]) == failing().body + "\n"


def test_flows_in_many_threads_opening_the_same_incident_send_one_alert(tmp_path, webhook):
    book = book_on(tmp_path, webhook)
    barrier = threading.Barrier(8)
    results: list[bool] = []

    def poll() -> None:
        barrier.wait()
        results.append(book.open(failing()))

    threads = [threading.Thread(target=poll) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    book.close()
    assert sorted(results) == [False] * 7 + [True]
    assert len(webhook.posts) == 1


def test_an_unreadable_state_file_is_reported_and_replaced(tmp_path, webhook, caplog):
    (tmp_path / "incidents.state.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="mes_erp_agent"):
        book = book_on(tmp_path, webhook)
    assert caplog.messages[0].startswith(f"ignoring unreadable alert state {tmp_path}/incidents.state.json (")
    assert caplog.messages[0].endswith("): open incidents will be alerted again")
    assert book.open(failing()) is True
    book.close()
    assert json.loads((tmp_path / "incidents.state.json").read_text())["format"] == 1

"""systemd's notify protocol: the running agent says READY=1 once every flow is prepared, WATCHDOG=1 while it
polls, STOPPING=1 at SIGTERM; heard on a real Unix datagram socket, as systemd hears it."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from agent.demo import adventureworks
from agent.lifecycle import NoServiceManager, Systemd
from agent.lifecycle.notify import from_environment, watchdog_interval
from helpers import make_pair, prepare_erp, scalar, table_name, work_order_flow, write_config
from service_support import wait_until


class NotifySocket:
    """What systemd listens on: a Unix datagram socket; every datagram is kept with the time it arrived."""

    def __init__(self, address: str | None = None):
        self.folder = tempfile.mkdtemp(prefix="mea-notify-")  # short: a socket path has at most 107 bytes
        self.address = address or os.path.join(self.folder, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.address[1:] if self.address.startswith("@") else self.address)
        self.sock.settimeout(0.2)
        self.received: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.received.append((time.monotonic(), data.decode()))

    def messages(self) -> list[str]:
        return [text for _, text in self.received]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        if not self.address.startswith("@"):
            os.unlink(self.address)
        os.rmdir(self.folder)


# --- the protocol on its own -------------------------------------------------------------------------------
@pytest.mark.parametrize("abstract", [False, True])
def test_systemd_messages_reach_a_socket_path_and_an_abstract_name(abstract):
    listener = NotifySocket(f"@mea-notify-test-{os.getpid()}" if abstract else None)
    try:
        manager = from_environment({"NOTIFY_SOCKET": listener.address})
        assert isinstance(manager, Systemd)
        manager.ready("running 4 flows")
        manager.heartbeat()
        manager.status("running 4 flows: 1 failing")
        manager.reloading(123456789)
        manager.stopping()
        wait_until(lambda: len(listener.received) == 5, 5, "five datagrams")
        assert listener.messages() == [
            "READY=1\nSTATUS=running 4 flows",
            "WATCHDOG=1",
            "STATUS=running 4 flows: 1 failing",
            "RELOADING=1\nMONOTONIC_USEC=123456789\nSTATUS=reloading the configuration",
            "STOPPING=1\nSTATUS=stopping",
        ]
    finally:
        listener.close()


def test_without_notify_socket_nothing_is_sent_and_an_unusable_one_is_logged_once(caplog, tmp_path):
    assert isinstance(from_environment({}), NoServiceManager)
    assert isinstance(from_environment({"NOTIFY_SOCKET": "vsock:2:1234"}), NoServiceManager)
    gone = Systemd(str(tmp_path / "nobody-listens.sock"))
    with caplog.at_level(logging.WARNING, logger="mes_erp_agent"):
        gone.ready("running 1 flows")
        gone.heartbeat()
    assert [r.getMessage() for r in caplog.records] == [
        "NOTIFY_SOCKET=vsock:2:1234 is not a Unix socket path or @abstract name; systemd is not told the agent's state",
        f"cannot tell systemd READY=1 through NOTIFY_SOCKET={tmp_path / 'nobody-listens.sock'} ([Errno 2] No such file "
        "or directory); the agent runs on, but systemd may consider it not started or hung",
    ]


def test_the_watchdog_interval_is_half_of_watchdog_usec_for_this_process_only(caplog):
    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}) == 0.5
    assert watchdog_interval({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}) is None  # meant for another process
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    with caplog.at_level(logging.WARNING, logger="mes_erp_agent"):
        assert watchdog_interval({"WATCHDOG_USEC": "1s"}) is None
    assert caplog.messages == ["WATCHDOG_USEC=1s is not a number of microseconds; no watchdog heartbeats are sent"]


# --- the running agent ---------------------------------------------------------------------------------------
SCRAPPED_QUERY = """\
SELECT wo.work_order_id, wo.modified_date, wo.stocked_qty AS scrap_name_qty
FROM {work_order} wo
WHERE wo.scrapped_qty > 0
"""


def test_the_agent_is_ready_after_its_flows_are_prepared_heartbeats_while_polling_and_says_stopping(db_factory, tmp_path):
    pair = make_pair(db_factory, "postgresql")
    mes = sa.create_engine(pair.mes_url)
    adventureworks.create_and_load(mes, ["work_order"], schema=pair.mes_schema, limit=100)
    (tmp_path / "scrapped.sql").write_text(SCRAPPED_QUERY.format(work_order=table_name(pair, "work_order")), encoding="utf-8")
    flows = {
        "work_orders": work_order_flow(pair, schedule={"every": "500ms"}),
        "scrapped": {"source": "mes", "target": "erp", "query": "scrapped.sql", "watermark": ["modified_date", "work_order_id"],
                     "key": ["work_order_id"], "staging_table": "stg_scrapped", "schedule": {"every": "500ms"},
                     "columns": {"order_no": "work_order_id", "qty": {"from": "scrap_name_qty", "type": "decimal(18,3)"}}},
    }
    config = write_config(tmp_path / "agent.yaml", pair, flows)
    prepare_erp(config)
    listener = NotifySocket()
    log_path = tmp_path / "agent.log"
    lock = mes.connect()
    process = None
    try:
        # While this transaction holds the source table, preparing the flows (the catalog lookup of its columns, the
        # query flow's read of 0 rows) waits.
        lock.exec_driver_sql(f"LOCK TABLE {table_name(pair, 'work_order')} IN ACCESS EXCLUSIVE MODE")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(sys.path),
               "NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "1000000"}
        with log_path.open("wb") as log_file:
            process = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(config)],
                                       stdout=subprocess.DEVNULL, stderr=log_file, env=env)

        def prepare_waits() -> bool:  # the catalog lookup of the flows' columns, or the query flow's read of 0 rows
            return bool(scalar(pair.mes_url, "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                             "AND datname = current_database() AND (query LIKE 'WITH watched AS%' "
                                             "OR query LIKE '%scrap_name_qty%')"))

        wait_until(prepare_waits, 60, "a flow's prepare waiting for the locked table")
        time.sleep(2.0)  # four watchdog intervals: nothing may be told while a flow is being prepared
        assert listener.messages() == []
        assert "mes-erp-agent running 2 flows" not in log_path.read_text()
        released = time.monotonic()
        lock.rollback()

        wait_until(lambda: listener.received, 60, "READY=1 after the lock was released")
        ready_at, first = listener.received[0]
        assert first == "READY=1\nSTATUS=running 2 flows"
        assert ready_at > released
        assert "mes-erp-agent running 2 flows; stop with Ctrl+C or SIGTERM, reload with SIGHUP" in log_path.read_text()

        # It polls: the rows arrive while the heartbeats go on.
        wait_until(lambda: scalar(pair.erp_url, f"SELECT COUNT(*) FROM {pair.staging_schema}.stg_work_order") == 100, 60,
                   "the work orders in staging")
        wait_until(lambda: time.monotonic() - ready_at > 3.2, 10, "three seconds of heartbeats")
        beats = [at for at, text in listener.received if text == "WATCHDOG=1" and at <= ready_at + 3.2]
        gaps = [b - a for a, b in zip([ready_at, *beats], beats)]
        assert 5 <= len(beats) <= 7, gaps  # every WATCHDOG_USEC / 2 = 0.5 s
        assert all(0.3 < gap < 0.8 for gap in gaps), gaps

        process.send_signal(signal.SIGHUP)  # ExecReload=: the configuration is validated again and applied
        wait_until(lambda: "configuration" in log_path.read_text() and "loaded: 2 flows" in log_path.read_text(), 10,
                   "the SIGHUP answered")
        after_hup = time.monotonic()
        wait_until(lambda: any(at > after_hup + 1 for at, _ in listener.received), 10, "heartbeats after SIGHUP")

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log_path.read_text()[-3000:]
        time.sleep(1.0)  # no heartbeat may follow STOPPING=1
    finally:
        if process is not None and process.poll() is None:
            process.kill()
        lock.close()
        mes.dispose()
        listener.close()
    messages = listener.messages()
    assert messages[0] == "READY=1\nSTATUS=running 2 flows"
    assert messages[-1] == "STOPPING=1\nSTATUS=stopping"
    reloading = [i for i, m in enumerate(messages) if m.startswith("RELOADING=1\nMONOTONIC_USEC=")]
    assert len(reloading) == 1, [line for line in log_path.read_text().splitlines() if "reload" in line]
    assert messages[reloading[0]].endswith("\nSTATUS=reloading the configuration")
    assert "READY=1\nSTATUS=running 2 flows" in messages[reloading[0] + 1:]  # ready again after the reload
    assert {m for m in messages[1:-1] if not m.startswith(("RELOADING=1", "READY=1"))} == {"WATCHDOG=1"}
    assert "reloading (SIGHUP)" in log_path.read_text()


def test_without_notify_socket_the_agent_runs_and_stops_as_before(db_factory, tmp_path):
    pair = make_pair(db_factory, "sqlite", suffix="_plain")
    mes = sa.create_engine(pair.mes_url)
    adventureworks.create_and_load(mes, ["work_order"], schema=pair.mes_schema, limit=20)
    mes.dispose()
    config = write_config(tmp_path / "agent.yaml", pair, {"work_orders": work_order_flow(pair, schedule={"every": "500ms"})})
    prepare_erp(config)
    env = {key: value for key, value in os.environ.items() if key not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    process = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, env={**env, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        wait_until(lambda: scalar(pair.erp_url, f"SELECT COUNT(*) FROM {pair.staging_schema}.stg_work_order", pair) == 20, 60,
                   "the work orders in staging")
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr.decode()[-3000:]
    assert "NOTIFY_SOCKET" not in stderr.decode()
    assert Path(tmp_path / "alerts" / "agent.status.json").exists()

"""Real servers that receive alerts (an SMTP server, an HTTP webhook), and a plant whose drift they hear about."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from agent.demo import adventureworks
from helpers import WORK_ORDER_COLUMNS, Pair, cli, make_pair, prepare_erp, table_name, write_config


def body_of(mail: EmailMessage) -> str:
    """The text a mail client shows (SMTP carries CRLF line ends)."""
    return mail.get_content().replace("\r\n", "\n")


def subject(mail: EmailMessage) -> str:
    """The subject a mail client shows: Python folds a long header right after `Subject:`, clients unfold it."""
    return str(mail["Subject"]).strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@dataclass
class SmtpServer:
    """aiosmtpd on 127.0.0.1:`port`; with `password`, it requires AUTH LOGIN/PLAIN as user `agent` with it."""

    port: int
    password: str | None = None
    mails: list[EmailMessage] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)

    def start(self) -> SmtpServer:
        kwargs: dict[str, Any] = {}
        if self.password is not None:
            kwargs = {"authenticator": self._authenticate, "auth_required": True, "auth_require_tls": False}
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    async def handle_DATA(self, server, session, envelope) -> str:
        self.mails.append(email.message_from_bytes(envelope.content, policy=email.policy.default))  # type: ignore[arg-type]
        return "250 OK"

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append((login, password))
        return AuthResult(success=login == "agent" and password == self.password)


@dataclass
class WebhookServer:
    """http.server in a thread; every POST body is kept as parsed JSON, with its path and arrival time."""

    port: int = 0
    posts: list[tuple[str, dict[str, Any], float]] = field(default_factory=list)

    def start(self) -> WebhookServer:
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                received.append((self.path, json.loads(self.rfile.read(length)), time.monotonic()))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"1")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self) -> list[dict[str, Any]]:
        return [body for _path, body, _at in self.posts]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Plant:
    pair: Pair
    folder: Path
    config: Path

    def mes(self, *statements: str) -> None:
        engine = sa.create_engine(self.pair.mes_url)
        try:
            with engine.begin() as conn:
                for statement in statements:
                    conn.exec_driver_sql(statement)
        finally:
            engine.dispose()

    def run(self):
        return cli("run", "-c", str(self.config), "--once")

    def accept(self):
        return cli("snapshot", "-c", str(self.config), "--system", "mes", "--accept", "--yes")

    def reports(self) -> list[str]:
        return sorted(p.name for p in (self.folder / "alerts").glob("drift-*"))

    def report_text(self, suffix: str = ".txt") -> str:
        opened = [name for name in self.reports() if name.endswith(suffix) and "-resolved" not in name]
        assert len(opened) == 1, self.reports()
        return (self.folder / "alerts" / opened[0]).read_text()


def new_plant(db_factory, kind: str, folder: Path, suffix: str, alerts: dict[str, Any], **flow: Any) -> Plant:
    """An MES with 50 work orders, an ERP with staging tables and snapshots, one flow, `alerts:` as given."""
    pair = make_pair(db_factory, kind, suffix=suffix)
    engine = sa.create_engine(pair.mes_url)
    adventureworks.create_and_load(engine, ["work_order"], schema=pair.mes_schema, limit=50)
    engine.dispose()
    flows = {"work_orders": {
        "source": "mes", "target": "erp", "table": table_name(pair, "work_order"),
        "watermark": ["modified_date", "work_order_id"], "key": ["work_order_id"],
        "staging_table": "stg_work_order", "columns": dict(WORK_ORDER_COLUMNS), **flow,
    }}
    config = write_config(folder / "agent.yaml", pair, flows, alerts=alerts)
    prepare_erp(config)
    return Plant(pair, folder, config)

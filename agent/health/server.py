"""`http: {bind: "127.0.0.1:9464"}`: /healthz and /metrics, served from a daemon thread while the agent runs.

/healthz  200 when every flow is ok or deliberately halted on drift, else 503; a JSON body either way:
          {"status": "ok"|"unhealthy", "flows": [<FlowHealth.snapshot() per flow>]}
/metrics  the Prometheus text format of the agent's own registry (prometheus-client's generate_latest)
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import CONTENT_TYPE_LATEST

from agent.config import HttpConfig
from agent.errors import AgentError
from agent.health.registry import FlowHealth

log = logging.getLogger("mes_erp_agent")


class HttpBindError(AgentError):
    """The configured address cannot be served (in use, not a local address, no permission)."""


class HealthServer:
    """Start with `start()`, stop with `stop()`; `port` is the bound port (useful with port 0)."""

    def __init__(self, health: FlowHealth, http: HttpConfig):
        self.health, self.http = health, http
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the server first"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self.http.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    def start(self) -> HealthServer:
        """Raises HttpBindError with what to do when the address cannot be bound."""
        self._server = _bind(self.http, _handler_for(self.health))
        self._thread = threading.Thread(target=self._server.serve_forever, name="mes-erp-agent http", daemon=True)
        self._thread.start()
        log.info("serving /healthz and /metrics on %s", self.url)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def _bind(http: HttpConfig, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server_class = _IPv6Server if ":" in http.host else ThreadingHTTPServer
    try:
        return server_class((http.host, http.port), handler)
    except OSError as exc:
        raise HttpBindError(_bind_problem(http, exc)) from exc


def _bind_problem(http: HttpConfig, exc: OSError) -> str:
    where = f"cannot serve /healthz and /metrics on {http.bind} (`http: bind:` in the configuration)"
    if exc.errno == errno.EADDRINUSE:
        return (f"{where}: the address is already in use, by another program or a second agent; stop it or "
                "choose another port")
    if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        return f"{where}: {http.host} is not an address of this machine; use 127.0.0.1 or one of its addresses"
    if exc.errno == errno.EACCES:
        return f"{where}: no permission to use port {http.port}; use a port above 1023"
    return f"{where}: {exc.strerror or exc}"


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _handler_for(health: FlowHealth) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "mes-erp-agent"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                healthy = health.healthy()
                body: dict[str, Any] = {"status": "ok" if healthy else "unhealthy", "flows": health.snapshot()}
                self._send(200 if healthy else 503, "application/json", json.dumps(body).encode("utf-8"))
            elif path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, health.metrics.exposition())
            else:
                message = {"error": f"no such path {path}; the agent serves /healthz and /metrics"}
                self._send(404, "application/json", json.dumps(message).encode("utf-8"))

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http %s: " + format, self.address_string(), *args)

    return Handler

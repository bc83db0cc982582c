"""Health on a port of its own (``server.healthPort``, plain HTTP for the kubelet's probes): ``GET
/healthz`` and ``GET /readyz`` answered by a thread of their own, never by the threads that verify
images, so a probe with a one-second timeout never waits behind a nine-second verification.

In each gunicorn worker the thread starts once the app is loaded, on a socket bound with
``SO_REUSEPORT`` (every worker listens on the port; the kernel spreads the probes). Before gunicorn
starts, while the trust material cannot be loaded, ``wait_for_trust`` answers on the same port:
live, not ready, and why, until the files load (a fixed Secret), so the pod is unready with a
reason instead of restarting in a loop.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, TypeVar

from webhook.errors import ConfigError

log = logging.getLogger(__name__)

Readiness = Callable[[], tuple[bool, dict[str, Any]]]
T = TypeVar("T")

READ_TIMEOUT_S = 2.0  # a client that trickles its request is cut off after this


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = READ_TIMEOUT_S

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._answer(200, {"status": "ok"})
        elif path == "/readyz":
            ready, body = self.server.readiness()
            self._answer(200 if ready else 503, body)
        else:
            self._answer(404, {"error": "not found"})

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Probes are not logged."""


class _Server(HTTPServer):
    def __init__(self, address: tuple[str, int], readiness: Readiness, *, reuse_port: bool) -> None:
        self.readiness = readiness
        self._reuse_port = reuse_port
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self._reuse_port:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


def serve_in_thread(host: str, port: int, readiness: Readiness) -> _Server:
    """Answer the probes from a daemon thread of this process (a gunicorn worker)."""
    server = _Server((host, port), readiness, reuse_port=True)
    threading.Thread(target=server.serve_forever, name="referee-health", daemon=True).start()
    return server


def wait_for_trust(host: str, port: int, load: Callable[[], T], *, check_every_s: float = 2.0) -> T:
    """``load()`` once it succeeds; until then answer the probes (live, not ready: the reason) and
    try again every ``check_every_s``. Runs before gunicorn starts, in its process, and closes the
    port before returning (the workers bind it next)."""
    try:
        return load()
    except ConfigError as exc:
        problem = str(exc)
    log.error("not ready: %s (trying again every %gs)", problem, check_every_s)
    state = {"reason": problem}
    server = _Server((host, port), lambda: (False, {"status": "not ready", **state}), reuse_port=False)
    server.timeout = check_every_s / 4
    try:
        deadline = time.monotonic() + check_every_s
        while True:
            server.handle_request()  # one probe, or none within server.timeout
            if time.monotonic() < deadline:
                continue
            deadline = time.monotonic() + check_every_s
            try:
                loaded = load()
            except ConfigError as exc:
                if str(exc) != state["reason"]:
                    state["reason"] = str(exc)
                    log.error("not ready: %s", exc)
                continue
            log.info("trust material loaded: starting")
            return loaded
    finally:
        server.server_close()

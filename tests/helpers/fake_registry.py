"""An in-process fake registry, for what no real registry does: lie, loop, stall, throttle forever.

Tests say what each path answers with a function; everything else is 404.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Route = Callable[["FakeHandler"], None]


@dataclass
class FakeRegistry:
    host: str = ""
    routes: dict[tuple[str, str], Route] = field(default_factory=dict)
    hits: list[tuple[str, str]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)  # Authorization header per request
    fallback: Route | None = None  # answers every path without a route of its own

    def route(self, method: str, path: str, handler: Route) -> None:
        self.routes[(method, path)] = handler

    def count(self, method: str, path: str) -> int:
        return sum(1 for hit in self.hits if hit == (method, path))


class FakeHandler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def reply(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        *,
        content_length: bool = True,
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if content_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _dispatch(self) -> None:
        fake = self.server.fake
        path = self.path
        fake.hits.append((self.command, path))
        fake.authorizations.append(self.headers.get("Authorization"))
        handler = fake.routes.get((self.command, path)) or fake.routes.get((self.command, path.split("?")[0]))
        handler = handler or fake.fallback
        if handler is None:
            self.reply(
                404,
                b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"not here"}]}',
                {"Content-Type": "application/json"},
            )
            return
        handler(self)

    do_GET = _dispatch
    do_HEAD = _dispatch
    do_POST = _dispatch
    do_PUT = _dispatch


class _Server(ThreadingHTTPServer):
    fake: FakeRegistry
    daemon_threads = True


@contextlib.contextmanager
def fake_registry() -> Iterator[FakeRegistry]:
    server = _Server(("127.0.0.1", 0), FakeHandler)
    fake = FakeRegistry(host=f"127.0.0.1:{server.server_address[1]}")
    server.fake = fake
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def trickle_headers(h: FakeHandler, every_s: float = 0.2, lines: int = 100) -> None:
    """A status line, then one header line every ``every_s`` (bounded: ``lines`` lines at most): a
    registry that holds its client without ever finishing its headers."""
    try:
        h.wfile.write(b"HTTP/1.1 200 OK\r\n")
        h.wfile.flush()
        for n in range(lines):
            time.sleep(every_s)
            h.wfile.write(f"X-Slow-{n}: still here\r\n".encode())
            h.wfile.flush()
    except OSError:
        pass  # the client gave up, as it should
    h.close_connection = True

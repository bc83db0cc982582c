"""A fake revocation endpoint: a loopback HTTP server that serves crafted CRLs and OCSP answers.

No real CA software publishes the answers the revocation tests need (a delta CRL served where a base
is expected, an OCSP response with an unknown critical extension, ...), so this server hands out
whatever bytes a test put at a path: ``GET`` for CRLs, ``POST`` (an OCSP request in, the answer out)
for OCSP. The answers themselves are built with ``cryptography`` and signed by the test CA
(tests/helpers/revocation.py). Every request is recorded, so a test can tell what was asked.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Answer = bytes | Callable[[bytes], bytes]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self, body: bytes) -> None:
        self.server.fake.requests.append((self.command, self.path))
        answer = self.server.fake.routes.get(self.path)
        if answer is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = answer(body) if callable(answer) else answer
        self.send_response(200)
        kind = "application/ocsp-response" if self.command == "POST" else "application/pkix-crl"
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer(b"")

    def do_POST(self) -> None:
        self._answer(self.rfile.read(int(self.headers.get("Content-Length", "0"))))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: EvidenceServerFake


class EvidenceServerFake:
    """Serves ``routes[path]`` (bytes, or a function of the request body) on 127.0.0.1."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.routes: dict[str, Answer] = {}
        self.requests: list[tuple[str, str]] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def asked(self, path: str) -> bool:
        return any(p == path for _, p in self.requests)


@contextlib.contextmanager
def evidence_server_fake() -> Iterator[EvidenceServerFake]:
    server = _Server(("127.0.0.1", 0), _Handler)
    fake = EvidenceServerFake(server.server_address[1])
    server.fake = fake
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()

"""A plain-HTTP reverse proxy in front of a real registry that counts the requests it forwards, so a
test can say how often Referee read the registry (the registry itself answers every request)."""

from __future__ import annotations

import contextlib
import http.client
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate"}  # fmt: skip


@dataclass
class CountingProxy:
    host: str = ""  # 127.0.0.1:PORT of the proxy
    upstream: str = ""
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)  # (method, path) -> count
    lock: threading.Lock = field(default_factory=threading.Lock)

    def total(self, path_part: str = "") -> int:
        with self.lock:
            return sum(n for (_, path), n in self.requests.items() if path_part in path)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _forward(self) -> None:
        proxy = self.server.proxy
        with proxy.lock:
            proxy.requests[(self.command, self.path.split("?")[0])] += 1
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | {"host"}}
        upstream = http.client.HTTPConnection(proxy.upstream, timeout=30)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            resp = upstream.getresponse()
            data = resp.read()
            self.send_response(resp.status)
            for name, value in resp.getheaders():
                if name.lower() not in HOP_BY_HOP | {"content-length"}:
                    self.send_header(name, value)
            self.send_header("Content-Length", resp.getheader("Content-Length") or str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        finally:
            upstream.close()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: CountingProxy


@contextlib.contextmanager
def counting_proxy(upstream: str) -> Iterator[CountingProxy]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.proxy = CountingProxy(f"127.0.0.1:{server.server_address[1]}", upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.proxy
    finally:
        server.shutdown()
        server.server_close()

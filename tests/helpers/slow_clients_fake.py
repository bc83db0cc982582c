"""Clients that hold a server's connections without finishing a request: each opens a TLS
connection, starts a request, and then sends one more byte every ``every_s`` (fake: no real client
does this but an attacker, or a broken proxy). One thread drives them all; it stops by itself after
``for_s`` seconds, or when the block ends."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

REQUEST_START = b"POST /validate HTTP/1.1\r\nHost: referee\r\nContent-Type: application/json\r\n"


@contextlib.contextmanager
def trickling_clients_fake(
    port: int, ca: Path, count: int, *, every_s: float = 1.0, for_s: float = 60.0, tls: bool = True
) -> Iterator[list[socket.socket]]:
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False
    conns: list[socket.socket] = []
    stop = threading.Event()
    try:
        for _ in range(count):
            raw = socket.create_connection(("127.0.0.1", port), timeout=5)
            conn = context.wrap_socket(raw, server_hostname="127.0.0.1") if tls else raw
            conn.sendall(REQUEST_START[:10])
            conns.append(conn)

        def trickle() -> None:
            ends_at = time.monotonic() + for_s
            n = 10
            while not stop.wait(every_s) and time.monotonic() < ends_at:
                byte = REQUEST_START[n : n + 1] or b"X"
                n += 1
                for conn in conns:
                    with contextlib.suppress(OSError):
                        conn.sendall(byte)

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        yield conns
    finally:
        stop.set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.close()

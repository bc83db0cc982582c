"""gunicorn's threaded worker, with every request read in full before a thread is given to it.

gunicorn's gthread worker gives a thread to a connection as soon as it has a byte to read, and the
thread then reads the TLS handshake, the headers and the body at the client's pace: with no read
timeout, about twenty clients that trickle a byte a second hold every thread of the chart's two
workers, and the API server's AdmissionReviews wait behind them. Here the worker's own event loop
does the TLS handshake and reads the request head and body without blocking, within
``read_timeout_s`` for the whole request and ``max_request_bytes`` in all; only a request read to
its end is handed to a thread (gunicorn parses it from memory). A slow client costs a socket and a
buffer, never a thread, and is closed when its time is up. Kept-alive connections are bounded by
gunicorn's ``keepalive`` (seconds) and ``worker_connections`` (count).

Everything else is gunicorn's: TLS contexts from the ``ssl_context`` hook (so certificates rotate
without a restart), the client certificate on the socket for mutual TLS per endpoint group,
graceful shutdown, and the arbiter's worker management (Prometheus multiprocess metrics included).
"""

from __future__ import annotations

import contextlib
import re
import selectors
import ssl
import time
from collections import deque
from concurrent.futures import Future
from email.utils import formatdate
from functools import partial
from typing import Any

from gunicorn import http
from gunicorn import sock as gsock
from gunicorn.workers.gthread import ThreadWorker

from webhook.server.memo import MAX_MEMO_ENTRY_BYTES

HEAD_END = b"\r\n\r\n"
MAX_HEAD_BYTES = 64 << 10
RECV_BYTES = 64 << 10
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*(\d{1,12})[ \t]*\r\n", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding[ \t]*:[^\r\n]*chunked", re.IGNORECASE)
_EXPECT_CONTINUE = re.compile(rb"\r\nexpect[ \t]*:[ \t]*100-continue", re.IGNORECASE)
_LAST_CHUNK = b"0\r\n\r\n"
# What one readiness event may read before the loop turns to its other connections: a client that
# sends as fast as the socket takes it must not keep the others waiting for its whole request.
MAX_READ_PER_EVENT_BYTES = 1 << 20


class _Reading:
    """One request being read by the event loop: its bytes so far and when its time is up."""

    def __init__(self, conn: Any, data: bytes, expires_at: float, max_bytes: int) -> None:
        self.conn = conn
        self.data = bytearray(data)
        self.expires_at = expires_at
        self.max_bytes = max_bytes
        self.handshaken = not isinstance(conn.sock, ssl.SSLSocket) or conn.initialized
        self.continued = False
        self._body_at = -1  # where the body starts, once the head is all here
        self._chunked = False
        self._length = 0
        self._continue = False

    def complete(self) -> bool | None:
        """True when the whole request is here, False when more is needed, None when it never
        will be acceptable (a head over its cap). The head is read once, when it is all here:
        a body then costs the same for each chunk however large it has grown."""
        if self._body_at < 0:
            end = self.data.find(HEAD_END)
            if end < 0:
                return None if len(self.data) > MAX_HEAD_BYTES else False
            head = b"\r\n" + bytes(self.data[: end + 2])
            self._body_at = end + len(HEAD_END)
            self._chunked = _CHUNKED.search(head) is not None
            length = _CONTENT_LENGTH.search(head)
            self._length = int(length.group(1)) if length is not None else 0
            self._continue = _EXPECT_CONTINUE.search(head) is not None
        body = len(self.data) - self._body_at
        if self._chunked:  # read to the last chunk (or the cap)
            return (body >= len(_LAST_CHUNK) and self.data.endswith(_LAST_CHUNK)) or body >= self.max_bytes
        # An oversized body is read up to the cap; the request handler answers it from what it has.
        return body >= min(self._length, self.max_bytes)

    def wants_continue(self) -> bool:
        return self._body_at >= 0 and self._continue


class BoundedThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gthread with requests read by the event loop (see the module's docstring)."""

    read_timeout_s = 5.0  # the whole request: TLS handshake, head and body
    max_request_bytes = 32 << 20  # set by ``referee serve`` from limits.maxBodyBytes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reading: deque[_Reading] = deque()

    def enqueue_req(self, conn: Any) -> None:
        """Every connection with a request to read comes here (new, kept alive, or with bytes it
        read ahead): a thread is given only to a request read to its end."""
        if getattr(conn, "referee_ready", False):
            conn.referee_ready = False
            super().enqueue_req(conn)
            return
        buffered = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        if self.cfg.is_ssl and not conn.initialized and not isinstance(conn.sock, ssl.SSLSocket):
            try:
                conn.sock = gsock.ssl_context(self.cfg).wrap_socket(
                    conn.sock,
                    server_side=True,
                    suppress_ragged_eofs=self.cfg.suppress_ragged_eofs,
                    do_handshake_on_connect=False,
                )
            except (OSError, ValueError):
                self._drop(conn)
                return
        conn.sock.setblocking(False)
        state = _Reading(conn, buffered, time.monotonic() + self.read_timeout_s, self.max_request_bytes)
        if state.handshaken and state.complete():
            self._dispatch(state)
            return
        self.reading.append(state)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_event, state))

    def _on_event(self, state: _Reading, _fileobj: Any) -> None:
        conn = state.conn
        try:
            if not state.handshaken:
                try:
                    conn.sock.do_handshake()
                except ssl.SSLWantReadError:
                    self.poller.modify(conn.sock, selectors.EVENT_READ, partial(self._on_event, state))
                    return
                except ssl.SSLWantWriteError:
                    self.poller.modify(conn.sock, selectors.EVENT_WRITE, partial(self._on_event, state))
                    return
                state.handshaken = True
                self.poller.modify(conn.sock, selectors.EVENT_READ, partial(self._on_event, state))
            read = 0
            while read < MAX_READ_PER_EVENT_BYTES or _pending(conn.sock):
                try:
                    chunk = conn.sock.recv(RECV_BYTES)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    break
                if not chunk:  # the client went away
                    self._stop_reading(state)
                    self._drop(conn)
                    return
                state.data += chunk
                read += len(chunk)
                done = state.complete()
                if done is None or len(state.data) > state.max_bytes + MAX_HEAD_BYTES:
                    self._stop_reading(state)
                    self._drop(conn)
                    return
                if done:
                    break
            done = state.complete()
            if done:
                self._stop_reading(state)
                self._dispatch(state)
            elif not state.continued and state.wants_continue():
                state.continued = True
                with contextlib.suppress(OSError, ssl.SSLError):
                    conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        except (OSError, ssl.SSLError, ValueError):
            self._stop_reading(state)
            self._drop(conn)

    def _dispatch(self, state: _Reading) -> None:
        conn = state.conn
        if conn.parser is None:
            conn.initialized = True
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
        if self._answer_kept(state):
            return
        conn.parser.unreader.unread(bytes(state.data))
        conn.data_ready = True
        conn.referee_ready = True
        self.enqueue_req(conn)

    def _answer_kept(self, state: _Reading) -> bool:
        """Send the app's kept answer to this request from the event loop, when it has one (a warm
        ProviderRequest asked before: ``webhook/server/memo.py``). Only a plain keep-alive HTTP/1.1
        POST whose body is exactly its Content-Length qualifies; anything else goes to a thread."""
        kept_answer = getattr(self.wsgi, "extensions", {}).get("referee.kept_answer")
        head = _fast_head(state.data)
        if kept_answer is None or head is None or not self.alive:
            return False
        path, body = head
        conn = state.conn
        try:
            der = conn.sock.getpeercert(binary_form=True) if isinstance(conn.sock, ssl.SSLSocket) else None
            answer = kept_answer(path, body, der)
        except Exception:  # a bug here must not stop the event loop: the request goes the usual way
            self.log.exception("the kept answer could not be looked up")
            return False
        if answer is None:
            return False
        response = b"".join((_KEPT_HEAD, _http_date(), b"\r\nContent-Length: ", str(len(answer)).encode(),
                             b"\r\n\r\n", answer))  # fmt: skip
        try:
            sent = conn.sock.send(response)
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
            sent = 0
        except (OSError, ssl.SSLError):
            self._drop(conn)
            return True
        done: Future[bool] = Future()
        if sent == len(response):
            done.set_result(True)
            self.finish_request(conn, done)
            return True
        # The client's socket buffer is full: a thread writes the rest, within the read timeout.
        future = self.tpool.submit(_send_rest, conn.sock, response[sent:], self.read_timeout_s)
        future.add_done_callback(lambda fut: self.method_queue.defer(self.finish_request, conn, fut))
        return True

    def _stop_reading(self, state: _Reading) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(state.conn.sock)
        with contextlib.suppress(ValueError):
            self.reading.remove(state)

    def _drop(self, conn: Any) -> None:
        self.nr_conns -= 1
        with contextlib.suppress(OSError):
            conn.close()

    def murder_pending(self) -> None:
        """Close connections whose request did not arrive in time (and gunicorn's own)."""
        super().murder_pending()
        now = time.monotonic()
        while self.reading and self.reading[0].expires_at <= now:
            state = self.reading.popleft()
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(state.conn.sock)
            self._drop(state.conn)


_FAST_REQUEST = re.compile(rb"POST (/[!-~]{0,255}) HTTP/1\.1\r\n")
# Anything that changes how the request is read or answered goes the usual way; a Connection
# header too, unless it only asks for what HTTP/1.1 does anyway.
_NOT_FAST = re.compile(
    rb"\r\n(?:transfer-encoding|expect|upgrade|connection[ \t]*:(?![ \t]*keep-alive[ \t]*\r\n))[ \t]*:?",
    re.IGNORECASE,
)
_CONTENT_LENGTH_NAME = re.compile(rb"\r\ncontent-length[ \t]*:", re.IGNORECASE)
# The header lines the event loop answers: each a token, a colon at once, and a value of visible
# characters, spaces and tabs (RFC 9110 section 5.1 and 5.5), no more and no longer than a client of
# the provider endpoints sends. Gunicorn refuses some of what is outside (a space before the colon,
# obs-fold, control characters); the rest goes to it too, so the loop never reads a head otherwise.
_HEADER_LINES = re.compile(rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}:[\t\x20-\x7e\x80-\xff]{0,4096}\r\n){0,32}")
_KEPT_HEAD = (
    b"HTTP/1.1 200 OK\r\nServer: gunicorn\r\nConnection: keep-alive\r\n"
    b"Content-Type: application/json\r\nDate: "
)


def _fast_head(data: bytearray) -> tuple[str, bytes] | None:
    """(path, body) of a request that may be answered from the event loop, else None. A body
    larger than any kept request is not copied (nor hashed) here."""
    end = data.find(HEAD_END)
    request_line = _FAST_REQUEST.match(data)
    if end < 0 or request_line is None or len(data) - end - len(HEAD_END) > MAX_MEMO_ENTRY_BYTES:
        return None
    if _HEADER_LINES.fullmatch(data, request_line.end(), end + 2) is None:
        return None
    head = b"\r\n" + bytes(data[: end + 2])
    length = _CONTENT_LENGTH.search(head)
    body = bytes(data[end + len(HEAD_END) :])
    if length is None or int(length.group(1)) != len(body) or _NOT_FAST.search(head):
        return None
    if len(_CONTENT_LENGTH_NAME.findall(head)) != 1:
        return None
    return request_line.group(1).decode("ascii"), body


_date_cache: list[tuple[int, bytes]] = [(0, b"")]


def _http_date() -> bytes:
    now = int(time.time())
    second, text = _date_cache[0]
    if second != now:
        text = formatdate(now, usegmt=True).encode()
        _date_cache[0] = (now, text)
    return text


def _pending(sock: Any) -> int:
    """Bytes TLS has decrypted and not yet given (the poller cannot see them)."""
    return sock.pending() if isinstance(sock, ssl.SSLSocket) else 0


def _send_rest(sock: Any, data: bytes, timeout_s: float) -> bool:
    sock.settimeout(timeout_s)
    sock.sendall(data)
    return True

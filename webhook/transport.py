"""HTTP for the registry client, on urllib3 connection pools.

urllib3 directly rather than ``requests``: a registry conversation is many small requests, and the
``requests`` layers roughly doubled the cost of each one (see bench/bench_discover.py). What this
module adds:

* one exchange (connect, TLS, request, every response header, and each redirect hop) bounded as a
  whole: urllib3's read timeout restarts on every byte, so a peer that sends a header line a second
  would hold the thread forever; a watchdog thread shuts the socket down when the exchange's time
  is up, and the caller sees a timeout;
* redirects followed here, not by urllib3: only to https (or http where the caller allows it), never
  to a loopback, private or link-local address unless the caller allows it (checked on the literal
  address and on the address actually connected to), ``Authorization`` dropped when a hop leaves the
  origin, URLs capped in length;
* transport failures turned into ``TransportError``, bodies read a socket read at a time so the
  caller can check its deadline in between, ``Link`` parsing, and ``clip`` for any text a peer
  wrote before it reaches a log line or a message.
"""

from __future__ import annotations

import contextlib
import heapq
import ipaddress
import itertools
import re
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    SSLError,
)
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from webhook import __version__
from webhook.deadline import Deadline
from webhook.errors import DeadlineExceeded

Response = urllib3.BaseHTTPResponse
CHUNK_BYTES = 64 * 1024
MAX_URL_BYTES = 4096  # a request, redirect, Link or realm URL longer than this is refused
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class TransportError(Exception):
    """A request did not get an HTTP answer. ``kind`` says why, ``reason`` in a few words."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind  # "tls" | "timeout" | "connect" | "redirects" | "protocol" | "refused"
        self.reason = reason


def clip(text: object, limit_chars: int = 200) -> str:
    """Text a peer wrote (a header, an error body, a URL), safe for a log line or a message: every
    character outside printable ASCII escaped, at most ``limit_chars`` characters."""
    raw = str(text)[: limit_chars * 2]
    escaped = "".join(
        c if " " <= c <= "~" and c != "\\" else c.encode("unicode_escape").decode() for c in raw
    )
    return escaped if len(escaped) <= limit_chars else escaped[: limit_chars - 3] + "..."


def internal_address(address: str) -> bool:
    """True for loopback, private, link-local, shared, reserved and multicast addresses."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0].strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def origin(url: str) -> tuple[str, str]:
    """(scheme, host[:port]) of a URL, lower-cased, default ports dropped."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is not None and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    return scheme, host


@dataclass(frozen=True)
class Reach:
    """Where a request's redirect hops may go. The first hop goes where the caller said."""

    plain_http: bool = False  # http:// hops allowed (the registry is configured for plain HTTP)
    internal: bool = False  # hops to loopback, private or link-local addresses allowed
    first_hop: bool = False  # the internal-address rule holds for the first hop too (a token realm)


# --- one exchange, bounded as a whole --------------------------------------------------------------


class _Exchange:
    """What the connection hooks need to know about the exchange their thread is running."""

    def __init__(self, expires_at: float) -> None:
        self.expires_at = expires_at
        self.fired = False  # the watchdog shut the socket down
        self.refused = ""  # why the address connected to may not be used
        self.internal_ok = True
        self.watches: list[int] = []


_current = threading.local()


class _Watchdog:
    """One thread that shuts down the socket of every exchange whose time is up.

    It holds a duplicate of each watched socket's descriptor, so that shutting it down reaches the
    connection whatever happened to the owner's socket object (TLS wraps and detaches it), and a
    descriptor number reused by another connection is never touched.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._live: dict[int, tuple[socket.socket, _Exchange]] = {}
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket, exchange: _Exchange) -> None:
        try:
            dup = socket.fromfd(sock.fileno(), sock.family, sock.type)
        except (OSError, ValueError):
            return
        with self._cond:
            # The thread sleeps until the earliest time on the heap: it need be woken only when
            # this exchange ends sooner (a wake-up per registry request costs a thread switch).
            sooner = not self._heap or exchange.expires_at < self._heap[0][0]
            token = next(self._ids)
            self._live[token] = (dup, exchange)
            heapq.heappush(self._heap, (exchange.expires_at, token))
            if len(self._heap) > 2 * len(self._live) + 64:  # drop cancelled entries
                self._heap = [(e.expires_at, t) for t, (_, e) in self._live.items()]
                heapq.heapify(self._heap)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="referee-watchdog", daemon=True)
                self._thread.start()
            if sooner:
                self._cond.notify()
        exchange.watches.append(token)

    def cancel(self, exchange: _Exchange) -> None:
        with self._cond:
            dups = [self._live.pop(t)[0] for t in exchange.watches if t in self._live]
        exchange.watches.clear()
        for dup in dups:
            dup.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                when, token = self._heap[0]
                delay = when - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
                dup, exchange = self._live.pop(token)
                exchange.fired = True
            with contextlib.suppress(OSError):
                dup.shutdown(socket.SHUT_RDWR)
            dup.close()


_watchdog = _Watchdog()


def _watched(sock: socket.socket) -> None:
    """Called by the connection classes when a socket starts serving an exchange."""
    exchange: _Exchange | None = getattr(_current, "exchange", None)
    if exchange is None:
        return
    if not exchange.internal_ok:
        try:
            peer = sock.getpeername()[0]
        except (OSError, IndexError):
            peer = ""
        if internal_address(str(peer)):
            exchange.refused = f"a redirect leads to the internal address {peer}"
            raise OSError(exchange.refused)
    _watchdog.watch(sock, exchange)


class _Watched:
    """Every socket a connection opens, or takes from the pool for a new exchange, is watched."""

    sock: socket.socket | None

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        try:
            _watched(sock)
        except OSError:
            sock.close()
            raise
        return sock

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> None:
        if self.sock is not None:  # a connection from the pool: its socket serves this exchange
            _watched(self.sock)
        super().request(method, url, *args, **kwargs)  # type: ignore[misc]


class _Connection(_Watched, HTTPConnection):
    pass


class _TlsConnection(_Watched, HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TlsPool(HTTPSConnectionPool):
    ConnectionCls = _TlsConnection


def short_reason(exc: BaseException) -> str:
    """A one-line cause: the OS error if there is one, a known TLS phrase, else the exception type."""
    text = str(exc)
    errno = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if errno:
        return errno.group(1).strip()
    for marker in ("certificate verify failed", "wrong version number", "Name or service not known"):
        if marker in text:
            return marker
    return type(exc).__name__


USER_AGENT = f"referee/{__version__}"


class Transport:
    """Pooled HTTP(S) connections, shared by every repository handle of a client."""

    def __init__(self, *, max_redirects: int, pool_size: int = 10, user_agent: str = USER_AGENT) -> None:
        self._user_agent = user_agent
        self._max_redirects = max_redirects
        self._pool_size = pool_size
        self._pools: dict[bool | str, urllib3.PoolManager] = {}
        self._lock = threading.Lock()

    def _pool(self, verify: bool | str) -> urllib3.PoolManager:
        with self._lock:
            pool = self._pools.get(verify)
            if pool is None:
                kw: dict[str, Any] = {"maxsize": self._pool_size, "block": False}
                if isinstance(verify, str):
                    kw.update(cert_reqs="CERT_REQUIRED", ca_certs=verify)
                else:
                    kw.update(cert_reqs="CERT_REQUIRED" if verify else "CERT_NONE")
                pool = urllib3.PoolManager(**kw)
                pool.pool_classes_by_scheme = {"http": _Pool, "https": _TlsPool}
                self._pools[verify] = pool
            return pool

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.clear()
            self._pools.clear()

    def open(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        timeout_s: float,
        verify: bool | str,
        redirects: bool = False,
        reach: Reach | None = None,
        query: Sequence[tuple[str, str]] = (),
        form: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> Response:
        """Send a request and return the response with its body unread (call ``finish`` after).

        Everything up to the last response header, redirect hops included, ends within ``timeout_s``;
        ``reach`` says where redirect hops may go (default: https, no internal address). The final
        response's ``url`` is the URL it came from.
        """
        all_headers = {"User-Agent": self._user_agent, **headers}
        if query:
            url += ("&" if "?" in url else "?") + urlencode(list(query))
        data: bytes | str | None = body
        if form is not None:
            data = urlencode(dict(form))
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        reach = reach or Reach()
        exchange = _Exchange(time.monotonic() + timeout_s)
        first = origin(url)
        hops = 0
        while True:
            _check_url(url)
            # The first origin is where the request was pointed; any other is held to ``reach``.
            exchange.internal_ok = reach.internal or (origin(url) == first and not reach.first_hop)
            resp = self._send(
                method, url=url, headers=all_headers, data=data, exchange=exchange, verify=verify
            )
            location = resp.headers.get("Location")
            if not redirects or resp.status not in REDIRECT_STATUSES or not location:
                resp.url = url
                return resp
            finish(resp)
            hops += 1
            if hops > self._max_redirects:
                raise TransportError("redirects", f"more than {self._max_redirects} redirects")
            target = urljoin(url, str(location))
            _check_redirect(target, reach, own_origin=origin(target) == first)
            if origin(target) != first:  # credentials stay with the origin they were meant for
                all_headers = {k: v for k, v in all_headers.items() if k.lower() != "authorization"}
            if resp.status == 303 or (resp.status in (301, 302) and method == "POST"):
                method, data = "GET", None
            url = target

    def _send(
        self,
        method: str,
        *,
        url: str,
        headers: Mapping[str, str],
        data: bytes | str | None,
        exchange: _Exchange,
        verify: bool | str,
    ) -> Response:
        left = exchange.expires_at - time.monotonic()
        if left <= 0:
            raise TransportError("timeout", "timed out")
        _current.exchange = exchange
        try:
            resp = self._pool(verify).request(
                method,
                url,
                body=data,
                headers=dict(headers),
                timeout=urllib3.Timeout(connect=left, read=left),
                retries=False,
                redirect=False,
                preload_content=False,
                decode_content=True,
            )
        except (HTTPError, OSError) as exc:
            if exchange.refused:
                raise TransportError("refused", exchange.refused) from None
            if exchange.fired:
                raise TransportError("timeout", "timed out") from None
            raise _classify(exc.reason if isinstance(exc, MaxRetryError) and exc.reason else exc) from None
        finally:
            _current.exchange = None
            _watchdog.cancel(exchange)
        if exchange.fired:  # cut short: what was read (headers ended by the shutdown) is no answer
            resp.close()
            raise TransportError("timeout", "timed out")
        return resp


def _check_url(url: str) -> None:
    if len(url) > MAX_URL_BYTES:
        raise TransportError("refused", f"a URL of {len(url)} characters (at most {MAX_URL_BYTES})")


def _check_redirect(target: str, reach: Reach, *, own_origin: bool) -> None:
    """A redirect hop goes over https (http only where allowed), to a host that is no internal
    address unless allowed (a name is checked again on the address it connects to)."""
    _check_url(target)
    parts = urlsplit(target)
    allowed = ("https", "http") if reach.plain_http else ("https",)
    if parts.scheme.lower() not in allowed:
        raise TransportError("refused", f"a redirect to a {clip(parts.scheme, 20) or 'relative'} URL")
    if not parts.hostname:
        raise TransportError("refused", "a redirect without a host")
    if not (reach.internal or own_origin) and internal_address(parts.hostname):
        raise TransportError("refused", f"a redirect to the internal address {clip(parts.hostname, 64)}")


def _classify(exc: BaseException) -> TransportError:
    if isinstance(exc, SSLError):
        return TransportError("tls", short_reason(exc))
    # Before the timeout check: urllib3's NewConnectionError is a subclass of its ConnectTimeoutError.
    if isinstance(exc, NewConnectionError | ConnectionError):
        return TransportError("connect", short_reason(exc))
    if isinstance(exc, Urllib3Timeout | TimeoutError):
        return TransportError("timeout", "timed out")
    if isinstance(exc, ProtocolError):
        return TransportError("protocol", short_reason(exc))
    return TransportError("connect", short_reason(exc))


def tighten_read_timeout(resp: Response, seconds: float) -> None:
    """Make the next socket read give up when the caller's deadline does.

    The read timeout applies to each socket read; lowering it before every read means a body that
    trickles in cannot outlive the deadline.
    """
    sock: Any = getattr(getattr(getattr(getattr(resp, "_fp", None), "fp", None), "raw", None), "_sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.settimeout(max(0.01, seconds))


def read_some(resp: Response, limit: int) -> bytes:
    """At most one socket read of at most ``limit`` decoded bytes (``b""`` at the end of the body)."""
    try:
        return resp.read1(limit, decode_content=True)
    except (HTTPError, OSError) as exc:
        raise _classify(exc) from None


class ByteBudget:
    """Bytes that the downloads of a worker may hold at once. A download takes room for all it may
    read before its first read (its Content-Length, else its cap), waiting within its deadline, so
    that downloads never hold part of the budget while they wait for more."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._used = 0
        self.peak_bytes = 0
        self._cond = threading.Condition()

    def take(self, n: int, deadline: Deadline, what: str) -> int:
        """Room for ``n`` bytes (at most the whole budget); how many were taken."""
        n = min(n, self.max_bytes)
        with self._cond:
            if not self._cond.wait_for(
                lambda: self._used + n <= self.max_bytes, max(0.0, deadline.remaining_s())
            ):
                raise DeadlineExceeded(
                    f"{what}: out of time waiting for room to read into ({self.max_bytes} bytes in flight)"
                )
            self._used += n
            self.peak_bytes = max(self.peak_bytes, self._used)
        return n

    def give(self, n: int) -> None:
        with self._cond:
            self._used -= n
            self._cond.notify_all()

    @property
    def used_bytes(self) -> int:
        return self._used


def read_body(
    resp: Response, cap: int, deadline: Deadline, what: str, budget: ByteBudget | None = None
) -> bytes:
    """Read at most ``cap + 1`` bytes (so the caller can tell "over the cap"), one socket read at a
    time, checking the deadline before each read and lowering the socket timeout to match it; with
    a ``budget``, room for the whole body is taken first and given back once it is read."""
    limit = cap + 1
    length = str(resp.headers.get("Content-Length", ""))
    if length.isdigit() and int(length) < limit:
        limit = int(length) + 1  # one more, to notice a body longer than it said
    held = budget.take(limit, deadline, what) if budget is not None else 0
    try:
        chunks: list[bytes] = []
        total = 0
        while total <= cap:
            tighten_read_timeout(resp, deadline.check(what))
            chunk = read_some(resp, min(CHUNK_BYTES, cap + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)
    finally:
        if budget is not None:
            budget.give(held)


def finish(resp: Response) -> None:
    """Give the connection back to the pool, or close it if its body was not read to the end."""
    fp = getattr(resp, "_fp", None)
    if fp is not None and not fp.isclosed():
        if resp.length_remaining == 0:
            resp.drain_conn()  # nothing left (a HEAD, or a body read to its end): keep the connection
        else:
            resp.close()  # unread bytes would corrupt the next response on this connection
    resp.release_conn()


@contextlib.contextmanager
def opened(resp: Response) -> Iterator[Response]:
    try:
        yield resp
    finally:
        finish(resp)


_LINK_RE = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,]*)*)")


def next_link(header: str | None) -> str | None:
    """The target of the ``rel="next"`` entry of an RFC 8288 ``Link`` header, if any."""
    if not header:
        return None
    for match in _LINK_RE.finditer(header):
        for param in match.group(2).split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "rel" and "next" in value.strip().strip('"').lower().split():
                return match.group(1).strip()
    return None


def content_type(resp: Response) -> str:
    return str(resp.headers.get("Content-Type", "")).split(";", 1)[0].strip().lower()

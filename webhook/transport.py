"""HTTP for the registry client, on urllib3 connection pools.

urllib3 directly rather than ``requests``: a registry conversation is many small requests, and the
``requests`` layers roughly doubled the cost of each one (see bench/bench_discover.py). What this
module adds is small: one pool manager per TLS setting, redirects that drop ``Authorization`` when
they leave the host (urllib3's default), transport failures turned into ``TransportError``, bodies
read a socket read at a time so the caller can check its deadline in between, and ``Link`` parsing.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import urllib3
from urllib3.exceptions import (
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ResponseError,
    SSLError,
)
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from webhook import __version__
from webhook.deadline import Deadline

Response = urllib3.BaseHTTPResponse
CHUNK_BYTES = 64 * 1024


class TransportError(Exception):
    """A request did not get an HTTP answer. ``kind`` says why, ``reason`` in a few words."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind  # "tls" | "timeout" | "connect" | "redirects" | "protocol"
        self.reason = reason


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
        query: Sequence[tuple[str, str]] = (),
        form: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> Response:
        """Send a request and return the response with its body unread (call ``finish`` after)."""
        all_headers = {"User-Agent": self._user_agent, **headers}
        if query:
            url += ("&" if "?" in url else "?") + urlencode(list(query))
        data: bytes | str | None = body
        if form is not None:
            data = urlencode(dict(form))
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        retries = urllib3.Retry(
            total=None,
            connect=0,
            read=0,
            status=0,
            other=0,
            redirect=self._max_redirects if redirects else 0,
            raise_on_redirect=True,
        )
        try:
            return self._pool(verify).request(
                method,
                url,
                body=data,
                headers=all_headers,
                timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s),
                retries=retries if redirects else False,
                redirect=redirects,
                preload_content=False,
                decode_content=True,
            )
        except MaxRetryError as exc:
            if isinstance(exc.reason, ResponseError):  # what urllib3 raises when redirects run out
                raise TransportError("redirects", f"more than {self._max_redirects} redirects") from None
            raise _classify(exc.reason or exc) from None
        except (HTTPError, OSError) as exc:
            raise _classify(exc) from None


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


def read_body(resp: Response, cap: int, deadline: Deadline, what: str) -> bytes:
    """Read at most ``cap + 1`` bytes (so the caller can tell "over the cap"), one socket read at a
    time, checking the deadline before each read and lowering the socket timeout to match it."""
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

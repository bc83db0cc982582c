"""Which requests the worker's event loop may answer with a kept answer: a plain keep-alive HTTP/1.1
POST whose body is exactly its Content-Length. Anything that changes how a request is read or
answered goes to a thread, as before."""

from __future__ import annotations

import pytest

from webhook.server.memo import MAX_MEMO_ENTRY_BYTES
from webhook.server.worker import _fast_head

BODY = b'{"kind":"ProviderRequest"}'


def request(head: bytes, body: bytes = BODY, line: bytes = b"POST /provider HTTP/1.1") -> bytearray:
    return bytearray(line + b"\r\nHost: referee\r\n" + head + b"\r\n" + body)


@pytest.mark.parametrize(
    "head", [b"Content-Length: 26\r\n", b"connection: keep-alive\r\ncontent-length:26\r\n"]
)
def test_a_plain_post_qualifies(head: bytes) -> None:
    assert _fast_head(request(head)) == ("/provider", BODY)


@pytest.mark.parametrize(
    ("head", "body", "line"),
    [
        (b"Content-Length: 26\r\nConnection: close\r\n", BODY, b"POST /provider HTTP/1.1"),
        (b"Content-Length: 26\r\nConnection: keep-alive, Upgrade\r\n", BODY, b"POST /provider HTTP/1.1"),
        (b"Transfer-Encoding: chunked\r\n", b"1a\r\n" + BODY + b"\r\n0\r\n\r\n", b"POST /provider HTTP/1.1"),
        (b"Content-Length: 26\r\nExpect: 100-continue\r\n", BODY, b"POST /provider HTTP/1.1"),
        (b"Content-Length: 26\r\nContent-Length: 26\r\n", BODY, b"POST /provider HTTP/1.1"),  # smuggling
        (
            b"Content-Length: 26\r\n",
            BODY + b"GET / HTTP/1.1\r\n\r\n",
            b"POST /provider HTTP/1.1",
        ),  # pipelined
        (b"Content-Length: 27\r\n", BODY, b"POST /provider HTTP/1.1"),  # not all here
        (b"", BODY, b"POST /provider HTTP/1.1"),  # no Content-Length
        (b"Content-Length: 26\r\n", BODY, b"POST /provider HTTP/1.0"),
        (b"Content-Length: 26\r\n", BODY, b"GET /provider HTTP/1.1"),
        (b"Content-Length : 26\r\n", BODY, b"POST /provider HTTP/1.1"),  # gunicorn refuses it
        (b"Content-Length: 26\r\nX: a\r\n b\r\n", BODY, b"POST /provider HTTP/1.1"),  # obs-fold
        (b"Content-Length: 26\r\nX: \x00\r\n", BODY, b"POST /provider HTTP/1.1"),
    ],
)
def test_anything_else_goes_to_a_thread(head: bytes, body: bytes, line: bytes) -> None:
    assert _fast_head(request(head, body, line)) is None


def test_a_body_larger_than_any_kept_request_is_not_copied_in_the_event_loop() -> None:
    """Nothing that large is kept, so the loop neither copies nor hashes it (24 MiB: 30 ms)."""
    body = b"x" * (MAX_MEMO_ENTRY_BYTES + 1)
    assert _fast_head(request(b"Content-Length: %d\r\n" % len(body), body)) is None

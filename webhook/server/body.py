"""Reading request bodies: bounded by ``limits.maxBodyBytes``, strict JSON (``webhook.strictjson``:
no duplicate members, no NaN, nesting capped), and for AdmissionReviews the uid even of a body
Referee will not check (so that the denial reaches the API server)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import request

from webhook import strictjson
from webhook.server.admission import (
    UID_PREFIX_BYTES,
    AdmissionError,
    AdmissionRequest,
    parse_review,
    uid_from_prefix,
    uid_of,
)


@dataclass(frozen=True)
class Unreadable:
    """A body that is not a review Referee can check: denied, with its uid when one can be read."""

    uid: str
    problem: str


def read_review(max_bytes: int) -> AdmissionRequest | Unreadable:
    length = request.content_length
    if length is None or length > max_bytes:
        prefix = drain(length or 0, max_bytes * 8)
        what = "has no Content-Length" if length is None else f"is {length} bytes"
        return Unreadable(
            uid_from_prefix(prefix),
            f"the request {what}; Referee checks requests of at most {max_bytes} bytes (limits.maxBodyBytes)",
        )
    data = request.get_data(cache=False)
    try:
        doc = strictjson.loads(data)
    except strictjson.JSONError as exc:
        return Unreadable(uid_from_prefix(data), f"the request body is not JSON Referee reads ({exc})")
    try:
        return parse_review(doc)
    except AdmissionError as exc:
        return Unreadable(uid_of(doc), str(exc))


def read_json(max_bytes: int) -> Any:
    """The request body as JSON; ``AdmissionError`` (HTTP 400) when it is too large or not JSON."""
    return read_json_bytes(max_bytes)[0]


def read_json_bytes(max_bytes: int) -> tuple[Any, bytes]:
    """``read_json``, with the body's bytes as they came."""
    length = request.content_length
    if length is None or length > max_bytes:
        drain(length or 0, max_bytes * 8)
        raise AdmissionError(f"the request body must have a Content-Length of at most {max_bytes} bytes")
    data = request.get_data(cache=False)
    try:
        return strictjson.loads(data), data
    except strictjson.JSONError as exc:
        raise AdmissionError(f"the request body is not JSON Referee reads ({exc})") from None


def drain(length: int, cap: int) -> bytes:
    """Read and drop an oversized body (up to ``cap`` bytes) so the client gets our answer, not a
    reset; returns its first bytes (where the uid is)."""
    left = min(length, cap)
    prefix = b""
    while left > 0:
        chunk = request.stream.read(min(left, 64 * 1024))
        if not chunk:
            break
        if len(prefix) < UID_PREFIX_BYTES:
            prefix += chunk[: UID_PREFIX_BYTES - len(prefix)]
        left -= len(chunk)
    return prefix

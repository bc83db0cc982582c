"""The values Referee's replicas share through Redis, and the check each passes before it is believed.

Anyone who can write to that Redis can put any bytes under any key, so a value counts only when it
carries a MAC made with a key only Referee's replicas hold:

    value = MAGIC || HMAC-SHA256(key, len(name) || name || body) || body
    body  = {"v": 1, "kind": KIND, "at": stored (Unix s), "until": expires (Unix s), "data": {...}}

Redis keys name no image, repository or credential, and do not let anyone confirm a guess of one
either: a key is an HMAC of what it names under a key derived from the signing key (``key_name``), so
whoever can read Redis cannot hash a public image, a trust policy and a guessed registry password
and look for the result. The MAC covers the Redis key's name, so a value signed for one image,
trust or set of credentials is refused under any other; it covers ``until``, so a value copied
back after it expired is refused too. A value that is too large, not ours, not of this version,
not JSON, signed with another key or past its time is a miss, never an error and never a decision
(``unseal`` says why). Pure.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook.strictjson import JSONError, loads

VERSION = 1
MAGIC = b"RS1"
MAC_BYTES = 32
MAX_VALUE_BYTES = 32 * 1024  # a decision with its requirements, artifacts and signers is under 8 KiB
MIN_SIGNING_KEY_BYTES = 32
MAX_CLOCK_SKEW_S = 30.0  # replicas' clocks may differ this much (a value stored "in the future")
MAX_LIFETIME_S = 7 * 24 * 3600.0  # a longer time to live is shortened to this when sealed
KINDS = ("verdict", "tag", "host")
_NAMES = b"referee shared cache: key names"  # the naming key's label: never a value's MAC key


@dataclass(frozen=True)
class Unsealed:
    data: Mapping[str, Any]
    stored_at: float  # Unix seconds
    expires_at: float


def naming_key(signing_key: bytes) -> bytes:
    """The key names are made with (derived: a name's hash is never a value's MAC)."""
    return hmac.new(signing_key, _NAMES, hashlib.sha256).digest()


def key_name(naming: bytes, name: str) -> str:
    """What Redis sees of ``name``: an HMAC-SHA256 under ``naming_key``, in hex."""
    return hmac.new(naming, name.encode(), hashlib.sha256).hexdigest()


def mac(signing_key: bytes, name: str, body: bytes) -> bytes:
    encoded = name.encode()
    message = len(encoded).to_bytes(4, "big") + encoded + body
    return hmac.new(signing_key, message, hashlib.sha256).digest()


def seal(
    signing_key: bytes, name: str, kind: str, data: Mapping[str, Any], *, stored_at: float, expires_at: float
) -> bytes | None:
    """The value to store under ``name``; None when it would be larger than ``MAX_VALUE_BYTES``
    (kept in the local cache only)."""
    expires_at = min(expires_at, stored_at + MAX_LIFETIME_S)
    body = json.dumps(
        {"v": VERSION, "kind": kind, "at": stored_at, "until": expires_at, "data": dict(data)},
        separators=(",", ":"),
        sort_keys=True,
        ensure_ascii=False,
        allow_nan=False,
    ).encode()
    value = MAGIC + mac(signing_key, name, body) + body
    return value if len(value) <= MAX_VALUE_BYTES else None


def unseal(signing_key: bytes, name: str, kind: str, value: bytes, now: float) -> Unsealed | str:
    """The value read under ``name``, checked; a string saying why it is refused otherwise."""
    # 1. Bounded before anything is parsed.
    if len(value) > MAX_VALUE_BYTES:
        return f"larger than {MAX_VALUE_BYTES} bytes"
    # 2. Ours, and of this version of the encoding.
    if not value.startswith(MAGIC) or len(value) < len(MAGIC) + MAC_BYTES:
        return "not a Referee value"
    tag, body = value[len(MAGIC) : len(MAGIC) + MAC_BYTES], value[len(MAGIC) + MAC_BYTES :]
    # 3. Signed with our key, for this key name (constant-time comparison).
    if not hmac.compare_digest(tag, mac(signing_key, name, body)):
        return "its signature does not verify (another key, another name, or changed bytes)"
    return _read(body, kind, now)


def _read(body: bytes, kind: str, now: float) -> Unsealed | str:
    # 4. Well formed: the MAC says who wrote it, these checks what it says.
    try:
        doc = loads(body)
    except JSONError:
        return "not JSON"
    if not isinstance(doc, dict) or set(doc) != {"v", "kind", "at", "until", "data"}:
        return "not a Referee entry"
    if doc["v"] != VERSION or doc["kind"] != kind or not isinstance(doc["data"], dict):
        return "another version or kind"
    stored_at, expires_at = doc["at"], doc["until"]
    # 5. Within its time: never stored in the future, never read after it expired.
    if not (_finite(stored_at) and _finite(expires_at)) or stored_at > now + MAX_CLOCK_SKEW_S:
        return "no valid times, or stored in the future"
    if expires_at <= now or expires_at - stored_at > MAX_LIFETIME_S:
        return "expired"
    return Unsealed(doc["data"], float(stored_at), float(expires_at))


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)

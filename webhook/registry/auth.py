"""Registry authentication: ``WWW-Authenticate`` challenges, the bearer-token flow, a token cache.

The flow (distribution ``token.md`` / ``oauth.md``):

1. A request without credentials (or with a cached token) gets ``401`` and a challenge,
   ``Basic realm=...`` or ``Bearer realm="...",service="...",scope="..."``.
2. Basic: resend with ``Authorization: Basic base64(user:password)``.
3. Bearer: ask the token server (``GET realm?service=..&scope=..``, with Basic credentials when we
   have them; an ``identitytoken`` is exchanged by an OAuth2 ``POST`` with ``grant_type=refresh_token``;
   a ``registrytoken`` is used as the bearer token directly), then resend with ``Bearer <token>``.

Tokens are cached per (registry, scope, credential) until ``expires_in`` (60 s when absent) runs out.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from webhook import strictjson
from webhook.deadline import Deadline
from webhook.errors import AuthenticationFailed, RegistryUnavailable
from webhook.registry.credentials import Credential
from webhook.transport import Transport, TransportError, opened, read_body

DEFAULT_TOKEN_LIFETIME_S = 60
# Refresh a little early so a token does not expire between our check and the registry's.
TOKEN_EXPIRY_MARGIN_S = 5
MAX_TOKEN_RESPONSE_BYTES = 1 << 20
CLIENT_ID = "referee"


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "basic" or "bearer" (others are ignored)
    params: Mapping[str, str] = field(hash=False)


def parse_challenges(header: str) -> list[Challenge]:  # noqa: PLR0912 (one tokenizer loop reads best)
    """Parse a ``WWW-Authenticate`` value (RFC 7235) into its challenges.

    Tolerant of what registries send: several challenges in one header, quoted strings with
    backslash escapes, token68 values, and stray spaces.
    """
    challenges: list[Challenge] = []
    i, n = 0, len(header)
    scheme: str | None = None
    params: dict[str, str] = {}

    def skip_ws(j: int) -> int:
        while j < n and header[j] in " \t,":
            j += 1
        return j

    def read_token(j: int) -> tuple[str, int]:
        start = j
        while j < n and header[j] not in ' \t,="':
            j += 1
        return header[start:j], j

    while True:
        i = skip_ws(i)
        if i >= n:
            break
        token, j = read_token(i)
        k = j
        while k < n and header[k] in " \t":
            k += 1
        if k < n and header[k] == "=" and scheme is not None:
            # auth-param: name = token / quoted-string
            k += 1
            while k < n and header[k] in " \t":
                k += 1
            if k < n and header[k] == '"':
                k += 1
                value_chars: list[str] = []
                while k < n and header[k] != '"':
                    if header[k] == "\\" and k + 1 < n:
                        k += 1
                    value_chars.append(header[k])
                    k += 1
                value = "".join(value_chars)
                k += 1  # closing quote
            else:
                value, k = read_token(k)
                while k < n and header[k] == "=":  # token68 padding
                    value += "="
                    k += 1
            params[token.lower()] = value
            i = k
        else:
            if scheme is not None:
                challenges.append(Challenge(scheme, params))
            scheme, params = token.lower(), {}
            i = j
    if scheme is not None:
        challenges.append(Challenge(scheme, params))
    return challenges


def basic_authorization(credential: Credential) -> str:
    raw = f"{credential.username}:{credential.password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class CachedAuth:
    authorization: str = field(repr=False)
    expires_at: float  # monotonic; float("inf") for Basic


class AuthCache:
    """``Authorization`` values per (registry, scope, credential), honouring token lifetimes."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str, str], CachedAuth] = {}

    def get(self, key: tuple[str, str, str]) -> str | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.expires_at <= self._clock():
                del self._entries[key]
                return None
            return entry.authorization

    def put(self, key: tuple[str, str, str], authorization: str, lifetime_s: float | None) -> None:
        expires = float("inf") if lifetime_s is None else self._clock() + lifetime_s
        with self._lock:
            self._entries[key] = CachedAuth(authorization, expires)

    def forget(self, key: tuple[str, str, str]) -> None:
        with self._lock:
            self._entries.pop(key, None)


@dataclass(frozen=True)
class Token:
    value: str = field(repr=False)
    lifetime_s: float


def parse_token_response(body: bytes, realm: str) -> Token:
    """Read a token server's JSON answer: ``access_token`` preferred, then ``token``."""
    try:
        doc = strictjson.loads(body)
    except strictjson.JSONError as exc:
        raise AuthenticationFailed(f"token server {realm} answered with invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise AuthenticationFailed(f"token server {realm} answered with a non-object")
    value = doc.get("access_token") or doc.get("token")
    if not isinstance(value, str) or not value:
        raise AuthenticationFailed(f"token server {realm} returned no token")
    expires_in = doc.get("expires_in", DEFAULT_TOKEN_LIFETIME_S)
    if not isinstance(expires_in, (int, float)) or isinstance(expires_in, bool) or expires_in <= 0:
        expires_in = DEFAULT_TOKEN_LIFETIME_S
    return Token(value, max(1.0, float(expires_in) - TOKEN_EXPIRY_MARGIN_S))


def fetch_token(
    transport: Transport,
    challenge: Challenge,
    scope: str,
    credential: Credential,
    *,
    registry: str,
    allow_plain_http: bool,
    verify: bool | str,
    deadline: Deadline,
    request_timeout_s: float,
) -> Token:
    """Run the bearer-token flow for one challenge. Raises ``AuthenticationFailed`` when refused."""
    realm = challenge.params.get("realm", "")
    parts = urlsplit(realm)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise AuthenticationFailed(f"registry {registry} sent a bearer challenge without a usable realm")
    if parts.scheme == "http" and not allow_plain_http:
        # Credentials would cross the network in clear text.
        raise AuthenticationFailed(
            f"registry {registry} asks for a token from {realm} over plain HTTP; "
            "refused unless the registry is configured for plain HTTP"
        )
    if credential.registry_token:
        return Token(credential.registry_token, DEFAULT_TOKEN_LIFETIME_S)
    service = challenge.params.get("service", "")
    scopes = [scope] if scope else []
    timeout = min(request_timeout_s, deadline.check(f"token request to {realm}"))
    try:
        if credential.identity_token:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": credential.identity_token,
                "service": service,
                "client_id": CLIENT_ID,
                "scope": " ".join(scopes),
            }
            resp = transport.open("POST", realm, headers={}, timeout_s=timeout, verify=verify, form=form)
        else:
            query = [("scope", s) for s in scopes] + ([("service", service)] if service else [])
            headers = {} if credential.is_anonymous else {"Authorization": basic_authorization(credential)}
            resp = transport.open(
                "GET", realm, headers=headers, timeout_s=timeout, verify=verify, query=query
            )
    except TransportError as exc:
        raise RegistryUnavailable(f"token server {realm} for {registry} unreachable ({exc.reason})") from None
    with opened(resp):
        status = resp.status
        if status in (401, 403):
            who = "anonymous access" if credential.is_anonymous else f"credentials from {credential.source}"
            raise AuthenticationFailed(f"token server {realm} refused {who} for {registry} (HTTP {status})")
        if status >= 500:
            raise RegistryUnavailable(f"token server {realm} for {registry} failed (HTTP {status})")
        if status != 200:
            raise AuthenticationFailed(f"token server {realm} for {registry} answered HTTP {status}")
        try:
            body = read_body(resp, MAX_TOKEN_RESPONSE_BYTES, deadline, f"token request to {realm}")
        except TransportError as exc:
            raise RegistryUnavailable(f"token server {realm} for {registry}: {exc.reason}") from None
        if len(body) > MAX_TOKEN_RESPONSE_BYTES:
            raise AuthenticationFailed(
                f"token server {realm} answer exceeds {MAX_TOKEN_RESPONSE_BYTES} bytes"
            )
    return parse_token_response(body, realm)

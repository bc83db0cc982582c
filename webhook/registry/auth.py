"""Registry authentication: ``WWW-Authenticate`` challenges, the bearer-token flow, a token cache.

The flow (distribution ``token.md`` / ``oauth.md``):

1. A request without credentials (or with a cached token) gets ``401`` and a challenge,
   ``Basic realm=...`` or ``Bearer realm="...",service="...",scope="..."``.
2. Basic: resend with ``Authorization: Basic base64(user:password)``.
3. Bearer: ask the token server (``GET realm?service=..&scope=..``, with Basic credentials when we
   have them; an ``identitytoken`` is exchanged by an OAuth2 ``POST`` with ``grant_type=refresh_token``;
   a ``registrytoken`` is used as the bearer token directly), then resend with ``Bearer <token>``.

Tokens are cached per (registry, scope, credential) until ``expires_in`` (60 s when absent, an hour
at most) runs out, in a cache bounded in entries and bytes; a token over 16 KiB is refused.

Where credentials go: a realm over https (plain http only for a registry configured for it), and
the registry's Basic credentials or identity token only to a realm on the registry's own host, on
the same registrable domain (the Public Suffix List decides: ``auth.docker.io`` for
``registry-1.docker.io``), or on a host configured for that registry (``tokenRealms``). Anywhere
else the request is refused rather than sent without them.
"""

from __future__ import annotations

import base64
import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from publicsuffixlist import PublicSuffixList

from webhook import strictjson
from webhook.deadline import Deadline
from webhook.errors import AuthenticationFailed, RegistryUnavailable
from webhook.registry.credentials import Credential
from webhook.transport import (
    MAX_URL_BYTES,
    Reach,
    Transport,
    TransportError,
    clip,
    internal_address,
    opened,
    read_body,
)

DEFAULT_TOKEN_LIFETIME_S = 60
MAX_TOKEN_LIFETIME_S = 3600  # whatever the registry says: a token is asked for again after an hour
# Refresh a little early so a token does not expire between our check and the registry's.
TOKEN_EXPIRY_MARGIN_S = 5
MAX_TOKEN_BYTES = 16 << 10  # real registry tokens are a few KiB
MAX_TOKEN_RESPONSE_BYTES = 64 << 10
AUTH_CACHE_ENTRIES = 4096
AUTH_CACHE_BYTES = 8 << 20
CLIENT_ID = "referee"
MAX_CHALLENGES = 16  # in one WWW-Authenticate value


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "basic" or "bearer" (others are ignored)
    params: Mapping[str, str] = field(hash=False)


def parse_challenges(header: str) -> list[Challenge]:  # noqa: PLR0912, PLR0915 (one tokenizer loop reads best)
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
        elif not token:
            i = j + 1  # a stray quote or '=': skip it (without this, '"' looped for ever)
        else:
            if scheme is not None:
                challenges.append(Challenge(scheme, params))
                if len(challenges) >= MAX_CHALLENGES:
                    return challenges
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
    """``Authorization`` values per (registry, scope, credential), honouring token lifetimes; the
    least recently used go first past ``max_entries`` or ``max_bytes`` (keys and values counted)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_entries: int = AUTH_CACHE_ENTRIES,
        max_bytes: int = AUTH_CACHE_BYTES,
    ) -> None:
        self._clock = clock
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str, str], CachedAuth] = OrderedDict()
        self._bytes = 0

    @staticmethod
    def _size(key: tuple[str, str, str], entry: CachedAuth) -> int:
        return sum(len(part) for part in key) + len(entry.authorization)

    def get(self, key: tuple[str, str, str]) -> str | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.expires_at <= self._clock():
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return entry.authorization

    def put(self, key: tuple[str, str, str], authorization: str, lifetime_s: float | None) -> None:
        expires = float("inf") if lifetime_s is None else self._clock() + lifetime_s
        entry = CachedAuth(authorization, expires)
        if self._size(key, entry) > self._max_bytes:
            return
        with self._lock:
            self._drop(key)
            self._entries[key] = entry
            self._bytes += self._size(key, entry)
            while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
                self._drop(next(iter(self._entries)))

    def forget(self, key: tuple[str, str, str]) -> None:
        with self._lock:
            self._drop(key)

    def _drop(self, key: tuple[str, str, str]) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= self._size(key, entry)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes


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
    if len(value) > MAX_TOKEN_BYTES:
        raise AuthenticationFailed(
            f"token server {realm} returned a token of {len(value)} bytes (at most {MAX_TOKEN_BYTES})"
        )
    expires_in = doc.get("expires_in", DEFAULT_TOKEN_LIFETIME_S)
    if not isinstance(expires_in, (int, float)) or isinstance(expires_in, bool) or expires_in <= 0:
        expires_in = DEFAULT_TOKEN_LIFETIME_S
    lifetime_s = min(float(expires_in), MAX_TOKEN_LIFETIME_S) - TOKEN_EXPIRY_MARGIN_S
    return Token(value, max(1.0, lifetime_s))


@functools.cache
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()  # the list the package ships: nothing is downloaded


def _host_name(netloc_or_host: str) -> str:
    return (urlsplit(f"//{netloc_or_host}").hostname or "").lower()


def same_site(realm_host: str, registry: str, configured: Sequence[str] = ()) -> bool:
    """Whether a token realm on ``realm_host`` may receive ``registry``'s credentials."""
    realm_name, registry_name = realm_host.lower(), _host_name(registry)
    if realm_name == registry_name or realm_name in {_host_name(c) for c in configured}:
        return True
    if internal_address(realm_name) or internal_address(registry_name):
        return False  # addresses have no registrable domain
    domain = _suffixes().privatesuffix(realm_name)
    return domain is not None and domain == _suffixes().privatesuffix(registry_name)


def _check_realm(
    realm: str,
    registry: str,
    credential: Credential,
    *,
    allow_plain_http: bool,
    realms: Sequence[str],
    internal: bool,
) -> Reach:
    """Whether the token server may be asked, with this credential; where its redirects may go."""
    shown = clip(realm, 120)
    parts = urlsplit(realm)
    if len(realm) > MAX_URL_BYTES or parts.scheme not in ("https", "http") or not parts.hostname:
        raise AuthenticationFailed(f"registry {registry} sent a bearer challenge without a usable realm")
    if parts.scheme == "http" and not allow_plain_http:
        # Credentials would cross the network in clear text.
        raise AuthenticationFailed(
            f"registry {registry} asks for a token from {shown} over plain HTTP; "
            "refused unless the registry is configured for plain HTTP"
        )
    own = same_site(parts.hostname, registry, realms)
    if not credential.is_anonymous and not own:
        raise AuthenticationFailed(
            f"registry {registry} asks for a token from {clip(parts.hostname, 80)}, which is not on its "
            f"own domain; its credentials are not sent there (list that host in tokenRealms of {registry} "
            "to allow it)"
        )
    if not own and not internal and internal_address(parts.hostname):
        raise AuthenticationFailed(f"registry {registry} asks for a token from an internal address; refused")
    on_registry_host = parts.hostname.lower() == _host_name(registry)
    return Reach(plain_http=allow_plain_http, internal=internal, first_hop=not (on_registry_host or internal))


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
    realms: Sequence[str] = (),
    internal: bool = False,
) -> Token:
    """Run the bearer-token flow for one challenge. Raises ``AuthenticationFailed`` when refused.

    ``realms``: token-server hosts configured for this registry; ``internal``: whether a realm
    elsewhere may be at an internal address (the registry is configured and is at one itself).
    """
    realm = challenge.params.get("realm", "")
    shown = clip(realm, 120)
    if credential.registry_token:  # sent to the registry itself, not to the realm
        return Token(credential.registry_token, DEFAULT_TOKEN_LIFETIME_S)
    reach = _check_realm(
        realm, registry, credential, allow_plain_http=allow_plain_http, realms=realms, internal=internal
    )
    service = challenge.params.get("service", "")
    scopes = [scope] if scope else []
    timeout = min(request_timeout_s, deadline.check(f"token request to {shown}"))
    try:
        if credential.identity_token:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": credential.identity_token,
                "service": service,
                "client_id": CLIENT_ID,
                "scope": " ".join(scopes),
            }
            resp = transport.open(
                "POST", realm, headers={}, timeout_s=timeout, verify=verify, form=form, reach=reach
            )
        else:
            query = [("scope", s) for s in scopes] + ([("service", service)] if service else [])
            headers = {} if credential.is_anonymous else {"Authorization": basic_authorization(credential)}
            resp = transport.open(
                "GET", realm, headers=headers, timeout_s=timeout, verify=verify, query=query, reach=reach
            )
    except TransportError as exc:
        if exc.kind == "refused":
            raise AuthenticationFailed(
                f"token server {shown} for {registry}: {exc.reason}; refused"
            ) from None
        raise RegistryUnavailable(f"token server {shown} for {registry} could not be reached") from None
    with opened(resp):
        status = resp.status
        if status in (401, 403):
            who = "anonymous access" if credential.is_anonymous else f"credentials from {credential.source}"
            raise AuthenticationFailed(f"token server {shown} refused {who} for {registry} (HTTP {status})")
        if status >= 500:
            raise RegistryUnavailable(f"token server {shown} for {registry} failed (HTTP {status})")
        if status != 200:
            raise AuthenticationFailed(f"token server {shown} for {registry} answered HTTP {status}")
        try:
            body = read_body(resp, MAX_TOKEN_RESPONSE_BYTES, deadline, f"token request to {shown}")
        except TransportError:
            raise RegistryUnavailable(
                f"the answer of token server {shown} for {registry} broke off"
            ) from None
        if len(body) > MAX_TOKEN_RESPONSE_BYTES:
            raise AuthenticationFailed(
                f"token server {shown} answer exceeds {MAX_TOKEN_RESPONSE_BYTES} bytes"
            )
    return parse_token_response(body, shown)

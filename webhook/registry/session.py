"""The HTTP exchanges with one repository of one registry, for one set of credentials: each request
authenticated (every matching credential in turn), retried a bounded number of times on 429 and
502/503/504, refused at once while the host's circuit is open, bounded by the caller's deadline, and
its body read under a cap. Repositories (``client.py``), referrers (``referrers.py``) and pushes
(``push.py``) are built on it.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import random
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote

from webhook import strictjson
from webhook.deadline import Deadline
from webhook.errors import (
    AuthenticationFailed,
    ContentMismatch,
    ContentTooLarge,
    DeadlineExceeded,
    NotFound,
    RateLimited,
    RegistryProtocolError,
    RegistryUnavailable,
)
from webhook.oci.model import (
    MANIFEST_ACCEPT,
    MANIFEST_TYPES,
    Manifest,
    check_digest,
    compute_digest,
    parse_manifest,
)
from webhook.oci.reference import validate_digest
from webhook.registry.auth import Challenge, basic_authorization, fetch_token, parse_challenges
from webhook.registry.credentials import Credential
from webhook.transport import (
    Reach,
    Response,
    TransportError,
    clip,
    content_type,
    opened,
    origin,
    read_body,
)

if TYPE_CHECKING:
    from webhook.registry.client import RegistryClient

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 502, 503, 504})
# A JSON document in memory while it is read and parsed: its bytes, their text, the parsed values.
JSON_PARSE_FACTOR = 3


def error_codes(body: bytes) -> list[str]:
    """The ``errors[].code`` values of an OCI error body, if it is one."""
    try:
        doc = strictjson.loads(body)
    except strictjson.JSONError:
        return []
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list):
        return []
    return [e["code"] for e in errors if isinstance(e, dict) and isinstance(e.get("code"), str)]


def _retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Session:
    """One repository, one set of credentials, over HTTP(S)."""

    def __init__(
        self,
        client: RegistryClient,
        host: str,
        path: str,
        credentials: tuple[Credential, ...],
        display: str,
        *,
        push: bool = False,
    ) -> None:
        self._client = client
        self.host = host
        self.path = path
        self._credentials = credentials
        self.display = display
        host_settings = client.settings.for_host(host)
        self._scheme = "http" if host_settings.plain_http else "https"
        self._verify: bool | str = host_settings.ca_file or True
        self._plain_http = host_settings.plain_http
        # Redirect hops: http only where the registry is configured for it; internal addresses
        # only for a registry the operator configured that is itself at such an address.
        self._reach = Reach(plain_http=self._plain_http, internal=client.configured_internal(host))
        self._token_realms = host_settings.token_realms
        self.limits = client.limits
        self._scope = f"repository:{path}:pull,push" if push else f"repository:{path}:pull"
        self.base = f"{self._scheme}://{host}/v2/{path}"

    # --- manifests --------------------------------------------------------------------------------

    def get_manifest(
        self, target: str, what: str, deadline: Deadline, expected_digest: str | None
    ) -> Manifest:
        url = f"{self.base}/manifests/{quote(target, safe=':')}"
        resp = self.send("GET", url, what, deadline, {"Accept": MANIFEST_ACCEPT}, redirects=True)
        with self.room(resp, self.limits.max_manifest_bytes, what, deadline, JSON_PARSE_FACTOR):
            return self._manifest_from(resp, what, deadline, expected_digest)

    def _manifest_from(
        self, resp: Response, what: str, deadline: Deadline, expected_digest: str | None
    ) -> Manifest:
        with opened(resp):
            if resp.status == 404 and expected_digest is None:
                raise NotFound(f"{what}: no such tag (HTTP 404 from {self.host})")
            self.raise_for_status(resp, what, "manifest")
            media_type = content_type(resp)
            if media_type not in MANIFEST_TYPES:
                served = clip(media_type, 80) or "no Content-Type"
                raise ContentMismatch(f"{what}: registry served {served}, not a manifest")
            body = self.read(resp, self.limits.max_manifest_bytes, what, deadline)
            header_digest = resp.headers.get("Docker-Content-Digest", "").strip()
        if expected_digest is not None:
            check_digest(body, expected_digest, what)
        digest = self.check_header_digest(body, header_digest, what, preferred=expected_digest)
        return parse_manifest(body, media_type, digest, what)

    def check_header_digest(
        self, body: bytes, header_digest: str, what: str, preferred: str | None = None
    ) -> str:
        """Compare a ``Docker-Content-Digest`` header with the bytes; return the digest to use."""
        if header_digest:
            try:
                validate_digest(header_digest)
            except ValueError:
                raise RegistryProtocolError(
                    f"{what}: invalid Docker-Content-Digest {clip(header_digest, 100)!r}"
                ) from None
            actual = compute_digest(body, header_digest.split(":", 1)[0])
            if actual != header_digest:
                raise ContentMismatch(
                    f"{what}: Docker-Content-Digest says {header_digest} but the bytes hash to {actual}"
                )
        return preferred or compute_digest(body)

    def raise_for_status(self, resp: Response, what: str, kind: str) -> None:
        status = resp.status
        if status == 200:
            return
        if status == 404:
            raise NotFound(f"{what}: {kind} not found on {self.host} (HTTP 404)")
        if status in (401, 403):
            raise AuthenticationFailed(f"{what}: access denied by {self.host} (HTTP {status})")
        if status >= 500:
            raise RegistryUnavailable(f"{what}: registry {self.host} failed (HTTP {status})")
        raise RegistryProtocolError(f"{what}: unexpected HTTP {status} from {self.host} for the {kind}")

    @contextlib.contextmanager
    def room(
        self, resp: Response, cap: int, what: str, deadline: Deadline, factor: int = 1
    ) -> Iterator[None]:
        """Hold room in the worker's in-flight budget while a body is read and worked on: ``factor``
        times its size (its Content-Length, else the cap), waiting within the deadline for it."""
        size = cap + 1
        length = str(resp.headers.get("Content-Length", ""))
        if length.isdigit() and int(length) < size:
            size = int(length) + 1
        budget = self._client.in_flight
        try:
            taken = budget.take(size * factor, deadline, what)
        except BaseException:
            resp.close()
            raise
        try:
            yield
        finally:
            budget.give(taken)

    def read(
        self,
        resp: Response,
        cap: int,
        what: str,
        deadline: Deadline,
        *,
        allow_truncate: bool = False,
    ) -> bytes:
        """Read a body of at most ``cap`` bytes before the deadline."""
        length = resp.headers.get("Content-Length")
        if not allow_truncate and length is not None and length.isdigit() and int(length) > cap:
            raise ContentTooLarge(f"{what}: response is {length} bytes, over the {cap}-byte cap")
        try:
            body = read_body(resp, cap, deadline, what)
        except TransportError as exc:
            if deadline.expired():
                raise DeadlineExceeded(f"{what}: out of time while reading from {self.host}") from None
            log.info("%s: reading from %s failed: %s", what, self.host, exc.reason)
            raise RegistryUnavailable(f"{what}: the answer of {self.host} broke off") from None
        if len(body) > cap:
            if allow_truncate:
                return body[:cap]
            raise ContentTooLarge(f"{what}: response exceeds the {cap}-byte cap")
        return body

    def send(
        self,
        method: str,
        url: str,
        what: str,
        deadline: Deadline,
        headers: Mapping[str, str],
        *,
        redirects: bool = False,
        body: bytes | None = None,
    ) -> Response:
        """Send one request with auth, bounded retries and the deadline; return the open response.

        A 401 is answered by authenticating (each matching credential in turn); 429 and 502/503/504
        are retried a bounded number of times. Any other status is returned to the caller.
        """
        auth = _AuthAttempt(list(self._credentials))
        attempt = 0
        while True:
            resp = self._request_once(
                method,
                url,
                what,
                deadline,
                headers=headers,
                credential=auth.credential,
                redirects=redirects,
                body=body,
            )
            if resp.status == 401:
                challenge = resp.headers.get("WWW-Authenticate", "")
                final = origin(resp.url or url)
                resp.close()
                if final != origin(self.base):
                    # A redirect hop asks for credentials: they are the registry's, never another's.
                    raise AuthenticationFailed(
                        f"{what}: {self.host} redirected to {clip(final[1], 100)}, which asks for "
                        "credentials; none are sent there"
                    )
                self._reauthenticate(challenge, auth, what, deadline)
                continue
            if resp.status in RETRY_STATUSES:
                self._wait_before_retry(resp, attempt, what, deadline)
                attempt += 1
                continue
            self._client.observe(method, resp.status)
            warning = resp.headers.get("Warning")
            if warning:  # distribution-spec: report registry warnings, never act on them
                log.warning("%s: registry %s warns: %s", what, self.host, clip(warning, 1000))
            return resp

    def _request_once(
        self,
        method: str,
        url: str,
        what: str,
        deadline: Deadline,
        *,
        headers: Mapping[str, str],
        credential: Credential,
        redirects: bool,
        body: bytes | None = None,
    ) -> Response:
        left = deadline.check(f"{what}: {method} {self.host}")
        refusal = self._client.health.refusal(self.host)
        if refusal:
            raise RegistryUnavailable(f"{what}: {refusal}")
        request_headers = dict(headers)
        authorization = self._client.auth.get(self._auth_key(credential))
        if authorization:
            request_headers["Authorization"] = authorization
        timeout = min(self.limits.request_timeout_s, left)
        try:
            resp = self._client.transport.open(
                method,
                url,
                headers=request_headers,
                timeout_s=timeout,
                verify=self._verify,
                redirects=redirects,
                reach=self._reach,
                body=body,
            )
            self._client.health.answered(self.host)
            return resp
        except TransportError as exc:
            # The person reads what failed; the socket-level cause goes to the log.
            log.info("%s: %s %s: %s (%s)", what, method, self.host, exc.kind, exc.reason)
            if exc.kind == "timeout":
                self._client.health.timed_out(self.host, timeout)
            if exc.kind in ("redirects", "refused"):
                raise RegistryProtocolError(
                    f"{what}: {self.host} answered with {exc.reason}; not followed"
                ) from None
            if exc.kind == "tls":
                if exc.reason == "certificate verify failed":
                    raise RegistryUnavailable(
                        f"{what}: the TLS certificate of {self.host} is not trusted "
                        "(certificate verify failed)"
                    ) from None
                raise RegistryUnavailable(
                    f"{what}: no TLS connection could be made with {self.host}"
                ) from None
            if exc.kind == "timeout":
                if deadline.expired():
                    raise DeadlineExceeded(f"{what}: out of time waiting for {self.host}") from None
                raise RegistryUnavailable(
                    f"{what}: {self.host} did not answer within {timeout:.1f}s"
                ) from None
            if exc.kind == "protocol":
                raise RegistryUnavailable(f"{what}: {self.host} broke off the connection") from None
            raise RegistryUnavailable(f"{what}: {self.host} could not be reached") from None

    def _reauthenticate(self, challenge: str, auth: _AuthAttempt, what: str, deadline: Deadline) -> None:
        """Get fresh authorization after a 401, moving to the next credential when one is refused."""
        if auth.fresh:
            # Authorization we just obtained was refused: this credential lacks access.
            self._client.auth.forget(self._auth_key(auth.credential))
            if not auth.advance():
                raise AuthenticationFailed(f"{what}: {self.host} refused {auth.who()} (HTTP 401)")
        while True:
            try:
                self._authenticate(challenge, auth.credential, what, deadline)
            except AuthenticationFailed:
                if not auth.advance():
                    raise
                continue
            auth.fresh = True
            return

    def _wait_before_retry(self, resp: Response, attempt: int, what: str, deadline: Deadline) -> None:
        status = resp.status
        wait = _retry_after_s(resp.headers.get("Retry-After"))
        resp.close()
        error: type[RateLimited | RegistryUnavailable] = RateLimited if status == 429 else RegistryUnavailable
        limits = self.limits
        if attempt >= limits.max_retries:
            raise error(f"{what}: {self.host} answered HTTP {status} {attempt + 1} times; giving up")
        if wait is None:  # exponential backoff with jitter
            wait = min(limits.max_retry_wait_s, 0.2 * (2**attempt)) * (0.5 + random.random() / 2)  # noqa: S311
        if wait > limits.max_retry_wait_s or wait >= deadline.remaining_s():
            raise error(
                f"{what}: {self.host} answered HTTP {status} and asks to retry after {wait:.1f}s, "
                "beyond the time left"
            )
        time.sleep(wait)

    def _auth_key(self, credential: Credential) -> tuple[str, str, str]:
        return (self.host, self._scope, credential.fingerprint())

    def _authenticate(self, header: str, credential: Credential, what: str, deadline: Deadline) -> None:
        challenges = {c.scheme: c for c in parse_challenges(header)}
        key = self._auth_key(credential)
        bearer: Challenge | None = challenges.get("bearer")
        if bearer is not None:
            token = fetch_token(
                self._client.transport,
                bearer,
                self._scope,
                credential,
                registry=self.host,
                allow_plain_http=self._plain_http,
                realms=self._token_realms,
                internal=self._reach.internal,
                verify=self._verify,
                deadline=deadline,
                request_timeout_s=self.limits.request_timeout_s,
            )
            self._client.auth.put(key, f"Bearer {token.value}", token.lifetime_s)
        elif "basic" in challenges:
            if credential.is_anonymous:
                raise AuthenticationFailed(f"{what}: {self.host} requires credentials and none match it")
            if credential.identity_token or credential.registry_token:
                raise AuthenticationFailed(
                    f"{what}: {self.host} asks for basic auth but {credential.source} holds only a token"
                )
            self._client.auth.put(key, basic_authorization(credential), None)
        else:
            raise AuthenticationFailed(f"{what}: {self.host} answered 401 without a usable challenge")


class _AuthAttempt:
    """Which credential a request is using, and whether its authorization was just obtained."""

    def __init__(self, credentials: list[Credential]) -> None:
        self._credentials = credentials
        self._index = 0
        self.fresh = False

    @property
    def credential(self) -> Credential:
        return self._credentials[self._index]

    def advance(self) -> bool:
        if self._index + 1 >= len(self._credentials):
            return False
        self._index += 1
        self.fresh = False
        return True

    def who(self) -> str:
        c = self.credential
        return "anonymous access" if c.is_anonymous else f"credentials from {c.source}"

"""An OCI distribution (v2 API) client: resolve, manifests, blobs, referrers, with auth and limits.

What it promises, whatever the registry does:

* every manifest and blob fetched by digest is size-capped while it is read and hashed after; a
  ``Docker-Content-Digest`` header that disagrees with the bytes is an error;
* a tag is resolved with ``HEAD`` and the full Accept list, and the manifest it names is then fetched
  by digest, so the media type and size we report come from checked bytes, not from headers;
* referrers come from the OCI 1.1 API (filtered client-side when the registry did not say it
  filtered; ``Link`` pages followed on the same origin only, a bounded number of times), or from the
  referrers tag schema (``sha256-<hex>``) when the registry has no such API;
* ``429`` and ``502/503/504`` are retried a bounded number of times, honouring ``Retry-After``, and
  nothing waits past the caller's deadline;
* every failure is typed (see ``webhook.errors``) and names the registry, repository and digest.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urljoin, urlsplit

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
    INDEX_TYPES,
    MANIFEST_ACCEPT,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Manifest,
    check_descriptor,
    check_digest,
    compute_digest,
    parse_manifest,
)
from webhook.oci.reference import Reference, validate_digest
from webhook.registry import Limits, Referrers
from webhook.registry.auth import AuthCache, Challenge, basic_authorization, fetch_token, parse_challenges
from webhook.registry.credentials import ANONYMOUS, Credential, Keyring
from webhook.registry.health import HostHealth
from webhook.registry.transport import (
    Response,
    Transport,
    TransportError,
    content_type,
    next_link,
    opened,
    read_body,
)

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 502, 503, 504})
FILTERS_APPLIED_HEADER = "OCI-Filters-Applied"
LEGACY_FILTERS_ANNOTATION = "org.opencontainers.referrers.filtersApplied"


@dataclass(frozen=True)
class HostSettings:
    """How to reach one registry host."""

    plain_http: bool = False  # only when asked for: no TLS at all
    ca_file: str | None = None  # PEM bundle to trust instead of the system roots


@dataclass(frozen=True)
class ClientSettings:
    hosts: Mapping[str, HostSettings] = field(default_factory=dict, hash=False)
    default: HostSettings = field(default_factory=HostSettings)
    limits: Limits = field(default_factory=Limits)

    def for_host(self, host: str) -> HostSettings:
        return self.hosts.get(host, self.default)


def _error_codes(body: bytes) -> list[str]:
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


class RegistryClient:
    """Talks to any number of registries; hands out ``HttpRepository`` objects for repositories."""

    def __init__(self, settings: ClientSettings | None = None, keyring: Keyring | None = None) -> None:
        self.settings = settings or ClientSettings()
        self.keyring = keyring or Keyring()
        self.limits = self.settings.limits
        self._transport = Transport(
            max_redirects=self.limits.max_redirects,
            pool_size=self.limits.connections_per_host,
        )
        self.on_response: Callable[[str, int], None] | None = None
        self._auth = AuthCache()
        self.health = HostHealth(self.limits.unanswered_cooldown_s)
        self._referrers_api: dict[tuple[str, str], bool] = {}
        self._tags_seen: OrderedDict[tuple[str, str, str], None] = OrderedDict()  # (host, path, tag)
        self._lock = threading.Lock()
        # Manifests are content-addressed and checked against their digest before they enter, so
        # a cached one is as good as a fresh fetch; bounded in entries and in bytes.
        self._manifests = ManifestCache(self.limits.manifest_cache_entries, self.limits.manifest_cache_bytes)

    def close(self) -> None:
        self._transport.close()

    def repository(
        self, ref: Reference, credentials: list[Credential] | None = None, *, push: bool = False
    ) -> HttpRepository:
        """A repository handle; credentials default to the keyring's answer for the reference.

        ``push`` asks for push rights as well as pull (``referee sign``); verification never does.
        """
        creds = credentials if credentials is not None else self.keyring.lookup(ref.domain, ref.path)
        return HttpRepository(
            self, ref.api_host, ref.path, tuple(creds) or (ANONYMOUS,), display=ref.name, push=push
        )

    def observe(self, method: str, status: int) -> None:
        """Hook for metrics: every final registry answer (set ``on_response`` to receive them)."""
        if self.on_response is not None:
            self.on_response(method, status)

    @property
    def transport(self) -> Transport:
        return self._transport

    @property
    def manifests(self) -> ManifestCache:
        return self._manifests

    # --- memory shared by every repository handle ----------------------------------------------

    def tag_seen(self, key: tuple[str, str, str]) -> bool:
        with self._lock:
            if key in self._tags_seen:
                self._tags_seen.move_to_end(key)
                return True
            return False

    def remember_tag(self, key: tuple[str, str, str]) -> None:
        with self._lock:
            self._tags_seen[key] = None
            while len(self._tags_seen) > self.limits.manifest_cache_entries:
                self._tags_seen.popitem(last=False)

    def referrers_api_known(self, host: str, path: str) -> bool | None:
        with self._lock:
            return self._referrers_api.get((host, path))

    def remember_referrers_api(self, host: str, path: str, supported: bool) -> None:
        with self._lock:
            self._referrers_api[(host, path)] = supported


class HttpRepository:
    """One repository on one registry, reached over HTTP(S)."""

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
        self._display = display
        host_settings = client.settings.for_host(host)
        self._scheme = "http" if host_settings.plain_http else "https"
        self._verify: bool | str = host_settings.ca_file or True
        self._plain_http = host_settings.plain_http
        self._limits = client.limits
        self._scope = f"repository:{path}:pull,push" if push else f"repository:{path}:pull"
        self._base = f"{self._scheme}://{host}/v2/{path}"

    @property
    def display_name(self) -> str:
        return self._display

    # --- the seam ---------------------------------------------------------------------------------

    def resolve(self, target: str, deadline: Deadline) -> Manifest:
        if ":" in target:  # a digest: nothing to resolve
            return self.fetch_manifest(validate_digest(target), deadline)
        what = f"{self._display}:{target}"
        tag_key = (self.host, self.path, target)
        if not self._client.tag_seen(tag_key):
            # A tag not seen before: one GET by tag, the bytes hashed (and any digest header checked
            # against them), rather than HEAD then GET by digest: one round trip instead of two.
            manifest = self._get_manifest(target, what, deadline, expected_digest=None)
            self._client.manifests.put((self.host, self.path, manifest.descriptor.digest), manifest)
            self._client.remember_tag(tag_key)
            return manifest
        # A tag seen before: HEAD, which registries such as Docker Hub do not count against pull
        # limits; the manifest it names is usually still in the digest-checked cache.
        url = f"{self._base}/manifests/{quote(target, safe='')}"
        resp = self._send("HEAD", url, what, deadline, {"Accept": MANIFEST_ACCEPT})
        with opened(resp):
            status = resp.status
            header_digest = resp.headers.get("Docker-Content-Digest", "").strip()
        if status == 404:
            raise NotFound(f"{what}: no such tag (HTTP 404 from {self.host})")
        if status == 200 and header_digest:
            try:
                validate_digest(header_digest)
            except ValueError:
                raise RegistryProtocolError(
                    f"{what}: registry sent an invalid Docker-Content-Digest {header_digest!r}"
                ) from None
            return self.fetch_manifest(header_digest, deadline)
        # No digest header (optional before distribution-spec 1.1.1), or a HEAD the registry does
        # not support: GET the manifest by tag and hash the bytes ourselves.
        return self._get_manifest(target, what, deadline, expected_digest=None)

    def fetch_manifest(self, digest: str, deadline: Deadline, expected: Descriptor | None = None) -> Manifest:
        validate_digest(digest)
        what = f"{self._display}@{digest}"
        cap = self._limits.max_manifest_bytes
        if expected is not None and expected.size > cap:
            raise ContentTooLarge(f"{what}: manifest is {expected.size} bytes, over the {cap}-byte cap")
        key = (self.host, self.path, digest)
        manifest = self._client.manifests.get(key)
        if manifest is None:
            manifest = self._get_manifest(digest, what, deadline, expected_digest=digest)
            self._client.manifests.put(key, manifest)
        if expected is not None:
            check_descriptor(manifest, expected, what)
        return manifest

    def fetch_blob(self, descriptor: Descriptor, deadline: Deadline, max_bytes: int | None = None) -> bytes:
        digest = validate_digest(descriptor.digest)
        cap = self._limits.max_blob_bytes if max_bytes is None else max_bytes
        what = f"{self._display}@{digest} (blob)"
        if descriptor.size > cap:
            raise ContentTooLarge(f"{what}: blob is {descriptor.size} bytes, over the {cap}-byte cap")
        resp = self._send("GET", f"{self._base}/blobs/{digest}", what, deadline, {}, redirects=True)
        with opened(resp):
            self._raise_for_status(resp, what, "blob")
            data = self._read(resp, min(cap, descriptor.size), what, deadline)
        if len(data) != descriptor.size:
            raise ContentMismatch(f"{what}: blob is {len(data)} bytes, its descriptor says {descriptor.size}")
        check_digest(data, digest, what)
        return data

    def referrers(self, digest: str, deadline: Deadline, artifact_type: str | None = None) -> Referrers:
        validate_digest(digest)
        known = self._client.referrers_api_known(self.host, self.path)
        if known is not False:
            found = self._referrers_from_api(digest, artifact_type, deadline)
            if found is not None:
                self._client.remember_referrers_api(self.host, self.path, True)
                return found
            self._client.remember_referrers_api(self.host, self.path, False)
        return self._referrers_from_tag(digest, artifact_type, deadline)

    # --- pushing (referee sign) --------------------------------------------------------------------

    def push_blob(self, data: bytes, media_type: str, deadline: Deadline) -> Descriptor:
        """Upload a blob (monolithic POST then PUT) unless the registry already has it."""
        descriptor = Descriptor(media_type, compute_digest(data), len(data))
        what = f"{self._display}@{descriptor.digest} (blob upload)"
        with opened(
            self._send("HEAD", f"{self._base}/blobs/{descriptor.digest}", what, deadline, {})
        ) as resp:
            if resp.status == 200:
                return descriptor
        with opened(self._send("POST", f"{self._base}/blobs/uploads/", what, deadline, {})) as resp:
            if resp.status != 202:
                self._raise_for_status(resp, what, "blob upload")
            location = resp.headers.get("Location", "")
        upload = urljoin(f"{self._base}/blobs/uploads/", location)
        if not location or urlsplit(upload)[:2] != urlsplit(self._base)[:2]:
            raise RegistryProtocolError(f"{what}: the registry sent an upload location on another origin")
        upload += ("&" if "?" in upload else "?") + f"digest={quote(descriptor.digest, safe='')}"
        headers = {"Content-Type": "application/octet-stream"}
        with opened(self._send("PUT", upload, what, deadline, headers, body=data)) as resp:
            if resp.status not in (201, 204):
                self._raise_for_status(resp, what, "blob upload")
        return descriptor

    def push_manifest(self, data: bytes, media_type: str, reference: str, deadline: Deadline) -> bool:
        """PUT a manifest under a tag or its digest; True when the registry answered ``OCI-Subject``."""
        what = f"{self._display}:{reference} (manifest push)"
        url = f"{self._base}/manifests/{quote(reference, safe=':')}"
        with opened(self._send("PUT", url, what, deadline, {"Content-Type": media_type}, body=data)) as resp:
            if resp.status not in (200, 201):
                self._raise_for_status(resp, what, "manifest push")
            return bool(resp.headers.get("OCI-Subject"))

    def push_referrer(self, manifest: bytes, subject: str, deadline: Deadline) -> Descriptor:
        """Push a manifest that has a ``subject``; keep the referrers tag schema index up to date
        when the registry does not index referrers itself (no ``OCI-Subject`` in its answer)."""
        parsed = parse_manifest(
            manifest, OCI_MANIFEST, compute_digest(manifest), f"{self._display} (referrer)"
        )
        indexed = self.push_manifest(manifest, OCI_MANIFEST, parsed.descriptor.digest, deadline)
        if not indexed:
            self._add_to_referrers_tag(subject, parsed.as_referrer(), deadline)
        return parsed.descriptor

    def _add_to_referrers_tag(self, subject: str, entry: Descriptor, deadline: Deadline) -> None:
        algorithm, encoded = subject.split(":", 1)
        tag = f"{algorithm[:32]}-{encoded[:64]}"
        try:
            current = self._get_manifest(tag, f"{self._display}:{tag}", deadline, expected_digest=None)
            entries = list(current.manifests) if current.is_index else []
        except NotFound:
            entries = []
        if any(e.digest == entry.digest for e in entries):
            return
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [e.to_json() for e in [*entries, entry]],
        }
        self.push_manifest(json.dumps(index, separators=(",", ":")).encode(), OCI_INDEX, tag, deadline)

    # --- referrers --------------------------------------------------------------------------------

    def _referrers_from_api(
        self, digest: str, artifact_type: str | None, deadline: Deadline
    ) -> Referrers | None:
        """The OCI 1.1 referrers API; ``None`` when this registry does not implement it."""
        what = f"{self._display}@{digest} (referrers)"
        url = f"{self._base}/referrers/{digest}"
        if artifact_type:
            url += f"?artifactType={quote(artifact_type, safe='')}"
        origin = urlsplit(url)[:2]
        seen: set[str] = set()
        collected: list[Descriptor] = []
        page_url: str | None = url
        while page_url is not None:
            if page_url in seen:
                raise RegistryProtocolError(f"{what}: the registry's Link pages loop back to {page_url}")
            seen.add(page_url)
            if len(seen) > self._limits.max_referrer_pages:
                raise RegistryProtocolError(
                    f"{what}: more than {self._limits.max_referrer_pages} pages of referrers"
                )
            first = len(seen) == 1
            resp = self._send("GET", page_url, what, deadline, {"Accept": OCI_INDEX})
            with opened(resp):
                if first and resp.status in (404, 405):
                    body = self._read(resp, 64 * 1024, what, deadline, allow_truncate=True)
                    if "NAME_UNKNOWN" in _error_codes(body):
                        raise NotFound(f"{what}: repository {self._display} does not exist")
                    return None  # no referrers API here
                self._raise_for_status(resp, what, "referrers list")
                if content_type(resp) != OCI_INDEX:
                    if first:
                        return None  # a 200 that is not an index: not the referrers API
                    raise RegistryProtocolError(f"{what}: a later referrers page is not an image index")
                body = self._read(resp, self._limits.max_index_bytes, what, deadline)
                applied = resp.headers.get(FILTERS_APPLIED_HEADER, "")
                link = next_link(resp.headers.get("Link"))
            index = parse_manifest(
                body, OCI_INDEX, compute_digest(body), what, max_entries=self._limits.max_referrers
            )
            page = list(index.manifests)
            if artifact_type is not None:
                legacy = index.annotations.get(LEGACY_FILTERS_ANNOTATION, "")
                filtered = "artifactType" in _csv(applied) or "artifactType" in _csv(legacy)
                if not filtered:
                    page = [d for d in page if d.artifact_type == artifact_type]
            collected.extend(page)
            self._check_count(collected, what)
            next_url = urljoin(page_url, link) if link else None
            if next_url is not None and urlsplit(next_url)[:2] != origin:
                raise RegistryProtocolError(
                    f"{what}: the registry's Link header points to another origin ({next_url}); not followed"
                )
            page_url = next_url
        return Referrers(digest, _dedupe(collected), "referrers-api")

    def _referrers_from_tag(self, digest: str, artifact_type: str | None, deadline: Deadline) -> Referrers:
        """The referrers tag schema: an index tagged ``<alg>-<hex>`` kept up to date by clients."""
        algorithm, encoded = digest.split(":", 1)
        tag = f"{algorithm[:32]}-{encoded[:64]}"
        what = f"{self._display}:{tag} (referrers tag for {digest})"
        url = f"{self._base}/manifests/{tag}"
        resp = self._send("GET", url, what, deadline, {"Accept": MANIFEST_ACCEPT})
        with opened(resp):
            if resp.status == 404:
                body = self._read(resp, 64 * 1024, what, deadline, allow_truncate=True)
                if "NAME_UNKNOWN" in _error_codes(body):
                    raise NotFound(f"{what}: repository {self._display} does not exist")
                return Referrers(digest, (), "tag-schema")
            self._raise_for_status(resp, what, "referrers tag")
            media_type = content_type(resp)
            body = self._read(resp, self._limits.max_index_bytes, what, deadline)
            header_digest = resp.headers.get("Docker-Content-Digest", "").strip()
        actual = self._check_header_digest(body, header_digest, what)
        if media_type not in INDEX_TYPES:
            log.warning("%s: tag holds %s, not an image index; treating as no referrers", what, media_type)
            return Referrers(digest, (), "tag-schema")
        index = parse_manifest(body, media_type, actual, what, max_entries=self._limits.max_referrers)
        collected = list(index.manifests)
        self._check_count(collected, what)
        if artifact_type is not None:
            collected = [d for d in collected if self._artifact_type_of(d, deadline) == artifact_type]
        return Referrers(digest, _dedupe(collected), "tag-schema")

    def _artifact_type_of(self, descriptor: Descriptor, deadline: Deadline) -> str | None:
        """A tag-schema entry's artifact type; older clients omitted it, so read the manifest then."""
        if descriptor.artifact_type or descriptor.media_type not in MANIFEST_TYPES:
            return descriptor.artifact_type
        return self.fetch_manifest(descriptor.digest, deadline, expected=descriptor).effective_artifact_type

    def _check_count(self, collected: list[Descriptor], what: str) -> None:
        if len(collected) > self._limits.max_referrers:
            raise ContentTooLarge(f"{what}: more than {self._limits.max_referrers} referrers")

    # --- manifests --------------------------------------------------------------------------------

    def _get_manifest(
        self, target: str, what: str, deadline: Deadline, expected_digest: str | None
    ) -> Manifest:
        url = f"{self._base}/manifests/{quote(target, safe=':')}"
        resp = self._send("GET", url, what, deadline, {"Accept": MANIFEST_ACCEPT}, redirects=True)
        with opened(resp):
            if resp.status == 404 and expected_digest is None:
                raise NotFound(f"{what}: no such tag (HTTP 404 from {self.host})")
            self._raise_for_status(resp, what, "manifest")
            media_type = content_type(resp)
            if media_type not in MANIFEST_TYPES:
                raise ContentMismatch(
                    f"{what}: registry served {media_type or 'no Content-Type'}, not a manifest"
                )
            body = self._read(resp, self._limits.max_manifest_bytes, what, deadline)
            header_digest = resp.headers.get("Docker-Content-Digest", "").strip()
        if expected_digest is not None:
            check_digest(body, expected_digest, what)
        digest = self._check_header_digest(body, header_digest, what, preferred=expected_digest)
        return parse_manifest(body, media_type, digest, what)

    def _check_header_digest(
        self, body: bytes, header_digest: str, what: str, preferred: str | None = None
    ) -> str:
        """Compare a ``Docker-Content-Digest`` header with the bytes; return the digest to use."""
        if header_digest:
            try:
                validate_digest(header_digest)
            except ValueError:
                raise RegistryProtocolError(
                    f"{what}: invalid Docker-Content-Digest {header_digest!r}"
                ) from None
            actual = compute_digest(body, header_digest.split(":", 1)[0])
            if actual != header_digest:
                raise ContentMismatch(
                    f"{what}: Docker-Content-Digest says {header_digest} but the bytes hash to {actual}"
                )
        return preferred or compute_digest(body)

    # --- transport --------------------------------------------------------------------------------

    def _raise_for_status(self, resp: Response, what: str, kind: str) -> None:
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

    def _read(
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
            raise RegistryUnavailable(f"{what}: reading from {self.host} failed ({exc.reason})") from None
        if len(body) > cap:
            if allow_truncate:
                return body[:cap]
            raise ContentTooLarge(f"{what}: response exceeds the {cap}-byte cap")
        return body

    def _send(
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
                resp.close()
                self._reauthenticate(challenge, auth, what, deadline)
                continue
            if resp.status in RETRY_STATUSES:
                self._wait_before_retry(resp, attempt, what, deadline)
                attempt += 1
                continue
            self._client.observe(method, resp.status)
            warning = resp.headers.get("Warning")
            if warning:  # distribution-spec: report registry warnings, never act on them
                log.warning("%s: registry %s warns: %s", what, self.host, str(warning)[:4096])
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
        authorization = self._client._auth.get(self._auth_key(credential))
        if authorization:
            request_headers["Authorization"] = authorization
        timeout = min(self._limits.request_timeout_s, left)
        try:
            resp = self._client.transport.open(
                method,
                url,
                headers=request_headers,
                timeout_s=timeout,
                verify=self._verify,
                redirects=redirects,
                body=body,
            )
            self._client.health.answered(self.host)
            return resp
        except TransportError as exc:
            if exc.kind == "timeout":
                self._client.health.timed_out(self.host, timeout)
            if exc.kind == "redirects":
                raise RegistryProtocolError(f"{what}: {exc.reason}") from None
            if exc.kind == "tls":
                raise RegistryUnavailable(f"{what}: TLS with {self.host} failed ({exc.reason})") from None
            if exc.kind == "timeout":
                if deadline.expired():
                    raise DeadlineExceeded(f"{what}: out of time waiting for {self.host}") from None
                raise RegistryUnavailable(
                    f"{what}: {self.host} did not answer within {timeout:.1f}s"
                ) from None
            raise RegistryUnavailable(f"{what}: cannot reach {self.host} ({exc.reason})") from None

    def _reauthenticate(self, challenge: str, auth: _AuthAttempt, what: str, deadline: Deadline) -> None:
        """Get fresh authorization after a 401, moving to the next credential when one is refused."""
        if auth.fresh:
            # Authorization we just obtained was refused: this credential lacks access.
            self._client._auth.forget(self._auth_key(auth.credential))
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
        limits = self._limits
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
                verify=self._verify,
                deadline=deadline,
                request_timeout_s=self._limits.request_timeout_s,
            )
            self._client._auth.put(key, f"Bearer {token.value}", token.lifetime_s)
        elif "basic" in challenges:
            if credential.is_anonymous:
                raise AuthenticationFailed(f"{what}: {self.host} requires credentials and none match it")
            if credential.identity_token or credential.registry_token:
                raise AuthenticationFailed(
                    f"{what}: {self.host} asks for basic auth but {credential.source} holds only a token"
                )
            self._client._auth.put(key, basic_authorization(credential), None)
        else:
            raise AuthenticationFailed(f"{what}: {self.host} answered 401 without a usable challenge")


class ManifestCache:
    """A small LRU of digest-checked manifests, keyed by (host, repository, digest)."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, str, str], Manifest] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str]) -> Manifest | None:
        with self._lock:
            manifest = self._entries.get(key)
            if manifest is not None:
                self._entries.move_to_end(key)
            return manifest

    def put(self, key: tuple[str, str, str], manifest: Manifest) -> None:
        size = manifest.descriptor.size
        if size > self._max_bytes or self._max_entries <= 0:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.descriptor.size
            self._entries[key] = manifest
            self._bytes += size
            while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.descriptor.size

    def __len__(self) -> int:
        return len(self._entries)


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


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _dedupe(descriptors: list[Descriptor]) -> tuple[Descriptor, ...]:
    seen: set[str] = set()
    out: list[Descriptor] = []
    for d in descriptors:
        if d.digest not in seen:
            seen.add(d.digest)
            out.append(d)
    return tuple(out)

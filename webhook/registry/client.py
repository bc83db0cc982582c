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

import logging
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from webhook.deadline import Deadline
from webhook.errors import (
    ContentMismatch,
    ContentTooLarge,
    NotFound,
    RegistryProtocolError,
)
from webhook.oci.model import (
    MANIFEST_ACCEPT,
    Descriptor,
    Manifest,
    check_descriptor,
    check_digest,
)
from webhook.oci.reference import Reference, validate_digest
from webhook.registry import Limits, Referrers, referrers
from webhook.registry.auth import AuthCache
from webhook.registry.credentials import ANONYMOUS, Credential, Keyring
from webhook.registry.health import HostHealth
from webhook.registry.push import HttpPusher
from webhook.registry.session import Session
from webhook.transport import (
    ByteBudget,
    Transport,
    internal_address,
    opened,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostSettings:
    """How to reach one registry host."""

    plain_http: bool = False  # only when asked for: no TLS at all
    ca_file: str | None = None  # PEM bundle to trust instead of the system roots
    token_realms: tuple[str, ...] = ()  # token-server hosts credentials may go to, beyond its own domain


@dataclass(frozen=True)
class ClientSettings:
    hosts: Mapping[str, HostSettings] = field(default_factory=dict, hash=False)
    default: HostSettings = field(default_factory=HostSettings)
    limits: Limits = field(default_factory=Limits)

    def for_host(self, host: str) -> HostSettings:
        return self.hosts.get(host, self.default)


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
        self.auth = AuthCache()  # authorization per (host, scope, credential), for every session
        self.health = HostHealth(self.limits.unanswered_cooldown_s)
        self._referrers_api: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self.in_flight = ByteBudget(self.limits.max_in_flight_bytes)
        self._tags_seen: OrderedDict[tuple[str, str, str], None] = OrderedDict()  # (host, path, tag)
        self._lock = threading.Lock()
        self._internal_hosts: dict[str, bool] = {}  # configured hosts only: bounded by the config
        # Manifests are content-addressed and checked against their digest before they enter, so
        # a cached one is as good as a fresh fetch; bounded in entries and in bytes.
        self._manifests = ManifestCache(self.limits.manifest_cache_entries, self.limits.manifest_cache_bytes)

    def close(self) -> None:
        self._transport.close()

    def configured_internal(self, host: str) -> bool:
        """Whether ``host`` is a registry the operator configured and it is itself at a loopback,
        private or link-local address: its redirects may then lead to such addresses too."""
        if host not in self.settings.hosts:
            return False
        with self._lock:
            known = self._internal_hosts.get(host)
        if known is None:
            known = _resolves_internal(host)
            with self._lock:
                self._internal_hosts[host] = known
        return known

    def repository(self, ref: Reference, credentials: list[Credential] | None = None) -> HttpRepository:
        """A repository handle; credentials default to the keyring's answer for the reference."""
        creds = credentials if credentials is not None else self.keyring.lookup(ref.domain, ref.path)
        return HttpRepository(
            self, Session(self, ref.api_host, ref.path, tuple(creds) or (ANONYMOUS,), ref.name)
        )

    def pusher(self, ref: Reference, credentials: list[Credential] | None = None) -> HttpPusher:
        """A handle that pushes into the repository (``referee sign``), asking for push rights as
        well as pull; verification never does."""
        creds = credentials if credentials is not None else self.keyring.lookup(ref.domain, ref.path)
        session = Session(self, ref.api_host, ref.path, tuple(creds) or (ANONYMOUS,), ref.name, push=True)
        return HttpPusher(session)

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
            self._referrers_api.move_to_end((host, path))
            while len(self._referrers_api) > self.limits.max_remembered_repositories:
                self._referrers_api.popitem(last=False)


def _resolves_internal(host: str) -> bool:
    name = urlsplit(f"//{host}").hostname or host
    if internal_address(name):
        return True
    try:
        infos = socket.getaddrinfo(name, None)
    except OSError:
        return False
    return any(internal_address(str(info[4][0])) for info in infos)


class HttpRepository:
    """One repository on one registry, reached over HTTP(S)."""

    def __init__(self, client: RegistryClient, session: Session) -> None:
        self._client = client
        self._session = session
        self.host = session.host
        self.path = session.path
        self._display = session.display
        self._limits = client.limits
        self._base = session.base

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
            manifest = self._session.get_manifest(target, what, deadline, expected_digest=None)
            self._client.manifests.put((self.host, self.path, manifest.descriptor.digest), manifest)
            self._client.remember_tag(tag_key)
            return manifest
        # A tag seen before: HEAD, which registries such as Docker Hub do not count against pull
        # limits; the manifest it names is usually still in the digest-checked cache.
        url = f"{self._base}/manifests/{quote(target, safe='')}"
        resp = self._session.send("HEAD", url, what, deadline, {"Accept": MANIFEST_ACCEPT})
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
        return self._session.get_manifest(target, what, deadline, expected_digest=None)

    def fetch_manifest(self, digest: str, deadline: Deadline, expected: Descriptor | None = None) -> Manifest:
        validate_digest(digest)
        what = f"{self._display}@{digest}"
        cap = self._limits.max_manifest_bytes
        if expected is not None and expected.size > cap:
            raise ContentTooLarge(f"{what}: manifest is {expected.size} bytes, over the {cap}-byte cap")
        key = (self.host, self.path, digest)
        manifest = self._client.manifests.get(key)
        if manifest is None:
            manifest = self._session.get_manifest(digest, what, deadline, expected_digest=digest)
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
        resp = self._session.send("GET", f"{self._base}/blobs/{digest}", what, deadline, {}, redirects=True)
        with self._session.room(resp, min(cap, descriptor.size), what, deadline), opened(resp):
            self._session.raise_for_status(resp, what, "blob")
            data = self._session.read(resp, min(cap, descriptor.size), what, deadline)
            if len(data) != descriptor.size:
                raise ContentMismatch(
                    f"{what}: blob is {len(data)} bytes, its descriptor says {descriptor.size}"
                )
            check_digest(data, digest, what)
        return data

    def referrers(self, digest: str, deadline: Deadline, artifact_type: str | None = None) -> Referrers:
        validate_digest(digest)
        known = self._client.referrers_api_known(self.host, self.path)
        if known is not False:
            found = referrers.from_api(self._session, digest, artifact_type, deadline)
            if found is not None:
                self._client.remember_referrers_api(self.host, self.path, True)
                return found
            self._client.remember_referrers_api(self.host, self.path, False)
        return referrers.from_tag(self._session, digest, artifact_type, deadline, self._fetch_expected)

    def _fetch_expected(self, digest: str, deadline: Deadline, expected: Descriptor) -> Manifest:
        return self.fetch_manifest(digest, deadline, expected=expected)


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

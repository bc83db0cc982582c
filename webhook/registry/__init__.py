"""The one seam through which Referee reads registries.

A ``Repository`` is one image repository, reached over the OCI distribution API
(``webhook.registry.client``) or read from an OCI image layout directory
(``webhook.registry.layout``). Both give the same guarantees: every manifest and blob is
size-capped before it is read and hashed after; every failure is a typed ``RefereeError``
(``VerificationFailed`` when the content is bad or missing, ``VerificationInconclusive`` when it
could not be read).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from webhook.deadline import Deadline
from webhook.oci.model import Descriptor, Manifest
from webhook.oci.reference import Reference
from webhook.registry.credentials import Credential, Keyring

ReferrersSource = Literal["referrers-api", "tag-schema", "oci-layout"]


@dataclass(frozen=True)
class Limits:
    """Caps on everything read from a registry. Units are in the names."""

    max_manifest_bytes: int = 4 << 20  # notation's cap on signature manifests
    max_index_bytes: int = 4 << 20  # one referrers page or tag-schema index
    max_blob_bytes: int = 32 << 20  # notation's cap on signature envelopes
    max_referrer_pages: int = 16
    max_referrers: int = 1000
    max_retries: int = 3  # on 429 and 502/503/504
    max_retry_wait_s: float = 10.0
    request_timeout_s: float = 10.0  # per request, and never beyond the caller's deadline
    max_redirects: int = 5
    connections_per_host: int = 20  # kept open for reuse; as many as the gate verifies at once per host
    unanswered_cooldown_s: float = 5.0  # a registry that timed out is not asked again for this long
    manifest_cache_entries: int = 1024  # digest-checked manifests kept in memory
    manifest_cache_bytes: int = 16 << 20  # counted as their size; parsed, about twice that
    max_in_flight_bytes: int = 64 << 20  # what every download of a worker may hold at once
    max_remembered_repositories: int = 4096  # referrers-API capability, per (host, repository)


@dataclass(frozen=True)
class Referrers:
    """Artifacts whose ``subject`` is a given digest, and how they were found."""

    subject: str
    descriptors: tuple[Descriptor, ...]
    source: ReferrersSource


class Repository(Protocol):
    """One repository: the four operations verification needs."""

    @property
    def display_name(self) -> str:
        """How messages name this repository (``registry/path`` or ``oci-layout:PATH``)."""
        ...

    def resolve(self, target: str, deadline: Deadline) -> Manifest:
        """Resolve a tag or digest to the manifest it names, its bytes checked against the digest."""
        ...

    def fetch_manifest(self, digest: str, deadline: Deadline, expected: Descriptor | None = None) -> Manifest:
        """Fetch a manifest by digest; when ``expected`` is given its media type and size must agree."""
        ...

    def fetch_blob(self, descriptor: Descriptor, deadline: Deadline, max_bytes: int | None = None) -> bytes:
        """Fetch a blob, no larger than ``max_bytes`` (default ``Limits.max_blob_bytes``), digest-checked."""
        ...

    def referrers(self, digest: str, deadline: Deadline, artifact_type: str | None = None) -> Referrers:
        """List the artifacts that refer to ``digest``, optionally only those of ``artifact_type``."""
        ...


class Pusher(Protocol):
    """Pushing into one repository (``referee sign``): the push protocol, apart from reading."""

    def push_blob(self, data: bytes, media_type: str, deadline: Deadline) -> Descriptor:
        """Upload a blob unless the registry already has it; its descriptor."""
        ...

    def push_manifest(self, data: bytes, media_type: str, reference: str, deadline: Deadline) -> bool:
        """PUT a manifest under a tag or digest; True when the registry indexed its subject."""
        ...

    def push_referrer(self, manifest: bytes, subject: str, deadline: Deadline) -> Descriptor:
        """Push a manifest with a ``subject`` so that it is found as a referrer of it."""
        ...


class Registry(Protocol):
    """Where repositories come from: the HTTP client (``RegistryClient``) or, in tests, a fake."""

    @property
    def keyring(self) -> Keyring:
        """The configured credentials, when no credentials files are given."""
        ...

    def repository(self, ref: Reference, credentials: list[Credential] | None = None) -> Repository:
        """The repository ``ref`` names, read with ``credentials`` (default: the keyring's)."""
        ...

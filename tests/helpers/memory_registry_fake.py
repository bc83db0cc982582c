"""An in-memory registry, for tests of the gate at a fixed time without a network (fake: it keeps
manifests and blobs in dictionaries; the digest and size checks are the real ``webhook.oci.model`` ones)."""

from __future__ import annotations

from dataclasses import dataclass, field

from webhook.deadline import Deadline
from webhook.errors import NotFound
from webhook.oci.model import (
    OCI_MANIFEST,
    Descriptor,
    Manifest,
    check_descriptor,
    check_digest,
    compute_digest,
    parse_manifest,
)
from webhook.oci.reference import Reference
from webhook.registry import Referrers
from webhook.registry.credentials import Credential, Keyring


@dataclass
class MemoryRegistryFake:
    manifests: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # digest -> (media type, bytes)
    blobs: dict[str, bytes] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)  # "repo:tag" -> digest
    referrers_of: dict[str, list[Descriptor]] = field(default_factory=dict)
    keyring: Keyring = field(default_factory=Keyring)
    reads: int = 0

    def push_manifest(self, data: bytes, media_type: str = OCI_MANIFEST, *, tag: str = "") -> Descriptor:
        digest = compute_digest(data)
        self.manifests[digest] = (media_type, data)
        if tag:
            self.tags[tag] = digest
        return Descriptor(media_type, digest, len(data))

    def push_blob(self, data: bytes) -> str:
        digest = compute_digest(data)
        self.blobs[digest] = data
        return digest

    def push_referrer(self, subject: str, data: bytes, artifact_type: str) -> Descriptor:
        descriptor = self.push_manifest(data)
        self.referrers_of.setdefault(subject, []).append(
            Descriptor(descriptor.media_type, descriptor.digest, descriptor.size, artifact_type=artifact_type)
        )
        return descriptor

    def repository(self, ref: Reference, credentials: list[Credential] | None = None) -> _MemoryRepository:
        return _MemoryRepository(self, ref)


@dataclass
class _MemoryRepository:
    registry: MemoryRegistryFake
    ref: Reference

    @property
    def display_name(self) -> str:
        return self.ref.name

    def resolve(self, target: str, deadline: Deadline) -> Manifest:
        digest = target if ":" in target else self.registry.tags.get(f"{self.ref.path}:{target}")
        if digest is None:
            raise NotFound(f"{self.ref.name}:{target}: no such tag")
        return self.fetch_manifest(digest, deadline)

    def fetch_manifest(self, digest: str, deadline: Deadline, expected: Descriptor | None = None) -> Manifest:
        self.registry.reads += 1
        if digest not in self.registry.manifests:
            raise NotFound(f"{self.ref.name}@{digest}: manifest not found")
        media_type, data = self.registry.manifests[digest]
        check_digest(data, digest, f"{self.ref.name}@{digest}")
        manifest = parse_manifest(data, media_type, digest, f"{self.ref.name}@{digest}")
        if expected is not None:
            check_descriptor(manifest, expected, f"{self.ref.name}@{digest}")
        return manifest

    def fetch_blob(self, descriptor: Descriptor, deadline: Deadline, max_bytes: int | None = None) -> bytes:
        self.registry.reads += 1
        data = self.registry.blobs.get(descriptor.digest)
        if data is None:
            raise NotFound(f"{self.ref.name}@{descriptor.digest}: blob not found")
        check_digest(data, descriptor.digest, f"{self.ref.name}@{descriptor.digest}")
        return data

    def referrers(self, digest: str, deadline: Deadline, artifact_type: str | None = None) -> Referrers:
        self.registry.reads += 1
        found = [
            d for d in self.registry.referrers_of.get(digest, []) if artifact_type in (None, d.artifact_type)
        ]
        return Referrers(digest, tuple(found), "referrers-api")

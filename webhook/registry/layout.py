"""The registry seam over an OCI image layout directory (``oci-layout``, ``index.json``, ``blobs/``).

Same guarantees as the HTTP client: reads are size-capped and digest-checked. Tags are the
``org.opencontainers.image.ref.name`` annotations of ``index.json``; referrers are the manifests
reachable from ``index.json`` whose ``subject`` is the digest (as oras and notation find them).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from webhook.deadline import Deadline
from webhook.errors import ContentMismatch, ContentTooLarge, InvalidReference, NotFound, RegistryProtocolError
from webhook.oci import (
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
from webhook.reference import validate_digest, validate_tag
from webhook.registry import Limits, Referrers

REF_NAME = "org.opencontainers.image.ref.name"


def split_layout_reference(text: str) -> tuple[Path, str]:
    """Split ``PATH:TAG`` or ``PATH@DIGEST`` (the forms notation and oras accept)."""
    if "@" in text:
        path, _, digest = text.rpartition("@")
        if not path:
            raise InvalidReference(f"invalid OCI layout reference {text!r}: expected PATH@DIGEST")
        return Path(path), validate_digest(digest)
    path, sep, tag = text.rpartition(":")
    if not sep or not path or "/" in tag:
        raise InvalidReference(f"invalid OCI layout reference {text!r}: expected PATH:TAG or PATH@DIGEST")
    return Path(path), validate_tag(tag)


class LayoutRepository:
    """One OCI image layout directory, read-only."""

    def __init__(self, root: Path, limits: Limits | None = None) -> None:
        self.root = root
        self._limits = limits or Limits()
        layout_file = root / "oci-layout"
        if not layout_file.is_file():
            raise NotFound(f"{root}: not an OCI image layout (no oci-layout file)")
        try:
            version = json.loads(self._read_file(layout_file, 4096, "oci-layout")).get("imageLayoutVersion")
        except (ValueError, AttributeError):
            version = None
        if not isinstance(version, str):
            raise RegistryProtocolError(f"{root}/oci-layout: no imageLayoutVersion")

    @property
    def display_name(self) -> str:
        return f"oci-layout:{self.root}"

    # --- the seam ---------------------------------------------------------------------------------

    def resolve(self, target: str, deadline: Deadline) -> Manifest:
        if ":" in target:
            return self.fetch_manifest(validate_digest(target), deadline)
        for entry in self._index().manifests:
            if entry.annotations.get(REF_NAME) == target:
                return self.fetch_manifest(entry.digest, deadline, expected=entry)
        raise NotFound(f"{self.display_name}:{target}: no such tag in index.json")

    def fetch_manifest(self, digest: str, deadline: Deadline, expected: Descriptor | None = None) -> Manifest:
        deadline.check(f"{self.display_name}@{digest}")
        what = f"{self.display_name}@{digest}"
        data = self._read_blob(digest, self._limits.max_manifest_bytes, what)
        media_type = expected.media_type if expected is not None else _sniff_media_type(data, what)
        manifest = parse_manifest(data, media_type, digest, what)
        if expected is not None:
            check_descriptor(manifest, expected, what)
        return manifest

    def fetch_blob(self, descriptor: Descriptor, deadline: Deadline, max_bytes: int | None = None) -> bytes:
        deadline.check(f"{self.display_name}@{descriptor.digest}")
        cap = self._limits.max_blob_bytes if max_bytes is None else max_bytes
        what = f"{self.display_name}@{descriptor.digest} (blob)"
        if descriptor.size > cap:
            raise ContentTooLarge(f"{what}: blob is {descriptor.size} bytes, over the {cap}-byte cap")
        data = self._read_blob(descriptor.digest, cap, what)
        if len(data) != descriptor.size:
            raise ContentMismatch(f"{what}: blob is {len(data)} bytes, its descriptor says {descriptor.size}")
        return data

    def referrers(self, digest: str, deadline: Deadline, artifact_type: str | None = None) -> Referrers:
        validate_digest(digest)
        found: list[Descriptor] = []
        for manifest in self._all_manifests(deadline):
            if manifest.subject is None or manifest.subject.digest != digest:
                continue
            entry = manifest.as_referrer()
            if artifact_type is None or entry.artifact_type == artifact_type:
                found.append(entry)
            if len(found) > self._limits.max_referrers:
                raise ContentTooLarge(
                    f"{self.display_name}@{digest}: more than {self._limits.max_referrers} referrers"
                )
        return Referrers(digest, tuple(found), "oci-layout")

    # --- internals --------------------------------------------------------------------------------

    def _index(self) -> Manifest:
        data = self._read_file(self.root / "index.json", self._limits.max_index_bytes, "index.json")
        return parse_manifest(
            data,
            OCI_INDEX,
            compute_digest(data),
            f"{self.display_name}/index.json",
            max_entries=self._limits.max_referrers * 10,
        )

    def _all_manifests(self, deadline: Deadline) -> list[Manifest]:
        """Every manifest reachable from index.json, each read once, in a bounded walk."""
        budget = self._limits.max_referrers * 10
        pending = list(self._index().manifests)
        seen: set[str] = set()
        out: list[Manifest] = []
        while pending:
            entry = pending.pop(0)
            if entry.digest in seen or entry.media_type not in MANIFEST_TYPES:
                continue
            seen.add(entry.digest)
            if len(seen) > budget:
                raise ContentTooLarge(f"{self.display_name}: more than {budget} manifests")
            manifest = self.fetch_manifest(entry.digest, deadline, expected=entry)
            out.append(manifest)
            if manifest.is_index:
                pending.extend(manifest.manifests)
        return out

    def _read_blob(self, digest: str, cap: int, what: str) -> bytes:
        algorithm, encoded = validate_digest(digest).split(":", 1)
        path = self.root / "blobs" / algorithm / encoded
        data = self._read_file(path, cap, what)
        check_digest(data, digest, what)
        return data

    def _read_file(self, path: Path, cap: int, what: str) -> bytes:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            raise NotFound(f"{what}: {path} does not exist") from None
        except OSError as exc:
            raise NotFound(f"{what}: cannot open {path} ({exc.strerror})") from None
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise RegistryProtocolError(f"{what}: {path} is not a regular file")
            if info.st_size > cap:
                raise ContentTooLarge(f"{what}: {info.st_size} bytes, over the {cap}-byte cap")
            data = fh.read(cap + 1)
        if len(data) > cap:
            raise ContentTooLarge(f"{what}: over the {cap}-byte cap")
        return data


def _sniff_media_type(data: bytes, what: str) -> str:
    """The media type of a manifest found without a descriptor: its ``mediaType`` field, else its shape."""
    try:
        doc = json.loads(data)
    except ValueError:
        raise RegistryProtocolError(f"{what}: not a JSON manifest") from None
    if not isinstance(doc, dict):
        raise RegistryProtocolError(f"{what}: not a JSON manifest")
    media_type = doc.get("mediaType")
    if isinstance(media_type, str) and media_type:
        return media_type
    return OCI_INDEX if "manifests" in doc else OCI_MANIFEST

"""The registry seam over an OCI image layout directory (``oci-layout``, ``index.json``, ``blobs/``).

Same guarantees as the HTTP client: reads are size-capped and digest-checked. Tags are the
``org.opencontainers.image.ref.name`` annotations of ``index.json``; a tag given to two different
manifests is ambiguous and refused. Referrers are the manifests reachable from ``index.json``
(nested indexes included) whose ``subject`` is the image's descriptor: media type, digest and size,
as oras-go and notation match it. The image-layout specification lets blobs be missing, so only
what the verification needs is read and checked: an entry whose blob is missing or whose manifest
cannot be read is passed over while looking for referrers (it cannot be one), and a referrer is
parsed in full only when the verification fetches it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from types import MappingProxyType
from typing import Any

from webhook.deadline import Deadline
from webhook.errors import ContentMismatch, ContentTooLarge, InvalidReference, NotFound, RegistryProtocolError
from webhook.oci.model import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_ARTIFACT_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Manifest,
    check_descriptor,
    check_digest,
    load_json,
    parse_descriptor,
    parse_manifest,
)
from webhook.oci.reference import validate_digest, validate_tag
from webhook.registry import Limits, Referrers

REF_NAME = "org.opencontainers.image.ref.name"
# What oras-go counts as a referrer in a layout (registry.Referrers): no Docker manifest types.
_REFERRER_TYPES = (OCI_MANIFEST, OCI_INDEX, OCI_ARTIFACT_MANIFEST)


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
        doc = load_json(self._read_file(layout_file, 4096, "oci-layout"), f"{root}/oci-layout")
        version = doc.get("imageLayoutVersion") if isinstance(doc, dict) else None
        if not isinstance(version, str):
            raise RegistryProtocolError(f"{root}/oci-layout: no imageLayoutVersion")
        self._resolved: dict[str, Descriptor] = {}  # digest -> the descriptor it resolved to

    @property
    def display_name(self) -> str:
        return f"oci-layout:{self.root}"

    # --- the seam ---------------------------------------------------------------------------------

    def resolve(self, target: str, deadline: Deadline) -> Manifest:
        """A tag, or a digest, to its manifest; the descriptor index.json gives it is the image's."""
        entries = self._entries()
        if ":" in target:
            digest = validate_digest(target)
            entry = next((e for e in entries if e.digest == digest), None)
            manifest = self.fetch_manifest(digest, deadline, expected=entry)
        else:
            tagged = {e.digest: e for e in entries if e.annotations.get(REF_NAME) == target}
            if not tagged:
                raise NotFound(f"{self.display_name}:{target}: no such tag in index.json")
            if len(tagged) > 1:
                raise RegistryProtocolError(
                    f"{self.display_name}:{target}: index.json gives this tag to {len(tagged)} different "
                    f"manifests ({', '.join(sorted(tagged))}), so what it names is ambiguous"
                )
            entry = next(iter(tagged.values()))
            manifest = self.fetch_manifest(entry.digest, deadline, expected=entry)
        self._resolved[manifest.descriptor.digest] = manifest.descriptor
        return manifest

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
        subject = self._resolved.get(digest) or self.resolve(digest, deadline).descriptor
        found: list[Descriptor] = []
        for entry, body in self._reachable(deadline):
            referrer = _as_referrer(entry, body, subject)
            if referrer is None or (artifact_type is not None and referrer.artifact_type != artifact_type):
                continue
            found.append(referrer)
            if len(found) > self._limits.max_referrers:
                raise ContentTooLarge(
                    f"{self.display_name}@{digest}: more than {self._limits.max_referrers} referrers"
                )
        return Referrers(digest, tuple(found), "oci-layout")

    # --- internals --------------------------------------------------------------------------------

    def _entries(self) -> list[Descriptor]:
        """The descriptors of index.json (image-layout "index.json" is an image index). An entry that
        is not a valid descriptor is passed over: nothing can be found through it."""
        what = f"{self.display_name}/index.json"
        data = self._read_file(self.root / "index.json", self._limits.max_index_bytes, "index.json")
        body = load_json(data, what)
        if not isinstance(body, dict) or body.get("schemaVersion") != 2:
            raise RegistryProtocolError(f"{what}: not an image index with schemaVersion 2")
        if body.get("mediaType", OCI_INDEX) != OCI_INDEX:
            raise RegistryProtocolError(f"{what}: mediaType is {body.get('mediaType')!r}, not {OCI_INDEX}")
        entries = body.get("manifests")
        if not isinstance(entries, list):
            raise RegistryProtocolError(f"{what}: manifests is not a list")
        if len(entries) > self._limits.max_referrers * 10:
            raise ContentTooLarge(f"{what}: more than {self._limits.max_referrers * 10} entries")
        return _descriptors(entries, what)

    def _reachable(self, deadline: Deadline) -> list[tuple[Descriptor, dict[str, Any]]]:
        """Every manifest reachable from index.json that can be read (a digest-checked JSON object of
        the size its descriptor says), each once, in a bounded walk into nested indexes."""
        budget = self._limits.max_referrers * 10
        pending = self._entries()
        seen: set[str] = set()
        out: list[tuple[Descriptor, dict[str, Any]]] = []
        while pending:
            entry = pending.pop(0)
            if entry.digest in seen or entry.media_type not in MANIFEST_TYPES:
                continue
            seen.add(entry.digest)
            if len(seen) > budget:
                raise ContentTooLarge(f"{self.display_name}: more than {budget} manifests")
            what = f"{self.display_name}@{entry.digest}"
            deadline.check(what)
            try:
                data = self._read_blob(entry.digest, self._limits.max_manifest_bytes, what)
                body = load_json(data, what)
            except (NotFound, ContentMismatch, ContentTooLarge, RegistryProtocolError):
                continue  # missing or unreadable: not a referrer anyone could verify
            if not isinstance(body, dict) or len(data) != entry.size:
                continue
            out.append((entry, body))
            if entry.media_type in INDEX_TYPES and isinstance(body.get("manifests"), list):
                pending.extend(_descriptors(body["manifests"], what))
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


def _descriptors(entries: list[Any], what: str) -> list[Descriptor]:
    out = []
    for i, item in enumerate(entries):
        try:
            out.append(parse_descriptor(item, f"{what} manifests[{i}]"))
        except RegistryProtocolError:
            continue
    return out


def _as_referrer(entry: Descriptor, body: dict[str, Any], subject: Descriptor) -> Descriptor | None:
    """``entry`` as a referrers-index entry when its manifest's ``subject`` is exactly ``subject``
    (oras-go content.Equal: media type, digest and size), else ``None``."""
    link = body.get("subject")
    if entry.media_type not in _REFERRER_TYPES or not isinstance(link, dict):
        return None
    size = link.get("size")
    if type(size) is not int or (link.get("mediaType"), link.get("digest"), size) != (
        subject.media_type,
        subject.digest,
        subject.size,
    ):
        return None
    # Distribution-spec "Listing Referrers": artifactType, else (image manifests) config.mediaType.
    artifact_type = body.get("artifactType")
    config = body.get("config")
    if not (isinstance(artifact_type, str) and artifact_type) and entry.media_type == OCI_MANIFEST:
        artifact_type = config.get("mediaType") if isinstance(config, dict) else None
    annotations = body.get("annotations")
    if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
        annotations = {}
    return Descriptor(
        media_type=entry.media_type,
        digest=entry.digest,
        size=entry.size,
        artifact_type=artifact_type if isinstance(artifact_type, str) and artifact_type else None,
        annotations=MappingProxyType(dict(annotations)),
    )


def _sniff_media_type(data: bytes, what: str) -> str:
    """The media type of a manifest found without a descriptor: its ``mediaType`` field, else its shape."""
    doc = load_json(data, what)
    if not isinstance(doc, dict):
        raise RegistryProtocolError(f"{what}: not a JSON manifest")
    media_type = doc.get("mediaType")
    if isinstance(media_type, str) and media_type:
        return media_type
    return OCI_INDEX if "manifests" in doc else OCI_MANIFEST

"""OCI data models: media types, descriptors, manifests and indexes, parsed from untrusted JSON.

Pure: bytes in, frozen dataclasses out, ``RegistryProtocolError`` (or ``ContentMismatch``) when the
JSON does not follow the OCI image specification. Nothing here trusts a registry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from webhook import strictjson
from webhook.errors import ContentMismatch, InvalidReference, RegistryProtocolError
from webhook.oci.reference import validate_digest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
# Withdrawn from image-spec before 1.1.0, but early Notary signatures were pushed in it.
OCI_ARTIFACT_MANIFEST = "application/vnd.oci.artifact.manifest.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

NOTARY_SIGNATURE = "application/vnd.cncf.notary.signature"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST, OCI_ARTIFACT_MANIFEST, *INDEX_TYPES})
# Sent in Accept on every manifest request: a Docker registry that does not see the type it stores
# in Accept rewrites the manifest (and so its digest), or refuses it.
MANIFEST_ACCEPT = ", ".join(
    [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_ARTIFACT_MANIFEST]
)

_EMPTY: Mapping[str, str] = MappingProxyType({})

# Member names the image specification defines (manifest.md, image-index.md, descriptor.md). A member
# that differs from one of them only by letter case is what Go-based tools (oras, notation,
# registries) read as that member and a reader comparing exactly ignores: refused.
MANIFEST_MEMBERS = (
    "schemaVersion", "mediaType", "artifactType", "config", "layers", "blobs", "manifests", "subject",
    "annotations",
)  # fmt: skip
DESCRIPTOR_MEMBERS = (
    "mediaType", "digest", "size", "urls", "annotations", "data", "platform", "artifactType",
)  # fmt: skip


def compute_digest(data: bytes, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    h.update(data)
    return f"{algorithm}:{h.hexdigest()}"


def check_digest(data: bytes, digest: str, what: str) -> None:
    """Raise ``ContentMismatch`` unless ``data`` hashes to ``digest``."""
    algorithm = digest.split(":", 1)[0]
    actual = compute_digest(data, algorithm)
    if actual != digest:
        raise ContentMismatch(f"{what}: content hashes to {actual}, not the requested {digest}")


PLATFORM_MEMBERS = ("architecture", "os", "os.version", "os.features", "variant", "features")


@dataclass(frozen=True)
class Platform:
    """What an index entry says it runs on (image-index.md ``platform``): ``linux/arm64/v8``."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    artifact_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=lambda: _EMPTY, hash=False)
    # Index entries only; not part of what a descriptor is compared on (media type, digest, size).
    platform: Platform | None = field(default=None, compare=False, hash=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True)
class Manifest:
    """An image manifest, image index, Docker manifest (list) or legacy artifact manifest.

    ``descriptor`` describes the bytes themselves (their media type, digest and size); ``blobs``
    are ``layers`` of an image manifest or ``blobs`` of an artifact manifest; ``manifests`` are the
    entries of an index.
    """

    descriptor: Descriptor
    raw: bytes = field(repr=False)
    artifact_type: str | None
    config: Descriptor | None
    blobs: tuple[Descriptor, ...]
    manifests: tuple[Descriptor, ...]
    subject: Descriptor | None
    annotations: Mapping[str, str] = field(default_factory=lambda: _EMPTY, hash=False)

    @property
    def media_type(self) -> str:
        return self.descriptor.media_type

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    @property
    def effective_artifact_type(self) -> str | None:
        """The artifact type the referrers API reports: ``artifactType``, else the config media type."""
        if self.artifact_type:
            return self.artifact_type
        if self.config is not None and self.media_type == OCI_MANIFEST:
            return self.config.media_type
        return None

    def as_referrer(self) -> Descriptor:
        """This manifest as an entry of a referrers index."""
        return Descriptor(
            media_type=self.media_type,
            digest=self.descriptor.digest,
            size=self.descriptor.size,
            artifact_type=self.effective_artifact_type,
            annotations=self.annotations,
        )


def _fail(what: str, problem: str) -> RegistryProtocolError:
    return RegistryProtocolError(f"{what}: {problem}")


def _annotations(value: Any, what: str) -> Mapping[str, str]:
    if value is None:
        return _EMPTY
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _fail(what, "annotations must be an object of strings")
    return MappingProxyType(dict(value))


def _names(obj: dict[str, Any], defined: tuple[str, ...], what: str) -> None:
    try:
        strictjson.check_names(obj, defined, what)
    except strictjson.JSONError as exc:
        raise RegistryProtocolError(str(exc)) from None


def load_json(raw: bytes, what: str) -> Any:
    """Untrusted JSON (a manifest, an index, a referrers answer), read strictly (webhook.strictjson)."""
    try:
        return strictjson.loads(raw)
    except strictjson.JSONError as exc:
        raise _fail(what, f"not valid JSON: {exc}") from None


def parse_descriptor(value: Any, what: str) -> Descriptor:
    if not isinstance(value, dict):
        raise _fail(what, "descriptor is not a JSON object")
    _names(value, DESCRIPTOR_MEMBERS, f"{what}: the descriptor")
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise _fail(what, "descriptor has no mediaType")
    if not isinstance(digest, str):
        raise _fail(what, "descriptor has no digest")
    try:
        validate_digest(digest)
    except InvalidReference as exc:
        raise _fail(what, f"descriptor {exc}") from None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _fail(what, f"descriptor {digest} has an invalid size {size!r}")
    artifact_type = value.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _fail(what, f"descriptor {digest} has a non-string artifactType")
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        artifact_type=artifact_type or None,
        annotations=_annotations(value.get("annotations"), what),
        platform=_platform(value.get("platform"), f"{what}: descriptor {digest}"),
    )


def _platform(value: Any, what: str) -> Platform | None:
    # Image-index specification, "platform": an object whose architecture and os are strings, with an
    # optional variant string; what the kubelet chooses a manifest by. Types are checked as Go-based
    # tools check them; an empty os or architecture is kept (it matches no platform a policy names).
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _fail(what, "platform is not a JSON object")
    _names(value, PLATFORM_MEMBERS, f"{what}: platform")
    os_name, architecture, variant = value.get("os"), value.get("architecture"), value.get("variant", "")
    if not isinstance(os_name, str) or not isinstance(architecture, str) or not isinstance(variant, str):
        raise _fail(what, "platform os, architecture and variant must be strings")
    return Platform(os_name, architecture, variant)


def _descriptor_list(value: Any, what: str, key: str, max_entries: int) -> tuple[Descriptor, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _fail(what, f"{key} is not a list")
    if len(value) > max_entries:
        raise _fail(what, f"{key} has {len(value)} entries, more than the limit of {max_entries}")
    return tuple(parse_descriptor(item, f"{what} {key}[{i}]") for i, item in enumerate(value))


def parse_manifest(
    raw: bytes, media_type: str, digest: str, what: str, *, max_entries: int = 10_000
) -> Manifest:
    """Parse manifest bytes that were already checked against ``digest``.

    ``media_type`` is what the registry's Content-Type said; a ``mediaType`` field in the body that
    differs from it is rejected, as the distribution specification asks.
    """
    body = load_json(raw, what)
    if not isinstance(body, dict):
        raise _fail(what, "manifest is not a JSON object")
    _names(body, MANIFEST_MEMBERS, f"{what}: the manifest")
    body_type = body.get("mediaType")
    if body_type is not None and body_type != media_type:
        raise ContentMismatch(f"{what}: Content-Type says {media_type} but the manifest says {body_type}")
    if media_type not in MANIFEST_TYPES:
        raise ContentMismatch(f"{what}: unsupported manifest media type {media_type!r}")
    if media_type != OCI_ARTIFACT_MANIFEST and body.get("schemaVersion") != 2:
        raise _fail(what, f"schemaVersion is {body.get('schemaVersion')!r}, expected 2")
    artifact_type = body.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _fail(what, "artifactType is not a string")
    config = None
    if media_type in (OCI_MANIFEST, DOCKER_MANIFEST):
        if "config" not in body:
            raise _fail(what, "image manifest has no config")
        config = parse_descriptor(body["config"], f"{what} config")
    blobs_key = "blobs" if media_type == OCI_ARTIFACT_MANIFEST else "layers"
    blobs = _descriptor_list(body.get(blobs_key), what, blobs_key, max_entries)
    manifests: tuple[Descriptor, ...] = ()
    if media_type in INDEX_TYPES:
        if "manifests" not in body:
            raise _fail(what, "index has no manifests")
        manifests = _descriptor_list(body["manifests"], what, "manifests", max_entries)
    subject = (
        parse_descriptor(body["subject"], f"{what} subject") if body.get("subject") is not None else None
    )
    return Manifest(
        descriptor=Descriptor(media_type=media_type, digest=digest, size=len(raw)),
        raw=raw,
        artifact_type=artifact_type or None,
        config=config,
        blobs=blobs,
        manifests=manifests,
        subject=subject,
        annotations=_annotations(body.get("annotations"), what),
    )


def check_descriptor(manifest: Manifest, expected: Descriptor, what: str) -> None:
    """Raise ``ContentMismatch`` unless the manifest's size and media type are what its descriptor says."""
    size, media_type = manifest.descriptor.size, manifest.media_type
    if expected.size != size:
        raise ContentMismatch(f"{what}: manifest is {size} bytes, its descriptor says {expected.size}")
    if expected.media_type != media_type:
        raise ContentMismatch(f"{what}: manifest is {media_type}, its descriptor says {expected.media_type}")


def is_notary_signature(manifest: Manifest) -> bool:
    """True for a Notary Project signature manifest in any shape notation accepts.

    * image manifest with ``artifactType: application/vnd.cncf.notary.signature`` and the empty
      config (image-spec 1.1 form);
    * image manifest without ``artifactType`` whose ``config.mediaType`` is that type (1.0 form);
    * the withdrawn OCI artifact manifest with that ``artifactType`` (Notary 1.0 release candidates).
    """
    if manifest.media_type == OCI_MANIFEST:
        assert manifest.config is not None
        if manifest.artifact_type is not None:
            return manifest.artifact_type == NOTARY_SIGNATURE and manifest.config.media_type == OCI_EMPTY
        return manifest.config.media_type == NOTARY_SIGNATURE
    if manifest.media_type == OCI_ARTIFACT_MANIFEST:
        return manifest.artifact_type == NOTARY_SIGNATURE
    return False

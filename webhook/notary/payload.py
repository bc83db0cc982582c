"""The Notary Project signature payload: ``{"targetArtifact": <OCI descriptor>}``.

Notary signature specification, "Payload": the payload (media type
``application/vnd.cncf.notary.payload.v1+json``) is a JSON object whose ``targetArtifact`` is an OCI
descriptor (image-spec "Descriptor") of the signed artifact, with ``mediaType``, ``digest`` and
``size``, and optionally ``annotations`` and the other descriptor fields.

The payload is signed bytes, so it must mean one thing to every verifier: it is parsed with
``webhook.strictjson`` (no duplicate members, no member that differs from a defined one only by
letter case), and every descriptor field that is present must have the type the image
specification gives it, as notation's reader requires. Pure.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from webhook import strictjson

PAYLOAD_MEMBERS = ("targetArtifact",)
DESCRIPTOR_MEMBERS = (
    "mediaType", "digest", "size", "urls", "annotations", "data", "platform", "artifactType",
)  # fmt: skip
PLATFORM_MEMBERS = ("architecture", "os", "os.version", "os.features", "variant")
_INT64_MAX = (1 << 63) - 1


class PayloadError(ValueError):
    """The payload is not a Notary payload, or one that verifiers could read differently."""


@dataclass(frozen=True)
class TargetArtifact:
    """The signed artifact's descriptor as the payload states it (absent fields are empty)."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)


def parse_payload(data: bytes) -> TargetArtifact:
    try:
        doc = strictjson.loads(data)
    except strictjson.JSONError as exc:
        raise PayloadError(f"the payload is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise PayloadError('the payload is not a JSON object {"targetArtifact": <descriptor>}')
    _names(doc, PAYLOAD_MEMBERS, "the payload")
    artifact = doc.get("targetArtifact")
    if not isinstance(artifact, dict):
        raise PayloadError("the payload's targetArtifact is missing or not a JSON object")
    _names(artifact, DESCRIPTOR_MEMBERS, "the payload's targetArtifact")
    # Image-spec "Descriptor": the type of each field. null reads as the field's empty value.
    media_type = _string(artifact.get("mediaType"), "mediaType")
    digest = _string(artifact.get("digest"), "digest")
    size = artifact.get("size")
    if size is None:
        size = 0
    elif isinstance(size, bool) or not isinstance(size, int):
        raise PayloadError("the payload's targetArtifact.size is not an integer")
    elif not -_INT64_MAX - 1 <= size <= _INT64_MAX:
        raise PayloadError("the payload's targetArtifact.size is outside the range of a 64-bit integer")
    _strings(artifact.get("urls"), "urls")
    annotations = _annotations(artifact.get("annotations"))
    _base64(artifact.get("data"))
    _platform(artifact.get("platform"))
    _string(artifact.get("artifactType"), "artifactType")
    return TargetArtifact(media_type, digest, size, annotations)


def _names(obj: dict[str, Any], defined: tuple[str, ...], what: str) -> None:
    try:
        strictjson.check_names(obj, defined, what)
    except strictjson.JSONError as exc:
        raise PayloadError(str(exc)) from None


def _string(value: Any, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PayloadError(f"the payload's targetArtifact.{name} is not a string")
    return value


def _strings(value: Any, name: str) -> None:
    if value is None:
        return
    if not isinstance(value, list) or not all(v is None or isinstance(v, str) for v in value):
        raise PayloadError(f"the payload's targetArtifact.{name} is not an array of strings")


def _annotations(value: Any) -> Mapping[str, str]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, dict) or not all(v is None or isinstance(v, str) for v in value.values()):
        raise PayloadError("the payload's targetArtifact.annotations is not an object of strings")
    return MappingProxyType({k: v or "" for k, v in value.items()})


def _base64(value: Any) -> None:
    # RFC 4648 section 4 (standard alphabet, padded); characters outside it, line breaks included,
    # are refused (section 3.3).
    if value is None:
        return
    if not isinstance(value, str):
        raise PayloadError("the payload's targetArtifact.data is not a base64 string")
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise PayloadError("the payload's targetArtifact.data is not standard base64") from None


def _platform(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise PayloadError("the payload's targetArtifact.platform is not a JSON object")
    _names(value, PLATFORM_MEMBERS, "the payload's targetArtifact.platform")
    for name in ("architecture", "os", "os.version", "variant"):
        _string(value.get(name), f"platform.{name}")
    _strings(value.get("os.features"), "platform.os.features")

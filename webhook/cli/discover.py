"""Discovery: an image's digest and the tree of artifacts that refer to it (like ``oras discover``);
for an image index, also each of its manifests (with its platform) and the tree of each.

Works on any ``Repository`` (registry or OCI layout). The walk is bounded in depth and in nodes,
and never visits a digest twice, whatever a registry claims.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from webhook.deadline import Deadline
from webhook.errors import ContentTooLarge
from webhook.oci.model import Descriptor, Manifest
from webhook.registry import ReferrersSource, Repository

MAX_DEPTH = 8
MAX_NODES = 1000
MAX_INDEX_MANIFESTS = 64  # an index's manifests whose referrers are listed


@dataclass(frozen=True)
class ReferrerNode:
    descriptor: Descriptor
    referrers: tuple[ReferrerNode, ...]

    def to_json(self) -> dict[str, Any]:
        d = self.descriptor
        return {
            "digest": d.digest,
            "mediaType": d.media_type,
            "artifactType": d.artifact_type or "",
            "size": d.size,
            "annotations": dict(d.annotations),
            "referrers": [child.to_json() for child in self.referrers],
        }


@dataclass(frozen=True)
class ManifestNode:
    """One manifest of an image index, with the tree of what refers to it."""

    descriptor: Descriptor
    referrers: tuple[ReferrerNode, ...]

    @property
    def platform(self) -> str:
        return str(self.descriptor.platform) if self.descriptor.platform else ""

    def to_json(self) -> dict[str, Any]:
        d = self.descriptor
        return {
            "digest": d.digest,
            "mediaType": d.media_type,
            "platform": self.platform,
            "size": d.size,
            "referrers": [child.to_json() for child in self.referrers],
        }


@dataclass(frozen=True)
class Discovery:
    image: str  # the normalised reference as given
    subject: Manifest
    referrers: tuple[ReferrerNode, ...]
    source: ReferrersSource | None  # how the first level was listed
    manifests: tuple[ManifestNode, ...] = ()  # of an image index

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "image": self.image,
            "digest": self.subject.descriptor.digest,
            "mediaType": self.subject.media_type,
            "referrers": [node.to_json() for node in self.referrers],
        }
        if self.subject.is_index:
            out["manifests"] = [node.to_json() for node in self.manifests]
        return out


def discover(
    repo: Repository,
    image: str,
    target: str,
    deadline: Deadline,
    *,
    artifact_type: str | None = None,
    max_depth: int = MAX_DEPTH,
    max_nodes: int = MAX_NODES,
) -> Discovery:
    """Resolve ``target`` in ``repo`` and walk its referrers (filtered by type at the first level)."""
    subject = repo.resolve(target, deadline)
    visited = {subject.descriptor.digest}
    source: list[ReferrersSource] = []

    def walk(digest: str, depth: int, wanted: str | None) -> tuple[ReferrerNode, ...]:
        found = repo.referrers(digest, deadline, wanted)
        if not source:
            source.append(found.source)
        nodes = []
        for descriptor in found.descriptors:
            if descriptor.digest in visited:
                continue
            visited.add(descriptor.digest)
            if len(visited) > max_nodes:
                raise ContentTooLarge(
                    f"{repo.display_name}: more than {max_nodes} artifacts refer to {image}"
                )
            children = walk(descriptor.digest, depth + 1, None) if depth < max_depth else ()
            nodes.append(ReferrerNode(descriptor, children))
        return tuple(nodes)

    tree = walk(subject.descriptor.digest, 1, artifact_type)
    children = []
    if subject.is_index:
        if len(subject.manifests) > MAX_INDEX_MANIFESTS:
            raise ContentTooLarge(
                f"{repo.display_name}: the index {image} has more than {MAX_INDEX_MANIFESTS} manifests"
            )
        for entry in subject.manifests:
            if entry.digest in visited:
                continue
            visited.add(entry.digest)
            children.append(ManifestNode(entry, walk(entry.digest, 1, artifact_type)))
    return Discovery(
        image=image,
        subject=subject,
        referrers=tree,
        source=source[0] if source else None,
        manifests=tuple(children),
    )


def render_text(result: Discovery) -> str:
    """A tree for people, grouped by artifact type like ``oras discover``."""
    lines = [f"{result.image}", f"  digest: {result.subject.descriptor.digest} ({result.subject.media_type})"]
    if result.source is not None:
        lines.append(f"  referrers found through: {result.source}")

    def emit(nodes: tuple[ReferrerNode, ...], prefix: str) -> None:
        for i, node in enumerate(nodes):
            last = i == len(nodes) - 1
            d = node.descriptor
            lines.append(f"{prefix}{'└── ' if last else '├── '}{d.artifact_type or '(no artifact type)'}")
            inner = prefix + ("    " if last else "│   ")
            lines.append(f"{inner}{d.digest}  {d.size} bytes")
            emit(node.referrers, inner)

    if result.referrers:
        emit(result.referrers, "")
    else:
        lines.append("  no referrers")
    if result.subject.is_index:
        lines.append(f"  manifests of the index: {len(result.manifests)}")
    for child in result.manifests:
        d = child.descriptor
        lines.append(f"{child.platform or '(no platform)'}  {d.digest}  {d.size} bytes")
        if child.referrers:
            emit(child.referrers, "    ")
        else:
            lines.append("    no referrers")
    return "\n".join(lines)

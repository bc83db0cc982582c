"""Finding the artifacts that refer to a digest: the OCI 1.1 referrers API (filtered here when the
registry did not say it filtered; ``Link`` pages followed on the same origin only, a bounded number
of times), or the referrers tag schema (``<alg>-<hex>``) where a registry has no such API."""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import quote, urljoin, urlsplit

from webhook.deadline import Deadline
from webhook.errors import ContentTooLarge, NotFound, RegistryProtocolError
from webhook.oci.model import (
    INDEX_TYPES,
    MANIFEST_ACCEPT,
    MANIFEST_TYPES,
    OCI_INDEX,
    Descriptor,
    Manifest,
    compute_digest,
    parse_manifest,
)
from webhook.registry import Referrers
from webhook.registry.session import JSON_PARSE_FACTOR, Session, error_codes
from webhook.transport import clip, content_type, next_link, opened

log = logging.getLogger(__name__)

FILTERS_APPLIED_HEADER = "OCI-Filters-Applied"
LEGACY_FILTERS_ANNOTATION = "org.opencontainers.referrers.filtersApplied"

# How a tag-schema entry without an artifact type is read: fetch its manifest, digest-checked.
FetchManifest = Callable[[str, Deadline, Descriptor], Manifest]


def from_api(
    session: Session, digest: str, artifact_type: str | None, deadline: Deadline
) -> Referrers | None:
    """The OCI 1.1 referrers API; ``None`` when this registry does not implement it."""
    what = f"{session.display}@{digest} (referrers)"
    url = f"{session.base}/referrers/{digest}"
    if artifact_type:
        url += f"?artifactType={quote(artifact_type, safe='')}"
    origin = urlsplit(url)[:2]
    seen: set[str] = set()
    collected: list[Descriptor] = []
    page_url: str | None = url
    while page_url is not None:
        if page_url in seen:
            raise RegistryProtocolError(
                f"{what}: the registry's Link pages loop back to {clip(page_url, 200)}"
            )
        seen.add(page_url)
        if len(seen) > session.limits.max_referrer_pages:
            raise RegistryProtocolError(
                f"{what}: more than {session.limits.max_referrer_pages} pages of referrers"
            )
        first = len(seen) == 1
        resp = session.send("GET", page_url, what, deadline, {"Accept": OCI_INDEX})
        with session.room(resp, session.limits.max_index_bytes, what, deadline, JSON_PARSE_FACTOR):
            with opened(resp):
                if first and resp.status in (404, 405):
                    body = session.read(resp, 64 * 1024, what, deadline, allow_truncate=True)
                    if "NAME_UNKNOWN" in error_codes(body):
                        raise NotFound(f"{what}: repository {session.display} does not exist")
                    return None  # no referrers API here
                session.raise_for_status(resp, what, "referrers list")
                if content_type(resp) != OCI_INDEX:
                    if first:
                        return None  # a 200 that is not an index: not the referrers API
                    raise RegistryProtocolError(f"{what}: a later referrers page is not an image index")
                body = session.read(resp, session.limits.max_index_bytes, what, deadline)
                applied = resp.headers.get(FILTERS_APPLIED_HEADER, "")
                link = next_link(resp.headers.get("Link"))
            index = parse_manifest(
                body, OCI_INDEX, compute_digest(body), what, max_entries=session.limits.max_referrers
            )
        page = list(index.manifests)
        if artifact_type is not None:
            legacy = index.annotations.get(LEGACY_FILTERS_ANNOTATION, "")
            filtered = "artifactType" in _csv(applied) or "artifactType" in _csv(legacy)
            if not filtered:
                page = [d for d in page if d.artifact_type == artifact_type]
        collected.extend(page)
        _check_count(session, collected, what)
        next_url = urljoin(page_url, link) if link else None
        if next_url is not None and urlsplit(next_url)[:2] != origin:
            raise RegistryProtocolError(
                f"{what}: the registry's Link header points to another origin ({clip(next_url, 200)}); "
                "not followed"
            )
        page_url = next_url
    return Referrers(digest, _dedupe(collected), "referrers-api")


def from_tag(
    session: Session,
    digest: str,
    artifact_type: str | None,
    deadline: Deadline,
    fetch_manifest: FetchManifest,
) -> Referrers:
    """The referrers tag schema: an index tagged ``<alg>-<hex>`` kept up to date by clients."""
    algorithm, encoded = digest.split(":", 1)
    tag = f"{algorithm[:32]}-{encoded[:64]}"
    what = f"{session.display}:{tag} (referrers tag for {digest})"
    url = f"{session.base}/manifests/{tag}"
    resp = session.send("GET", url, what, deadline, {"Accept": MANIFEST_ACCEPT})
    with session.room(resp, session.limits.max_index_bytes, what, deadline, JSON_PARSE_FACTOR):
        with opened(resp):
            if resp.status == 404:
                body = session.read(resp, 64 * 1024, what, deadline, allow_truncate=True)
                if "NAME_UNKNOWN" in error_codes(body):
                    raise NotFound(f"{what}: repository {session.display} does not exist")
                return Referrers(digest, (), "tag-schema")
            session.raise_for_status(resp, what, "referrers tag")
            media_type = content_type(resp)
            body = session.read(resp, session.limits.max_index_bytes, what, deadline)
            header_digest = resp.headers.get("Docker-Content-Digest", "").strip()
        actual = session.check_header_digest(body, header_digest, what)
        if media_type not in INDEX_TYPES:
            log.warning(
                "%s: tag holds %s, not an image index; treating as no referrers", what, clip(media_type, 80)
            )
            return Referrers(digest, (), "tag-schema")
        index = parse_manifest(body, media_type, actual, what, max_entries=session.limits.max_referrers)
    collected = list(index.manifests)
    _check_count(session, collected, what)
    if artifact_type is not None:
        collected = [d for d in collected if _artifact_type_of(d, deadline, fetch_manifest) == artifact_type]
    return Referrers(digest, _dedupe(collected), "tag-schema")


def _artifact_type_of(
    descriptor: Descriptor, deadline: Deadline, fetch_manifest: FetchManifest
) -> str | None:
    """A tag-schema entry's artifact type; older clients omitted it, so read the manifest then."""
    if descriptor.artifact_type or descriptor.media_type not in MANIFEST_TYPES:
        return descriptor.artifact_type
    return fetch_manifest(descriptor.digest, deadline, descriptor).effective_artifact_type


def _check_count(session: Session, collected: list[Descriptor], what: str) -> None:
    if len(collected) > session.limits.max_referrers:
        raise ContentTooLarge(f"{what}: more than {session.limits.max_referrers} referrers")


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

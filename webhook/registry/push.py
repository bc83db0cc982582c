"""Pushing to a registry (``referee sign``): blobs, manifests, and a referrer with the referrers tag
schema index kept up to date where the registry does not index referrers itself."""

from __future__ import annotations

import json
from urllib.parse import quote, urljoin, urlsplit

from webhook.deadline import Deadline
from webhook.errors import NotFound, RegistryProtocolError
from webhook.oci.model import OCI_INDEX, OCI_MANIFEST, Descriptor, compute_digest, parse_manifest
from webhook.registry.session import Session
from webhook.transport import opened


class HttpPusher:
    """Pushes into one repository (a session asked for push rights)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def push_blob(self, data: bytes, media_type: str, deadline: Deadline) -> Descriptor:
        """Upload a blob (monolithic POST then PUT) unless the registry already has it."""
        descriptor = Descriptor(media_type, compute_digest(data), len(data))
        what = f"{self._session.display}@{descriptor.digest} (blob upload)"
        with opened(
            self._session.send("HEAD", f"{self._session.base}/blobs/{descriptor.digest}", what, deadline, {})
        ) as resp:
            if resp.status == 200:
                return descriptor
        with opened(
            self._session.send("POST", f"{self._session.base}/blobs/uploads/", what, deadline, {})
        ) as resp:
            if resp.status != 202:
                self._session.raise_for_status(resp, what, "blob upload")
            location = resp.headers.get("Location", "")
        upload = urljoin(f"{self._session.base}/blobs/uploads/", location)
        if not location or urlsplit(upload)[:2] != urlsplit(self._session.base)[:2]:
            raise RegistryProtocolError(f"{what}: the registry sent an upload location on another origin")
        upload += ("&" if "?" in upload else "?") + f"digest={quote(descriptor.digest, safe='')}"
        headers = {"Content-Type": "application/octet-stream"}
        with opened(self._session.send("PUT", upload, what, deadline, headers, body=data)) as resp:
            if resp.status not in (201, 204):
                self._session.raise_for_status(resp, what, "blob upload")
        return descriptor

    def push_manifest(self, data: bytes, media_type: str, reference: str, deadline: Deadline) -> bool:
        """PUT a manifest under a tag or its digest; True when the registry answered ``OCI-Subject``."""
        what = f"{self._session.display}:{reference} (manifest push)"
        url = f"{self._session.base}/manifests/{quote(reference, safe=':')}"
        with opened(
            self._session.send("PUT", url, what, deadline, {"Content-Type": media_type}, body=data)
        ) as resp:
            if resp.status not in (200, 201):
                self._session.raise_for_status(resp, what, "manifest push")
            return bool(resp.headers.get("OCI-Subject"))

    def push_referrer(self, manifest: bytes, subject: str, deadline: Deadline) -> Descriptor:
        """Push a manifest that has a ``subject``; keep the referrers tag schema index up to date
        when the registry does not index referrers itself (no ``OCI-Subject`` in its answer)."""
        parsed = parse_manifest(
            manifest, OCI_MANIFEST, compute_digest(manifest), f"{self._session.display} (referrer)"
        )
        indexed = self.push_manifest(manifest, OCI_MANIFEST, parsed.descriptor.digest, deadline)
        if not indexed:
            self._add_to_referrers_tag(subject, parsed.as_referrer(), deadline)
        return parsed.descriptor

    def _add_to_referrers_tag(self, subject: str, entry: Descriptor, deadline: Deadline) -> None:
        algorithm, encoded = subject.split(":", 1)
        tag = f"{algorithm[:32]}-{encoded[:64]}"
        try:
            current = self._session.get_manifest(
                tag, f"{self._session.display}:{tag}", deadline, expected_digest=None
            )
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

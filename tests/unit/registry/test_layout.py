"""The OCI layout reader on layouts written byte by byte: what counts as a referrer, and what must not
stop a verification. (Layouts made by the real oras and notation are in tests/integration.)"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from webhook.deadline import Deadline
from webhook.errors import RegistryProtocolError
from webhook.oci.model import NOTARY_SIGNATURE, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST
from webhook.registry.layout import REF_NAME, LayoutRepository


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def compact(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


class Layout:
    """An image (tagged v1) and, optionally, signature manifests, written into ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        config = self.blob(b'{"architecture":"amd64","os":"linux"}')
        self.image = self.manifest({"config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                               "digest": digest(b'{"architecture":"amd64","os":"linux"}'),
                                               "size": config}, "layers": []})  # fmt: skip
        self.entries: list[dict[str, Any]] = [{**self.image, "annotations": {REF_NAME: "v1"}}]

    def blob(self, data: bytes) -> int:
        (self.root / "blobs" / "sha256" / digest(data)[7:]).write_bytes(data)
        return len(data)

    def manifest(self, fields: dict[str, Any], media_type: str = OCI_MANIFEST) -> dict[str, Any]:
        raw = compact({"schemaVersion": 2, "mediaType": media_type, **fields})
        self.blob(raw)
        return {"mediaType": media_type, "digest": digest(raw), "size": len(raw)}

    def signature(self, subject: dict[str, Any], *, listed: bool = True) -> dict[str, Any]:
        envelope = b'{"not":"checked here"}'
        layer = {
            "mediaType": "application/jose+json",
            "digest": digest(envelope),
            "size": self.blob(envelope),
        }
        self.blob(b"{}")
        config = {"mediaType": NOTARY_SIGNATURE, "digest": digest(b"{}"), "size": 2}
        entry = self.manifest({"config": config, "layers": [layer], "subject": subject})
        if listed:
            self.entries.append(entry)
        return entry

    def write(self) -> LayoutRepository:
        (self.root / "index.json").write_bytes(
            compact({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.entries})
        )
        return LayoutRepository(self.root)


def signatures(repo: LayoutRepository, target: str = "v1") -> list[str]:
    deadline = Deadline.after(5)
    image = repo.resolve(target, deadline)
    return [d.digest for d in repo.referrers(image.descriptor.digest, deadline, NOTARY_SIGNATURE).descriptors]


@pytest.fixture()
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path / "layout")


def test_signature_of_the_image_is_a_referrer(layout: Layout) -> None:
    sig = layout.signature(layout.image)
    assert signatures(layout.write()) == [sig["digest"]]
    assert signatures(layout.write(), layout.image["digest"]) == [sig["digest"]]


@pytest.mark.parametrize(
    "change",
    [
        {"size": 1},  # the size, off by one either way
        {"size": -1},
        {"mediaType": OCI_INDEX},
        {"mediaType": "application/vnd.docker.distribution.manifest.v2+json"},
    ],
)
def test_signature_whose_subject_is_not_the_images_descriptor_is_not_a_referrer(
    layout: Layout, change: dict[str, Any]
) -> None:
    """oras-go matches the whole descriptor: a subject with the image's digest but another size or
    media type is a referrer of something else, whatever its digest says."""
    subject = dict(layout.image)
    if "size" in change:
        subject["size"] += change["size"]
    else:
        subject.update(change)
    layout.signature(subject)
    assert signatures(layout.write()) == []


def test_signature_listed_in_a_nested_index_is_a_referrer(layout: Layout) -> None:
    sig = layout.signature(layout.image, listed=False)
    layout.entries.append(layout.manifest({"manifests": [sig]}, OCI_INDEX))
    assert signatures(layout.write()) == [sig["digest"]]


def test_missing_blob_of_an_unrelated_entry_does_not_fail_the_layout(layout: Layout) -> None:
    """The image-layout specification allows missing blobs; only what the verification needs is read."""
    sig = layout.signature(layout.image)
    layout.entries.append({"mediaType": OCI_MANIFEST, "digest": digest(b"not here"), "size": 8})
    assert signatures(layout.write()) == [sig["digest"]]


@pytest.mark.parametrize(
    "data",
    [b"{not json", compact({"schemaVersion": 3, "mediaType": OCI_MANIFEST, "layers": [{"digest": "x"}]}),
     compact({"schemaVersion": 2, "Subject": {}, "subject": {}})],
)  # fmt: skip
def test_unrelated_malformed_manifest_does_not_fail_the_layout(layout: Layout, data: bytes) -> None:
    sig = layout.signature(layout.image)
    layout.entries.append({"mediaType": OCI_MANIFEST, "digest": digest(data), "size": layout.blob(data)})
    assert signatures(layout.write()) == [sig["digest"]]


@pytest.mark.parametrize(
    "entry",
    [{"mediaType": OCI_MANIFEST, "digest": "sha256:xyz", "size": 4}, {"digest": 5}, "not an object",
     {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "0" * 64, "size": -1}],
)  # fmt: skip
def test_unrelated_invalid_index_entry_does_not_fail_the_layout(layout: Layout, entry: Any) -> None:
    sig = layout.signature(layout.image)
    layout.entries.append(entry)
    assert signatures(layout.write()) == [sig["digest"]]


def test_tag_given_to_two_manifests_is_refused(layout: Layout) -> None:
    """Which manifest ``v1`` names would depend on the reader (oras takes the last): ambiguous."""
    other = layout.manifest(
        {"config": {"mediaType": OCI_EMPTY, "digest": digest(b"{}"), "size": 2}, "layers": []}
    )
    layout.blob(b"{}")
    layout.entries.append({**other, "annotations": {REF_NAME: "v1"}})
    with pytest.raises(RegistryProtocolError, match="ambiguous"):
        layout.write().resolve("v1", Deadline.after(5))


def test_the_same_entry_twice_is_not_ambiguous(layout: Layout) -> None:
    layout.entries.append(dict(layout.entries[0]))
    assert layout.write().resolve("v1", Deadline.after(5)).descriptor.digest == layout.image["digest"]

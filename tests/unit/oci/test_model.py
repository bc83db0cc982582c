"""OCI manifests and indexes parsed from untrusted JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest

from webhook.errors import ContentMismatch, RegistryProtocolError
from webhook.oci.model import (
    EMPTY_DIGEST,
    NOTARY_SIGNATURE,
    OCI_ARTIFACT_MANIFEST,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    check_digest,
    compute_digest,
    is_notary_signature,
    parse_manifest,
)

D = "sha256:" + "1" * 64


def manifest(**fields: Any) -> bytes:
    body: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_EMPTY, "digest": EMPTY_DIGEST, "size": 2},
        "layers": [{"mediaType": "application/jose+json", "digest": D, "size": 10}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": D, "size": 5},
    }
    body.update(fields)
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


def parse(raw: bytes, media_type: str = OCI_MANIFEST) -> Any:
    return parse_manifest(raw, media_type, compute_digest(raw), "test")


def test_signature_shape_image_spec_1_1() -> None:
    m = parse(manifest(artifactType=NOTARY_SIGNATURE))
    assert is_notary_signature(m)
    assert m.effective_artifact_type == NOTARY_SIGNATURE
    assert m.subject is not None and m.subject.digest == D


def test_signature_shape_config_media_type() -> None:
    m = parse(manifest(config={"mediaType": NOTARY_SIGNATURE, "digest": EMPTY_DIGEST, "size": 2}))
    assert is_notary_signature(m)
    assert m.effective_artifact_type == NOTARY_SIGNATURE
    assert m.as_referrer().artifact_type == NOTARY_SIGNATURE


def test_artifact_type_notary_needs_empty_config() -> None:
    m = parse(
        manifest(
            artifactType=NOTARY_SIGNATURE,
            config={"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D, "size": 3},
        )
    )
    assert not is_notary_signature(m)


def test_other_artifact_type_is_not_a_signature() -> None:
    assert not is_notary_signature(parse(manifest(artifactType="application/spdx+json")))


def test_legacy_artifact_manifest_signature() -> None:
    raw = json.dumps(
        {
            "mediaType": OCI_ARTIFACT_MANIFEST,
            "artifactType": NOTARY_SIGNATURE,
            "blobs": [{"mediaType": "application/jose+json", "digest": D, "size": 1}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": D, "size": 5},
        }
    ).encode()
    m = parse(raw, OCI_ARTIFACT_MANIFEST)
    assert is_notary_signature(m) and len(m.blobs) == 1


def test_index() -> None:
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": D,
                    "size": 7,
                    "artifactType": NOTARY_SIGNATURE,
                    "annotations": {"a": "b"},
                }
            ],
        }
    ).encode()
    m = parse(raw, OCI_INDEX)
    assert m.is_index and m.manifests[0].annotations == {"a": "b"}


def test_body_media_type_must_match_content_type() -> None:
    with pytest.raises(ContentMismatch):
        parse(manifest(), OCI_INDEX)


@pytest.mark.parametrize(
    ("raw", "phrase"),
    [
        (b"{", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (manifest(schemaVersion=1), "schemaVersion"),
        (manifest(config=None), "no config"),
        (manifest(layers={"x": 1}), "layers is not a list"),
        (manifest(layers=[{"mediaType": "x", "digest": "sha256:zz", "size": 1}]), "invalid digest"),
        (manifest(layers=[{"mediaType": "x", "digest": D, "size": -1}]), "invalid size"),
        (manifest(layers=[{"mediaType": "x", "digest": D, "size": True}]), "invalid size"),
        (manifest(annotations={"a": 1}), "annotations"),
        (manifest(artifactType=7), "artifactType"),
    ],
)
def test_malformed_manifests_are_protocol_errors(raw: bytes, phrase: str) -> None:
    with pytest.raises(RegistryProtocolError) as info:
        parse(raw)
    assert phrase in str(info.value)


def test_entry_cap() -> None:
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": D, "size": 1}] * 11,
        }
    ).encode()
    with pytest.raises(RegistryProtocolError):
        parse_manifest(raw, OCI_INDEX, compute_digest(raw), "test", max_entries=10)


def test_check_digest() -> None:
    check_digest(b"{}", EMPTY_DIGEST, "empty")
    with pytest.raises(ContentMismatch):
        check_digest(b"{ }", EMPTY_DIGEST, "empty")
    assert compute_digest(b"", "sha512").startswith("sha512:cf83e135")


# --- one meaning per manifest ------------------------------------------------------------------------------

OTHER_SUBJECT = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "2" * 64, "size": 9}


def with_member(raw: bytes, name: str, value: Any) -> bytes:
    """``raw`` (a JSON object) with one more member appended, whatever its name."""
    return raw[:-1] + f", {json.dumps(name)}: {json.dumps(value)}".encode() + b"}"


def test_case_folded_manifest_subject_is_refused() -> None:
    """oras and notation read ``Subject`` as ``subject`` (the last one wins): the signature would be
    a referrer of another image to them."""
    with pytest.raises(RegistryProtocolError, match="'Subject', which differs from 'subject'"):
        parse(with_member(manifest(), "Subject", OTHER_SUBJECT))


@pytest.mark.parametrize("name", ["Layers", "CONFIG", "mediatype", "\u017fubject"])
def test_case_folded_manifest_member_is_refused(name: str) -> None:
    with pytest.raises(RegistryProtocolError, match="only by letter case"):
        parse(with_member(manifest(), name, []))


def test_case_folded_descriptor_digest_is_refused() -> None:
    layer = {"mediaType": "application/jose+json", "digest": D, "size": 10, "Digest": "sha256:" + "3" * 64}
    with pytest.raises(RegistryProtocolError, match="'Digest', which differs from 'digest'"):
        parse(manifest(layers=[layer]))


def test_duplicate_manifest_member_is_refused() -> None:
    raw = with_member(manifest(), "subject", OTHER_SUBJECT)
    with pytest.raises(RegistryProtocolError, match="duplicate member 'subject'"):
        parse(raw)


@pytest.mark.parametrize(
    ("raw", "phrase"),
    [
        (manifest()[:-1] + b', "x": NaN}', "NaN"),
        (manifest().decode().encode("utf-16"), "UTF-16"),
        (b"\xef\xbb\xbf" + manifest(), "byte-order mark"),
    ],
)
def test_manifest_that_is_not_json_is_refused(raw: bytes, phrase: str) -> None:
    with pytest.raises(RegistryProtocolError, match=phrase):
        parse(raw)

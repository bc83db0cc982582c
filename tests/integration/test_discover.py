"""``referee discover`` against real registries, compared with ``oras discover`` on the same artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import NOTARY, SBOM, SignedImage
from tests.helpers.artifacts import Notation, oras, oras_discover, push_image, referrer_tree
from tests.helpers.registries import RunningRegistry
from tests.helpers.tools import free_port, referee
from webhook.deadline import Deadline
from webhook.oci.model import is_notary_signature
from webhook.oci.reference import parse
from webhook.registry.client import ClientSettings, HostSettings, RegistryClient


def client_for(registry: RunningRegistry) -> RegistryClient:
    return RegistryClient(ClientSettings(default=HostSettings(plain_http=registry.plain_http)))


def test_discover_lists_exactly_what_oras_discover_lists(signed_image: SignedImage) -> None:
    reg = signed_image.registry
    proc = referee("discover", "--plain-http", "--output", "json", signed_image.reference)
    assert proc.returncode == 0, proc.stderr
    ours = json.loads(proc.stdout)
    theirs = oras_discover(reg, signed_image.reference)

    assert ours["digest"] == theirs["digest"] == signed_image.digest
    assert ours["mediaType"] == theirs["mediaType"]
    assert ours["image"] == signed_image.reference
    assert referrer_tree(ours) == referrer_tree(theirs)
    # And the tree is the one we built, two levels deep.
    assert referrer_tree(ours) == {
        (signed_image.digest, signed_image.notation_signature, NOTARY),
        (signed_image.digest, signed_image.v11_signature, NOTARY),
        (signed_image.digest, signed_image.sbom, SBOM),
        (signed_image.sbom, signed_image.sbom_signature, NOTARY),
    }


def test_discover_json_contract_fields(signed_image: SignedImage) -> None:
    proc = referee("discover", "--plain-http", "--output", "json", signed_image.reference)
    doc = json.loads(proc.stdout)
    assert set(doc) == {"image", "digest", "mediaType", "referrers"}
    for node in doc["referrers"]:
        assert set(node) == {"digest", "mediaType", "artifactType", "size", "annotations", "referrers"}
        assert node["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        assert isinstance(node["size"], int) and node["size"] > 0
    notation_node = next(n for n in doc["referrers"] if n["digest"] == signed_image.notation_signature)
    assert "io.cncf.notary.x509chain.thumbprint#S256" in notation_node["annotations"]


def test_referrers_source_matches_registry_kind(signed_image: SignedImage) -> None:
    reg = signed_image.registry
    repo = client_for(reg).repository(parse(signed_image.reference))
    found = repo.referrers(signed_image.digest, Deadline.after(10))
    assert found.source == ("referrers-api" if reg.has_referrers_api else "tag-schema")


@pytest.mark.parametrize("filter_type", [NOTARY, SBOM, "application/vnd.example.none"])
def test_artifact_type_filter(signed_image: SignedImage, filter_type: str) -> None:
    repo = client_for(signed_image.registry).repository(parse(signed_image.reference))
    found = repo.referrers(signed_image.digest, Deadline.after(10), filter_type)
    expected = {
        NOTARY: {signed_image.notation_signature, signed_image.v11_signature},
        SBOM: {signed_image.sbom},
    }.get(filter_type, set())
    assert {d.digest for d in found.descriptors} == expected
    assert all(d.artifact_type == filter_type for d in found.descriptors)


def test_both_notation_signature_shapes_are_recognised(signed_image: SignedImage) -> None:
    """notation's own shape (config.mediaType) and the image-spec 1.1 shape (artifactType + empty config)."""
    repo = client_for(signed_image.registry).repository(parse(signed_image.reference))
    deadline = Deadline.after(10)
    notation_made = repo.fetch_manifest(signed_image.notation_signature, deadline)
    oras_made = repo.fetch_manifest(signed_image.v11_signature, deadline)
    sbom = repo.fetch_manifest(signed_image.sbom, deadline)

    assert notation_made.artifact_type is None and notation_made.config is not None
    assert notation_made.config.media_type == NOTARY
    assert oras_made.artifact_type == NOTARY
    assert oras_made.config is not None and oras_made.config.media_type == "application/vnd.oci.empty.v1+json"
    assert is_notary_signature(notation_made)
    assert is_notary_signature(oras_made)
    assert not is_notary_signature(sbom)
    for manifest in (notation_made, oras_made):
        assert manifest.subject is not None and manifest.subject.digest == signed_image.digest


def test_api_and_tag_schema_list_the_same_set(
    distribution: RunningRegistry, olareg: RunningRegistry, signed_image: SignedImage
) -> None:
    """The same artifacts, pushed to both kinds, are listed identically by the API and by the tag schema."""
    other = olareg if signed_image.registry is distribution else distribution
    dest = f"{other.host}/mirror/app:v1"
    # One push at a time: olareg v0.1.2 can drop a referrer when several manifests with the same
    # subject are pushed concurrently (oras cp pushes three at once by default).
    oras(
        "cp", "-r", "--concurrency", "1", "--from-plain-http", "--to-plain-http", signed_image.reference, dest
    )
    deadline = Deadline.after(20)
    listings = {}
    for reg, ref in ((signed_image.registry, signed_image.reference), (other, dest)):
        found = client_for(reg).repository(parse(ref)).referrers(signed_image.digest, deadline)
        listings[found.source] = {(d.digest, d.artifact_type, d.size) for d in found.descriptors}
    assert set(listings) == {"referrers-api", "tag-schema"}
    assert listings["referrers-api"] == listings["tag-schema"]
    assert len(listings["tag-schema"]) == 3


def test_text_output_names_digest_and_artifact_types(signed_image: SignedImage) -> None:
    proc = referee("discover", "--plain-http", signed_image.reference)
    assert proc.returncode == 0, proc.stderr
    assert signed_image.digest in proc.stdout
    assert NOTARY in proc.stdout and SBOM in proc.stdout
    assert signed_image.sbom_signature in proc.stdout


def test_missing_tag_exits_1(registry: RunningRegistry) -> None:
    proc = referee("discover", "--plain-http", f"{registry.host}/demo/app:no-such-tag")
    assert proc.returncode == 1
    assert "no such tag" in proc.stderr and f"{registry.host}/demo/app:no-such-tag" in proc.stderr


def test_bad_reference_exits_2() -> None:
    proc = referee("discover", "--plain-http", "localhost:5000/Demo/App:v1")
    assert proc.returncode == 2
    assert "must be lowercase" in proc.stderr


def test_unreachable_registry_exits_3() -> None:
    proc = referee("discover", "--plain-http", "--timeout", "5", f"127.0.0.1:{free_port()}/demo/app:v1")
    assert proc.returncode == 3
    assert "could not be reached" in proc.stderr


def test_tls_registry_without_plain_http_flag_is_unreachable_not_missing(registry: RunningRegistry) -> None:
    """Speaking TLS to a plain-HTTP registry is a transport failure (exit 3), not 'no signatures'."""
    proc = referee("discover", "--timeout", "5", f"{registry.host}/demo/app:v1")
    assert proc.returncode == 3, proc.stderr


def test_multi_arch_index_is_resolved_and_its_signature_found(
    registry: RunningRegistry, notation: Notation, tmp_path: Path
) -> None:
    """A tag naming an image index: the index itself is what is signed and what referrers hang on."""
    amd = push_image(registry, "multi/app", "amd64", tmp_path / "amd", content="amd64")
    push_image(registry, "multi/app", "arm64", tmp_path / "arm", content="arm64")
    oras(
        "manifest",
        "index",
        "create",
        *registry.oras_flags(),
        f"{registry.host}/multi/app:v1",
        "amd64",
        "arm64",
    )
    repo = client_for(registry).repository(parse(f"{registry.host}/multi/app:v1"))
    index = repo.resolve("v1", Deadline.after(10))
    assert index.media_type == "application/vnd.oci.image.index.v1+json"
    assert amd in {m.digest for m in index.manifests}
    notation.sign(registry, f"{registry.host}/multi/app@{index.descriptor.digest}")
    found = repo.referrers(index.descriptor.digest, Deadline.after(10), NOTARY)
    assert len(found.descriptors) == 1
    # The platform manifest carries no signature of its own.
    assert repo.referrers(amd, Deadline.after(10), NOTARY).descriptors == ()

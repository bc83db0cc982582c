"""The gate at a fixed moment, over an in-memory registry: ``now`` is taken once per request and
passed down, so expiry and validity are decided at the instant the test names."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from tests.helpers.codesign import LeafSpec, make_chain, write_trust_policy, write_trust_store
from tests.helpers.memory_registry_fake import MemoryRegistryFake
from webhook.deadline import Deadline
from webhook.notary.envelope import JWS
from webhook.notary.signer import SignRequest, sign, signature_manifest
from webhook.oci.model import NOTARY_SIGNATURE, OCI_EMPTY
from webhook.oci.patterns import HostPattern, ImagePattern
from webhook.trust.files import TrustFiles
from webhook.verify.gate import Gate
from webhook.verify.policy import Policy, PolicyFile

NOW = dt.datetime.now(dt.UTC)
HOST = "registry.example"


@pytest.fixture
def registry(tmp_path: Path) -> tuple[MemoryRegistryFake, Path, Path]:
    return signed_registry(tmp_path)


def signed_registry(tmp_path: Path) -> tuple[MemoryRegistryFake, Path, Path]:
    """``team/app:v1`` signed by a chain whose leaf is valid for 30 days; its signature expires in 7."""
    chain = make_chain(LeafSpec(not_after=dt.timedelta(days=30)))
    fake = MemoryRegistryFake()
    config = fake.push_blob(b"{}")
    image = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "config": {"mediaType": OCI_EMPTY, "digest": config, "size": 2},
                        "layers": []}).encode()  # fmt: skip
    target = fake.push_manifest(image, tag="team/app:v1")
    request = SignRequest(target, chain.leaf_key, chain.certs, NOW, expiry=NOW + dt.timedelta(days=7))
    envelope = sign(request)
    fake.push_blob(envelope)
    fake.push_referrer(target.digest, signature_manifest(envelope, JWS, request), NOTARY_SIGNATURE)
    write_trust_store(tmp_path / "store", "ca", "test", chain.root)
    return fake, write_trust_policy(tmp_path / "trustpolicy.json"), tmp_path / "store"


def gate(
    registry: tuple[MemoryRegistryFake, Path, Path],
    policy: Policy | None = None,
    statements: PolicyFile | None = None,
) -> Gate:
    fake, trust_policy, store = registry
    return Gate(fake, TrustFiles(trust_policy, store), verdict_ttl_s=300, tag_ttl_s=30, max_entries=100,
                max_signatures=10, revocation=None, policy=policy, workers=2,
                statements=statements)  # fmt: skip


def test_signed_image_is_allowed_now_and_denied_once_its_signature_expired(
    registry: tuple[MemoryRegistryFake, Path, Path],
) -> None:
    g = gate(registry)
    try:
        [today] = g.decide([f"{HOST}/team/app:v1"], Deadline.after(10), now=NOW)
        assert today.allowed and today.signer_subject.startswith("CN=signer"), today
        [again] = g.decide([f"{HOST}/team/app:v1"], Deadline.after(10), now=NOW)
        assert again.allowed and again.cached
    finally:
        g.close()
    later = gate(registry)  # a fresh gate: nothing cached
    try:
        [next_week] = later.decide(
            [f"{HOST}/team/app:v1"], Deadline.after(10), now=NOW + dt.timedelta(days=8)
        )
        assert not next_week.allowed and "expir" in next_week.reason, next_week
    finally:
        later.close()


def test_exempt_and_unlisted_images_are_decided_without_reading_the_registry(
    registry: tuple[MemoryRegistryFake, Path, Path],
) -> None:
    fake = registry[0]
    policy = Policy(
        exempt_images=(ImagePattern.parse(f"{HOST}/team/*"),),
        allowed_registries=(HostPattern.parse(HOST, "test"),),
    )
    g = gate(registry, policy)
    try:
        exempt, elsewhere = g.decide(
            [f"{HOST}/team/app:v1", "other.example/app:v1"], Deadline.after(10), now=NOW
        )
        assert exempt.allowed and "exempt" in exempt.reason
        assert not elsewhere.allowed and "allowed registries" in elsewhere.reason
        assert fake.reads == 0
    finally:
        g.close()


def test_a_changed_policy_document_is_not_answered_from_the_cache(
    registry: tuple[MemoryRegistryFake, Path, Path], tmp_path: Path
) -> None:
    """The document's fingerprint is part of the verdict's key: an allow cached under the old
    statements must not answer once a statement asks for more (here, user metadata the signature
    does not carry)."""
    path = tmp_path / "policy.yaml"
    path.write_text('version: "1.0"\nstatements: [{name: all, registryScopes: ["*"]}]\n')
    g = gate(registry, statements=PolicyFile(path, check_every_s=0))
    try:
        [first] = g.decide([f"{HOST}/team/app:v1"], Deadline.after(10), now=NOW)
        assert first.allowed and first.statement == "all", first
        path.write_text(
            'version: "1.0"\nstatements: [{name: all, registryScopes: ["*"],'
            " userMetadata: {pipeline: release}}]\n"
        )
        os.utime(path, ns=(1, 1))
        [second] = g.decide([f"{HOST}/team/app:v1"], Deadline.after(10), now=NOW)
        assert not second.allowed and not second.cached, second
        assert second.reason.startswith(
            "Referee policy statement 'all': no valid signature carries the user metadata pipeline=release"
        )
        assert "lacks pipeline" in second.reason
    finally:
        g.close()


def _skip_gate(registry: tuple[MemoryRegistryFake, Path, Path], tmp_path: Path, statement: str) -> Gate:
    fake, _, store = registry
    skip_policy = write_trust_policy(tmp_path / "skip.json", level="skip")
    path = tmp_path / "policy.yaml"
    path.write_text(f'version: "1.0"\nstatements: [{{name: all, registryScopes: ["*"], {statement}}}]\n')
    return Gate(fake, TrustFiles(skip_policy, store), verdict_ttl_s=300, tag_ttl_s=30, max_entries=100,
                max_signatures=10, revocation=None, workers=2, statements=PolicyFile(path))  # fmt: skip


def test_a_level_skip_repository_does_not_meet_what_a_statement_asks_of_signatures(
    registry: tuple[MemoryRegistryFake, Path, Path], tmp_path: Path
) -> None:
    """level skip checks no signature, so it cannot stand for two signers."""
    g = _skip_gate(registry, tmp_path, "minSigners: 2")
    try:
        [decision] = g.decide([f"{HOST}/team/app:v1"], Deadline.after(10), now=NOW)
        assert not decision.allowed, decision
        assert (
            "its signatures are not checked (trust policy statement 'all' is level skip)" in decision.reason
        )
    finally:
        g.close()


def test_a_signed_sbom_is_not_taken_as_signed_under_level_skip(
    registry: tuple[MemoryRegistryFake, Path, Path], tmp_path: Path
) -> None:
    """An attestation must not pass silently: with nothing checked, "signed: true" is not met."""
    fake = registry[0]
    digest = fake.tags["team/app:v1"]
    media_type, data = fake.manifests[digest]
    config = fake.push_blob(b"{}")
    sbom = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "artifactType": "application/spdx+json",
                       "config": {"mediaType": OCI_EMPTY, "digest": config, "size": 2}, "layers": [],
                       "subject": {"mediaType": media_type, "digest": digest,
                                   "size": len(data)}}).encode()  # fmt: skip
    fake.push_referrer(digest, sbom, "application/spdx+json")
    g = _skip_gate(registry, tmp_path, "referrers: [{artifactType: application/spdx+json, signed: true}]")
    try:
        [decision] = g.decide([f"{HOST}/team/app:v1"], Deadline.after(10), now=NOW)
        assert not decision.allowed, decision
        assert "application/spdx+json artifact" in decision.reason and "level skip" in decision.reason
        [artifact] = decision.artifacts
        assert artifact.signed is False
    finally:
        g.close()
    unsigned_ok = _skip_gate(registry, tmp_path, "referrers: [{artifactType: application/spdx+json}]")
    try:
        [decision] = unsigned_ok.decide([f"{HOST}/team/app:v1"], Deadline.after(10), now=NOW)
        assert decision.allowed, decision  # presence alone was asked for, and the SBOM is there
    finally:
        unsigned_ok.close()

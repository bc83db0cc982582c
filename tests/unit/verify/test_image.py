"""One image's pipeline: whatever one referrer does to the parsers, it fails that signature only,
and the image's other signatures are still tried."""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.codesign import make_chain, write_trust_policy, write_trust_store
from tests.helpers.memory_registry_fake import MemoryRegistryFake
from tests.helpers.tsa import local_tsa
from webhook.cli.sign import TimestampAuthority
from webhook.deadline import Deadline
from webhook.notary.envelope import H_TIMESTAMP, JWS
from webhook.notary.signer import SignRequest, sign, signature_manifest
from webhook.notary.verifier import SignatureOutcome
from webhook.oci.model import NOTARY_SIGNATURE, OCI_EMPTY, Descriptor
from webhook.oci.reference import parse
from webhook.trust.files import TrustFiles
from webhook.verify.cache import KeySet
from webhook.verify.image import verify_image
from webhook.verify.schemes import NotaryScheme, Plan, Trust

NOW = dt.datetime.now(dt.UTC)
IMAGE = "registry.example/team/app:v1"
# A CMS ContentInfo whose [0] holds nothing: the timestamp parser indexed the empty SignedData
# (IndexError), which no caller caught, so the whole image was an internal error.
EMPTY_SIGNED_DATA = bytes.fromhex("300d06092a864886f70d010702a000")


def image_manifest(fake: MemoryRegistryFake) -> Descriptor:
    config = fake.push_blob(b"{}")
    body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": OCI_EMPTY, "digest": config, "size": 2},
                       "layers": []}).encode()  # fmt: skip
    return fake.push_manifest(body, tag="team/app:v1")


def attach(fake: MemoryRegistryFake, subject: Descriptor, envelope: bytes, request: SignRequest) -> None:
    fake.push_blob(envelope)
    fake.push_referrer(subject.digest, signature_manifest(envelope, JWS, request), NOTARY_SIGNATURE)


def with_timestamp_token(envelope: bytes, token: bytes) -> bytes:
    """The same signature with another timestamp token (the unprotected header is not signed)."""
    doc = json.loads(envelope)
    doc["header"][H_TIMESTAMP] = base64.b64encode(token).decode()
    return json.dumps(doc).encode()


def test_a_referrer_whose_timestamp_breaks_the_parser_fails_only_itself(tmp_path: Path) -> None:
    chain = make_chain()
    fake = MemoryRegistryFake()
    subject = image_manifest(fake)
    with local_tsa(tmp_path / "tsa") as tsa:
        request = SignRequest(subject, chain.leaf_key, chain.certs, NOW, envelope=JWS)
        good = sign(request, TimestampAuthority(tsa.url, tsa.root).stamp)
        attach(fake, subject, with_timestamp_token(good, EMPTY_SIGNED_DATA), request)  # tried first
        attach(fake, subject, good, request)
        write_trust_store(tmp_path / "store", "ca", "test", chain.root)
        write_trust_store(tmp_path / "store", "tsa", "tsa", tsa.root)
        policy = write_trust_policy(tmp_path / "trustpolicy.json", stores=["ca:test", "tsa:tsa"])
        material = TrustFiles(policy, tmp_path / "store").current()
        scheme = NotaryScheme(Trust(material.policy, material.store, NOW))
        repo = fake.repository(parse(IMAGE))
        result = verify_image(repo, IMAGE, "v1", scope="registry.example/team/app", scheme=scheme,
                              deadline=Deadline.after(10))  # fmt: skip
    assert result.verdict.verified, result.verdict.reason
    (_, first), (_, second) = result.verdict.outcomes
    assert not first.verified and second.verified


@dataclass(frozen=True)
class _RaisingPlanFake:
    """A plan whose check raises ``error`` on the first envelope it is given (no parser of Referee's
    recurses or runs out of memory on purpose; this stands for one that would)."""

    inner: Plan
    error: BaseException
    calls: list[bytes]

    @property
    def max_signatures(self) -> int:
        return self.inner.max_signatures

    def skipped(self) -> None:
        return None

    def verify(self, envelope_media_type: str, envelope: bytes, subject: Descriptor) -> SignatureOutcome:
        self.calls.append(envelope)
        if len(self.calls) == 1:
            raise self.error
        return self.inner.verify(envelope_media_type, envelope, subject)

    def not_a_signature(self, problem: str) -> SignatureOutcome:
        return self.inner.not_a_signature(problem)

    def decide(self, outcomes: list[tuple[str, SignatureOutcome]], complete: bool) -> object:
        return self.inner.decide(outcomes, complete)


@dataclass(frozen=True)
class _SchemeFake:
    scheme: NotaryScheme
    error: BaseException

    @property
    def artifact_type(self) -> str:
        return self.scheme.artifact_type

    @property
    def max_envelope_bytes(self) -> int:
        return self.scheme.max_envelope_bytes

    def envelope_of(self, manifest: object) -> Descriptor:
        return self.scheme.envelope_of(manifest)  # type: ignore[arg-type]

    def plan(self, scope: str) -> Plan:
        return _RaisingPlanFake(self.scheme.plan(scope), self.error, [])  # type: ignore[return-value]


@pytest.mark.parametrize("error", [RecursionError("deep"), MemoryError(), KeyError("bug")])
def test_recursion_memory_or_any_error_in_one_referrer_fails_that_signature_only(
    tmp_path: Path, error: BaseException
) -> None:
    chain = make_chain()
    fake = MemoryRegistryFake()
    subject = image_manifest(fake)
    for n in range(2):
        request = SignRequest(
            subject, chain.leaf_key, chain.certs, NOW - dt.timedelta(seconds=n), envelope=JWS
        )
        attach(fake, subject, sign(request), request)
    write_trust_store(tmp_path / "store", "ca", "test", chain.root)
    material = TrustFiles(write_trust_policy(tmp_path / "trustpolicy.json"), tmp_path / "store").current()
    scheme = _SchemeFake(NotaryScheme(Trust(material.policy, material.store, NOW)), error)
    repo = fake.repository(parse(IMAGE))
    result = verify_image(repo, IMAGE, "v1", scope="registry.example/team/app", scheme=scheme,  # type: ignore[arg-type]
                          deadline=Deadline.after(10))  # fmt: skip
    assert result.verdict.verified
    (_, first), (_, second) = result.verdict.outcomes
    assert not first.verified and type(error).__name__ in first.reason and second.verified


def test_only_chains_that_reached_a_trusted_root_are_remembered(tmp_path: Path) -> None:
    """The chain cache was filled during integrity, before anything was trusted: any registry could
    fill it with chains of its own. Now it holds hashes of trusted chains only."""
    trusted, strangers = make_chain(), [make_chain() for _ in range(5)]
    write_trust_store(tmp_path / "store", "ca", "test", trusted.root)
    material = TrustFiles(write_trust_policy(tmp_path / "trustpolicy.json"), tmp_path / "store").current()
    memory = KeySet(10)
    plan = NotaryScheme(Trust(material.policy, material.store, NOW, chains=memory)).plan(
        "registry.example/team/app"
    )
    subject = Descriptor("application/vnd.oci.image.manifest.v1+json", "sha256:" + "ab" * 32, 100)
    for chain in strangers:
        envelope = sign(SignRequest(subject, chain.leaf_key, chain.certs, NOW, envelope=JWS))
        assert not plan.verify(JWS, envelope, subject).verified
    assert len(memory) == 0
    envelope = sign(SignRequest(subject, trusted.leaf_key, trusted.certs, NOW, envelope=JWS))
    for _ in range(2):
        assert plan.verify(JWS, envelope, subject).verified
    assert len(memory) == 1


def _remembered_plan(tmp_path: Path, now: dt.datetime) -> tuple[Plan, KeySet, bytes, Descriptor]:
    """A plan with a chain memory that already holds a trusted chain, and that chain's envelope."""
    chain = make_chain()
    write_trust_store(tmp_path / "store", "ca", "test", chain.root)
    material = TrustFiles(write_trust_policy(tmp_path / "trustpolicy.json"), tmp_path / "store").current()
    memory = KeySet(10)
    subject = Descriptor("application/vnd.oci.image.manifest.v1+json", "sha256:" + "cd" * 32, 100)
    envelope = sign(SignRequest(subject, chain.leaf_key, chain.certs, NOW, envelope=JWS))
    plan = NotaryScheme(Trust(material.policy, material.store, now, chains=memory)).plan(
        "registry.example/team/app"
    )
    assert plan.verify(JWS, envelope, subject).verified
    assert len(memory) == 1
    return plan, memory, envelope, subject


def test_a_remembered_chain_with_one_byte_changed_in_a_certificate_is_checked_again(tmp_path: Path) -> None:
    """x5c is in the unprotected header: its bytes can change without touching the envelope's
    signature. The chain memory is keyed by the chain's exact bytes, so a certificate with one byte
    changed (here the intermediate's signature) is a miss and fails the issuance check."""
    plan, memory, envelope, subject = _remembered_plan(tmp_path, NOW)
    doc = json.loads(envelope)
    intermediate = bytearray(base64.b64decode(doc["header"]["x5c"][1]))
    intermediate[-1] ^= 0x01
    doc["header"]["x5c"][1] = base64.b64encode(bytes(intermediate)).decode()
    outcome = plan.verify(JWS, json.dumps(doc).encode(), subject)
    assert not outcome.verified
    assert outcome.reason.startswith("integrity:") and "is not issued by the next one" in outcome.reason
    assert len(memory) == 1


def test_an_expired_certificate_is_refused_though_its_chain_was_remembered(tmp_path: Path) -> None:
    """The chain memory keeps only time-independent facts (order, issuance, profile): validity is
    judged at every verification's own ``now``."""
    plan, memory, envelope, subject = _remembered_plan(tmp_path, NOW)
    later = NotaryScheme(
        Trust(plan.trust.policy_document, plan.trust.store, NOW + dt.timedelta(days=3650), chains=memory)  # type: ignore[attr-defined]
    ).plan("registry.example/team/app")
    outcome = later.verify(JWS, envelope, subject)
    assert not outcome.verified and "expired at" in outcome.reason, outcome.reason

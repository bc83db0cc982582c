"""The signature-scheme seam: what a scheme discovers, how it finds its envelope in a referrer, how
it verifies. The orchestration (``verify.image``) knows nothing of any one scheme.

The Notary Project scheme is the one implementation today; a cosign scheme would be a second class
here with the same three steps (its artifact type, its envelope layer, its verification over
``webhook/<scheme>/`` pure code).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

from webhook.errors import VerificationFailed
from webhook.notary.certs import ChainMemory
from webhook.notary.envelope import ENVELOPE_TYPES, MAX_ENVELOPE_BYTES
from webhook.notary.revocation import RevocationSource
from webhook.notary.trustpolicy import TrustPolicy, TrustPolicyDocument
from webhook.notary.truststore import TrustStore
from webhook.notary.verifier import Check, SignatureOutcome, Status, Verdict, decide, verify_signature
from webhook.oci.model import NOTARY_SIGNATURE, Descriptor, Manifest, is_notary_signature

DEFAULT_MAX_SIGNATURES = 100  # notation's --max-signatures default


class NotASignature(VerificationFailed):
    """A referrer of the scheme's artifact type that is not a well-formed signature of it."""


class Plan(Protocol):
    """How one image is judged under the statement its repository selects."""

    @property
    def name(self) -> str:
        """The trust-policy statement's name (for messages)."""

    @property
    def max_signatures(self) -> int: ...

    def skipped(self) -> Verdict | None:
        """The verdict when the statement asks for no verification at all (level skip)."""

    def verify(self, envelope_media_type: str, envelope: bytes, subject: Descriptor) -> SignatureOutcome: ...

    def not_a_signature(self, problem: str) -> SignatureOutcome: ...

    def decide(self, outcomes: list[tuple[str, SignatureOutcome]], complete: bool) -> Verdict: ...


class SignatureScheme(Protocol):
    @property
    def artifact_type(self) -> str:
        """The referrers' artifact type this scheme's signatures carry (what discovery filters on)."""

    @property
    def max_envelope_bytes(self) -> int: ...

    def envelope_of(self, manifest: Manifest) -> Descriptor:
        """The envelope layer of a signature manifest; ``NotASignature`` when it is none."""

    def plan(self, scope: str) -> Plan:
        """The plan for a repository; ``VerificationFailed`` when no statement applies."""

    def named_plan(self, name: str) -> Plan:
        """The plan of the statement called ``name``; ``VerificationFailed`` when there is none."""


@dataclass(frozen=True)
class Trust:
    """What an image is verified against, and when (``now`` is taken once per request)."""

    policy_document: TrustPolicyDocument
    store: TrustStore
    now: dt.datetime
    max_signatures: int = DEFAULT_MAX_SIGNATURES
    revocation: RevocationSource | None = None
    chains: ChainMemory | None = None  # chains that reached a trusted root, not checked again


@dataclass(frozen=True)
class _NotaryPlan:
    trust: Trust
    policy: TrustPolicy

    @property
    def name(self) -> str:
        return self.policy.name

    @property
    def max_signatures(self) -> int:
        return self.trust.max_signatures

    def skipped(self) -> Verdict | None:
        if self.policy.level != "skip":
            return None
        return Verdict(True, "", self.policy.name, self.policy.level, ())

    def verify(self, envelope_media_type: str, envelope: bytes, subject: Descriptor) -> SignatureOutcome:
        return verify_signature(
            envelope_media_type,
            envelope,
            subject,
            policy=self.policy,
            store=self.trust.store,
            now=self.trust.now,
            revocation_source=self.trust.revocation,
            chains=self.trust.chains,
        )

    def not_a_signature(self, problem: str) -> SignatureOutcome:
        checks = (
            Check("integrity", Status.FAILED, problem),
            *(
                Check(name, Status.SKIPPED, "not run after an enforced failure")
                for name in ("authenticity", "expiry", "authenticTimestamp", "revocation")
            ),
        )
        return SignatureOutcome(False, f"integrity: {problem}", checks)

    def decide(self, outcomes: list[tuple[str, SignatureOutcome]], complete: bool) -> Verdict:
        return decide(self.policy, outcomes, complete, self.trust.max_signatures)


@dataclass(frozen=True)
class NotaryScheme:
    """Notary Project signatures (Notation): JWS or COSE envelopes, judged by the trust policy."""

    trust: Trust
    artifact_type: str = NOTARY_SIGNATURE
    max_envelope_bytes: int = MAX_ENVELOPE_BYTES

    def envelope_of(self, manifest: Manifest) -> Descriptor:
        if not is_notary_signature(manifest):
            raise NotASignature(f"referrer {manifest.descriptor.digest} is not a Notation signature manifest")
        if len(manifest.blobs) != 1:
            digest, count = manifest.descriptor.digest, len(manifest.blobs)
            raise NotASignature(f"signature manifest {digest} has {count} layers; exactly one is allowed")
        envelope = manifest.blobs[0]
        if envelope.media_type not in ENVELOPE_TYPES:
            raise NotASignature(f"unsupported signature envelope type {envelope.media_type!r}")
        return envelope

    def plan(self, scope: str) -> Plan:
        policy = self.trust.policy_document.select(scope)
        if policy is None:
            raise VerificationFailed(f"no trust policy statement applies to {scope}")
        return _NotaryPlan(self.trust, policy)

    def named_plan(self, name: str) -> Plan:
        policy = self.trust.policy_document.named(name)
        if policy is None:
            raise VerificationFailed(f"the trust policy has no statement named {name!r}")
        return _NotaryPlan(self.trust, policy)

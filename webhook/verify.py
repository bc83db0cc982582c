"""Verifying one image: resolve, find its Notation signatures, fetch them, and let the notary
package decide. All registry I/O goes through the ``Repository`` seam; all rules live in
``webhook.notary``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from webhook.deadline import Deadline
from webhook.errors import RefereeError, VerificationFailed
from webhook.notary.envelope import ENVELOPE_TYPES, MAX_ENVELOPE_BYTES
from webhook.notary.revocation import RevocationSource
from webhook.notary.trustpolicy import TrustPolicy, TrustPolicyDocument
from webhook.notary.truststore import TrustStore
from webhook.notary.verifier import Check, SignatureOutcome, Status, Verdict, decide, verify_signature
from webhook.oci import NOTARY_SIGNATURE, Descriptor, Manifest, is_notary_signature
from webhook.registry import Repository

DEFAULT_MAX_SIGNATURES = 100  # notation's --max-signatures default


@dataclass(frozen=True)
class ImageResult:
    image: str
    subject: Descriptor
    verdict: Verdict


@dataclass(frozen=True)
class Trust:
    """What an image is verified against, and when."""

    policy_document: TrustPolicyDocument
    store: TrustStore
    now: dt.datetime
    max_signatures: int = DEFAULT_MAX_SIGNATURES
    revocation: RevocationSource | None = None


def verify_image(
    repo: Repository, image: str, target: str, *, scope: str, trust: Trust, deadline: Deadline
) -> ImageResult:
    """Verify ``image`` (``target`` is its tag or digest in ``repo``) against the statement for ``scope``.

    Raises ``VerificationFailed`` when no trust policy applies or the image is missing, and
    ``VerificationInconclusive`` when the registry cannot be read.
    """
    subject = repo.resolve(target, deadline).descriptor
    policy = trust.policy_document.select(scope)
    if policy is None:
        raise VerificationFailed(f"{image} ({subject.digest}): no trust policy statement applies to {scope}")
    if policy.level == "skip":
        return ImageResult(image, subject, Verdict(True, "", policy.name, policy.level, ()))
    found = repo.referrers(subject.digest, deadline, NOTARY_SIGNATURE)
    limit = trust.max_signatures
    outcomes: list[tuple[str, SignatureOutcome]] = []
    for descriptor in found.descriptors[:limit]:
        outcome = _verify_one(repo, descriptor, subject, policy=policy, trust=trust, deadline=deadline)
        outcomes.append((descriptor.digest, outcome))
        if outcome.verified:
            break
    return ImageResult(image, subject, decide(policy, outcomes, len(found.descriptors) <= limit, limit))


def _verify_one(
    repo: Repository,
    descriptor: Descriptor,
    subject: Descriptor,
    *,
    policy: TrustPolicy,
    trust: Trust,
    deadline: Deadline,
) -> SignatureOutcome:
    try:
        manifest = repo.fetch_manifest(descriptor.digest, deadline, expected=descriptor)
        envelope_descriptor = _envelope_of(manifest)
        envelope = repo.fetch_blob(envelope_descriptor, deadline, max_bytes=MAX_ENVELOPE_BYTES)
    except _NotASignature as exc:
        return _integrity_failure(str(exc))
    except VerificationFailed as exc:
        return _integrity_failure(f"signature manifest: {exc}")
    except RefereeError:
        raise
    return verify_signature(
        envelope_descriptor.media_type,
        envelope,
        subject,
        policy=policy,
        store=trust.store,
        now=trust.now,
        revocation_source=trust.revocation,
    )


class _NotASignature(Exception):
    pass


def _envelope_of(manifest: Manifest) -> Descriptor:
    if not is_notary_signature(manifest):
        raise _NotASignature(f"referrer {manifest.descriptor.digest} is not a Notation signature manifest")
    if len(manifest.blobs) != 1:
        digest, count = manifest.descriptor.digest, len(manifest.blobs)
        raise _NotASignature(f"signature manifest {digest} has {count} layers; exactly one is allowed")
    envelope = manifest.blobs[0]
    if envelope.media_type not in ENVELOPE_TYPES:
        raise _NotASignature(f"unsupported signature envelope type {envelope.media_type!r}")
    return envelope


def _integrity_failure(message: str) -> SignatureOutcome:
    checks = (
        Check("integrity", Status.FAILED, message),
        *(
            Check(name, Status.SKIPPED, "not run after an enforced failure")
            for name in ("authenticity", "expiry", "authenticTimestamp", "revocation")
        ),
    )
    return SignatureOutcome(False, f"integrity: {message}", checks)

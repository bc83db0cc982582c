"""One image's pipeline: resolve, discover the scheme's signatures, fetch each (digest-checked),
let the scheme verify, fold the outcomes into a verdict. All registry I/O goes through the
``Repository`` seam; every rule of a scheme lives behind ``SignatureScheme``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from webhook.deadline import Deadline
from webhook.errors import VerificationFailed, VerificationInconclusive
from webhook.notary.verifier import SignatureOutcome, Verdict
from webhook.oci.model import Descriptor
from webhook.registry import Repository
from webhook.verify.schemes import NotASignature, Plan, SignatureScheme

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageResult:
    image: str
    subject: Descriptor
    verdict: Verdict


def verify_image(
    repo: Repository, image: str, target: str, *, scope: str, scheme: SignatureScheme, deadline: Deadline
) -> ImageResult:
    """Verify ``image`` (``target`` is its tag or digest in ``repo``) under the plan for ``scope``.

    Raises ``VerificationFailed`` when no statement applies or the image is missing, and
    ``VerificationInconclusive`` when the registry cannot be read.
    """
    subject = repo.resolve(target, deadline).descriptor
    try:
        plan = scheme.plan(scope)
    except VerificationFailed as exc:
        raise VerificationFailed(f"{image} ({subject.digest}): {exc}") from None
    skipped = plan.skipped()
    if skipped is not None:
        return ImageResult(image, subject, skipped)
    found = repo.referrers(subject.digest, deadline, scheme.artifact_type)
    limit = plan.max_signatures
    outcomes: list[tuple[str, SignatureOutcome]] = []
    for descriptor in found.descriptors[:limit]:
        outcome = _verify_one(repo, descriptor, subject, scheme=scheme, plan=plan, deadline=deadline)
        outcomes.append((descriptor.digest, outcome))
        if outcome.verified:
            break
    return ImageResult(image, subject, plan.decide(outcomes, len(found.descriptors) <= limit))


def _verify_one(
    repo: Repository,
    descriptor: Descriptor,
    subject: Descriptor,
    *,
    scheme: SignatureScheme,
    plan: Plan,
    deadline: Deadline,
) -> SignatureOutcome:
    """One referrer. A referrer that is not a signature, whose bytes do not match their digest, or
    that any parser or check fails on in any way (a ``RecursionError``, a ``MemoryError``, a bug)
    is an integrity failure of that signature: the next one may still verify. Registry trouble
    (``VerificationInconclusive``, the deadline included) ends the whole image."""
    try:
        manifest = repo.fetch_manifest(descriptor.digest, deadline, expected=descriptor)
        envelope_descriptor = scheme.envelope_of(manifest)
        envelope = repo.fetch_blob(envelope_descriptor, deadline, max_bytes=scheme.max_envelope_bytes)
        return plan.verify(envelope_descriptor.media_type, envelope, subject)
    except VerificationInconclusive:
        raise
    except NotASignature as exc:
        return plan.not_a_signature(str(exc))
    except VerificationFailed as exc:
        return plan.not_a_signature(f"signature manifest: {exc}")
    except Exception as exc:  # whatever one referrer's bytes do, they fail that referrer only
        log.warning(
            "referrer %s could not be checked: %s", descriptor.digest, type(exc).__name__, exc_info=True
        )
        return plan.not_a_signature(f"the signature could not be checked ({type(exc).__name__})")

"""How a verification result is shown: the JSON contract of ``referee verify`` and its text form."""

from __future__ import annotations

from typing import Any

from webhook.notary.verifier import SignatureOutcome, Status
from webhook.verify.image import ImageResult


def _signature_json(digest: str, outcome: SignatureOutcome) -> dict[str, Any]:
    return {
        "digest": digest,
        "verified": outcome.verified,
        "reason": outcome.reason,
        "checks": {c.name: {"status": c.status.value, "message": c.message} for c in outcome.checks},
        "signer": {"subject": outcome.signer.subject, "issuer": outcome.signer.issuer}
        if outcome.signer
        else None,
        "signingTime": outcome.signing_time.isoformat() if outcome.signing_time else None,
        "expiry": outcome.expiry.isoformat() if outcome.expiry else None,
        "signingScheme": outcome.signing_scheme,
        "envelope": outcome.envelope,
    }


def verification_json(result: ImageResult) -> dict[str, Any]:
    verdict = result.verdict
    return {
        "image": result.image,
        "digest": result.subject.digest,
        "verified": verdict.verified,
        "reason": verdict.reason,
        "policy": {"name": verdict.policy, "level": verdict.level},
        "signatures": [_signature_json(d, o) for d, o in verdict.outcomes],
    }


def render_verification(result: ImageResult) -> str:
    verdict = result.verdict
    head = f"{result.image} ({result.subject.digest})"
    lines = []
    if verdict.verified:
        lines.append(f"Verified {head}")
    else:
        lines.append(f"FAILED {head}: {verdict.reason}")
    lines.append(f"  trust policy: {verdict.policy} (level {verdict.level})")
    for digest, outcome in verdict.outcomes:
        mark = "ok  " if outcome.verified else "fail"
        lines.append(f"  [{mark}] signature {digest}")
        if outcome.signer is not None:
            lines.append(f"         signer: {outcome.signer.subject}")
            lines.append(f"         issuer: {outcome.signer.issuer}")
        if outcome.signing_time is not None:
            when = outcome.signing_time.isoformat()
            lines.append(f"         signed: {when} ({outcome.signing_scheme}, {outcome.envelope})")
        for check in outcome.checks:
            note = f": {check.message}" if check.message and check.status is not Status.PASSED else ""
            lines.append(f"         {check.name:<19} {check.status.value}{note}")
    if verdict.level == "skip":
        lines.append("  signatures not checked: the trust policy level is skip")
    return "\n".join(lines)

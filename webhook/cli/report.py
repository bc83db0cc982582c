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
        "userMetadata": dict(outcome.user_metadata),
    }


def verification_json(result: ImageResult) -> dict[str, Any]:
    verdict = result.verdict
    out: dict[str, Any] = {
        "image": result.image,
        "digest": result.subject.digest,
        "verified": result.verified,
        "reason": result.why_not,
        "policy": {"name": verdict.policy, "level": verdict.level},
        "signatures": [_signature_json(d, o) for d, o in verdict.outcomes],
    }
    if result.statement:
        out["refereePolicy"] = {
            "statement": result.statement,
            "requirements": [r.to_json() for r in result.requirements],
            "manifests": [
                {
                    "label": c.label,
                    "digest": c.descriptor.digest,
                    "met": c.met,
                    "reason": c.reason,
                    "signers": [{"subject": s.subject, "issuer": s.issuer} for s in c.judgement.signers],
                    "signatures": [_signature_json(d, o) for d, o in c.verdict.outcomes],
                }
                for c in result.checks
            ],
            "artifacts": [a.to_json() for a in result.artifacts],
        }
    return out


def render_verification(result: ImageResult) -> str:
    verdict = result.verdict
    head = f"{result.image} ({result.subject.digest})"
    lines = []
    if result.verified:
        lines.append(f"Verified {head}")
    else:
        lines.append(f"FAILED {head}: {result.why_not}")
    lines.append(f"  trust policy: {verdict.policy} (level {verdict.level or 'not used'})")
    _signatures(lines, verdict.outcomes, "  ")
    if verdict.level == "skip":
        lines.append("  signatures not checked: the trust policy level is skip")
    if result.statement:
        lines.append(f"  Referee policy: statement {result.statement}")
        for requirement in result.requirements:
            mark = "met " if requirement.met else "NOT "
            lines.append(f"  [{mark}] {requirement.name}: {requirement.detail}")
        for check in result.checks:
            if check.verdict is verdict:
                continue  # the referenced manifest's signatures, listed above
            lines.append(f"  {check.label} {check.descriptor.digest}:")
            _signatures(lines, check.verdict.outcomes, "    ")
    return "\n".join(lines)


def _signatures(lines: list[str], outcomes: tuple[tuple[str, SignatureOutcome], ...], indent: str) -> None:
    for digest, outcome in outcomes:
        mark = "ok  " if outcome.verified else "fail"
        lines.append(f"{indent}[{mark}] signature {digest}")
        pad = indent + "       "
        if outcome.signer is not None:
            lines.append(f"{pad}signer: {outcome.signer.subject}")
            lines.append(f"{pad}issuer: {outcome.signer.issuer}")
        if outcome.signing_time is not None:
            when = outcome.signing_time.isoformat()
            lines.append(f"{pad}signed: {when} ({outcome.signing_scheme}, {outcome.envelope})")
        if outcome.user_metadata:
            pairs = ", ".join(f"{k}={v}" for k, v in outcome.user_metadata.items())
            lines.append(f"{pad}user metadata: {pairs}")
        for check in outcome.checks:
            note = f": {check.message}" if check.message and check.status is not Status.PASSED else ""
            lines.append(f"{pad}{check.name:<19} {check.status.value}{note}")

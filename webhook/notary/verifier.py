"""Notary Project signature verification: the steps of the trust store and trust policy specification.

``verify_signature`` checks one envelope against one trust policy statement and records every check;
``decide`` folds the outcomes of an image's signatures into a verdict. Pure: the envelope bytes, the
descriptor of the image, the policy, the trust store and ``now`` come in; nothing is fetched.

Revocation evidence (OCSP responses, CRLs) comes from the ``RevocationSource`` the caller passes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from webhook.notary import revocation
from webhook.notary.certs import (
    ChainError,
    ChainMemory,
    chain_key_of,
    check_chain,
    describe,
    subject_attributes,
    trusted_anchor,
    valid_at,
)
from webhook.notary.envelope import (
    H_PLUGIN,
    PAYLOAD_TYPE,
    SCHEME_SIGNING_AUTHORITY,
    SCHEME_X509,
    EnvelopeError,
    SignerInfo,
    parse_envelope,
)
from webhook.notary.payload import PayloadError, parse_payload
from webhook.notary.revocation import RevocationSource, has_revocation_endpoints, summarise
from webhook.notary.timestamp import TimestampError, verify_timestamp
from webhook.notary.trustpolicy import MANDATORY_DN_ATTRIBUTES, Action, TrustPolicy
from webhook.notary.truststore import TrustStore
from webhook.oci.model import Descriptor

CHECK_ORDER = ("integrity", "authenticity", "expiry", "authenticTimestamp", "revocation")


class Status(Enum):
    PASSED = "passed"
    FAILED = "failed"  # failed and enforced: the signature is rejected
    LOGGED = "logged"  # failed, but the policy only logs this check
    SKIPPED = "skipped"  # not run (policy says skip, or an earlier enforced failure stopped the run)


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    message: str = ""


@dataclass(frozen=True)
class Signer:
    """The signing certificate: its subject and issuer (RFC 4514), and the subject's attributes as
    trusted identities are matched against them (empty when they cannot be read)."""

    subject: str
    issuer: str
    attributes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), compare=False)


@dataclass(frozen=True)
class SignatureOutcome:
    verified: bool
    reason: str  # the first enforced failure, "" when verified
    checks: tuple[Check, ...]
    envelope: str = ""
    signing_scheme: str = ""
    signing_time: dt.datetime | None = None
    expiry: dt.datetime | None = None
    signer: Signer | None = None
    chain_not_after: dt.datetime | None = None  # earliest expiry in the chain: a verdict must not outlive it
    # The signed payload's targetArtifact.annotations ("user metadata", notation sign --user-metadata).
    user_metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), compare=False)

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)


class _Stop(Exception):
    """An enforced check failed: no further checks run."""


class _Run:
    def __init__(self, policy: TrustPolicy) -> None:
        self.policy = policy
        self.checks: list[Check] = []
        self.reason = ""

    def record(self, name: str, problem: str | None) -> None:
        action = self.policy.actions[name]
        if problem is None:
            self.checks.append(Check(name, Status.PASSED))
        elif action is Action.ENFORCE:
            self.checks.append(Check(name, Status.FAILED, problem))
            self.reason = f"{name}: {problem}"
            raise _Stop
        else:
            self.checks.append(Check(name, Status.LOGGED, problem))

    def skip(self, name: str, why: str) -> None:
        self.checks.append(Check(name, Status.SKIPPED, why))


def verify_signature(
    media_type: str,
    envelope: bytes,
    target: Descriptor,
    *,
    policy: TrustPolicy,
    store: TrustStore,
    now: dt.datetime,
    revocation_source: RevocationSource | None = None,
    chains: ChainMemory | None = None,
) -> SignatureOutcome:
    """Verify one signature envelope for the artifact ``target`` under ``policy``.

    ``revocation_source`` fetches OCSP responses and CRLs; without one, a certificate that names
    revocation endpoints has an unknown status. ``chains`` remembers the chains that passed their
    checks and reached a trusted root, so that they are not checked again.
    """
    run = _Run(policy)
    info: SignerInfo | None = None
    try:
        if policy.level == "skip":
            for name in CHECK_ORDER:
                run.skip(name, "the trust policy level is skip")
            return SignatureOutcome(True, "", tuple(run.checks))
        # Step 1, integrity (always enforced): parse, signature, chain profile, content type,
        # critical attributes, and the payload's target (notation compares it at every level).
        info, key, problem = _integrity(media_type, envelope, target, chains)
        run.record("integrity", problem)
        assert info is not None
        # Step 2, authenticity: the chain reaches a trusted certificate; the signer is trusted.
        problem, reached_root = _authenticity(info, policy, store)
        if reached_root and chains is not None:
            chains.add(key)  # it passed integrity's chain checks
        run.record("authenticity", problem)
        # Step 3, expiry: the signature's own "best by" time.
        if info.expiry is not None and now >= info.expiry:
            run.record("expiry", f"the signature expired at {info.expiry.isoformat()}")
        else:
            run.record("expiry", None)
        # Step 4, authentic timestamp: every certificate valid at the time the scheme vouches for
        # (with an RFC 3161 timestamp, the TSA's chain is also checked for revocation).
        problem, signed_by = _authentic_time(info, policy, store, now, revocation_source)
        run.record("authenticTimestamp", problem)
        # Step 5, revocation. A revocation whose invalidity date is after the time the signature is
        # known to have existed by (the authentic signing time, or the verified timestamp) does not
        # count against it.
        if policy.actions["revocation"] is Action.SKIP:
            run.skip("revocation", "the trust policy skips revocation checks")
        elif not reached_root:
            # A chain nobody trusts names its own OCSP and CRL URLs: asking them would let anyone
            # who attaches a signature make Referee fetch where they like. Not asked, so unknown.
            run.record("revocation", "not checked: the signing chain does not lead to a trusted certificate")
        else:
            signing_time = signed_by if problem is None else None
            run.record(
                "revocation", _revocation(info.certificate_chain, revocation_source, now, signing_time)
            )
    except _Stop:
        pass
    except (
        ValueError,
        TypeError,
        UnsupportedAlgorithm,
        x509.InvalidVersion,
        x509.DuplicateExtension,
        x509.UnsupportedGeneralNameType,
    ) as exc:
        # Malformed content that a lazy parser only noticed now (cryptography parses certificate
        # fields on first use and reports damage with any of these): fail closed, whatever the
        # level, and attribute it to the check that was running.
        done = {c.name for c in run.checks}
        current = next(name for name in CHECK_ORDER if name not in done)
        run.checks.append(Check(current, Status.FAILED, f"malformed content: {exc}"))
        run.reason = f"{current}: malformed content: {exc}"
    done = {c.name for c in run.checks}
    for name in CHECK_ORDER:
        if name not in done:
            run.skip(name, "not run after an enforced failure")
    return _outcome(run, info)


def _outcome(run: _Run, info: SignerInfo | None) -> SignatureOutcome:
    checks = tuple(sorted(run.checks, key=lambda c: CHECK_ORDER.index(c.name)))
    verified = run.reason == ""
    if info is None or (not verified and run.checks[0].status is Status.FAILED):
        return SignatureOutcome(verified, run.reason, checks)
    leaf = info.leaf
    try:
        attributes: Mapping[str, str] = MappingProxyType(subject_attributes(leaf))
    except (ChainError, ValueError):  # a subject notation cannot read matches no identity
        attributes = MappingProxyType({})
    try:
        user_metadata = parse_payload(info.payload).annotations
    except PayloadError:
        user_metadata = MappingProxyType({})
    return SignatureOutcome(
        verified=verified,
        reason=run.reason,
        checks=checks,
        envelope=info.media_type,
        signing_scheme=info.signing_scheme,
        signing_time=info.time_for_display,
        expiry=info.expiry,
        signer=Signer(describe(leaf), leaf.issuer.rfc4514_string(), attributes),
        chain_not_after=min(c.not_valid_after_utc for c in info.certificate_chain),
        user_metadata=user_metadata,
    )


def _integrity(
    media_type: str, envelope: bytes, target: Descriptor, chains: ChainMemory | None
) -> tuple[SignerInfo | None, bytes, str | None]:
    """The parsed envelope, its chain's key (``chain_key_of`` its exact bytes) and the problem."""
    try:
        info = parse_envelope(media_type, envelope)
        key = chain_key_of(info.certificate_der)
        info.verify_signature()
        check_chain(info.certificate_chain, chains, key)
    except (EnvelopeError, ChainError) as exc:
        return None, b"", str(exc)
    if info.payload_content_type != PAYLOAD_TYPE:
        return info, key, f"payload content type {info.payload_content_type!r} is not {PAYLOAD_TYPE}"
    plugin = info.extended_attributes.get(H_PLUGIN)
    if plugin is not None:
        return info, key, f"the signature requires verification plugin {plugin!r}; Referee runs no plugins"
    unknown = [name for name in info.critical if name in info.extended_attributes]
    if unknown:
        return info, key, f"unknown critical signed attributes {unknown}"
    problem = _payload_target(info.payload, target)
    return info, key, problem


def _payload_target(payload: bytes, target: Descriptor) -> str | None:
    # Notary signature specification, "Payload": the signed descriptor must be the artifact's
    # (media type, digest and size), as notation compares them.
    try:
        artifact = parse_payload(payload)
    except PayloadError as exc:
        return str(exc)
    if (artifact.media_type, artifact.digest, artifact.size) != (
        target.media_type,
        target.digest,
        target.size,
    ):
        return (
            f"the signature is for {artifact.digest} ({artifact.media_type}, {artifact.size} bytes), "
            f"not for this image {target.digest} ({target.media_type}, {target.size} bytes)"
        )
    return None


def _authenticity(info: SignerInfo, policy: TrustPolicy, store: TrustStore) -> tuple[str | None, bool]:
    """The problem (None when the check passes), and whether the chain reached a trusted certificate."""
    store_type = "signingAuthority" if info.signing_scheme == SCHEME_SIGNING_AUTHORITY else "ca"
    names = policy.stores_of_type(store_type)
    trusted = store.certificate_bytes(store_type, names)
    if not trusted:
        scheme = info.signing_scheme
        return (
            f"the trust policy {policy.name!r} names no {store_type} trust store for scheme {scheme}",
            False,
        )
    if trusted_anchor(info.certificate_chain, trusted, info.certificate_der) is None:
        stores = ", ".join(f"{store_type}:{n}" for n in names)
        return f"the signing chain does not lead to a certificate in trust store(s) {stores}", False
    return (None if policy.trust_any_identity else _identity_problem(info, policy)), True


def _identity_problem(info: SignerInfo, policy: TrustPolicy) -> str | None:
    """notation-go verifyX509TrustedIdentities: the leaf subject must contain one listed identity."""
    if not policy.trusted_identities:
        return f"the trust policy {policy.name!r} lists no x509.subject trusted identities"
    try:
        subject = subject_attributes(info.leaf)
    except ChainError as exc:
        return str(exc)
    missing = [a for a in MANDATORY_DN_ATTRIBUTES if not subject.get(a)]
    if missing:
        return f"signing certificate subject {describe(info.leaf)!r} lacks {', '.join(missing)}"
    if not any(identity.matches(subject) for identity in policy.trusted_identities):
        return f"signer {describe(info.leaf)!r} is not a trusted identity of policy {policy.name!r}"
    return None


def _authentic_time(
    info: SignerInfo,
    policy: TrustPolicy,
    store: TrustStore,
    now: dt.datetime,
    source: RevocationSource | None,
) -> tuple[str | None, dt.datetime | None]:
    """The problem (None when the check passes) and the time the signature is known to have existed by."""
    chain = info.certificate_chain
    if info.signing_scheme == SCHEME_SIGNING_AUTHORITY:
        assert info.authentic_signing_time is not None
        problem = valid_at(chain, info.authentic_signing_time)
        return (f"at the authentic signing time: {problem}" if problem else None), info.authentic_signing_time
    assert info.signing_scheme == SCHEME_X509
    has_tsa = bool(policy.stores_of_type("tsa"))
    expired_now = valid_at(chain, now) is not None
    if not has_tsa or (policy.verify_timestamp == "afterCertExpiry" and not expired_now):
        problem = valid_at(chain, now)
        return (f"now: {problem}" if problem else None), None
    return _timestamp(info, policy, store, now, source)


def _timestamp(
    info: SignerInfo,
    policy: TrustPolicy,
    store: TrustStore,
    now: dt.datetime,
    source: RevocationSource | None,
) -> tuple[str | None, dt.datetime | None]:
    """The policy asks for an RFC 3161 timestamp: the signing chain must be valid over the whole
    time range the timestamp vouches for, whose latest edge is returned."""
    chain = info.certificate_chain
    if info.timestamp_token is None:
        return "the trust policy requires a timestamp countersignature and the signature has none", None
    try:
        span = verify_timestamp(
            info.timestamp_token, info.signature, store.certificates("tsa", policy.stores_of_type("tsa"))
        )
    except TimestampError as exc:
        return str(exc), None
    for edge in (span.earliest, span.latest):
        problem = valid_at(chain, edge)
        if problem:
            return f"at the timestamp ({edge.isoformat()}): {problem}", None
    # Spec ("Timestamp countersignature", step 5): the TSA's chain is checked for revocation too,
    # whatever the policy says of the signing chain's revocation (as notation does).
    problem = _revocation(span.chain, source, now, None)
    if problem:
        return f"timestamp authority: {problem}", None
    return None, span.latest


def _revocation(
    chain: tuple[x509.Certificate, ...],
    source: RevocationSource | None,
    now: dt.datetime,
    signing_time: dt.datetime | None,
) -> str | None:
    if source is None:
        # No way to ask: certificates without revocation endpoints pass (they cannot be revoked);
        # any endpoint makes the status unknown, which fails like notation's "unknown".
        for cert in chain[:-1]:
            if has_revocation_endpoints(cert):
                return f"revocation status of {describe(cert)!r} is unknown (no revocation source configured)"
        return None
    return summarise(revocation.check_chain(chain, source, now, signing_time))


# --- many signatures, one verdict ----------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    verified: bool
    reason: str
    policy: str
    level: str
    outcomes: tuple[tuple[str, SignatureOutcome], ...]  # (signature manifest digest, outcome)


def decide(
    policy: TrustPolicy, outcomes: list[tuple[str, SignatureOutcome]], tried_all: bool, limit: int
) -> Verdict:
    """An image passes when one signature passes (Notary has no n-of-m)."""
    done = tuple(outcomes)
    for _, outcome in outcomes:
        if outcome.verified:
            return Verdict(True, "", policy.name, policy.level, done)
    if not outcomes:
        return Verdict(False, "no Notation signature found", policy.name, policy.level, done)
    reasons = "; ".join(f"{digest}: {o.reason}" for digest, o in outcomes)
    if not tried_all:
        return Verdict(
            False,
            f"no valid signature among the first {limit} tried ({reasons})",
            policy.name,
            policy.level,
            done,
        )
    what = "the signature" if len(outcomes) == 1 else f"all {len(outcomes)} signatures"
    return Verdict(False, f"{what} failed verification ({reasons})", policy.name, policy.level, done)

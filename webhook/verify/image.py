"""One image's pipeline: resolve, discover the scheme's signatures, fetch each (digest-checked),
let the scheme verify, fold the outcomes into a verdict; then what a Referee policy statement adds
(``verify.policy``): which manifests must be signed (the one the pod names, or an index's platform
manifests), what their signatures must show (user metadata, distinct signers), and which artifacts
must refer to the image, signed or not. All registry I/O goes through the ``Repository`` seam;
every rule of a scheme lives behind ``SignatureScheme``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from webhook.deadline import Deadline
from webhook.errors import VerificationFailed, VerificationInconclusive
from webhook.notary.verifier import SignatureOutcome, Verdict
from webhook.oci.model import Descriptor, Manifest
from webhook.registry import Repository
from webhook.verify.decision import Artifact, Requirement
from webhook.verify.policy import (
    MAX_PLATFORM_MANIFESTS,
    MAX_REFERRERS_TRIED,
    Judgement,
    ReferrerRule,
    SignerRule,
    Statement,
)
from webhook.verify.schemes import NotASignature, Plan, SignatureScheme

log = logging.getLogger(__name__)

DEFAULT_RULE = SignerRule()


@dataclass(frozen=True)
class ManifestCheck:
    """The signatures of one manifest (the image, one of an index's platform manifests, an
    artifact referring to the image) judged under the trust policy and a ``SignerRule``."""

    label: str  # "image", "image index", "linux/arm64 manifest", "application/spdx+json artifact"
    descriptor: Descriptor
    verdict: Verdict
    judgement: Judgement
    met: bool
    reason: str  # why not met, as a sentence; "" when met

    @property
    def skipped(self) -> bool:
        return self.verdict.level == "skip"

    def status(self) -> str:
        """What a person reads after "its linux/arm64 manifest sha256:…"."""
        if self.met:
            if self.skipped:
                return "is not checked (trust policy level skip)"
            return "is signed by " + ", ".join(repr(s.subject) for s in self.judgement.signers)
        if not self.verdict.outcomes and not self.skipped:
            return "has no Notation signature"
        return f"is not accepted: {self.reason}"

    def winner(self) -> SignatureOutcome | None:
        """The first signature that counted."""
        return next((o for _, o in self.verdict.outcomes if o.verified and o.signer is not None), None)


@dataclass(frozen=True)
class ImageResult:
    image: str
    subject: Descriptor
    verdict: Verdict  # the signatures of the digest the image names, under the trust policy
    allowed: bool | None = None  # None: the verdict decides (no Referee policy statement applied)
    reason: str = ""  # why not allowed, when a statement applied
    statement: str = ""  # the Referee policy statement that applied
    checks: tuple[ManifestCheck, ...] = ()  # every manifest whose signatures were judged
    decisive: tuple[ManifestCheck, ...] = ()  # those the verdict rests on
    requirements: tuple[Requirement, ...] = ()
    artifacts: tuple[Artifact, ...] = ()

    @property
    def verified(self) -> bool:
        return self.verdict.verified if self.allowed is None else self.allowed

    @property
    def why_not(self) -> str:
        return self.verdict.reason if self.allowed is None else self.reason

    def verdicts(self) -> tuple[Verdict, ...]:
        """Every verdict the decision rests on (a cached allow must not outlive any of them)."""
        return (self.verdict, *(c.verdict for c in self.checks))

    def winner(self) -> SignatureOutcome | None:
        for check in self.decisive or ():
            found = check.winner()
            if found is not None:
                return found
        return next((o for _, o in self.verdict.outcomes if o.verified), None)

    def signers(self) -> tuple[tuple[str, str], ...]:
        """(subject, issuer) of every signer counted: the one that verified, without a statement."""
        if not self.decisive:
            winner = self.winner()
            return ((winner.signer.subject, winner.signer.issuer),) if winner and winner.signer else ()
        seen: dict[tuple[str, str], None] = {}
        for check in self.decisive:
            for s in check.judgement.signers:
                seen.setdefault((s.subject, s.issuer), None)
        return tuple(seen)


def verify_image(
    repo: Repository,
    image: str,
    target: str,
    *,
    scope: str,
    scheme: SignatureScheme,
    deadline: Deadline,
    statement: Statement | None = None,
) -> ImageResult:
    """Verify ``image`` (``target`` is its tag or digest in ``repo``) under the plan for ``scope``
    and, when one applies, the Referee policy ``statement``.

    Raises ``VerificationFailed`` when no trust-policy statement applies or the image is missing,
    and ``VerificationInconclusive`` when the registry cannot be read.
    """
    manifest = repo.resolve(target, deadline)
    subject = manifest.descriptor
    try:
        plan = scheme.plan(scope)
    except VerificationFailed as exc:
        raise VerificationFailed(f"{image} ({subject.digest}): {exc}") from None
    pipeline = _Pipeline(repo, scheme, deadline)
    if statement is None:
        skipped = plan.skipped()
        if skipped is not None:
            return ImageResult(image, subject, skipped)
        return ImageResult(image, subject, pipeline.signatures(subject, plan, DEFAULT_RULE)[0])
    return _Statement(pipeline, statement, image, manifest, plan).result()


@dataclass(frozen=True)
class _Pipeline:
    repo: Repository
    scheme: SignatureScheme
    deadline: Deadline

    def signatures(
        self, subject: Descriptor, plan: Plan, rule: SignerRule
    ) -> tuple[Verdict, list[tuple[str, SignatureOutcome]], int]:
        """The signatures of ``subject``, tried until ``rule`` is met or the plan's cap is reached,
        and how many there are."""
        found = self.repo.referrers(subject.digest, self.deadline, self.scheme.artifact_type)
        limit = plan.max_signatures
        outcomes: list[tuple[str, SignatureOutcome]] = []
        for descriptor in found.descriptors[:limit]:
            outcome = self._verify_one(descriptor, subject, plan)
            outcomes.append((descriptor.digest, outcome))
            if outcome.verified and rule.judge(outcomes).met:
                break
        total = len(found.descriptors)
        return plan.decide(outcomes, total <= limit), outcomes, total

    def check(
        self,
        label: str,
        subject: Descriptor,
        plan: Plan,
        rule: SignerRule,
        *,
        signature_required: bool = False,
    ) -> ManifestCheck:
        """``signature_required``: a level-skip statement does not stand for a signature (a signed
        artifact the policy asks for must not pass because nothing was checked)."""
        skipped = plan.skipped()
        if skipped is not None:
            met = rule.is_default and not signature_required
            reason = (
                ""
                if met
                else (
                    f"its signatures are not checked (trust policy statement {plan.name!r} is level skip), "
                    "so what the Referee policy asks of them cannot be shown"
                )
            )
            return ManifestCheck(label, subject, skipped, Judgement(met, met, met, reason, ()), met, reason)
        verdict, outcomes, total = self.signatures(subject, plan, rule)
        judgement = rule.judge(outcomes)
        if not verdict.verified:
            return ManifestCheck(label, subject, verdict, judgement, False, verdict.reason)
        reason = judgement.reason
        if not judgement.met and total > len(outcomes):
            reason += (
                f" (only the first {len(outcomes)} of its {total} signatures are tried: limits.maxSignatures)"
            )
        return ManifestCheck(label, subject, verdict, judgement, judgement.met, reason)

    def _verify_one(self, descriptor: Descriptor, subject: Descriptor, plan: Plan) -> SignatureOutcome:
        """One referrer. A referrer that is not a signature, whose bytes do not match their digest,
        or that any parser or check fails on in any way (a ``RecursionError``, a ``MemoryError``, a
        bug) is an integrity failure of that signature: the next one may still verify. Registry
        trouble (``VerificationInconclusive``, the deadline included) ends the whole image."""
        repo, deadline = self.repo, self.deadline
        try:
            manifest = repo.fetch_manifest(descriptor.digest, deadline, expected=descriptor)
            envelope_descriptor = self.scheme.envelope_of(manifest)
            envelope = repo.fetch_blob(
                envelope_descriptor, deadline, max_bytes=self.scheme.max_envelope_bytes
            )
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


class _Statement:
    """One image under one Referee policy statement: every requirement is checked and reported."""

    def __init__(
        self, pipeline: _Pipeline, statement: Statement, image: str, manifest: Manifest, plan: Plan
    ) -> None:
        self.pipeline, self.statement, self.image = pipeline, statement, image
        self.manifest, self.plan = manifest, plan
        self.subject = manifest.descriptor
        self.checks: list[ManifestCheck] = []
        self.failures: list[str] = []  # requirements of the statement not met
        self.trust_failures: list[str] = []  # the trust policy's own verdict, where it decides
        self.requirements: list[Requirement] = []
        self.artifacts: list[Artifact] = []
        self.fetched: dict[str, Manifest] = {}  # referrers read by digest

    def result(self) -> ImageResult:
        statement = self.statement
        main, decisive = self._signed_manifests()
        self._signature_requirements(decisive)
        for rule in statement.referrers:
            self._referrer(rule)
        reasons = list(self.trust_failures)
        if self.failures:
            reasons.append(f"Referee policy statement {statement.name!r}: " + "; ".join(self.failures))
        reason = "; ".join(reasons)
        verdict = main.verdict if main is not None else _not_looked_at(self.plan, statement)
        return ImageResult(
            image=self.image,
            subject=self.subject,
            verdict=verdict,
            allowed=not reasons,
            reason=reason,
            statement=statement.name,
            checks=tuple(self.checks),
            decisive=tuple(decisive),
            requirements=tuple(self.requirements),
            artifacts=tuple(self.artifacts),
        )

    def _check(
        self,
        label: str,
        subject: Descriptor,
        plan: Plan,
        rule: SignerRule,
        *,
        signature_required: bool = False,
    ) -> ManifestCheck:
        check = self.pipeline.check(label, subject, plan, rule, signature_required=signature_required)
        self.checks.append(check)
        return check

    # --- signedManifest ------------------------------------------------------------------------

    def _signed_manifests(self) -> tuple[ManifestCheck | None, list[ManifestCheck]]:
        """The check of the referenced manifest (None when not looked at) and the checks the
        verdict rests on; a failure is recorded in ``failures``."""
        statement, rule = self.statement, self.statement.signers
        mode = statement.signed_manifest
        is_index = self.manifest.is_index
        if mode == "referenced" or not is_index:
            # A single manifest is what the kubelet pulls, whatever the mode.
            only = self._check("image index" if is_index else "image", self.subject, self.plan, rule)
            if not only.met:
                (self.failures if only.verdict.verified else self.trust_failures).append(only.reason)
            self.requirements.append(Requirement("signedManifest", only.met, self._manifest_detail(only)))
            return only, [only]
        main: ManifestCheck | None = None
        if mode == "referencedOrPlatforms":
            main = self._check("image index", self.subject, self.plan, rule)
            if main.met:
                detail = f"referencedOrPlatforms: {self._manifest_detail(main)}"
                self.requirements.append(Requirement("signedManifest", True, detail))
                return main, [main]
        children, missing = self._platform_manifests()
        problems = [f"it has no {p} manifest" for p in missing]
        checks = [self._check(f"{label} manifest", child, self.plan, rule) for label, child in children]
        problems += [f"its {c.label} {c.descriptor.digest} {c.status()}" for c in checks if not c.met]
        platforms = ", ".join(str(p) for p in statement.platforms)
        parts = [f"{c.label} {c.descriptor.digest} {c.status()}" for c in checks]
        parts += [f"no {p} manifest" for p in missing]
        if main is not None:
            head = "is not signed" if not main.verdict.outcomes else f"is not accepted ({main.reason})"
            parts.insert(0, f"image index {self.subject.digest} {head}")
            if problems:
                problems.insert(0, f"image index {self.subject.digest} {head}")
        elif problems:
            problems[0] = f"image index {self.subject.digest}: {problems[0]}"
        met = not problems
        if problems:
            self.failures.append("; ".join(problems) + f" (signedManifest {mode} for {platforms})")
        self.requirements.append(
            Requirement("signedManifest", met, f"{mode} [{platforms}]: " + "; ".join(parts))
        )
        return main, checks

    def _platform_manifests(self) -> tuple[list[tuple[str, Descriptor]], list[str]]:
        """(platform label, descriptor) of every index entry for a listed platform, and the listed
        platforms the index lacks."""
        chosen: dict[str, tuple[str, Descriptor]] = {}
        missing = []
        for spec in self.statement.platforms:
            entries = [
                d for d in self.manifest.manifests if d.platform is not None and spec.matches(d.platform)
            ]
            if not entries:
                missing.append(str(spec))
            for d in entries:
                chosen.setdefault(d.digest, (str(d.platform), Descriptor(d.media_type, d.digest, d.size)))
        if len(chosen) > MAX_PLATFORM_MANIFESTS:
            raise VerificationFailed(
                f"{self.image} ({self.subject.digest}): the image index has {len(chosen)} manifests for "
                f"the platforms Referee policy statement {self.statement.name!r} lists, more than the "
                f"{MAX_PLATFORM_MANIFESTS} Referee verifies"
            )
        return list(chosen.values()), missing

    @staticmethod
    def _manifest_detail(check: ManifestCheck) -> str:
        return f"{check.label} {check.descriptor.digest} {check.status()}"

    # --- what the signatures must show -----------------------------------------------------------

    def _signature_requirements(self, decisive: list[ManifestCheck]) -> None:
        rule = self.statement.signers
        judged = [c for c in decisive if c.verdict.verified and not c.skipped]
        where = ", ".join(f"{c.label} {c.descriptor.digest}" for c in judged) or "no verified manifest"
        if rule.user_metadata:
            met = bool(judged) and all(c.judgement.metadata_met for c in judged)
            pairs = ", ".join(f"{k}={v}" for k, v in rule.user_metadata.items())
            self.requirements.append(Requirement("userMetadata", met, f"{pairs} ({where})"))
        if rule.min_signers > 1:
            met = bool(judged) and all(c.judgement.signers_met for c in judged)
            counts = ", ".join(f"{len(c.judgement.signers)} for {c.label}" for c in judged)
            detail = f"{rule.min_signers} distinct signers ({counts or 'none verified'})"
            self.requirements.append(Requirement("minSigners", met, detail))
        if rule.required_identities:
            met = bool(judged) and all(c.judgement.signers_met for c in judged)
            names = ", ".join(i.text for i in rule.required_identities)
            self.requirements.append(Requirement("requiredIdentities", met, f"{names} ({where})"))

    # --- referrers ---------------------------------------------------------------------------------

    def _referrer(self, rule: ReferrerRule) -> None:
        """At least one artifact of the rule's type refers to the image (its manifest read by digest,
        its subject this image); with ``signed``, one whose own signature verifies."""
        pipeline, subject = self.pipeline, self.subject
        found = pipeline.repo.referrers(subject.digest, pipeline.deadline, rule.artifact_type)
        plan = self.plan
        if rule.signed and rule.trust_policy:
            try:
                plan = pipeline.scheme.named_plan(rule.trust_policy)
            except VerificationFailed as exc:
                self._referrer_outcome(
                    rule, False, f"{exc} (Referee policy names it for {rule.artifact_type})"
                )
                return
        label = f"{rule.artifact_type} artifact"
        problems: list[str] = []
        accepted = ""
        for descriptor in found.descriptors[:MAX_REFERRERS_TRIED]:
            problem = self._refers_here(descriptor, rule)
            if problem is not None:
                problems.append(f"{descriptor.digest} {problem}")
                continue
            if not rule.signed:
                self.artifacts.append(Artifact(rule.artifact_type, descriptor.digest, None))
                accepted = f"{label} {descriptor.digest}"
                break
            artifact = self._artifact_descriptor(descriptor)
            check = self._check(label, artifact, plan, DEFAULT_RULE, signature_required=True)
            winner = check.winner()
            self.artifacts.append(
                Artifact(
                    rule.artifact_type,
                    artifact.digest,
                    check.met,
                    winner.signer.subject if winner and winner.signer else "",
                )
            )
            if check.met:
                accepted = f"{label} {artifact.digest} {check.status()}"
                break
            problems.append(f"its {label} {artifact.digest} {check.status()}")
        if accepted:
            self._referrer_outcome(rule, True, accepted)
        elif not found.descriptors:
            self._referrer_outcome(rule, False, f"no {label} refers to it")
        else:
            self._referrer_outcome(rule, False, "; ".join(problems))

    def _refers_here(self, descriptor: Descriptor, rule: ReferrerRule) -> str | None:
        """Why a listed referrer does not count (the listing is the registry's word; the manifest,
        read by digest, decides): None when its subject is this image and its type the rule's."""
        pipeline = self.pipeline
        try:
            manifest = pipeline.repo.fetch_manifest(descriptor.digest, pipeline.deadline, expected=descriptor)
        except VerificationFailed as exc:
            return f"cannot be read ({exc})"
        self.fetched[descriptor.digest] = manifest
        if manifest.subject is None or manifest.subject.digest != self.subject.digest:
            return "does not refer to this image"
        if manifest.effective_artifact_type != rule.artifact_type:
            return f"is of type {manifest.effective_artifact_type}, not {rule.artifact_type}"
        return None

    def _artifact_descriptor(self, descriptor: Descriptor) -> Descriptor:
        """The artifact as its own bytes describe it (what a signature of it signs)."""
        d = self.fetched[descriptor.digest].descriptor
        return Descriptor(d.media_type, d.digest, d.size)

    def _referrer_outcome(self, rule: ReferrerRule, met: bool, detail: str) -> None:
        wanted = rule.describe() + ("" if rule.required else ", reported only")
        self.requirements.append(Requirement("referrer", met, f"{wanted}: {detail}"))
        if not met and rule.required:
            self.failures.append(f"{detail} (required: {rule.describe()})")


def _not_looked_at(plan: Plan, statement: Statement) -> Verdict:
    """The referenced index's verdict under ``signedManifest: platforms``: its signatures do not
    decide, so they are not read."""
    reason = f"the index's own signatures are not looked at (signedManifest: platforms, {statement.name!r})"
    return Verdict(False, reason, plan.name, "", ())

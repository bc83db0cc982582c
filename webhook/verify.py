"""Verifying one image: resolve, find its Notation signatures, fetch them, and let the notary
package decide. All registry I/O goes through the ``Repository`` seam; all rules live in
``webhook.notary``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

from webhook.cache import SingleFlight, TTLCache
from webhook.deadline import Deadline
from webhook.errors import InvalidReference, RefereeError, VerificationFailed, VerificationInconclusive
from webhook.metrics import metrics
from webhook.notary.envelope import ENVELOPE_TYPES, MAX_ENVELOPE_BYTES
from webhook.notary.revocation import RevocationSource
from webhook.notary.trustpolicy import TrustPolicy, TrustPolicyDocument
from webhook.notary.truststore import TrustStore
from webhook.notary.verifier import Check, SignatureOutcome, Status, Verdict, decide, verify_signature
from webhook.oci import NOTARY_SIGNATURE, Descriptor, Manifest, is_notary_signature
from webhook.policy import Policy
from webhook.reference import Reference, respelled
from webhook.reference import parse as parse_reference
from webhook.registry import Repository
from webhook.registry.client import HttpRepository, RegistryClient
from webhook.registry.credentials import Credential, Keyring
from webhook.reloading import Reloading
from webhook.trustfiles import TrustFiles, TrustMaterial

log = logging.getLogger(__name__)

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


# --- many images, one request (the admission path) -----------------------------------------------


@dataclass(frozen=True)
class ImageDecision:
    image: str  # as the workload wrote it
    allowed: bool
    reason: str = ""  # why not, or why allowed without checking (exempt)
    digest: str | None = None
    inconclusive: bool = False  # could not decide (never cached)
    cached: bool = False
    signer_subject: str = ""  # of the signature that verified
    signer_issuer: str = ""
    signing_time: str = ""  # RFC 3339
    signing_scheme: str = ""
    canonical: str = ""  # the reference Referee decided on, when it is spelt otherwise than written
    cache_age_s: float = 0.0  # for an answer from the cache: how old it is
    recheck_in_s: float = 0.0  # and how soon it is checked again

    def describe(self) -> str:
        details = [f"as {self.canonical}"] if self.canonical else []
        if self.digest:
            details.append(self.digest)
        where = f" ({', '.join(details)})" if details else ""
        text = f"image {self.image}{where}: {self.reason}"
        if self.cached and not self.allowed:
            text += (
                f" (Referee's answer from {self.cache_age_s:.0f} s ago; "
                f"it is checked again in {max(1.0, self.recheck_in_s):.0f} s)"
            )
        return text


@dataclass(frozen=True)
class _Job:
    """One image to verify: the digest, the trust it is verified against, the credentials to read it."""

    image: str
    scope: str  # the repository, as trust policy scopes name it
    digest: str
    trust: TrustMaterial
    deadline: Deadline
    credentials: tuple[Credential, ...]
    canonical: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        """The verdict cache key of a positive verdict: (repository, digest, trust fingerprint)."""
        return (self.scope, self.digest, self.trust.fingerprint)

    @property
    def who(self) -> str:
        """Which credentials read the registry (fingerprints only)."""
        return ",".join(c.fingerprint() for c in self.credentials)

    @property
    def denied_key(self) -> tuple[str, str, str]:
        """A negative verdict also depends on who asked: a registry that hides an image from
        callers without credentials answers "not found" to them only."""
        return (self.scope, self.digest, f"{self.trust.fingerprint}|{self.who}")


class Gate:
    """Decides images for admission: parallel, bounded by a deadline, cached, one flight per image.

    Positive verdicts are cached by (repository, digest, trust fingerprint), so a change of trust
    policy or trust store is a cache miss, and never longer than the signing chain or the signature
    is valid; negative verdicts also by the credentials that read the registry, and briefly (a user
    who signs an image after a denial is admitted on the next try); tag to digest resolution is
    cached separately and briefly; inconclusive outcomes are not cached.
    """

    def __init__(
        self,
        client: RegistryClient,
        trust_files: TrustFiles,
        *,
        verdict_ttl_s: float,
        tag_ttl_s: float,
        max_entries: int,
        max_signatures: int,
        revocation: RevocationSource | None,
        policy: Policy | None = None,
        denied_ttl_s: float = 15.0,
        workers: int = 16,
        credentials: Reloading[Keyring] | None = None,
    ) -> None:
        self._client = client
        self._trust = trust_files
        self._verdict_ttl_s = verdict_ttl_s
        self._denied_ttl_s = denied_ttl_s
        self._tag_ttl_s = tag_ttl_s
        self._max_signatures = max_signatures
        self._revocation = revocation
        self._policy = policy or Policy()
        self._credentials_files = credentials  # configured credentials; else the client's keyring
        self.verdicts: TTLCache[tuple[str, str, str], ImageDecision] = TTLCache(max_entries)
        self.tags: TTLCache[str, str] = TTLCache(max_entries)
        self._flight: SingleFlight[tuple[str, str, str, str], ImageDecision] = SingleFlight()
        self._resolving: SingleFlight[tuple[str, str], str] = SingleFlight()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="referee-verify")
        self._count_lock = threading.Lock()
        self.verifications = 0  # signature verifications run (not answered from cache or shared)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def client(self) -> RegistryClient:
        """The registry client (its ``on_response`` hook sees every registry answer)."""
        return self._client

    def trust_material(self) -> TrustMaterial:
        return self._trust.current()

    def reload_errors(self) -> tuple[str, str]:
        """Why the trust material and the credentials files on disk are not the ones in use (each ""
        when they are); the files are looked at first."""
        self._trust.current()
        files = self._credentials_files
        if files is not None:
            files.current()
        return self._trust.last_error, files.last_error if files else ""

    def decide(
        self, images: list[str], deadline: Deadline, keyring: Keyring | None = None
    ) -> list[ImageDecision]:
        """One decision per distinct image, in first-seen order. ``keyring`` holds credentials of
        this request (a pod's pull secrets), tried before the configured ones."""
        unique = list(dict.fromkeys(images))
        futures = {image: self._pool.submit(self._decide_one, image, deadline, keyring) for image in unique}
        wait(futures.values(), timeout=max(0.0, deadline.remaining_s()))
        out = []
        for image, future in futures.items():
            if future.done():
                try:
                    out.append(future.result())
                except Exception:  # a bug must deny the image, not fail the whole request
                    log.exception("internal error while deciding %s", image)
                    out.append(
                        ImageDecision(image, False, "internal error while verifying", inconclusive=True)
                    )
            else:
                future.cancel()
                out.append(
                    ImageDecision(image, False, "not decided in time (registry too slow)", inconclusive=True)
                )
        return out

    def _decide_one(self, image: str, deadline: Deadline, keyring: Keyring | None) -> ImageDecision:
        started = time.monotonic()
        decision = self._decide_uncounted(image, deadline, keyring)
        outcome = "allowed" if decision.allowed else "inconclusive" if decision.inconclusive else "denied"
        metrics().verify_seconds.labels(outcome).observe(time.monotonic() - started)
        metrics().cache.labels("verdict", "hit" if decision.cached else "miss").inc()
        return decision

    def _decide_uncounted(self, image: str, deadline: Deadline, keyring: Keyring | None) -> ImageDecision:
        try:
            ref = parse_reference(image)
        except InvalidReference as exc:
            return ImageDecision(image, False, str(exc))
        canonical = str(ref) if respelled(image, ref) else ""
        precheck = self._policy.precheck(ref)
        if precheck is not None:
            return ImageDecision(image, precheck.allowed, precheck.reason, ref.digest, canonical=canonical)
        decision = self._decide_reference(image, ref, deadline, keyring)
        return dataclasses.replace(decision, canonical=canonical) if canonical else decision

    def _decide_reference(
        self, image: str, ref: Reference, deadline: Deadline, keyring: Keyring | None
    ) -> ImageDecision:
        trust = self._trust.current()
        credentials = self._credentials(ref, keyring)
        repo = self._client.repository(ref, credentials)
        who = ",".join(c.fingerprint() for c in credentials)
        try:
            digest = ref.digest or self.tags.get(str(ref)) or self._resolve(repo, ref, deadline, who)
        except VerificationFailed as exc:
            return ImageDecision(image, False, _short_reason(exc))
        except VerificationInconclusive as exc:
            return ImageDecision(image, False, f"could not check: {_short_reason(exc)}", inconclusive=True)
        except TimeoutError:
            return ImageDecision(image, False, "not decided in time (registry too slow)", inconclusive=True)
        job = _Job(image, ref.name, digest, trust, deadline, tuple(credentials))
        return self._cached_or_verified(job)

    def _credentials(self, ref: Reference, keyring: Keyring | None) -> list[Credential]:
        files = self._credentials_files
        configured = (files.current() if files else self._client.keyring).lookup(ref.domain, ref.path)
        if keyring is None:
            return configured
        ours = keyring.lookup(ref.domain, ref.path)
        seen = {c.fingerprint() for c in ours}
        return ours + [c for c in configured if c.fingerprint() not in seen]

    def _cached_or_verified(self, job: _Job) -> ImageDecision:
        # A verdict is about the digest, whoever asked: credentials only decide whether the
        # registry could be read. A verification in flight is shared only by requests that would
        # read the registry with the same credentials (one without may fail where one with would not).
        for key in (job.key, job.denied_key):
            cached = self.verdicts.entry(key)
            if cached is not None:
                return dataclasses.replace(
                    cached.value,
                    image=job.image,
                    cached=True,
                    cache_age_s=cached.age_s,
                    recheck_in_s=cached.left_s,
                )
        flight = (*job.key, job.who)  # as in _resolve
        try:
            shared = self._flight.do(flight, lambda: self._verify(job), max(0.0, job.deadline.remaining_s()))
            return dataclasses.replace(shared, image=job.image)
        except TimeoutError:
            return ImageDecision(job.image, False, "not decided in time", job.digest, inconclusive=True)

    def _resolve(self, repo: HttpRepository, ref: Reference, deadline: Deadline, who: str) -> str:
        """The digest a tag names now; concurrent requests for the same tag with the same
        credentials share one lookup (a new Deployment's pods arrive together)."""

        def lookup() -> str:
            digest = repo.resolve(ref.target, deadline).descriptor.digest
            self.tags.put(str(ref), digest, self._tag_ttl_s)
            return digest

        return self._resolving.do((str(ref), who), lookup, max(0.0, deadline.remaining_s()))

    def _verify(self, job: _Job) -> ImageDecision:
        with self._count_lock:
            self.verifications += 1
        metrics().in_flight.inc()
        try:
            return self._verify_counted(job)
        finally:
            metrics().in_flight.dec()

    def _verify_counted(self, job: _Job) -> ImageDecision:
        image, digest = job.image, job.digest
        now = dt.datetime.now(dt.UTC)
        repo = self._client.repository(parse_reference(f"{job.scope}@{digest}"), list(job.credentials))
        settings = Trust(job.trust.policy, job.trust.store, now, self._max_signatures, self._revocation)
        try:
            result = verify_image(repo, image, digest, scope=job.scope, trust=settings, deadline=job.deadline)
        except VerificationFailed as exc:
            decision = ImageDecision(image, False, _short_reason(exc), digest)
            self.verdicts.put(job.denied_key, decision, self._denied_ttl_s)
            return decision
        except VerificationInconclusive as exc:
            return ImageDecision(
                image, False, f"could not check: {_short_reason(exc)}", digest, inconclusive=True
            )
        verdict = result.verdict
        decision = ImageDecision(image, verdict.verified, verdict.reason, digest)
        winner = next((o for _, o in verdict.outcomes if o.verified), None)
        if winner is not None and winner.signer is not None:
            decision = dataclasses.replace(
                decision,
                signer_subject=winner.signer.subject,
                signer_issuer=winner.signer.issuer,
                signing_time=winner.signing_time.isoformat() if winner.signing_time else "",
                signing_scheme=winner.signing_scheme,
            )
        if decision.allowed:
            self.verdicts.put(job.key, decision, self._ttl(verdict, now))
        else:
            self.verdicts.put(job.denied_key, decision, min(self._denied_ttl_s, self._ttl(verdict, now)))
        return decision

    def _ttl(self, verdict: Verdict, now: dt.datetime) -> float:
        ttl = self._verdict_ttl_s
        for _, outcome in verdict.outcomes:
            if outcome.verified:
                for limit in (outcome.chain_not_after, outcome.expiry):
                    if limit is not None:
                        ttl = min(ttl, (limit - now).total_seconds())
        return ttl


def _short_reason(exc: Exception) -> str:
    """An error's text, clipped to what a person reads in kubectl's output."""
    text = str(exc)
    return text if len(text) <= 600 else text[:600] + "..."

"""The gate: many images of one request decided in parallel, within the deadline, from the cache
when a verdict is known, one verification in flight per (image, trust, credentials).

The pipeline for one image is ``verify.image``; what Referee adds around the trust policy (exempt,
allowed registries, digests) is ``verify.policy``; the verdict store is ``verify.cache``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

from webhook.deadline import Deadline
from webhook.errors import InvalidReference, VerificationFailed, VerificationInconclusive
from webhook.metrics import metrics
from webhook.notary.revocation import RevocationSource
from webhook.notary.verifier import Verdict
from webhook.oci.reference import Reference, respelled
from webhook.oci.reference import parse as parse_reference
from webhook.registry import Registry, Repository
from webhook.registry.credentials import Credential, Keyring
from webhook.reloading import Reloading
from webhook.trust.files import TrustFiles, TrustMaterial
from webhook.verify.cache import SingleFlight, TTLCache, VerdictCache
from webhook.verify.decision import Decision
from webhook.verify.image import verify_image
from webhook.verify.policy import Policy, PolicyFile, Statement
from webhook.verify.schemes import NotaryScheme, Trust

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Request:
    """What every image of one request shares: its deadline, its credentials, its moment."""

    deadline: Deadline
    keyring: Keyring | None
    now: dt.datetime


@dataclass(frozen=True)
class _Job:
    """One image to verify: the digest, the trust it is verified against, the credentials to read it."""

    image: str
    scope: str  # the repository, as trust policy scopes name it
    digest: str
    trust: TrustMaterial
    deadline: Deadline
    credentials: tuple[Credential, ...]
    now: dt.datetime
    settings: str = ""  # the fingerprint of Referee's settings that change a verdict
    statement: Statement | None = None  # the Referee policy statement for the repository

    @property
    def key(self) -> tuple[str, str, str]:
        """The verdict cache key of a positive verdict: (repository, digest, trust and settings)."""
        return (self.scope, self.digest, f"{self.trust.fingerprint}|{self.settings}")

    @property
    def who(self) -> str:
        """Which credentials read the registry (fingerprints only)."""
        return ",".join(c.fingerprint() for c in self.credentials)

    @property
    def denied_key(self) -> tuple[str, str, str]:
        """A negative verdict also depends on who asked: a registry that hides an image from
        callers without credentials answers "not found" to them only."""
        return (self.scope, self.digest, f"{self.trust.fingerprint}|{self.settings}|{self.who}")


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
        client: Registry,
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
        verdicts: VerdictCache[tuple[str, str, str], Decision] | None = None,
        statements: PolicyFile | None = None,
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
        self._statements = statements or PolicyFile(None)  # Referee's policy document
        self.verdicts: VerdictCache[tuple[str, str, str], Decision] = verdicts or TTLCache(max_entries)
        # Settings that change what a verification concludes belong in the verdict's key.
        self._settings = f"maxSignatures={max_signatures}"
        # Tag -> digest, per credentials: a registry may show a private tag to some callers only.
        self.tags: TTLCache[tuple[str, str], str] = TTLCache(max_entries)
        self._flight: SingleFlight[tuple[str, str, str, str], Decision] = SingleFlight()
        self._resolving: SingleFlight[tuple[str, str], str] = SingleFlight()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="referee-verify")
        self._count_lock = threading.Lock()
        self.verifications = 0  # signature verifications run (not answered from cache or shared)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def client(self) -> Registry:
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

    def policy_reload_error(self) -> str:
        """Why the Referee policy document on disk is not the one in use ("" when it is)."""
        self._statements.current()
        return self._statements.last_error

    def decide(
        self,
        images: list[str],
        deadline: Deadline,
        keyring: Keyring | None = None,
        now: dt.datetime | None = None,
    ) -> list[Decision]:
        """One decision per distinct image, in first-seen order. ``keyring`` holds credentials of
        this request (a pod's pull secrets), tried before the configured ones; ``now`` is the
        moment every signature of the request is judged at (taken here when not given)."""
        unique = list(dict.fromkeys(images))
        request = _Request(deadline, keyring, now or dt.datetime.now(dt.UTC))
        futures = {image: self._pool.submit(self._decide_one, image, request) for image in unique}
        wait(futures.values(), timeout=max(0.0, deadline.remaining_s()))
        out = []
        for image, future in futures.items():
            if future.done():
                try:
                    out.append(future.result())
                except Exception:  # a bug must deny the image, not fail the whole request
                    log.exception("internal error while deciding %s", image)
                    out.append(Decision.unchecked(image, "internal error while verifying"))
            else:
                future.cancel()
                out.append(Decision.late(image))
        return out

    def _decide_one(self, image: str, request: _Request) -> Decision:
        started = time.monotonic()
        decision = self._decide_uncounted(image, request)
        outcome = "allowed" if decision.allowed else "inconclusive" if decision.inconclusive else "denied"
        metrics().verify_seconds.labels(outcome).observe(time.monotonic() - started)
        metrics().cache.labels("verdict", "hit" if decision.cached else "miss").inc()
        return decision

    def _decide_uncounted(self, image: str, request: _Request) -> Decision:
        try:
            ref = parse_reference(image)
        except InvalidReference as exc:
            return Decision.refused(image, str(exc))
        canonical = str(ref) if respelled(image, ref) else ""
        precheck = self._policy.precheck(ref)
        if precheck is not None:
            return Decision(image, precheck.allowed, precheck.reason, ref.digest, canonical=canonical)
        decision = self._decide_reference(image, ref, request)
        return dataclasses.replace(decision, canonical=canonical) if canonical else decision

    def _decide_reference(self, image: str, ref: Reference, request: _Request) -> Decision:
        deadline = request.deadline
        trust = self._trust.current()
        credentials = self._credentials(ref, request.keyring)
        repo = self._client.repository(ref, credentials)
        who = ",".join(c.fingerprint() for c in credentials)
        try:
            digest = ref.digest or self.tags.get((str(ref), who)) or self._resolve(repo, ref, deadline, who)
        except VerificationFailed as exc:
            return Decision.refused(image, str(exc))
        except VerificationInconclusive as exc:
            return Decision.unchecked(image, str(exc))
        except TimeoutError:
            return Decision.late(image)
        # The policy document's fingerprint joins the key: a changed statement is a cache miss.
        document = self._statements.current()
        settings = (
            f"{self._settings}|policy={document.fingerprint}" if document.fingerprint else self._settings
        )
        job = _Job(image, ref.name, digest, trust, deadline, tuple(credentials), request.now, settings,
                   document.select(ref.name))  # fmt: skip
        return self._cached_or_verified(job)

    def _credentials(self, ref: Reference, keyring: Keyring | None) -> list[Credential]:
        files = self._credentials_files
        configured = (files.current() if files else self._client.keyring).lookup(ref.domain, ref.path)
        if keyring is None:
            return configured
        ours = keyring.lookup(ref.domain, ref.path)
        seen = {c.fingerprint() for c in ours}
        return ours + [c for c in configured if c.fingerprint() not in seen]

    def _cached_or_verified(self, job: _Job) -> Decision:
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
            return Decision.late(job.image, job.digest)

    def _resolve(self, repo: Repository, ref: Reference, deadline: Deadline, who: str) -> str:
        """The digest a tag names now; concurrent requests for the same tag with the same
        credentials share one lookup (a new Deployment's pods arrive together)."""

        def lookup() -> str:
            digest = repo.resolve(ref.target, deadline).descriptor.digest
            self.tags.put((str(ref), who), digest, self._tag_ttl_s)
            return digest

        return self._resolving.do((str(ref), who), lookup, max(0.0, deadline.remaining_s()))

    def _verify(self, job: _Job) -> Decision:
        with self._count_lock:
            self.verifications += 1
        metrics().in_flight.inc()
        try:
            return self._verify_counted(job)
        finally:
            metrics().in_flight.dec()

    def _verify_counted(self, job: _Job) -> Decision:
        image, digest = job.image, job.digest
        now = job.now
        repo = self._client.repository(parse_reference(f"{job.scope}@{digest}"), list(job.credentials))
        scheme = NotaryScheme(
            Trust(job.trust.policy, job.trust.store, now, self._max_signatures, self._revocation)
        )
        try:
            result = verify_image(
                repo,
                image,
                digest,
                scope=job.scope,
                scheme=scheme,
                deadline=job.deadline,
                statement=job.statement,
            )
        except VerificationFailed as exc:
            decision = Decision.refused(image, str(exc), digest)
            self.verdicts.put(job.denied_key, decision, self._denied_ttl_s)
            return decision
        except VerificationInconclusive as exc:
            return Decision.unchecked(image, str(exc), digest)
        decision = Decision(
            image, result.verified, result.why_not, digest, statement=result.statement,
            requirements=result.requirements, artifacts=result.artifacts, signers=result.signers(),
        )  # fmt: skip
        winner = result.winner()
        if winner is not None and winner.signer is not None:
            decision = dataclasses.replace(
                decision,
                signer_subject=winner.signer.subject,
                signer_issuer=winner.signer.issuer,
                signing_time=winner.signing_time.isoformat() if winner.signing_time else "",
                signing_scheme=winner.signing_scheme,
            )
        ttl = self._ttl(result.verdicts(), now)
        if decision.allowed:
            self.verdicts.put(job.key, decision, ttl)
        else:
            self.verdicts.put(job.denied_key, decision, min(self._denied_ttl_s, ttl))
        return decision

    def _ttl(self, verdicts: tuple[Verdict, ...], now: dt.datetime) -> float:
        """Never longer than any signature the decision rests on stays valid."""
        ttl = self._verdict_ttl_s
        for verdict in verdicts:
            for _, outcome in verdict.outcomes:
                if outcome.verified:
                    for limit in (outcome.chain_not_after, outcome.expiry):
                        if limit is not None:
                            ttl = min(ttl, (limit - now).total_seconds())
        return ttl

"""The gate: many images of one request decided in parallel, within the deadline, from the cache
when a verdict is known, one verification in flight per (image, trust, credentials).

A known verdict is answered in the request's own thread, without waiting for the pool; every other
image takes a slot of its registry host first (at most ``per_host`` at once), so a registry that
stalls can hold only its own share of the pool, never the verifications of other registries.

The pipeline for one image is ``verify.image``; what Referee adds around the trust policy (exempt,
allowed registries, digests) is ``verify.policy``; the verdict store is ``verify.cache``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
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
from webhook.trust.revocation import HttpRevocationSource
from webhook.verify.cache import Entry, KeySet, SingleFlight, TTLCache, VerdictCache
from webhook.verify.decision import Decision
from webhook.verify.image import verify_image
from webhook.verify.policy import Policy, PolicyFile, Statement
from webhook.verify.schemes import NotaryScheme, Trust

log = logging.getLogger(__name__)

MAX_TRUSTED_CHAINS = 1024  # SHA-256 keys (about 100 KiB)


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
        workers: int = 40,
        per_host: int | None = None,
        credentials: Reloading[Keyring] | None = None,
        verdicts: VerdictCache[tuple[str, str, str], Decision] | None = None,
        tags: VerdictCache[tuple[str, str], str] | None = None,
        statements: PolicyFile | None = None,
        shared_state: Callable[[], str] | None = None,
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
        self.verdicts: VerdictCache[tuple[str, str, str], Decision] = (
            TTLCache(max_entries) if verdicts is None else verdicts
        )
        # Settings that change what a verification concludes belong in the verdict's key (replicas
        # sharing a cache may differ in them).
        self._settings = f"maxSignatures={max_signatures}"
        if isinstance(revocation, HttpRevocationSource):
            self._settings += f"|revocation={revocation.fingerprint}"
        # Tag -> digest, per credentials: a registry may show a private tag to some callers only.
        self.tags: VerdictCache[tuple[str, str], str] = TTLCache(max_entries) if tags is None else tags
        self._shared_state = shared_state  # the shared cache's state, for /readyz
        self.chains = KeySet(MAX_TRUSTED_CHAINS)  # hashes of chains that reached a trusted root
        self._flight: SingleFlight[tuple[str, str, str, str], Decision] = SingleFlight()
        self._resolving: SingleFlight[tuple[str, str], str] = SingleFlight()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="referee-verify")
        self._hosts = HostSlots(per_host if per_host is not None else max(1, workers // 2))
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

    def shared_cache_state(self) -> str:
        """The shared cache's state ("" when there is none): it never makes Referee unready."""
        return self._shared_state() if self._shared_state else ""

    def _tag(self, ref: Reference, who: str, *, nearby: bool = False) -> str | None:
        found = (self.tags.nearby if nearby else self.tags.entry)((str(ref), who))
        # Another replica may keep tags longer: never use one older than this replica would keep.
        return None if found is None or found.age_s >= self._tag_ttl_s else found.value

    def _verdict(self, key: tuple[str, str, str], *, nearby: bool = False) -> Entry[Decision] | None:
        """The cached verdict for ``key`` while it is younger than this replica keeps one of its
        kind: another replica sharing the store may keep allows or denials longer. ``nearby``: from
        this process's memory only."""
        found = (self.verdicts.nearby if nearby else self.verdicts.entry)(key)
        if found is None:
            return None
        longest_s = self._verdict_ttl_s if found.value.allowed else self._denied_ttl_s
        if found.age_s >= longest_s:
            return None
        return Entry(found.value, found.age_s, min(found.left_s, longest_s - found.age_s))

    def generation(self) -> tuple[str, str, object]:
        """What every decision also rests on, beyond its image: the trust material's and the policy
        document's fingerprints and the configured credentials in use (compared by identity); an
        answer kept for reuse is good only while this stays the same."""
        files = self._credentials_files
        keyring = files.current() if files is not None else self._client.keyring
        return (self._trust.current().fingerprint, self._statements.current().fingerprint, keyring)

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
        answers: dict[str, Decision] = {}
        waiting: list[tuple[str, str]] = []  # (image, registry host) still to be given a slot
        for image in unique:
            known = self._known(image, request)
            if isinstance(known, Decision):
                answers[image] = known
            else:
                waiting.append((image, known))
        futures: dict[str, Future[Decision]] = {}
        while waiting:
            seen = self._hosts.releases
            waiting = [(i, h) for i, h in waiting if not self._start(i, h, request, futures)]
            if waiting and not self._hosts.wait_for_release(seen, deadline.remaining_s()):
                break
        wait(futures.values(), timeout=max(0.0, deadline.remaining_s()))
        out = []
        for image in unique:
            if image in answers:
                out.append(answers[image])
                continue
            future = futures.get(image)
            if future is not None and future.done():
                try:
                    out.append(future.result())
                except Exception:  # a bug must deny the image, not fail the whole request
                    log.exception("internal error while deciding %s", image)
                    out.append(Decision.unchecked(image, "internal error while verifying"))
            else:
                if future is not None:
                    future.cancel()
                out.append(Decision.late(image))
        return out

    def _start(self, image: str, host: str, request: _Request, futures: dict[str, Future[Decision]]) -> bool:
        """Submit ``image`` if its registry host has a free slot; the slot is given back when done."""
        if not self._hosts.try_acquire(host):
            return False
        try:
            future = self._pool.submit(self._decide_one, image, request)
        except RuntimeError:  # the pool is shut down
            self._hosts.release(host)
            raise
        future.add_done_callback(lambda _: self._hosts.release(host))
        futures[image] = future
        return True

    def _known(self, image: str, request: _Request) -> Decision | str:
        """A decision that needs no registry (a malformed reference, Referee's policy, a cached
        verdict for a digest already known), else the registry host the image must be read from."""
        try:
            ref = parse_reference(image)
        except InvalidReference:
            return self._decide_one(image, request)
        if self._policy.precheck(ref) is not None:
            return self._decide_one(image, request)
        # Only what this process holds: a shared store is asked on the pool's threads, one image
        # each, so a slow store's budget is spent in parallel, never once per image in this thread.
        who = ",".join(c.fingerprint() for c in self._credentials(ref, request.keyring))
        digest = ref.digest or self._tag(ref, who, nearby=True)
        if digest is None:
            return ref.api_host
        job = self._job(image, ref, digest, request)
        for key in (job.key, job.denied_key):
            if self._verdict(key, nearby=True) is not None:
                return self._decide_one(image, request)
        return ref.api_host

    def _job(self, image: str, ref: Reference, digest: str, request: _Request) -> _Job:
        credentials = self._credentials(ref, request.keyring)
        # The policy document's fingerprint joins the key: a changed statement is a cache miss.
        document = self._statements.current()
        settings = (
            f"{self._settings}|policy={document.fingerprint}" if document.fingerprint else self._settings
        )
        return _Job(
            image,
            ref.name,
            digest,
            self._trust.current(),
            request.deadline,
            tuple(credentials),
            request.now,
            settings,
            document.select(ref.name),
        )

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
        credentials = self._credentials(ref, request.keyring)
        repo = self._client.repository(ref, credentials)
        who = ",".join(c.fingerprint() for c in credentials)
        # How long the digest stays the tag's, as far as Referee knows (a digest reference: always).
        digest, known_s = ref.digest, float("inf")
        if digest is None:
            tag = self.tags.entry((str(ref), who))
            digest, known_s = (tag.value, tag.left_s) if tag is not None else (None, 0.0)
        try:
            digest = digest or self._resolve(repo, ref, deadline, who)
        except VerificationFailed as exc:
            return Decision.refused(image, str(exc))
        except VerificationInconclusive as exc:
            return Decision.unchecked(image, str(exc))
        except TimeoutError:
            return Decision.late(image)
        return self._cached_or_verified(self._job(image, ref, digest, request), known_s)

    def _credentials(self, ref: Reference, keyring: Keyring | None) -> list[Credential]:
        files = self._credentials_files
        configured = (files.current() if files else self._client.keyring).lookup(ref.domain, ref.path)
        if keyring is None:
            return configured
        ours = keyring.lookup(ref.domain, ref.path)
        seen = {c.fingerprint() for c in ours}
        return ours + [c for c in configured if c.fingerprint() not in seen]

    def _cached_or_verified(self, job: _Job, digest_known_s: float = 0.0) -> Decision:
        # A verdict is about the digest, whoever asked: credentials only decide whether the
        # registry could be read. A verification in flight is shared only by requests that would
        # read the registry with the same credentials (one without may fail where one with would not).
        for key in (job.key, job.denied_key):
            cached = self._verdict(key)
            if cached is not None:
                return dataclasses.replace(
                    cached.value,
                    image=job.image,
                    cached=True,
                    cache_age_s=cached.age_s,
                    recheck_in_s=cached.left_s,
                    reusable_s=min(cached.left_s, digest_known_s),
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
        revocation = self._revocation
        if isinstance(revocation, HttpRevocationSource):  # fetches end by the admission's deadline
            revocation = revocation.within(job.deadline)
        trust = Trust(job.trust.policy, job.trust.store, now, self._max_signatures, revocation, self.chains)
        scheme = NotaryScheme(trust)
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


class HostSlots:
    """At most ``limit`` verifications in flight per registry host; the map holds busy hosts only."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._busy: dict[str, int] = {}
        self._cond = threading.Condition()
        self.releases = 0  # how many slots were given back, ever

    def try_acquire(self, host: str) -> bool:
        with self._cond:
            count = self._busy.get(host, 0)
            if count >= self._limit:
                return False
            self._busy[host] = count + 1
            return True

    def release(self, host: str) -> None:
        with self._cond:
            count = self._busy.get(host, 0) - 1
            if count > 0:
                self._busy[host] = count
            else:
                self._busy.pop(host, None)
            self.releases += 1
            self._cond.notify_all()

    def wait_for_release(self, seen: int, timeout_s: float) -> bool:
        """Wait until a slot is given back after ``releases`` was ``seen``; False when
        ``timeout_s`` passed first."""
        if timeout_s <= 0:
            return False
        with self._cond:
            return self._cond.wait_for(lambda: self.releases != seen, timeout_s)

    def busy(self, host: str) -> int:
        with self._cond:
            return self._busy.get(host, 0)

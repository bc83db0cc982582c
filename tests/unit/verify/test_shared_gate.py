"""Two gates (two replicas) over one real redis-server: a verdict or tag one of them learnt is the
other's without a registry read; denials keep their per-credential key; "could not check" is never
shared; and what an adversary plants in Redis is never an allow."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.helpers.codesign import make_chain, write_trust_policy, write_trust_store
from tests.helpers.memory_registry_fake import MemoryRegistryFake
from tests.helpers.redis_server import RedisServer, redis_server
from tests.unit.verify.test_gate import HOST, NOW, signed_registry
from webhook.deadline import Deadline
from webhook.errors import RegistryUnavailable
from webhook.oci.model import OCI_EMPTY
from webhook.server.app import shared_caches
from webhook.shared.redis_store import RedisStore, StoreSettings
from webhook.trust.files import TrustFiles
from webhook.trust.revocation import HttpRevocationSource
from webhook.verify import records
from webhook.verify.gate import Gate

SIGNED = f"{HOST}/team/app:v1"
Registry = tuple[MemoryRegistryFake, Path, Path]


@pytest.fixture()
def registry(tmp_path: Path) -> Registry:
    return signed_registry(tmp_path)


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path / "redis") as running:
        yield running


def count(kind: str, result: str) -> float:
    return REGISTRY.get_sample_value("referee_shared_cache_total", {"kind": kind, "result": result}) or 0.0


def replica(
    registry: Registry,
    server: RedisServer,
    *,
    key: bytes = b"k" * 32,
    verdict_ttl_s: float = 300,
    denied_ttl_s: float = 15,
    tag_ttl_s: float = 30,
    later_s: float = 0,
) -> tuple[Gate, RedisStore]:
    """A replica with its own caches' times to live; ``later_s``: its store reads Redis that much later."""
    fake, trust_policy, store_dir = registry
    store = RedisStore(
        StoreSettings(server.url, key, server.password, None, "referee:", 1.0),
        clock=lambda: time.time() + later_s,
    )
    g = Gate(
        fake,
        TrustFiles(trust_policy, store_dir),
        verdict_ttl_s=verdict_ttl_s,
        denied_ttl_s=denied_ttl_s,
        tag_ttl_s=tag_ttl_s,
        max_entries=100,
        max_signatures=10,
        revocation=None,
        workers=2,
        shared_state=store.state,
        **shared_caches(store, 100),
    )
    return g, store


def unsigned(fake: MemoryRegistryFake) -> str:
    config = fake.push_blob(b"{}")
    image = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "config": {"mediaType": OCI_EMPTY, "digest": config, "size": 2},
                        "layers": [], "annotations": {"n": "unsigned"}}).encode()  # fmt: skip
    fake.push_manifest(image, tag="team/unsigned:v1")
    return f"{HOST}/team/unsigned:v1"


def test_a_verdict_one_replica_verified_is_the_others_without_reading_the_registry(
    registry: Registry, server: RedisServer
) -> None:
    fake = registry[0]
    (one, _), (other, _) = replica(registry, server), replica(registry, server)
    try:
        [first] = one.decide([SIGNED], Deadline.after(10), now=NOW)
        assert first.allowed and one.verifications == 1
        reads = fake.reads
        [second] = other.decide([SIGNED], Deadline.after(10), now=NOW)
        assert second.allowed and second.cached and second.image == SIGNED
        assert second.signer_subject == first.signer_subject and second.digest == first.digest
        assert other.verifications == 0 and fake.reads == reads  # the tag's digest was shared too
        assert other.shared_cache_state() == "available"
    finally:
        one.close()
        other.close()


def test_a_denial_is_shared_under_its_per_credential_key_briefly(
    registry: Registry, server: RedisServer
) -> None:
    image = unsigned(registry[0])
    (one, _), (other, _) = replica(registry, server), replica(registry, server)
    try:
        [denied] = one.decide([image], Deadline.after(10), now=NOW)
        assert not denied.allowed and not denied.inconclusive
        [again] = other.decide([image], Deadline.after(10), now=NOW)
        assert not again.allowed and again.cached and other.verifications == 0
        client = server.client()
        ttls = [client.pttl(k) for k in client.keys("referee:v1:verdict:*")]
        assert len(ttls) == 1 and 0 < ttls[0] <= 15_000  # deniedTTLSeconds, not the verdict TTL
    finally:
        one.close()
        other.close()


class _Unreachable(dict[str, object]):
    """The registry's referrers cannot be read: the verification cannot conclude."""

    def get(self, *args: object) -> object:
        raise RegistryUnavailable("registry.example did not answer")


def test_could_not_check_is_never_shared(registry: Registry, server: RedisServer) -> None:
    registry[0].referrers_of = _Unreachable()  # type: ignore[assignment]
    one, _ = replica(registry, server)
    try:
        [unchecked] = one.decide([SIGNED], Deadline.after(10), now=NOW)
        assert not unchecked.allowed and unchecked.inconclusive, unchecked
        assert server.client().keys("referee:v1:verdict:*") == []
        assert server.client().keys("referee:v1:tag:*") != []  # the tag was read: that is shared
    finally:
        one.close()


def test_allow_replayed_under_an_unsigned_images_key_is_denied(
    registry: Registry, server: RedisServer
) -> None:
    """An adversary who can write to Redis copies the signed image's allow (and its tag's digest)
    under the keys the unsigned image is looked up with."""
    image = unsigned(registry[0])
    (one, store), (victim, _) = replica(registry, server), replica(registry, server)
    try:
        [allowed] = one.decide([SIGNED], Deadline.after(10), now=NOW)
        assert allowed.allowed
        client = server.client()
        [allow_key] = client.keys("referee:v1:verdict:*")
        [tag_key] = client.keys("referee:v1:tag:*")
        digest = registry[0].tags["team/unsigned:v1"]
        trust = victim.trust_material().fingerprint
        for key in ((f"{HOST}/team/unsigned", digest, f"{trust}|maxSignatures=10"),):
            client.set(store.key("verdict", records.name_of(key)), client.get(allow_key))
        client.set(store.key("tag", records.name_of((image, ""))), client.get(tag_key))
        rejected = {kind: count(kind, "rejected") for kind in ("verdict", "tag")}
        [decision] = victim.decide([image], Deadline.after(10), now=NOW)
        assert not decision.allowed and "no Notation signature" in decision.reason, decision
        assert victim.verifications == 1
        # Both planted values were read, and refused.
        assert count("tag", "rejected") > rejected["tag"]
        assert count("verdict", "rejected") > rejected["verdict"]
    finally:
        one.close()
        victim.close()


def test_an_allow_signed_with_another_replicas_key_is_not_believed(
    registry: Registry, server: RedisServer
) -> None:
    """A Redis shared with another Referee installation (another signing key, same prefix): its
    names are not ours, and its allow copied under our name is refused."""
    (theirs, _), (ours, store) = replica(registry, server, key=b"t" * 32), replica(registry, server)
    try:
        assert theirs.decide([SIGNED], Deadline.after(10), now=NOW)[0].allowed
        client = server.client()
        [their_allow] = client.keys("referee:v1:verdict:*")
        trust = ours.trust_material().fingerprint
        key = (f"{HOST}/team/app", registry[0].tags["team/app:v1"], f"{trust}|maxSignatures=10")
        assert store.key("verdict", records.name_of(key)).encode() != their_allow
        client.set(store.key("verdict", records.name_of(key)), client.get(their_allow))
        rejected = count("verdict", "rejected")
        [decision] = ours.decide([SIGNED], Deadline.after(10), now=NOW)
        assert decision.allowed and not decision.cached and ours.verifications == 1
        assert count("verdict", "rejected") > rejected
    finally:
        theirs.close()
        ours.close()


def test_replicas_with_another_trust_never_share_a_verdict(
    registry: Registry, server: RedisServer, tmp_path: Path
) -> None:
    """A replica whose trust store holds another root must verify for itself (and deny)."""
    fake = registry[0]
    other_store = tmp_path / "other-store"
    write_trust_store(other_store, "ca", "test", make_chain().root)
    (one, _) = replica(registry, server)
    (other, _) = replica((fake, write_trust_policy(tmp_path / "other.json"), other_store), server)
    try:
        assert one.decide([SIGNED], Deadline.after(10), now=NOW)[0].allowed
        [decision] = other.decide([SIGNED], Deadline.after(10), now=NOW)
        assert not decision.allowed and other.verifications == 1
    finally:
        one.close()
        other.close()


def test_redis_stopped_changes_no_decision(registry: Registry, server: RedisServer) -> None:
    image = unsigned(registry[0])
    one, _ = replica(registry, server)
    try:
        before = [d.allowed for d in one.decide([SIGNED, image], Deadline.after(10), now=NOW)]
        server.stop()
        after = [d.allowed for d in one.decide([SIGNED, image], Deadline.after(10), now=NOW)]
        assert before == after == [True, False]
        assert one.shared_cache_state().startswith("unavailable (connection refused")
    finally:
        one.close()


def test_records_keep_the_structured_decision_and_no_words_of_the_request(registry: Registry) -> None:
    fake, trust_policy, store_dir = registry
    g = Gate(fake, TrustFiles(trust_policy, store_dir), verdict_ttl_s=300, tag_ttl_s=30, max_entries=100,
             max_signatures=10, revocation=None, workers=2)  # fmt: skip
    try:
        [decision] = g.decide([SIGNED], Deadline.after(10), now=NOW)
    finally:
        g.close()
    record = records.verdict_record(decision)
    assert record is not None and "image" not in record and "notes" not in record
    key = ("registry.example/team/app", str(decision.digest), "trust")
    back = records.verdict_from(key, json.loads(json.dumps(record)))
    assert back is not None and back.allowed and back.signer_subject == decision.signer_subject
    assert records.verdict_from(("r", "sha256:" + "0" * 64, "t"), record) is None  # another digest
    assert records.verdict_from(key, {**record, "allowed": "yes"}) is None
    assert records.verdict_from(key, {**record, "extra": 1}) is None
    assert records.tag_from(("t", ""), {"digest": "latest"}) is None


def test_replicas_with_other_revocation_settings_never_share_a_verdict(
    registry: Registry, server: RedisServer
) -> None:
    """One replica checks revocation online, the other offline: each verifies for itself."""
    fake, trust_policy, store_dir = registry
    gates = []
    for network in (True, False):
        store = RedisStore(StoreSettings(server.url, b"k" * 32, server.password, None, "referee:", 1.0))
        revocation = HttpRevocationSource(network=network)
        gates.append(Gate(fake, TrustFiles(trust_policy, store_dir), verdict_ttl_s=300, tag_ttl_s=30,
                          max_entries=100, max_signatures=10, revocation=revocation,
                          workers=2, **shared_caches(store, 100)))  # fmt: skip
    try:
        for g in gates:
            assert g.decide([SIGNED], Deadline.after(10), now=NOW)[0].allowed
        assert [g.verifications for g in gates] == [1, 1]
    finally:
        for g in gates:
            g.close()


def test_a_replica_keeping_allows_and_tags_briefly_never_takes_older_ones_from_a_laxer_replica(
    registry: Registry, server: RedisServer
) -> None:
    """A replica set to keep allows 5 s (to see a revocation soon) and tags 5 s (to follow a moved
    tag soon) shares Redis with one keeping them 300 s and 30 s: ten seconds later it must not
    answer with the other's allow or digest, which it would never have kept that long itself."""
    fake = registry[0]
    (lax, _) = replica(registry, server)
    (strict, _) = replica(registry, server, verdict_ttl_s=5, tag_ttl_s=5, later_s=10)
    try:
        assert lax.decide([SIGNED], Deadline.after(10), now=NOW)[0].allowed
        reads = fake.reads
        [decision] = strict.decide([SIGNED], Deadline.after(10), now=NOW)
        assert decision.allowed and not decision.cached and strict.verifications == 1
        assert fake.reads > reads
        (fresh, _) = replica(registry, server, verdict_ttl_s=5, tag_ttl_s=5, later_s=11)
        try:  # what the strict replica wrote back, a second later, is young enough for its peers
            [shared] = fresh.decide([SIGNED], Deadline.after(10), now=NOW)
            assert shared.allowed and shared.cached and 3 < shared.recheck_in_s <= 4.1
        finally:
            fresh.close()
    finally:
        lax.close()
        strict.close()


def test_a_replica_keeping_denials_briefly_never_takes_an_older_one_from_a_laxer_replica(
    registry: Registry, server: RedisServer
) -> None:
    """deniedTTLSeconds 1 (a freshly signed image is admitted within a second) beside 15 s."""
    image = unsigned(registry[0])
    (lax, _) = replica(registry, server)
    (strict, _) = replica(registry, server, denied_ttl_s=1, later_s=5)
    try:
        assert not lax.decide([image], Deadline.after(10), now=NOW)[0].allowed
        [decision] = strict.decide([image], Deadline.after(10), now=NOW)
        assert not decision.allowed and not decision.cached and strict.verifications == 1
    finally:
        lax.close()
        strict.close()


class _SlowRecordingStore:
    """A store answering each lookup just inside its budget, noting which thread asked."""

    def __init__(self, inner: RedisStore) -> None:
        self.inner = inner
        self.asked_from: list[int] = []

    def get(self, kind: str, name: str, parse: Any) -> Any:
        self.asked_from.append(threading.get_ident())
        time.sleep(0.02)
        return self.inner.get(kind, name, parse)

    def put(self, kind: str, name: str, data: Any, ttl_s: float) -> None:
        self.inner.put(kind, name, data, ttl_s)


def test_a_slow_redis_is_never_asked_once_per_image_from_the_request_thread(
    registry: Registry, server: RedisServer
) -> None:
    """A Redis answering each call just inside the budget never opens the circuit; asked in the
    request's own thread for every image of a pod before the images are fanned out, its budget
    added up image after image. Shared lookups run on the pool's threads, in parallel."""
    one, store = replica(registry, server)
    fake_trust, trust_policy, store_dir = registry
    slow = _SlowRecordingStore(store)
    other = Gate(
        fake_trust, TrustFiles(trust_policy, store_dir), verdict_ttl_s=300, denied_ttl_s=15, tag_ttl_s=30,
        max_entries=100, max_signatures=10, revocation=None, workers=2, **shared_caches(slow, 100),
    )  # fmt: skip
    try:
        [first] = one.decide([SIGNED], Deadline.after(10), now=NOW)
        assert first.allowed
        [second] = other.decide([SIGNED], Deadline.after(10), now=NOW)
        assert second.allowed and second.cached and other.verifications == 0
        assert slow.asked_from, "the shared store was never asked"
        assert threading.get_ident() not in slow.asked_from
    finally:
        one.close()
        other.close()


def test_replicas_of_another_release_never_share_a_verdict(
    registry: Registry, server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a rolling upgrade the new release's replica would otherwise answer from verdicts the old
    release's checks made, for as long as they live."""
    (one, _), (other, _) = replica(registry, server), replica(registry, server)
    try:
        [first] = one.decide([SIGNED], Deadline.after(10), now=NOW)
        assert first.allowed
        monkeypatch.setattr(records, "RELEASE", "0.0.0-other")
        [second] = other.decide([SIGNED], Deadline.after(10), now=NOW)
        assert second.allowed and not second.cached and other.verifications == 1
    finally:
        one.close()
        other.close()

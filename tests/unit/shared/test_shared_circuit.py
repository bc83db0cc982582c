"""Registry outages shared between replicas through a real redis-server: a host one replica saw time
out is refused by the others for what is left of its cool-down, and the probe that is answered
clears it for all. A shared claim only ever refuses sooner; it never admits."""

from __future__ import annotations

import time

from tests.helpers.redis_server import RedisServer
from webhook.registry.health import SHARED_RECHECK_S, HostHealth
from webhook.shared import codec
from webhook.shared.redis_store import RedisStore, SharedOutages, StoreSettings


def replica(server: RedisServer, cooldown_s: float = 5.0) -> HostHealth:
    health = HostHealth(cooldown_s)
    health.share(SharedOutages(RedisStore(StoreSettings(server.url, b"k" * 32, server.password))))
    return health


def test_a_timeout_seen_by_one_replica_spares_the_others(server: RedisServer) -> None:
    one, other = replica(server), replica(server)
    assert other.refusal("r.example") == ""
    one.timed_out("r.example", waited_s=4.0)
    time.sleep(SHARED_RECHECK_S)  # the other looked the host up a moment ago: it asks again after this
    reason = other.refusal("r.example")
    assert "r.example is not answering (a request of another replica timed out" in reason
    assert other.refusal("r.example") != ""  # now known locally: Redis is not asked again
    assert other.refusal("elsewhere.example") == ""


def test_the_probe_that_is_answered_clears_the_outage_for_every_replica(server: RedisServer) -> None:
    one, other, third = replica(server, cooldown_s=1.0), replica(server, 1.0), replica(server, 1.0)
    one.timed_out("r.example", waited_s=4.0)
    assert other.refusal("r.example") != ""
    time.sleep(1.05)
    assert other.refusal("r.example") == ""  # its probe
    other.answered("r.example")
    assert third.refusal("r.example") == ""


def test_a_claim_in_a_stopped_redis_refuses_nothing(server: RedisServer) -> None:
    health = replica(server)
    server.stop()
    started = time.monotonic()
    assert health.refusal("r.example") == ""
    health.timed_out("r.example", waited_s=4.0)  # reported to nobody, within the budget
    assert time.monotonic() - started < 0.1
    assert health.refusal("r.example") != ""  # the local circuit still works


def test_a_host_down_claim_forged_or_copied_by_a_writer_to_redis_refuses_no_host(server: RedisServer) -> None:
    """An adversary who can write to Redis, without the signing key, claims the victim's registry
    is down (to have its images denied): an unsigned claim, one signed with another key, and a
    genuine claim about the adversary's own host copied under the victim's name all refuse nothing."""
    store = RedisStore(StoreSettings(server.url, b"k" * 32, server.password))
    victim = HostHealth(5.0)
    victim.share(SharedOutages(store))
    client = server.client()
    key = store.key("host", "victim.example")
    theirs = RedisStore(StoreSettings(server.url, b"a" * 32, server.password))
    now = time.time()
    forged = codec.seal(
        b"a" * 32, key, "host", {"host": "victim.example"}, stored_at=now, expires_at=now + 30
    )
    SharedOutages(store).report_outage("attacker.example", 30)  # genuine, about another host
    for planted in (b'{"host": "victim.example"}', forged, client.get(store.key("host", "attacker.example"))):
        assert planted is not None
        client.set(key, planted)
        time.sleep(SHARED_RECHECK_S)  # the shared view is asked again
        assert victim.refusal("victim.example") == ""
    SharedOutages(theirs).report_outage("victim.example", 30)  # another installation's own claim
    time.sleep(SHARED_RECHECK_S)
    assert victim.refusal("victim.example") == ""
    assert "attacker.example is not answering" in victim.refusal("attacker.example")  # genuine: held

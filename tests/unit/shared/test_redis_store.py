"""The Redis store against a real redis-server: values signed and checked, lookups counted, and
every call within its budget whether Redis answers, is stopped, or is paused."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.helpers.redis_server import RedisServer
from webhook.registry.credentials import Credential
from webhook.shared import codec
from webhook.shared.redis_store import CALL_BUDGETS, MIN_BACKOFF_S, RedisStore, SharedOutages, StoreSettings
from webhook.verify import records

KEY = b"s" * 32
BUDGET_S = 0.005
# The stalls below last 1.5 s; the bound asserted is the budget's, with room for this process to be
# scheduled late on a busy machine (a few tens of ms), far below the stall.
STALL_BUDGET_S = 0.02
SCHEDULING_S = 0.05


def store(server: RedisServer, *, key: bytes = KEY, prefix: str = "referee:", budget_s: float = BUDGET_S,
          password: str | None = None) -> RedisStore:  # fmt: skip
    return RedisStore(StoreSettings(server.url, key, password or server.password, None, prefix, budget_s))


def digest(data: Mapping[str, Any]) -> str | None:
    value = data.get("digest")
    return value if isinstance(value, str) else None


def count(kind: str, result: str) -> float:
    return REGISTRY.get_sample_value("referee_shared_cache_total", {"kind": kind, "result": result}) or 0.0


def test_a_value_put_by_one_replica_is_a_hit_for_another(server: RedisServer) -> None:
    one, other = store(server), store(server)
    hits = count("tag", "hit")
    one.put("tag", "registry/app:v1|anon", {"digest": "sha256:ab"}, 30)
    found = other.get("tag", "registry/app:v1|anon", digest)
    assert found is not None
    value, age_s, left_s = found
    assert value == "sha256:ab" and 0 <= age_s < 1 and 29 < left_s <= 30
    assert count("tag", "hit") == hits + 1
    ttl_ms = server.client().pttl(one.key("tag", "registry/app:v1|anon"))
    assert 29_000 < ttl_ms <= 30_000  # Redis forgets it with the entry's time to live


def test_keys_are_hashed_under_the_prefix_and_name_no_image(server: RedisServer) -> None:
    store(server, prefix="team-a:").put("tag", "registry.example/secret-project:v1|cred", {"digest": "x"}, 30)
    [key] = server.client().keys("*")
    assert key.startswith(b"team-a:v1:tag:") and b"secret-project" not in key and len(key) == 14 + 64


def test_a_miss_is_counted(server: RedisServer) -> None:
    misses = count("verdict", "miss")
    assert store(server).get("verdict", "nothing", digest) is None
    assert count("verdict", "miss") == misses + 1


def test_forged_allow_planted_in_redis_is_a_rejected_miss(server: RedisServer) -> None:
    """An attacker who can write to Redis plants values under the key Referee reads."""
    ours = store(server)
    key = ours.key("verdict", "image")
    rejected = count("verdict", "rejected")
    planted = [
        b'{"allowed": true}',  # plain JSON
        codec.seal(b"attacker-key-of-32-bytes-or-more!", key, "verdict", {"digest": "x"},
                   stored_at=time.time(), expires_at=time.time() + 60),  # signed with another key
    ]  # fmt: skip
    for value in planted:
        assert value is not None
        server.client().set(key, value)
        assert ours.get("verdict", "image", digest) is None
    assert count("verdict", "rejected") == rejected + 2


def test_value_replayed_under_another_key_is_a_rejected_miss(server: RedisServer) -> None:
    ours = store(server)
    ours.put("verdict", "signed-image", {"digest": "sha256:signed"}, 60)
    client = server.client()
    client.set(ours.key("verdict", "unsigned-image"), client.get(ours.key("verdict", "signed-image")))
    rejected = count("verdict", "rejected")
    assert ours.get("verdict", "unsigned-image", digest) is None
    assert count("verdict", "rejected") == rejected + 1


def test_value_that_does_not_describe_its_key_is_rejected(server: RedisServer) -> None:
    ours = store(server)
    ours.put("verdict", "image", {"digest": "sha256:other"}, 60)
    assert ours.get("verdict", "image", lambda d: None) is None


def test_oversized_value_planted_in_redis_is_read_bounded_and_rejected(server: RedisServer) -> None:
    ours = store(server, budget_s=0.5)
    key = ours.key("verdict", "image")
    server.client().set(key, b"RS1" + b"x" * (64 << 20))  # 64 MiB
    started = time.monotonic()
    assert ours.get("verdict", "image", digest) is None
    assert time.monotonic() - started < 0.5


def test_a_key_of_another_type_is_a_miss(server: RedisServer) -> None:
    ours = store(server)
    server.client().rpush(ours.key("verdict", "image"), b"x")
    assert ours.get("verdict", "image", digest) is None
    assert ours.state() == "available"  # Redis answered: it is not down


def test_a_wrong_password_is_an_error_and_said_in_the_state(server: RedisServer) -> None:
    ours = store(server, password="wrong")
    assert ours.get("verdict", "image", digest) is None
    assert ours.state().startswith("unavailable (the password was refused")


def test_stopped_redis_costs_one_budget_then_nothing_until_the_back_off(server: RedisServer) -> None:
    ours = store(server)
    ours.put("tag", "t", {"digest": "d"}, 30)
    server.stop()
    errors = count("tag", "error")
    started = time.monotonic()
    assert ours.get("tag", "t", digest) is None  # refused: one connection attempt
    first = time.monotonic() - started
    started = time.monotonic()
    for _ in range(100):
        assert ours.get("tag", "t", digest) is None  # the circuit is open: Redis is not asked
        ours.put("tag", "t", {"digest": "d"}, 30)
    assert first < 0.05 and time.monotonic() - started < 0.05
    assert count("tag", "error") >= errors + 101
    assert ours.state().startswith("unavailable (connection refused")
    server.start()
    time.sleep(MIN_BACKOFF_S + 0.1)
    ours.put("tag", "t", {"digest": "d"}, 30)  # the probe: Redis answers, the circuit closes
    assert ours.get("tag", "t", digest) is not None
    assert ours.state() == "available"


@pytest.mark.parametrize("stall", ["CLIENT PAUSE", "DEBUG SLEEP"])
def test_a_stalled_redis_holds_a_request_no_longer_than_the_budget(server: RedisServer, stall: str) -> None:
    ours = store(server, budget_s=STALL_BUDGET_S)
    ours.put("verdict", "v", {"digest": "d"}, 30)
    staller = server.client()
    if stall == "CLIENT PAUSE":
        staller.execute_command("CLIENT", "PAUSE", "1500", "ALL")
    else:
        threading.Thread(target=lambda: staller.execute_command("DEBUG", "SLEEP", "1.5"), daemon=True).start()
        time.sleep(0.1)
    started = time.monotonic()
    assert ours.get("verdict", "v", digest) is None
    waited = time.monotonic() - started
    assert waited < STALL_BUDGET_S * CALL_BUDGETS + SCHEDULING_S, f"waited {waited * 1000:.1f} ms"
    assert ours.state().startswith("unavailable (no answer within 20 ms")
    started = time.monotonic()
    for _ in range(50):
        assert ours.get("verdict", "v", digest) is None
    assert time.monotonic() - started < 0.02  # the circuit is open
    time.sleep(1.6)  # the stall is over and the back-off too
    assert ours.get("verdict", "v", digest) is not None


def test_host_outages_are_shared_and_cleared(server: RedisServer) -> None:
    one, other = SharedOutages(store(server)), SharedOutages(store(server))
    assert other.outage_age("registry.example") is None
    one.report_outage("registry.example", 30)
    age = other.outage_age("registry.example")
    assert age is not None and 0 <= age < 1
    other.report_answer("registry.example")
    assert one.outage_age("registry.example") is None


@contextlib.contextmanager
def misbehaving_redis_fake(serve: Callable[[socket.socket], None], stop: threading.Event) -> Iterator[str]:
    """A loopback listener that hands each connection to ``serve`` (a server speaking Redis's
    protocol the way no real Redis does); yields its redis:// URL. ``stop`` ends it."""
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    finally:
        stop.set()
        listener.close()


@contextlib.contextmanager
def trickling_redis_fake(byte_every_s: float) -> Iterator[str]:
    """A server that speaks RESP but sends each answer one byte at a time (no real Redis does):
    every read is in time, the answer as a whole is not. Yields its redis:// URL."""
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            while not stop.is_set():
                try:
                    if not conn.recv(65536):
                        return
                    for byte in b"$20\r\n" + b"x" * 20 + b"\r\n":
                        conn.sendall(bytes([byte]))
                        time.sleep(byte_every_s)
                except OSError:
                    return

    with misbehaving_redis_fake(serve, stop) as url:
        yield url


def test_a_redis_trickling_its_answer_holds_a_request_no_longer_than_the_budget_fake() -> None:
    """An adversary who runs the Redis server (or sits on a plain redis:// path) answers one byte
    every 15 ms: each read is within the 20 ms budget, the answer would take 0.4 s."""
    with trickling_redis_fake(0.015) as url:  # within each read's 20 ms; 0.4 s for the answer
        ours = RedisStore(StoreSettings(url, KEY, None, None, "referee:", STALL_BUDGET_S))
        started = time.monotonic()
        assert ours.get("verdict", "v", digest) is None
        waited = time.monotonic() - started
        assert waited < STALL_BUDGET_S * CALL_BUDGETS + SCHEDULING_S, f"waited {waited * 1000:.1f} ms"
        assert ours.state().startswith("unavailable (no answer within 20 ms")


def test_a_reader_whose_clock_lags_keeps_a_value_no_longer_than_redis_does(server: RedisServer) -> None:
    """A replica whose clock is 20 s behind the writer's reads a value Redis expires in 2 s."""
    writer = store(server)
    writer.put("tag", "t", {"digest": "d"}, 300)
    server.client().pexpire(writer.key("tag", "t"), 2000)
    lagging = RedisStore(StoreSettings(server.url, KEY, server.password, None, "referee:", BUDGET_S),
                         clock=lambda: time.time() - 20)  # fmt: skip
    found = lagging.get("tag", "t", digest)
    assert found is not None and found[2] <= 2.0


def test_values_planted_to_fill_the_log_are_logged_once_per_interval(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An adversary who can write to Redis makes every lookup refuse a value: each is counted, the
    log gets one line per interval."""
    ours = store(server)
    client = server.client()
    rejected = count("verdict", "rejected")
    with caplog.at_level("WARNING", logger="webhook.shared.redis_store"):
        for n in range(50):
            client.set(ours.key("verdict", f"image{n}"), b"RS1" + b"\0" * 40)
            assert ours.get("verdict", f"image{n}", digest) is None
    assert count("verdict", "rejected") == rejected + 50
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1


def test_a_reader_of_redis_cannot_confirm_a_guessed_registry_password_from_the_key_names(
    server: RedisServer,
) -> None:
    """Whoever can read Redis (or a copy of it) knows public images and trust policies, and can
    guess weak registry passwords: a key that is a plain hash of its name (the credentials'
    fingerprint in it) confirms each guess offline. Names are keyed with the signing key, which
    that reader does not hold."""
    who = Credential(username="ci", password="hunter2").fingerprint()
    name = records.name_of(("registry.example/team/app", "sha256:" + "a" * 64, f"trust|settings|{who}"))
    store(server).put("verdict", name, {"digest": "sha256:" + "a" * 64}, 30)
    [key] = server.client().keys("*")
    assert hashlib.sha256(name.encode()).hexdigest().encode() not in key
    assert store(server, key=b"o" * 32).key("verdict", name).encode() != key  # the key decides
    assert store(server).key("verdict", name).encode() == key


@contextlib.contextmanager
def flooding_redis_fake() -> Iterator[str]:
    """A server that speaks RESP and answers any command with a 1 GiB string it sends as fast as it
    can (no real Redis does, whatever was stored: values are read with GETRANGE)."""
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        chunk = b"x" * 65536
        with conn:
            try:
                if not conn.recv(65536):
                    return
                conn.sendall(b"$1073741824\r\n")
                while not stop.is_set():
                    conn.sendall(chunk)
            except OSError:
                return

    with misbehaving_redis_fake(serve, stop) as url:
        yield url


def test_a_redis_flooding_a_huge_answer_costs_a_bounded_read_fake() -> None:
    """An adversary who runs the Redis server (or answers for it on a plain redis:// path) sends a
    1 GiB answer to a lookup: what the client takes in is bounded, not what the budget lets arrive."""
    with flooding_redis_fake() as url:
        ours = RedisStore(StoreSettings(url, KEY, None, None, "referee:", 0.3))
        tracemalloc.start()
        try:
            assert ours.get("verdict", "v", digest) is None
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 1 << 20, f"{peak / (1 << 20):.0f} MiB held for one lookup"
        assert ours.state().startswith("unavailable (connection failed (an answer over"), ours.state()


@contextlib.contextmanager
def answering_redis_fake(reply: bytes) -> Iterator[str]:
    """A server that speaks RESP: it greets as Redis 7 does (HELLO 3, then OK to the client's
    settings), and gives every lookup and PING the same ``reply``. Yields its redis:// URL."""
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            while not stop.is_set():
                try:
                    asked = conn.recv(65536)
                    if not asked:
                        return
                    if b"HELLO" in asked:
                        conn.sendall(b"%1\r\n+proto\r\n:3\r\n")
                    elif b"GETRANGE" in asked or b"PING" in asked:
                        for _ in range(asked.count(b"*")):  # GETRANGE and PTTL in one round trip
                            conn.sendall(reply)
                            time.sleep(0.005)  # redis-py reads on at a lone LF: give it more bytes
                        conn.sendall(b"+OK\r\n")
                    else:
                        conn.sendall(b"+OK\r\n")
                except OSError:
                    return

    with misbehaving_redis_fake(serve, stop) as url:
        yield url


FORGED_LINE = "\nreferee.admission: admitted registry.example/evil:v1 signed by CN=release"


def test_a_redis_error_text_cannot_forge_log_lines_or_readyz_fake(caplog: pytest.LogCaptureFixture) -> None:
    """An adversary who runs the Redis server (or answers for it) puts a line break in the error it
    answers (RESP ends a line at CR LF only; LOADING reads as an outage, with the server's words):
    Referee's log and /readyz must not carry it as is."""
    with answering_redis_fake(f"-LOADING x{FORGED_LINE}\r\n".encode()) as url:
        ours = RedisStore(StoreSettings(url, KEY, None, None, "referee:", 0.2))
        with caplog.at_level("WARNING", logger="webhook.shared.redis_store"):
            assert ours.get("verdict", "v", digest) is None
            state = ours.state()
        messages = [r.getMessage() for r in caplog.records]
        assert any("admitted" in m for m in [*messages, state]), (messages, state)  # the text was read
        assert all("\n" not in m for m in messages) and "\n" not in state, (messages, state)

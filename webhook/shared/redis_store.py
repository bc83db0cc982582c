"""The shared cache's client: Redis (or Valkey) through redis-py, within a budget, never in the way.

Every call waits at most the budget (``cache.shared.budgetMilliseconds``: the socket's connect and
read timeouts, no retries), and all its reads together end within ``CALL_BUDGETS`` budgets and
``MAX_ANSWER_BYTES`` (``_BoundedSocket``), so a server that trickles its answer cannot hold a request
either, nor one that sends a huge answer fill the memory the budget lets it reach; a call that
fails or times out is a miss and opens a circuit of the
store's own, so a Redis that is down is not asked on every request: it is asked again after a
back-off (1 s, doubling to 30 s), by one call, and closes on the first answer. Nothing raises into
the request path. Each lookup is counted in ``referee_shared_cache_total{kind, result}``: ``hit``,
``miss``, ``error`` (Redis did not answer, or the circuit is open) or ``rejected`` (a value that
failed the codec's check or did not describe what its key names).

Values are read with GETRANGE, bounded at ``codec.MAX_VALUE_BYTES``: a huge value planted in Redis
costs one bounded read. Key names are keyed hashes under ``keyPrefix`` (``codec.key_name``), so what
Redis holds names no image, repository or credential, nor lets a reader confirm a guess of one.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from webhook.errors import ConfigError
from webhook.metrics import metrics
from webhook.shared import codec
from webhook.transport import clip

log = logging.getLogger(__name__)

T = TypeVar("T")

MIN_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
CALL_BUDGETS = 3  # all the reads of one call (AUTH on a new connection, the command) end by then
MIN_READ_S = 0.0005  # a read after the deadline still takes what already arrived (a starved process)
# All the answers one call reads (AUTH's, a GETRANGE bounded at the largest value with its PTTL):
# more is a server that does not speak for Redis.
MAX_ANSWER_BYTES = codec.MAX_VALUE_BYTES + 4096
MAX_CONNECTIONS = 64
REFUSAL_LOG_INTERVAL_S = 10.0  # per worker; a call that finds none free is a miss


@dataclass(frozen=True)
class StoreSettings:
    url: str
    signing_key: bytes = field(repr=False)
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    key_prefix: str = "referee:"
    budget_s: float = 0.005


def read_settings(
    url: str,
    *,
    signing_key_file: Path | None,
    password_file: Path | None,
    ca_file: Path | None,
    key_prefix: str,
    budget_ms: float,
) -> StoreSettings:
    """The settings with the files they name read; a ConfigError names the key that is wrong."""
    if signing_key_file is None:
        raise ConfigError("config: cache.shared.signingKeyFile is required with cache.shared.url")
    try:
        key = signing_key_file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"config: cache.shared.signingKeyFile: cannot read {signing_key_file}: "
                          f"{exc.strerror}") from None  # fmt: skip
    if len(key) < codec.MIN_SIGNING_KEY_BYTES:
        raise ConfigError(
            f"config: cache.shared.signingKeyFile holds {len(key)} bytes; at least "
            f"{codec.MIN_SIGNING_KEY_BYTES} are needed"
        )
    password = None
    if password_file is not None:
        try:
            password = password_file.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config: cache.shared.passwordFile: cannot read {password_file}: "
                              f"{getattr(exc, 'strerror', None) or exc}") from None  # fmt: skip
    if ca_file is not None and not ca_file.is_file():
        raise ConfigError(f"config: cache.shared.caFile: {ca_file} is not a file")
    return StoreSettings(url, key, password or None, str(ca_file) if ca_file else None, key_prefix,
                         budget_ms / 1000)  # fmt: skip


class _CallDeadline(threading.local):
    """When the reads of this thread's current call must end (``time.monotonic``), and how many
    more bytes they may take."""

    at = float("inf")
    bytes_left = MAX_ANSWER_BYTES


_DEADLINE = _CallDeadline()


class _BoundedSocket:
    """A connection's socket whose reads end by the call's deadline, at whatever pace the server
    sends: each read waits at most what is left of it (or the socket's own timeout, if shorter), and
    takes at most the bytes left to the call; past them the connection is dropped."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def recv(self, size: int, flags: int = 0) -> bytes:
        bytes_left = _DEADLINE.bytes_left
        if bytes_left <= 0:
            raise redis.ConnectionError(f"an answer over {MAX_ANSWER_BYTES} bytes")
        own = self._sock.gettimeout()
        left = max(MIN_READ_S, _DEADLINE.at - time.monotonic())
        self._sock.settimeout(left if own is None else min(own, left))
        try:
            data: bytes = self._sock.recv(min(size, bytes_left), flags)
        finally:
            self._sock.settimeout(own)
        _DEADLINE.bytes_left = bytes_left - len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _Connection(redis.Connection):
    def _connect(self) -> Any:
        return _BoundedSocket(super()._connect())  # type: ignore[no-untyped-call]


class _SSLConnection(redis.SSLConnection):
    def _connect(self) -> Any:
        return _BoundedSocket(super()._connect())  # type: ignore[no-untyped-call]


class _Circuit:
    """Closed while Redis answers; after a failure open for a back-off, then one call probes."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.open_until = 0.0
        self.backoff_s = 0.0
        self.problem = ""

    def allow(self) -> bool:
        with self._lock:
            if not self.problem:
                return True
            now = self._clock()
            if now < self.open_until:
                return False
            self.open_until = now + self.backoff_s  # this call probes; the others wait for it
            return True

    def failed(self, problem: str) -> bool:
        """Open (or keep open, longer); True when it was closed."""
        with self._lock:
            was_closed = not self.problem
            self.backoff_s = min(MAX_BACKOFF_S, max(MIN_BACKOFF_S, self.backoff_s * 2))
            now = self._clock()
            self.open_until = now + self.backoff_s
            self.problem = problem
            return was_closed

    def answered(self) -> bool:
        """Closed again; True when it was open."""
        with self._lock:
            was_open = bool(self.problem)
            self.problem, self.backoff_s, self.open_until = "", 0.0, 0.0
            return was_open


class RedisStore:
    """Signed values under hashed names, each kind (``codec.KINDS``) with its own names."""

    def __init__(
        self,
        settings: StoreSettings,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._naming = codec.naming_key(settings.signing_key)
        self._clock = clock
        self._monotonic = monotonic
        self._circuit = _Circuit(monotonic)
        self._log_lock = threading.Lock()
        self._next_refusal_log = float("-inf")
        self._refusals_unlogged = 0
        parts = urlsplit(settings.url)
        self.where = f"{parts.hostname}:{parts.port}"  # for people: never the password
        budget = settings.budget_s
        extra: dict[str, Any] = {"connection_class": _Connection}
        if parts.scheme == "rediss":
            extra = {
                "connection_class": _SSLConnection,
                "ssl_cert_reqs": "required",
                "ssl_check_hostname": True,
            }
            if settings.ca_file:
                extra["ssl_ca_certs"] = settings.ca_file
        no_retry = Retry(NoBackoff(), 0)
        pool = redis.ConnectionPool.from_url(
            settings.url,
            password=settings.password,
            socket_timeout=budget,
            socket_connect_timeout=budget,
            retry_on_timeout=False,
            retry=no_retry,
            health_check_interval=0,
            max_connections=MAX_CONNECTIONS,
            driver_info=None,  # no CLIENT SETINFO: a new connection costs AUTH alone
            **extra,
        )
        self._redis = redis.Redis(connection_pool=pool, retry=no_retry)

    def close(self) -> None:
        self._redis.close()

    def key(self, kind: str, name: str) -> str:
        """The Redis key: the prefix, the encoding's version, the kind and a keyed hash of the name."""
        return f"{self._settings.key_prefix}v{codec.VERSION}:{kind}:{codec.key_name(self._naming, name)}"

    def get(
        self, kind: str, name: str, parse: Callable[[Mapping[str, Any]], T | None]
    ) -> tuple[T, float, float] | None:
        """The value under ``name`` with its age and the time it has left (seconds), when Redis
        answers within the budget with a value that passes the codec's check and ``parse``."""
        key = self.key(kind, name)
        ok, answers = self._call(lambda r: _value_and_ttl(r, key), kind)
        if not ok:
            return None
        raw, pttl_ms = answers
        if not isinstance(raw, bytes) or not raw or not isinstance(pttl_ms, int):
            self._count(kind, "miss")
            return None
        now = self._clock()
        sealed = codec.unseal(self._settings.signing_key, key, kind, raw, now)
        if isinstance(sealed, str):
            self._refused(f"the {kind} value under {key} is refused: {sealed}")
            self._count(kind, "rejected")
            return None
        try:
            value = parse(sealed.data)
        except Exception:  # noqa: BLE001 (a value that trips the parser is refused, like any other)
            value = None
        if value is None:
            self._refused(f"the {kind} value under {key} does not describe its key")
            self._count(kind, "rejected")
            return None
        self._count(kind, "hit")
        # The time left is the shortest of the value's own (this replica's clock), Redis's (the
        # server's; none when the key has no expiry) and the whole time it was stored for: a reader
        # whose clock lags the writer's never keeps it longer.
        redis_left_s = pttl_ms / 1000 if pttl_ms > 0 else float("inf")
        left_s = min(sealed.expires_at - now, redis_left_s, sealed.expires_at - sealed.stored_at)
        return value, max(0.0, now - sealed.stored_at), left_s

    def put(self, kind: str, name: str, data: Mapping[str, Any], ttl_s: float) -> None:
        if ttl_s <= 0:
            return
        key = self.key(kind, name)
        now = self._clock()
        value = codec.seal(self._settings.signing_key, key, kind, data, stored_at=now, expires_at=now + ttl_s)
        if value is None:
            return  # too large to share: the local cache keeps it
        self._call(lambda r: r.set(key, value, px=max(1, int(ttl_s * 1000))), kind)

    def delete(self, kind: str, name: str) -> None:
        key = self.key(kind, name)
        self._call(lambda r: r.delete(key), kind)

    def state(self) -> str:
        """For /readyz: "available", or "unavailable (why; asked again in N s)". Asks Redis (a PING,
        within the budget) unless the circuit is open and its probe is not yet due."""
        circuit = self._circuit
        if not circuit.problem or self._monotonic() >= circuit.open_until:
            self._call(lambda r: r.ping(), "")
        if circuit.problem:
            left = max(0.0, circuit.open_until - self._monotonic())
            return f"unavailable ({circuit.problem}; asked again in {left:.0f} s)"
        return "available"

    def _call(self, work: Callable[[redis.Redis], Any], kind: str) -> tuple[bool, Any]:
        if not self._circuit.allow():
            self._count(kind, "error")
            return False, None
        _DEADLINE.at = time.monotonic() + CALL_BUDGETS * self._settings.budget_s
        _DEADLINE.bytes_left = MAX_ANSWER_BYTES
        try:
            result = work(self._redis)
        except redis.ResponseError as exc:  # Redis answered (a key of another type, say)
            self._circuit.answered()
            self._refused(f"Redis refused a command: {clip(exc, 200)}")
            self._count(kind, "rejected")
            return False, None
        except Exception as exc:  # noqa: BLE001 (an outage of the store is a miss, whatever it is)
            self._failed(_describe(exc, self._settings.budget_s))
            self._count(kind, "error")
            return False, None
        finally:
            _DEADLINE.at = float("inf")
        if self._circuit.answered():
            log.warning("shared cache: Redis at %s answers again", self.where)
        return True, result

    def _refused(self, what: str) -> None:
        """Logged at most once per ``REFUSAL_LOG_INTERVAL_S``: whoever writes to Redis can make
        every lookup refuse a value, not fill the log (the metric counts each one)."""
        now = self._monotonic()
        with self._log_lock:
            if now < self._next_refusal_log:
                self._refusals_unlogged += 1
                return
            skipped, self._refusals_unlogged = self._refusals_unlogged, 0
            self._next_refusal_log = now + REFUSAL_LOG_INTERVAL_S
        more = f" ({skipped} more since the last such line)" if skipped else ""
        log.warning("shared cache: %s%s", what, more)

    def _failed(self, problem: str) -> None:
        if self._circuit.failed(problem):
            log.warning("shared cache: Redis at %s is unavailable (%s); the local cache answers alone "
                        "until it is back", self.where, problem)  # fmt: skip

    @staticmethod
    def _count(kind: str, result: str) -> None:
        if kind:
            metrics().shared_cache.labels(kind, result).inc()


def _value_and_ttl(client: redis.Redis, key: str) -> list[Any]:
    """The value's first ``MAX_VALUE_BYTES`` + 1 bytes and its time to live, in one round trip."""
    pipe = client.pipeline(transaction=False)
    pipe.getrange(key, 0, codec.MAX_VALUE_BYTES)
    pipe.pttl(key)
    return pipe.execute()


def _describe(exc: BaseException, budget_s: float) -> str:
    if isinstance(exc, redis.TimeoutError | TimeoutError):
        return f"no answer within {budget_s * 1000:g} ms"
    if isinstance(exc, redis.AuthenticationError):
        return "the password was refused"
    if isinstance(exc, redis.ConnectionError):
        text = clip(exc, 120)  # the server's words, in a log line and /readyz
        return "connection refused" if "refused" in text.lower() else f"connection failed ({text})"
    return type(exc).__name__


class SharedOutages:
    """Registry hosts some replica saw time out, for ``registry.health.HostHealth``: a claim only
    ever makes Referee refuse sooner what it would refuse anyway (denied as "could not check")."""

    KIND = "host"

    def __init__(self, store: RedisStore) -> None:
        self._store = store

    def outage_age(self, host: str) -> float | None:
        found = self._store.get(self.KIND, host, lambda d: True if d.get("host") == host else None)
        return None if found is None else found[1]

    def report_outage(self, host: str, ttl_s: float) -> None:
        self._store.put(self.KIND, host, {"host": host}, ttl_s)

    def report_answer(self, host: str) -> None:
        self._store.delete(self.KIND, host)

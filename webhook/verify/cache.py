"""Small thread-safe caches: the verdict-cache seam, its in-memory TTL map bounded in entries, the
two-level cache that puts a shared store (Redis, ``webhook.shared``) behind it, and single flight
for identical work."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
KeyIn_contra = TypeVar("KeyIn_contra", bound=Hashable, contravariant=True)


@dataclass(frozen=True)
class Entry(Generic[V]):
    value: V
    age_s: float
    left_s: float


class VerdictCache(Protocol[KeyIn_contra, V]):
    """Where verdicts are kept: bounded, each entry with its own time to live. In memory today
    (``TTLCache``); a shared store later. An outage of a store must read as a miss, never an error."""

    def entry(self, key: KeyIn_contra) -> Entry[V] | None: ...

    def nearby(self, key: KeyIn_contra) -> Entry[V] | None:
        """``entry`` from this process's memory only: never waits on a store."""
        ...

    def put(self, key: KeyIn_contra, value: V, ttl_s: float) -> None: ...


class TTLCache(Generic[K, V]):
    """Entries expire at their own time; the least recently used go first when full."""

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[K, tuple[V, float, float]] = OrderedDict()  # value, expires, stored
        self.hits = 0
        self.misses = 0

    def get(self, key: K) -> V | None:
        found = self.entry(key)
        return None if found is None else found.value

    def nearby(self, key: K) -> Entry[V] | None:
        """The same as ``entry``: everything here is in memory."""
        return self.entry(key)

    def entry(self, key: K) -> Entry[V] | None:
        """The value with its age and the time it has left."""
        with self._lock:
            entry = self._entries.get(key)
            now = self._clock()
            if entry is None or entry[1] <= now:
                if entry is not None:
                    del self._entries[key]
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return Entry(entry[0], now - entry[2], entry[1] - now)

    def put(self, key: K, value: V, ttl_s: float, age_s: float = 0.0) -> None:
        """Keep ``value`` for ``ttl_s``; ``age_s``: how old it already is (read from elsewhere)."""
        if ttl_s <= 0 or self._max <= 0:
            return
        with self._lock:
            now = self._clock()
            self._entries[key] = (value, now + ttl_s, now - max(0.0, age_s))
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


T = TypeVar("T")


class SharedStore(Protocol):
    """A store every replica reads and writes (``webhook.shared.redis_store.RedisStore``): values
    are JSON objects under a kind and a name; any failure, slowness or doubt is a miss."""

    def get(
        self, kind: str, name: str, parse: Callable[[Mapping[str, Any]], T | None]
    ) -> tuple[T, float, float] | None: ...  # the value, its age and the time it has left

    def put(self, kind: str, name: str, data: Mapping[str, Any], ttl_s: float) -> None: ...


class TwoLevelCache(Generic[K, V]):
    """The local ``TTLCache`` first, then the shared store; a value found there is kept locally for
    the time it has left. ``put`` writes both with the entry's time to live. ``encode`` gives the
    data to share (None: kept locally only); ``decode`` reads it back for a key, or None when it does
    not describe that key (then it is refused and counted)."""

    def __init__(
        self,
        local: TTLCache[K, V],
        shared: SharedStore,
        kind: str,
        *,
        name: Callable[[K], str],
        encode: Callable[[V], Mapping[str, Any] | None],
        decode: Callable[[K, Mapping[str, Any]], V | None],
    ) -> None:
        self.local = local
        self._shared = shared
        self._kind = kind
        self._name = name
        self._encode = encode
        self._decode = decode

    def nearby(self, key: K) -> Entry[V] | None:
        return self.local.entry(key)

    def entry(self, key: K) -> Entry[V] | None:
        found = self.local.entry(key)
        if found is not None:
            return found
        shared = self._shared.get(self._kind, self._name(key), lambda data: self._decode(key, data))
        if shared is None:
            return None
        value, age_s, left_s = shared
        self.local.put(key, value, left_s, age_s)
        return Entry(value, age_s, left_s)

    def get(self, key: K) -> V | None:
        found = self.entry(key)
        return None if found is None else found.value

    def put(self, key: K, value: V, ttl_s: float) -> None:
        self.local.put(key, value, ttl_s)
        data = self._encode(value)
        if data is not None and ttl_s > 0:
            self._shared.put(self._kind, self._name(key), data, ttl_s)

    def clear(self) -> None:
        self.local.clear()

    def __len__(self) -> int:
        return len(self.local)


class _Call(Generic[V]):
    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: V | None = None
        self.error: BaseException | None = None


class SingleFlight(Generic[K, V]):
    """Concurrent calls with the same key share one execution of the work and its outcome."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[K, _Call[V]] = {}

    def do(self, key: K, work: Callable[[], V], timeout_s: float) -> V:
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if call is None:
                call = _Call()
                self._calls[key] = call
        if leader:
            try:
                call.value = work()
            except Exception as exc:  # noqa: BLE001 (the outcome, whatever it is, is every waiter's)
                call.error = exc
            finally:
                with self._lock:
                    del self._calls[key]
                call.done.set()
        elif not call.done.wait(timeout_s):
            raise TimeoutError("the shared verification did not finish in time")
        if call.error is not None:
            raise call.error
        return call.value  # type: ignore[return-value]


class KeySet:
    """A bounded set of keys, the least recently used dropped first (``notary.certs.ChainMemory``)."""

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._keys: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, bytes):
            return False
        with self._lock:
            if key in self._keys:
                self._keys.move_to_end(key)
                return True
            return False

    def add(self, key: bytes) -> None:
        with self._lock:
            self._keys[key] = None
            self._keys.move_to_end(key)
            while len(self._keys) > self._max:
                self._keys.popitem(last=False)

    def __len__(self) -> int:
        return len(self._keys)

"""Small thread-safe caches: a TTL map bounded in entries, and single flight for identical work."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True)
class Entry(Generic[V]):
    value: V
    age_s: float
    left_s: float


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

    def put(self, key: K, value: V, ttl_s: float) -> None:
        if ttl_s <= 0 or self._max <= 0:
            return
        with self._lock:
            now = self._clock()
            self._entries[key] = (value, now + ttl_s, now)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


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

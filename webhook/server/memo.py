"""Whole answers kept for an identical warm ProviderRequest (Gatekeeper asks the same keys again and
again), so the worker's event loop can send them without a thread, a WSGI call or the gate.

An answer is kept only when every image in it was allowed from cached facts (``Decision.reusable_s``
> 0), and for no longer than the shortest life left of those facts: a verdict's time to live (itself
never longer than a signature or its chain stays valid) and a tag's digest. It is keyed by the
endpoint, whether the caller authenticated, and the exact body bytes, and it is good only while the
gate's generation (trust material, policy document, configured credentials) is the one it was made
under. Answers that read pull secrets are never kept (they have lifetimes of their own). Bounded in
entries and in bytes; the least recently used go first.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_MEMO_ENTRIES = 1024
MAX_MEMO_BYTES = 8 << 20  # request bodies and answers, counted as their length
MAX_MEMO_ENTRY_BYTES = 256 << 10  # a larger request and answer is answered the usual way each time

MemoKey = tuple[str, bool, bytes]  # endpoint path, caller authenticated, request body


@dataclass(frozen=True)
class _Kept:
    answer: bytes
    images: int  # how many verdicts it answers (for the cache metrics)
    generation: tuple[str, str, object]
    expires_at: float
    size: int


class AnswerMemo:
    def __init__(
        self,
        max_entries: int = MAX_MEMO_ENTRIES,
        max_bytes: int = MAX_MEMO_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._kept: OrderedDict[MemoKey, _Kept] = OrderedDict()
        self._bytes = 0

    def get(self, key: MemoKey, generation: tuple[str, str, object]) -> tuple[bytes, int] | None:
        """The answer kept for ``key`` and how many images it answers, if it is still good."""
        with self._lock:
            kept = self._kept.get(key)
            if kept is None:
                return None
            if kept.expires_at <= self._clock() or not _same(kept.generation, generation):
                self._drop(key)
                return None
            self._kept.move_to_end(key)
            return kept.answer, kept.images

    def put(
        self, key: MemoKey, answer: bytes, images: int, generation: tuple[str, str, object], ttl_s: float
    ) -> None:
        size = len(key[0]) + len(key[2]) + len(answer)
        if ttl_s <= 0 or size > min(MAX_MEMO_ENTRY_BYTES, self._max_bytes) or self._max_entries <= 0:
            return
        with self._lock:
            if key in self._kept:
                self._drop(key)
            self._kept[key] = _Kept(answer, images, generation, self._clock() + ttl_s, size)
            self._bytes += size
            while len(self._kept) > self._max_entries or self._bytes > self._max_bytes:
                self._drop(next(iter(self._kept)))

    def _drop(self, key: MemoKey) -> None:
        kept = self._kept.pop(key)
        self._bytes -= kept.size

    def __len__(self) -> int:
        return len(self._kept)

    @property
    def bytes(self) -> int:
        return self._bytes


def _same(a: tuple[str, str, object], b: tuple[str, str, object]) -> bool:
    return a[0] == b[0] and a[1] == b[1] and a[2] is b[2]

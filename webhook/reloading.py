"""A value read from files and read again when they change: trust material, registry credentials.

The files are looked at (a cheap stamp: paths, sizes, modification times) at most every few
seconds; when the stamp changes the value is loaded again. A load that fails keeps the previous
value and says why (``last_error``): a half-written file must neither open the gate nor take it down.
The first load is not guarded: a server must not start with material it cannot read.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import Generic, TypeVar

from webhook.errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")


class Reloading(Generic[T]):
    def __init__(
        self,
        what: str,
        stamp: Callable[[], Hashable],
        load: Callable[[], T],
        *,
        check_every_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._what = what
        self._stamp_of = stamp
        self._load = load
        self._check_every_s = check_every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp = stamp()
        self._value = load()
        self._checked = clock()
        self.last_error = ""

    def current(self) -> T:
        now = self._clock()
        if now - self._checked < self._check_every_s:
            return self._value
        with self._lock:
            if now - self._checked < self._check_every_s:
                return self._value
            self._checked = now
            stamp = self._stamp_of()
            if stamp != self._stamp:
                try:
                    self._value = self._load()
                    self._stamp = stamp
                    self.last_error = ""
                    log.info("%s reloaded", self._what)
                except ConfigError as exc:
                    self.last_error = str(exc)
                    log.error("%s not reloaded, keeping the previous one: %s", self._what, exc)
            return self._value


def file_stamp(paths: Iterable[Path]) -> tuple[tuple[str, int, int, int], ...]:
    """(path, inode, size, mtime) of each path that exists; symbolic links are followed, so a
    Kubernetes volume whose ``..data`` link is swapped counts as changed."""
    out = []
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            continue
        out.append((str(path), info.st_ino, info.st_size, info.st_mtime_ns))
    return tuple(out)

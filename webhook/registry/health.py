"""Registries that stopped answering: asked again only after a cool-down.

Without this, a registry that accepts connections and then hangs holds one verification thread per
image for the whole admission deadline, for every request that names it, and admissions of images
from healthy registries queue behind them. Once a request to a host has waited at least
``min_wait_s`` and timed out, requests to that host fail at once (inconclusive, so denied) for
``cooldown_s``; then one request is let through to probe it, the others still failing at once until
it answers. Any HTTP answer closes the circuit. Failures that come back fast (connection refused)
need no such help and are not counted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Outage:
    since: float  # when the host last failed to answer in time
    retry_at: float  # no request before this; then one probe


class HostHealth:
    def __init__(
        self,
        cooldown_s: float,
        *,
        min_wait_s: float = 1.0,
        max_hosts: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cooldown_s = cooldown_s
        self._max_hosts = max_hosts
        self._min_wait_s = min_wait_s
        self._clock = clock
        self._outages: dict[str, _Outage] = {}
        self._lock = threading.Lock()

    def refusal(self, host: str) -> str:
        """Why a request to ``host`` must not be sent now ("" when it may be: the host is healthy,
        or its cool-down is over and this request is the one that probes it)."""
        if self._cooldown_s <= 0:
            return ""
        with self._lock:
            outage = self._outages.get(host)
            if outage is None:
                return ""
            now = self._clock()
            if now >= outage.retry_at:
                outage.retry_at = now + self._cooldown_s  # this request probes; the rest wait for it
                return ""
            return (
                f"{host} is not answering (a request timed out {now - outage.since:.1f}s ago); "
                f"it is asked again in {outage.retry_at - now:.1f}s"
            )

    def timed_out(self, host: str, waited_s: float) -> None:
        if waited_s < self._min_wait_s:
            return  # our own budget was short: that says nothing about the registry
        with self._lock:
            now = self._clock()
            self._outages.pop(host, None)
            self._outages[host] = _Outage(now, now + self._cooldown_s)
            while len(self._outages) > self._max_hosts:  # the oldest outage is forgotten first
                del self._outages[next(iter(self._outages))]

    def answered(self, host: str) -> None:
        if self._outages:  # read without the lock: the common case costs nothing
            with self._lock:
                self._outages.pop(host, None)

    def __len__(self) -> int:
        return len(self._outages)

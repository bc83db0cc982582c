"""Registries that stopped answering: asked again only after a cool-down.

Without this, a registry that accepts connections and then hangs holds one verification thread per
image for the whole admission deadline, for every request that names it, and admissions of images
from healthy registries queue behind them. Once a request to a host has waited at least
``min_wait_s`` and timed out, requests to that host fail at once (inconclusive, so denied) for
``cooldown_s``; then one request is let through to probe it, the others still failing at once until
it answers. Any HTTP answer closes the circuit. Failures that come back fast (connection refused)
need no such help and are not counted.

Replicas may share what they learn (``share``): a host one of them saw time out is refused by the
others too, for what is left of the same cool-down; a host not known to be down here is looked up
in the shared view at most once per ``SHARED_RECHECK_S``, and the replica whose probe is answered
clears it for all. A shared claim can only make Referee refuse sooner, as "could not check"
(denied, never cached), what it would have refused after waiting; it never admits anything.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

SHARED_RECHECK_S = 1.0


class SharedOutages(Protocol):
    """What every replica knows of registry hosts that stopped answering (``webhook.shared``)."""

    def outage_age(self, host: str) -> float | None: ...  # seconds since a replica saw it time out

    def report_outage(self, host: str, ttl_s: float) -> None: ...

    def report_answer(self, host: str) -> None: ...


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
        self._shared: SharedOutages | None = None
        self._looked_up: dict[str, float] = {}  # host -> when the shared view was last asked

    def share(self, shared: SharedOutages) -> None:
        self._shared = shared

    def refusal(self, host: str) -> str:
        """Why a request to ``host`` must not be sent now ("" when it may be: the host is healthy,
        or its cool-down is over and this request is the one that probes it)."""
        if self._cooldown_s <= 0:
            return ""
        with self._lock:
            outage = self._outages.get(host)
            now = self._clock()
            if outage is None:
                ask = self._shared is not None and self._due(host, now)
            elif now >= outage.retry_at:
                outage.retry_at = now + self._cooldown_s  # this request probes; the rest wait for it
                return ""
            else:
                return (
                    f"{host} is not answering (a request timed out {now - outage.since:.1f}s ago); "
                    f"it is asked again in {outage.retry_at - now:.1f}s"
                )
        return self._shared_refusal(host) if ask else ""

    def _due(self, host: str, now: float) -> bool:
        """Whether the shared view may be asked about ``host`` now (lock held)."""
        if now - self._looked_up.get(host, float("-inf")) < SHARED_RECHECK_S:
            return False
        self._looked_up.pop(host, None)
        self._looked_up[host] = now
        while len(self._looked_up) > self._max_hosts:
            del self._looked_up[next(iter(self._looked_up))]
        return True

    def _shared_refusal(self, host: str) -> str:
        """A refusal when another replica saw ``host`` time out within the cool-down."""
        shared = self._shared
        age = shared.outage_age(host) if shared is not None else None
        if age is None or not 0 <= age < self._cooldown_s:
            return ""
        with self._lock:
            now = self._clock()
            since = now - age
            if host not in self._outages:
                self._remember(host, _Outage(since, since + self._cooldown_s))
        return (
            f"{host} is not answering (a request of another replica timed out {age:.1f}s ago); "
            f"it is asked again in {since + self._cooldown_s - now:.1f}s"
        )

    def timed_out(self, host: str, waited_s: float) -> None:
        if waited_s < self._min_wait_s:
            return  # our own budget was short: that says nothing about the registry
        with self._lock:
            now = self._clock()
            self._remember(host, _Outage(now, now + self._cooldown_s))
        if self._shared is not None and self._cooldown_s > 0:
            self._shared.report_outage(host, self._cooldown_s)

    def _remember(self, host: str, outage: _Outage) -> None:
        self._outages.pop(host, None)
        self._outages[host] = outage
        while len(self._outages) > self._max_hosts:  # the oldest outage is forgotten first
            del self._outages[next(iter(self._outages))]

    def answered(self, host: str) -> None:
        if self._outages:  # read without the lock: the common case costs nothing
            with self._lock:
                known = self._outages.pop(host, None)
            if known is not None and self._shared is not None:
                self._shared.report_answer(host)

    def __len__(self) -> int:
        return len(self._outages)

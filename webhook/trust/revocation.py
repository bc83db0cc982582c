"""Getting revocation evidence: OCSP over HTTP (2 s per URL), CRLs over HTTP (5 s per URL), and CRL
files an operator supplies for clusters that cannot reach the issuer's endpoints. One URL per call:
which URLs to ask, in which order, and what the answers are worth is decided by the rules in
``webhook.notary.revocation``.

A CRL is kept (until its nextUpdate, in a cache bounded in entries and bytes) only once the rules
found it signed by its issuer: a CRL server cannot fill the cache with bytes of its choosing. An
admission asks through ``within(deadline)``: every fetch ends by the deadline, and at most
``MAX_URLS_PER_VERIFICATION`` URLs are asked in all.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography import x509

from webhook.deadline import Deadline
from webhook.errors import ConfigError, DeadlineExceeded
from webhook.notary.revocation import RevocationSource
from webhook.transport import Transport, TransportError, clip, opened, read_body

log = logging.getLogger(__name__)

OCSP_TIMEOUT_S = 2.0  # notation's defaults
CRL_TIMEOUT_S = 5.0
MAX_OCSP_BYTES = 64 << 10  # a real OCSP response is 1-4 KiB
MAX_CRL_BYTES = 16 << 20
MAX_CACHED_CRLS = 64  # distinct CRL URLs kept; the one due soonest goes first
MAX_CACHED_CRL_BYTES = 32 << 20
MAX_URLS_PER_VERIFICATION = 16  # OCSP and CRL URLs asked for one image (its chains and its TSA's)


def _load_crl(data: bytes) -> x509.CertificateRevocationList:
    """DER or PEM; ValueError for anything else (an unknown CRL version included)."""
    try:
        try:
            return x509.load_der_x509_crl(data)
        except (ValueError, x509.InvalidVersion):
            return x509.load_pem_x509_crl(data)
    except x509.InvalidVersion as exc:
        raise ValueError(str(exc)) from None


class HttpRevocationSource:
    """OCSP and CRL over HTTP, plus offline CRL files; thread-safe, with a CRL cache."""

    def __init__(
        self,
        *,
        network: bool = True,
        crl_files: Sequence[Path] = (),
        ocsp_timeout_s: float = OCSP_TIMEOUT_S,
        crl_timeout_s: float = CRL_TIMEOUT_S,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._network = network
        self._ocsp_timeout_s = ocsp_timeout_s
        self._crl_timeout_s = crl_timeout_s
        self._clock = clock
        self._transport = Transport(max_redirects=3)
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[bytes, dt.datetime]] = {}
        self._cached_bytes = 0
        self._offline: list[tuple[x509.CertificateRevocationList, bytes]] = []
        for path in crl_files:
            try:
                data = path.read_bytes()
                self._offline.append((_load_crl(data), data))
            except OSError as exc:
                raise ConfigError(f"cannot read CRL file {path}: {exc.strerror}") from None
            except ValueError:
                raise ConfigError(f"{path} is not a DER or PEM CRL") from None

    @property
    def fingerprint(self) -> str:
        """What a verdict depends on here: whether revocation is asked online, and the CRL files."""
        digest = hashlib.sha256(b"network" if self._network else b"offline")
        for _, data in self._offline:
            digest.update(hashlib.sha256(data).digest())
        return digest.hexdigest()[:16]

    def within(self, deadline: Deadline, max_urls: int = MAX_URLS_PER_VERIFICATION) -> RevocationSource:
        """This source for one verification: fetches end by ``deadline``, ``max_urls`` at most."""
        return _Bounded(self, deadline, max_urls)

    def ocsp(self, request: bytes, url: str, deadline: Deadline | None = None) -> bytes | None:
        if not self._network:
            return None
        timeout_s = (
            self._ocsp_timeout_s if deadline is None else min(self._ocsp_timeout_s, deadline.remaining_s())
        )
        if timeout_s <= 0:
            return None
        shown = clip(url, 120)
        try:
            resp = self._transport.open(
                "POST", url, headers={"Content-Type": "application/ocsp-request"},
                timeout_s=timeout_s, verify=True, body=request,
            )  # fmt: skip
            with opened(resp):
                if resp.status // 100 != 2:
                    log.info("OCSP responder %s answered HTTP %s", shown, resp.status)
                    return None
                data = read_body(resp, MAX_OCSP_BYTES, Deadline.after(timeout_s), shown)
        except (TransportError, DeadlineExceeded) as exc:
            log.info("OCSP responder %s gave no answer: %s", shown, exc)
            return None
        return data if len(data) <= MAX_OCSP_BYTES else None

    def offline_crls(self, issuer: x509.Name) -> list[bytes]:
        subject = issuer.public_bytes()
        return [data for crl, data in self._offline if crl.issuer.public_bytes() == subject]

    def cached_crl(self, url: str) -> bytes | None:
        now = self._clock()
        with self._lock:
            cached = self._cache.get(url)
            if cached is not None and now < cached[1]:
                return cached[0]
        return None

    def crl(self, url: str, deadline: Deadline | None = None) -> bytes | None:
        if not self._network:
            return None
        cached = self.cached_crl(url)
        if cached is not None:
            return cached
        timeout_s = (
            self._crl_timeout_s if deadline is None else min(self._crl_timeout_s, deadline.remaining_s())
        )
        if timeout_s <= 0:
            return None
        shown = clip(url, 120)
        try:
            resp = self._transport.open("GET", url, headers={}, timeout_s=timeout_s, verify=True)
            with opened(resp):
                if resp.status != 200:
                    log.info("CRL %s answered HTTP %s", shown, resp.status)
                    return None
                data = read_body(resp, MAX_CRL_BYTES, Deadline.after(timeout_s), shown)
        except (TransportError, DeadlineExceeded) as exc:
            log.info("CRL %s could not be fetched: %s", shown, exc)
            return None
        return data if len(data) <= MAX_CRL_BYTES else None

    def crl_verified(self, url: str, raw: bytes) -> None:
        """Keep a CRL the rules found signed by its issuer, until its nextUpdate."""
        if len(raw) > MAX_CACHED_CRL_BYTES:
            return
        try:
            next_update = _load_crl(raw).next_update_utc
        except ValueError:
            return
        if next_update is None:
            return
        with self._lock:
            old = self._cache.pop(url, None)
            if old is not None:
                self._cached_bytes -= len(old[0])
            self._cache[url] = (raw, next_update)
            self._cached_bytes += len(raw)
            while len(self._cache) > MAX_CACHED_CRLS or self._cached_bytes > MAX_CACHED_CRL_BYTES:
                due_first = min(self._cache, key=lambda u: self._cache[u][1])
                self._cached_bytes -= len(self._cache.pop(due_first)[0])

    @property
    def cached_bytes(self) -> int:
        return self._cached_bytes


class _Bounded:
    """An ``HttpRevocationSource`` for one verification: its deadline and its count of URLs."""

    def __init__(self, source: HttpRevocationSource, deadline: Deadline, max_urls: int) -> None:
        self._source = source
        self._deadline = deadline
        self._left = max_urls
        self._lock = threading.Lock()

    def _spend(self, url: str) -> bool:
        with self._lock:
            if self._left <= 0 or self._deadline.expired():
                log.info("revocation URL %s not asked: out of time or past the cap on URLs", clip(url, 120))
                return False
            self._left -= 1
            return True

    def ocsp(self, request: bytes, url: str) -> bytes | None:
        return self._source.ocsp(request, url, self._deadline) if self._spend(url) else None

    def crl(self, url: str) -> bytes | None:
        cached = self._source.cached_crl(url)
        if cached is not None:
            return cached
        return self._source.crl(url, self._deadline) if self._spend(url) else None

    def offline_crls(self, issuer: x509.Name) -> list[bytes]:
        return self._source.offline_crls(issuer)

    def crl_verified(self, url: str, raw: bytes) -> None:
        self._source.crl_verified(url, raw)

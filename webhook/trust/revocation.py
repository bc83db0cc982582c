"""Getting revocation evidence: OCSP over HTTP (2 s per URL), CRLs over HTTP (5 s per URL, cached
until their nextUpdate), and CRL files an operator supplies for clusters that cannot reach the
issuer's endpoints. One URL per call: which URLs to ask, in which order, and what the answers are
worth is decided by the rules in ``webhook.notary.revocation``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography import x509

from webhook.deadline import Deadline
from webhook.errors import ConfigError, DeadlineExceeded
from webhook.transport import Transport, TransportError, opened, read_body

log = logging.getLogger(__name__)

OCSP_TIMEOUT_S = 2.0  # notation's defaults
CRL_TIMEOUT_S = 5.0
MAX_OCSP_BYTES = 1 << 20
MAX_CRL_BYTES = 32 << 20
MAX_CACHED_CRLS = 64  # distinct CRL URLs kept; the one due soonest goes first


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
        self._offline: list[tuple[x509.CertificateRevocationList, bytes]] = []
        for path in crl_files:
            try:
                data = path.read_bytes()
                self._offline.append((_load_crl(data), data))
            except OSError as exc:
                raise ConfigError(f"cannot read CRL file {path}: {exc.strerror}") from None
            except ValueError:
                raise ConfigError(f"{path} is not a DER or PEM CRL") from None

    def ocsp(self, request: bytes, url: str) -> bytes | None:
        if not self._network:
            return None
        try:
            resp = self._transport.open(
                "POST", url, headers={"Content-Type": "application/ocsp-request"},
                timeout_s=self._ocsp_timeout_s, verify=True, body=request,
            )  # fmt: skip
            with opened(resp):
                if resp.status // 100 != 2:
                    log.info("OCSP responder %s answered HTTP %s", url, resp.status)
                    return None
                data = read_body(resp, MAX_OCSP_BYTES, Deadline.after(self._ocsp_timeout_s), url)
        except (TransportError, DeadlineExceeded) as exc:
            log.info("OCSP responder %s gave no answer: %s", url, exc)
            return None
        return data if len(data) <= MAX_OCSP_BYTES else None

    def offline_crls(self, issuer: x509.Name) -> list[bytes]:
        subject = issuer.public_bytes()
        return [data for crl, data in self._offline if crl.issuer.public_bytes() == subject]

    def crl(self, url: str) -> bytes | None:
        if not self._network:
            return None
        now = self._clock()
        with self._lock:
            cached = self._cache.get(url)
            if cached is not None and now < cached[1]:
                return cached[0]
        try:
            resp = self._transport.open("GET", url, headers={}, timeout_s=self._crl_timeout_s, verify=True)
            with opened(resp):
                if resp.status != 200:
                    log.info("CRL %s answered HTTP %s", url, resp.status)
                    return None
                data = read_body(resp, MAX_CRL_BYTES, Deadline.after(self._crl_timeout_s), url)
        except (TransportError, DeadlineExceeded) as exc:
            log.info("CRL %s could not be fetched: %s", url, exc)
            return None
        if len(data) > MAX_CRL_BYTES:
            return None
        self._remember(url, data)
        return data

    def _remember(self, url: str, data: bytes) -> None:
        """Cache a CRL until its nextUpdate; one that does not parse is judged (refused) by the
        rules and not cached."""
        try:
            next_update = _load_crl(data).next_update_utc
        except ValueError:
            return
        if next_update is not None:
            with self._lock:
                self._cache[url] = (data, next_update)
                while len(self._cache) > MAX_CACHED_CRLS:
                    del self._cache[min(self._cache, key=lambda u: self._cache[u][1])]

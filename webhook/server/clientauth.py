"""Who is calling: mutual TLS per group of endpoints (``tls.clientAuth``).

The TLS layer asks every client for a certificate and verifies any it shows against the union of
the configured client CAs. Each group of endpoints then insists on a certificate issued directly by
one of *its* CA certificates (put an intermediate in the file if one issued the client's), and, when
``names`` is set, naming one of them as its subject CN or a DNS name: the API server's certificate
for ``/validate`` and ``/mutate``, Gatekeeper's for ``/provider``. The certificate must also be valid
at the time of each request: a TLS session resumed after it expired carries the certificate of the
first handshake, which the TLS layer does not check again. The CA files are re-read when they
change, as the TLS context is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from webhook.config import ClientAuth
from webhook.errors import ConfigError
from webhook.reloading import Reloading, file_stamp

MAX_CA_FILE_BYTES = 1 << 20


def read_ca_file(path: Path) -> tuple[x509.Certificate, ...]:
    try:
        data = path.read_bytes()[: MAX_CA_FILE_BYTES + 1]
    except OSError as exc:
        raise ConfigError(f"client CA file {path}: cannot read ({exc.strerror})") from None
    if len(data) > MAX_CA_FILE_BYTES:
        raise ConfigError(f"client CA file {path}: over {MAX_CA_FILE_BYTES} bytes")
    try:
        certs = tuple(x509.load_pem_x509_certificates(data))
    except ValueError:
        raise ConfigError(f"client CA file {path}: not PEM certificates") from None
    return certs


@dataclass(frozen=True)
class Caller:
    """The outcome of checking one request's client certificate."""

    authenticated: bool
    problem: str = ""  # why not, for the 403 answer and the log (no certificate contents)


class ClientCheck:
    def __init__(
        self,
        auth: ClientAuth,
        what: str,
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._auth = auth
        self._what = what
        self._clock = clock
        self._cas = Reloading(
            f"client CA for {what}",
            lambda: file_stamp([auth.ca_file]),
            lambda: read_ca_file(auth.ca_file),
        )

    def check(self, der: bytes | None) -> Caller:
        """``der``: the client's certificate as the TLS layer verified it (None: it showed none)."""
        if not der:
            return Caller(False, f"calls to {self._what} need a client certificate (mutual TLS)")
        try:
            leaf = x509.load_der_x509_certificate(der)
        except ValueError:
            return Caller(False, "the client certificate cannot be read")
        now = self._clock()
        if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
            return Caller(False, "the client certificate is not valid now (expired, or not yet valid)")
        if not any(_issued_by(leaf, ca) for ca in self._cas.current()):
            return Caller(
                False, f"the client certificate is not issued by the CA configured for {self._what}"
            )
        if self._auth.names and not set(_names(leaf)) & set(self._auth.names):
            return Caller(
                False, f"the client certificate's names are not among those allowed for {self._what}"
            )
        return Caller(True)


def _issued_by(leaf: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _names(cert: x509.Certificate) -> list[str]:
    names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return names
    return names + [str(n) for n in san.get_values_for_type(x509.DNSName)]

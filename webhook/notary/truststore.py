"""Trust stores: named sets of trusted certificates, by type (``ca``, ``signingAuthority``, ``tsa``).

``parse_certificates`` and ``check_store_certificates`` carry notation's rules for the files of a
store; ``webhook.trust.files`` reads the directories. Pure.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from webhook.errors import ConfigError
from webhook.notary.certs import is_self_signed

PEM_MARKER = b"-----BEGIN"


def parse_certificates(data: bytes, source: str) -> tuple[x509.Certificate, ...]:
    """Every certificate in a PEM bundle, or in DER (one or more concatenated)."""
    try:
        if PEM_MARKER in data:
            certs = tuple(x509.load_pem_x509_certificates(data))
        else:
            certs = _load_der_sequence(data)
    except (ValueError, x509.InvalidVersion) as exc:
        raise ConfigError(f"{source}: not a PEM or DER certificate file ({exc})") from None
    if not certs:
        raise ConfigError(f"{source}: contains no certificate")
    return certs


def _load_der_sequence(data: bytes) -> tuple[x509.Certificate, ...]:
    certs = []
    rest = data
    while rest:
        length = _der_length(rest)
        certs.append(x509.load_der_x509_certificate(rest[:length]))
        rest = rest[length:]
    return tuple(certs)


def _der_length(data: bytes) -> int:
    """Total length of the DER element at the start of ``data`` (tag, length and content)."""
    if len(data) < 2 or data[0] != 0x30:
        raise ValueError("not a DER SEQUENCE")
    first = data[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count == 0 or count > 4 or len(data) < 2 + count:
        raise ValueError("bad DER length")
    return 2 + count + int.from_bytes(data[2 : 2 + count], "big")


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def weak_signature_hash(cert: x509.Certificate) -> str | None:
    """``"SHA-1"`` or ``"MD5"`` when the certificate is signed with a hash the Notary Project
    specification forbids (its self-signature cannot count), else ``None``."""
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return None
    return {"sha1": "SHA-1", "md5": "MD5"}.get(algorithm.name) if algorithm is not None else None


def check_store_certificates(certs: Iterable[x509.Certificate], store_type: str, source: str) -> None:
    """notation's rules: every trusted certificate is a CA or self-signed; ``tsa`` holds only roots."""
    for cert in certs:
        subject = cert.subject.rfc4514_string()
        if store_type == "tsa":
            if not is_self_signed(cert):
                raise ConfigError(
                    f"{source}: {subject!r} {_not_self_signed(cert)}; a tsa store holds roots only"
                )
        elif not (is_ca(cert) or is_self_signed(cert)):
            if weak_signature_hash(cert):
                raise ConfigError(
                    f"{source}: {subject!r} is not a CA certificate and {_not_self_signed(cert)}"
                )
            raise ConfigError(f"{source}: {subject!r} is neither a CA certificate nor self-signed")


def _not_self_signed(cert: x509.Certificate) -> str:
    weak = weak_signature_hash(cert)
    if weak:
        return (
            f"is signed with {weak}, which the Notary Project specification does not allow, so it cannot "
            "count as a self-signed root"
        )
    return "is not a self-signed root"


@dataclass(frozen=True)
class TrustStore:
    """All named stores: (type, name) -> certificates."""

    stores: Mapping[tuple[str, str], tuple[x509.Certificate, ...]] = field(default_factory=dict, hash=False)

    def certificates(self, store_type: str, names: Iterable[str]) -> tuple[x509.Certificate, ...]:
        """The certificates of the named stores of one type, each once, in a stable order."""
        seen: set[bytes] = set()
        out: list[x509.Certificate] = []
        for name in names:
            for cert in self.stores.get((store_type, name), ()):
                der = cert.public_bytes(serialization.Encoding.DER)
                if der not in seen:
                    seen.add(der)
                    out.append(cert)
        return tuple(out)

    def certificate_bytes(self, store_type: str, names: Iterable[str]) -> frozenset[bytes]:
        """The DER bytes of the named stores' certificates (made once per store and kept)."""
        index = self._der_index
        return frozenset().union(*(index.get((store_type, name), frozenset()) for name in names))

    @functools.cached_property
    def _der_index(self) -> Mapping[tuple[str, str], frozenset[bytes]]:
        return {
            key: frozenset(cert.public_bytes(serialization.Encoding.DER) for cert in certs)
            for key, certs in self.stores.items()
        }

    def has(self, store_type: str, name: str) -> bool:
        return bool(self.stores.get((store_type, name)))

    def fingerprint(self) -> str:
        """A hash of every store's name and certificates: changes whenever trust changes."""
        h = hashlib.sha256()
        for (kind, name), certs in sorted(self.stores.items()):
            h.update(f"{kind}:{name}\0".encode())
            for cert in certs:
                h.update(hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest())
        return h.hexdigest()

"""Test certificates made with ``cryptography``: a CA, TLS server certificates, token-signing keys."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class KeyPair:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    cert_path: Path
    key_path: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(directory: Path, stem: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> KeyPair:
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return KeyPair(key, cert, cert_path, key_path)


def _issue(
    cn: str,
    issuer: KeyPair | None,
    extensions: list[tuple[x509.ExtensionType, bool]],
    days: int = 1,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A fresh P-256 key and its certificate, signed by ``issuer`` (or by itself when None)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.cert.subject if issuer else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    signer = issuer.key if issuer else key
    assert isinstance(signer, ec.EllipticCurvePrivateKey)
    return key, builder.sign(signer, hashes.SHA256())


_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
    key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
)  # fmt: skip
_LEAF = x509.BasicConstraints(ca=False, path_length=None)
EKU = x509.oid.ExtendedKeyUsageOID


def make_ca(directory: Path, cn: str = "Referee Test CA") -> KeyPair:
    key, cert = _issue(
        cn, None, [(x509.BasicConstraints(ca=True, path_length=None), True), (_CA_KEY_USAGE, True)], 2
    )
    return _write(directory, "ca", key, cert)


def make_client_cert(directory: Path, ca: KeyPair, stem: str = "client", cn: str = "gatekeeper") -> KeyPair:
    """A TLS client certificate issued by ``ca``, shaped like the one Gatekeeper presents: its webhook
    certificate, which carries serverAuth and (with external data enabled) clientAuth."""
    key, cert = _issue(
        cn, ca, [(_LEAF, True), (x509.ExtendedKeyUsage([EKU.SERVER_AUTH, EKU.CLIENT_AUTH]), False)]
    )
    return _write(directory, stem, key, cert)


def make_server_cert(
    directory: Path, ca: KeyPair, stem: str = "server", *, cn: str = "localhost", client_auth: bool = False
) -> KeyPair:
    """A TLS server certificate for localhost and 127.0.0.1 issued by ``ca``; with ``client_auth`` it
    may also be presented as a client certificate (as Gatekeeper presents its webhook certificate)."""
    names = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    usages = [EKU.SERVER_AUTH, EKU.CLIENT_AUTH] if client_auth else [EKU.SERVER_AUTH]
    key, cert = _issue(cn, ca, [(names, False), (_LEAF, True), (x509.ExtendedKeyUsage(usages), False)])
    return _write(directory, stem, key, cert)


def make_self_signed_signer(directory: Path, cn: str = "Referee Test Token Issuer") -> KeyPair:
    """A self-signed certificate without EKU, used to sign registry tokens (its cert is the root)."""
    key, cert = _issue(cn, None, [])
    return _write(directory, "token-signer", key, cert)

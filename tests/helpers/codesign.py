"""Code-signing PKI for Notary tests: root -> intermediate -> leaf chains with any property a test needs
(key type and size, validity window, EKU, key usage), written where notation and Referee read them."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

HASH_FOR = {
    "rsa-2048": hashes.SHA256,
    "rsa-3072": hashes.SHA384,
    "rsa-4096": hashes.SHA512,
    "ec-p256": hashes.SHA256,
    "ec-p384": hashes.SHA384,
    "ec-p521": hashes.SHA512,
}


def new_key(kind: str) -> PrivateKey:
    if kind.startswith("rsa-"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[4:]))
    curve = {"ec-p256": ec.SECP256R1(), "ec-p384": ec.SECP384R1(), "ec-p521": ec.SECP521R1()}[kind]
    return ec.generate_private_key(curve)


def subject(cn: str, org: str = "Referee Test") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "WA"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Seattle"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _key_usage(*, sign: bool = False, cert_sign: bool = False, encipher: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=encipher,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass
class LeafSpec:
    key: str = "ec-p256"
    cn: str = "signer"
    org: str = "Referee Test"
    not_before: dt.timedelta = dt.timedelta(days=-1)  # relative to now
    not_after: dt.timedelta = dt.timedelta(days=30)
    eku: list[x509.ObjectIdentifier] | None = field(
        default_factory=lambda: [ExtendedKeyUsageOID.CODE_SIGNING]
    )
    key_encipherment: bool = False
    digital_signature: bool = True
    ca: bool = False
    ocsp_url: str | None = None  # Authority Information Access
    crl_url: str | None = None  # CRL Distribution Points


@dataclass(frozen=True)
class Chain:
    leaf_key: PrivateKey
    certs: tuple[x509.Certificate, ...]  # leaf, intermediate(s), root
    issuer_key: PrivateKey | None = None  # the key that issued the leaf (for CRLs and OCSP)

    @property
    def root(self) -> x509.Certificate:
        return self.certs[-1]

    def pem(self, certs: tuple[x509.Certificate, ...] | None = None) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (certs or self.certs))

    def key_pem(self) -> bytes:
        return self.leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def make_root(
    cn: str, key_kind: str = "ec-p384", now: dt.datetime | None = None
) -> tuple[PrivateKey, x509.Certificate]:
    """A self-signed CA, valid from ten days ago for ten years."""
    now = now or dt.datetime.now(dt.UTC)
    key = new_key(key_kind)
    name = subject(cn)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=10))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .sign(key, hashes.SHA384())
    )
    return key, cert


def make_chain(
    leaf: LeafSpec | None = None,
    *,
    ca_key: str = "ec-p384",
    intermediates: int = 1,
    root_cn: str = "Referee Test Root",
    now: dt.datetime | None = None,
) -> Chain:
    spec = leaf or LeafSpec()
    now = now or dt.datetime.now(dt.UTC)
    root_key, root = make_root(root_cn, ca_key, now)
    issuer_key, issuer = root_key, root
    cas = [root]
    for i in range(intermediates):
        key = new_key(ca_key)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject(f"Referee Test Intermediate {i}"))
            .issuer_name(issuer.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=5))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .sign(issuer_key, hashes.SHA384())
        )
        cas.insert(0, cert)
        issuer_key, issuer = key, cert
    leaf_key = new_key(spec.key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject(spec.cn, spec.org))
        .issuer_name(issuer.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + spec.not_before)
        .not_valid_after(now + spec.not_after)
        .add_extension(x509.BasicConstraints(ca=spec.ca, path_length=None), critical=True)
        .add_extension(
            _key_usage(sign=spec.digital_signature, encipher=spec.key_encipherment, cert_sign=spec.ca),
            critical=True,
        )
    )
    if spec.eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(spec.eku), critical=False)
    if spec.ocsp_url:
        builder = builder.add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        x509.oid.AuthorityInformationAccessOID.OCSP,
                        x509.UniformResourceIdentifier(spec.ocsp_url),
                    )
                ]
            ),
            critical=False,
        )
    if spec.crl_url:
        builder = builder.add_extension(
            x509.CRLDistributionPoints(
                [x509.DistributionPoint([x509.UniformResourceIdentifier(spec.crl_url)], None, None, None)]
            ),
            critical=False,
        )
    leaf_cert = builder.sign(issuer_key, hashes.SHA384())
    return Chain(leaf_key, (leaf_cert, *cas), issuer_key)


def install_notation_key(config_home: Path, name: str, chain: Chain, *, default: bool = True) -> None:
    """Make ``chain`` a notation signing key (signingkeys.json with keyPath/certPath)."""
    base = config_home / "notation"
    keys = base / "localkeys"
    keys.mkdir(parents=True, exist_ok=True)
    (keys / f"{name}.key").write_bytes(chain.key_pem())
    (keys / f"{name}.key").chmod(0o600)
    (keys / f"{name}.crt").write_bytes(chain.pem())
    path = base / "signingkeys.json"
    doc = json.loads(path.read_text()) if path.exists() else {"keys": []}
    doc["keys"] = [k for k in doc["keys"] if k["name"] != name] + [
        {"name": name, "keyPath": str(keys / f"{name}.key"), "certPath": str(keys / f"{name}.crt")}
    ]
    if default:
        doc["default"] = name
    path.write_text(json.dumps(doc, indent=2))


def write_trust_store(root: Path, store_type: str, name: str, *certs: x509.Certificate) -> Path:
    """``root/x509/<type>/<name>/cert-N.pem``, the layout notation and Referee read."""
    d = root / "x509" / store_type / name
    d.mkdir(parents=True, exist_ok=True)
    for i, cert in enumerate(certs):
        (d / f"cert-{i}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return d


def write_trust_policy(
    path: Path,
    *,
    stores: list[str] | None = None,
    identities: list[str] | None = None,
    level: str = "strict",
    scopes: list[str] | None = None,
    name: str = "all",
    **verification: Any,
) -> Path:
    """A one-statement ``trustpolicy.json`` (version 1.0); ``verification`` adds e.g. override=..."""
    statement: dict[str, Any] = {
        "name": name,
        "registryScopes": scopes or ["*"],
        "signatureVerification": {"level": level, **{k: v for k, v in verification.items() if v}},
    }
    if level != "skip":
        statement["trustStores"] = stores or ["ca:test"]
        statement["trustedIdentities"] = identities or ["*"]
    path.write_text(json.dumps({"version": "1.0", "trustPolicies": [statement]}))
    return path

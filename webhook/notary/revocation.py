"""Certificate revocation (OCSP, then CRL) for a signing chain, by the rules of the Notary trust store
and trust policy specification ("Certificate Revocation Evaluation").

For each certificate but the root: with an OCSP URL, ask the responder; if OCSP gives no answer and
the certificate has CRL distribution points, use the CRL; with neither, the certificate cannot be
revoked. ``revoked`` on any certificate wins; otherwise any undeterminable status makes the chain's
status unknown, which fails the check just as revoked does (enforced or logged per the policy).

The rules are here and pure; getting the bytes (HTTP with notation's timeouts, a cache, or CRL files
an operator supplies for air-gapped clusters) is the ``RevocationSource`` the caller passes in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from webhook.notary.certs import describe

ExtensionT = TypeVar("ExtensionT", bound=x509.ExtensionType)


class RevocationSource(Protocol):
    """Where OCSP responses and CRLs come from. ``None`` / ``[]`` means "could not get one"."""

    def ocsp(self, request: bytes, urls: Sequence[str]) -> bytes | None: ...

    def crls(self, urls: Sequence[str], issuer: x509.Certificate) -> list[bytes]: ...


class Status(Enum):
    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"
    NOT_REVOCABLE = "not revocable"  # no OCSP URL and no CRL distribution point


@dataclass(frozen=True)
class CertStatus:
    cert: x509.Certificate
    status: Status
    detail: str


def _extension(cert: x509.Certificate, kind: type[ExtensionT]) -> ExtensionT | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _ocsp_urls(cert: x509.Certificate) -> list[str]:
    aia = _extension(cert, x509.AuthorityInformationAccess)
    if aia is None:
        return []
    return [
        d.access_location.value
        for d in aia
        if d.access_method == AuthorityInformationAccessOID.OCSP
        and isinstance(d.access_location, x509.UniformResourceIdentifier)
        and d.access_location.value.startswith(("http://", "https://"))
    ]


def _crl_urls(cert: x509.Certificate) -> list[str]:
    points = _extension(cert, x509.CRLDistributionPoints)
    if points is None:
        return []
    return [
        name.value
        for point in points
        for name in point.full_name or []
        if isinstance(name, x509.UniformResourceIdentifier) and name.value.startswith("http://")
    ]


def has_revocation_endpoints(cert: x509.Certificate) -> bool:
    return bool(_ocsp_urls(cert) or _crl_urls(cert))


def check_chain(
    chain: Sequence[x509.Certificate], source: RevocationSource, now: dt.datetime
) -> list[CertStatus]:
    """The status of every certificate of the chain but the root, leaf first."""
    return [check_certificate(chain[i], chain[i + 1], source, now) for i in range(len(chain) - 1)]


def summarise(statuses: Sequence[CertStatus]) -> str | None:
    """``None`` when no certificate is revoked or undeterminable, else why (revoked first)."""
    for wanted in (Status.REVOKED, Status.UNKNOWN):
        for s in statuses:
            if s.status is wanted:
                return f"certificate {describe(s.cert)!r} is {s.status.value}: {s.detail}"
    return None


def check_certificate(
    cert: x509.Certificate, issuer: x509.Certificate, source: RevocationSource, now: dt.datetime
) -> CertStatus:
    ocsp_urls, crl_urls = _ocsp_urls(cert), _crl_urls(cert)
    if not ocsp_urls and not crl_urls:
        return CertStatus(cert, Status.NOT_REVOCABLE, "no OCSP or CRL endpoint")
    detail = ""
    if ocsp_urls:
        result = _by_ocsp(cert, issuer, ocsp_urls, source, now)
        if result.status is not Status.UNKNOWN or not crl_urls:
            return result
        detail = f"{result.detail}; "
    result = _by_crl(cert, issuer, crl_urls, source, now)
    return CertStatus(cert, result.status, detail + result.detail)


# --- OCSP ------------------------------------------------------------------------------------------


def _by_ocsp(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    urls: list[str],
    source: RevocationSource,
    now: dt.datetime,
) -> CertStatus:
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256()).build()
    raw = source.ocsp(request.public_bytes(serialization.Encoding.DER), urls)
    if raw is None:
        return CertStatus(cert, Status.UNKNOWN, f"no OCSP answer from {', '.join(urls)}")
    try:
        response = ocsp.load_der_ocsp_response(raw)
    except ValueError:
        return CertStatus(cert, Status.UNKNOWN, "the OCSP response is malformed")
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return CertStatus(cert, Status.UNKNOWN, f"the OCSP responder said {response.response_status.name}")
    problem = _check_ocsp_signature(response, issuer)
    if problem:
        return CertStatus(cert, Status.UNKNOWN, problem)
    for single in response.responses:
        if single.serial_number == cert.serial_number and single.issuer_key_hash == _key_hash(
            issuer, single.hash_algorithm
        ):
            status, detail = _single_status(single, now)
            return CertStatus(cert, status, detail)
    return CertStatus(cert, Status.UNKNOWN, "the OCSP response does not cover the certificate")


def _single_status(single: ocsp.OCSPSingleResponse, now: dt.datetime) -> tuple[Status, str]:
    if single.next_update_utc is not None and now > single.next_update_utc:
        return Status.UNKNOWN, "the OCSP response is out of date"
    if single.this_update_utc > now + dt.timedelta(minutes=5):
        return Status.UNKNOWN, "the OCSP response is from the future"
    if single.certificate_status == ocsp.OCSPCertStatus.GOOD:
        return Status.GOOD, "OCSP: good"
    if single.certificate_status == ocsp.OCSPCertStatus.REVOKED:
        when = single.revocation_time_utc
        return Status.REVOKED, f"OCSP: revoked at {when.isoformat() if when else 'an unknown time'}"
    return Status.UNKNOWN, "OCSP: the responder does not know the certificate"


def _key_hash(issuer: x509.Certificate, algorithm: hashes.HashAlgorithm) -> bytes:
    """The OCSP CertID issuer key hash: over the issuer's subjectPublicKey bits, not the whole SPKI."""
    spki = issuer.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(algorithm)
    digest.update(_subject_public_key_bits(spki))
    return digest.finalize()


def _subject_public_key_bits(spki: bytes) -> bytes:
    """The contents (after the unused-bits octet) of the BIT STRING in a SubjectPublicKeyInfo."""

    def tlv(data: bytes, offset: int) -> tuple[int, int, int]:
        first = data[offset + 1]
        if first < 0x80:
            return data[offset], offset + 2, offset + 2 + first
        count = first & 0x7F
        length = int.from_bytes(data[offset + 2 : offset + 2 + count], "big")
        return data[offset], offset + 2 + count, offset + 2 + count + length

    _, content, _ = tlv(spki, 0)
    _, _, algorithm_end = tlv(spki, content)
    tag, bits_start, bits_end = tlv(spki, algorithm_end)
    if tag != 0x03:
        raise ValueError("SubjectPublicKeyInfo without a BIT STRING")
    return spki[bits_start + 1 : bits_end]


def _check_ocsp_signature(response: ocsp.OCSPResponse, issuer: x509.Certificate) -> str | None:
    """The responder is the issuing CA, or a certificate it issued for OCSP signing."""
    responder = issuer
    for candidate in response.certificates:
        if candidate.public_bytes(serialization.Encoding.DER) == issuer.public_bytes(
            serialization.Encoding.DER
        ):
            break
        try:
            candidate.verify_directly_issued_by(issuer)
            eku = candidate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm, x509.ExtensionNotFound):
            continue
        if ExtendedKeyUsageOID.OCSP_SIGNING in eku:
            responder = candidate
            break
    hash_algorithm = response.signature_hash_algorithm
    if hash_algorithm is None:
        return "the OCSP response uses an unsupported signature algorithm"
    try:
        key = responder.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(response.signature, response.tbs_response_bytes, padding.PKCS1v15(), hash_algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(hash_algorithm))
        else:
            return "the OCSP responder's key type is not supported"
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return "the OCSP response is not signed by the issuer or its OCSP responder"
    return None


# --- CRL -------------------------------------------------------------------------------------------


def _by_crl(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    urls: list[str],
    source: RevocationSource,
    now: dt.datetime,
) -> CertStatus:
    candidates = source.crls(urls, issuer)
    if not candidates:
        return CertStatus(
            cert, Status.UNKNOWN, f"no CRL from {', '.join(urls) or 'the configured CRL files'}"
        )
    problems = []
    for raw in candidates:
        try:
            crl = x509.load_der_x509_crl(raw)
        except ValueError:
            try:
                crl = x509.load_pem_x509_crl(raw)
            except ValueError:
                problems.append("a CRL is malformed")
                continue
        if crl.issuer.public_bytes() != issuer.subject.public_bytes():
            continue
        try:
            signed = crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
        except (ValueError, TypeError, UnsupportedAlgorithm):
            signed = False
        if not signed:
            problems.append("a CRL is not signed by the issuer")
            continue
        if crl.next_update_utc is None or now > crl.next_update_utc:
            problems.append("the CRL is out of date")
            continue
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is None:
            return CertStatus(cert, Status.GOOD, "CRL: not listed")
        return CertStatus(cert, Status.REVOKED, f"CRL: revoked at {entry.revocation_date_utc.isoformat()}")
    return CertStatus(cert, Status.UNKNOWN, "; ".join(problems) or "no CRL from this issuer")

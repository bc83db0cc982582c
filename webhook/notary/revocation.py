"""Certificate revocation (OCSP, then CRL) for a certificate chain, by the rules of the Notary trust
store and trust policy specification ("Certificate Revocation Evaluation"), RFC 6960 (OCSP) and
RFC 5280 sections 5 and 6.3 (CRLs).

For each certificate but the root: with OCSP endpoints, ask them in order until one gives a usable
answer; if OCSP gives no good or revoked answer and the certificate has CRL distribution points,
use CRLs; with neither kind of endpoint, the certificate cannot be revoked. An endpoint Referee
cannot fetch (a scheme other than http) still counts as an endpoint: its status is unknown.
``revoked`` on any certificate wins; otherwise any undeterminable status makes the chain's status
unknown, which fails the check just as revoked does (enforced or logged per the policy).

Evidence that cannot be used (malformed, badly signed, out of date, issued in the future, out of
scope, with an unknown critical extension, an unsupported algorithm) is never an exception: it makes
the status unknown, and the caller's level decides.

The rules are here and pure; getting the bytes (HTTP with notation's timeouts, a cache, or CRL files
an operator supplies for air-gapped clusters) is the ``RevocationSource`` the caller passes in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    CRLEntryExtensionOID,
    ExtendedKeyUsageOID,
    ExtensionOID,
    OCSPExtensionOID,
)

from webhook.notary.certs import describe

ExtensionT = TypeVar("ExtensionT", bound=x509.ExtensionType)

# Bounds on what one certificate can make Referee do: endpoints read per list (OCSP URLs, CRL
# distribution points, names in one point, delta CRL locations) and certificates in an OCSP response.
MAX_ENDPOINTS = 8
MAX_RESPONSE_CERTIFICATES = 8
# Evidence whose thisUpdate is later than now by more than this is not used (RFC 6960 4.2.2.1).
CLOCK_SKEW = dt.timedelta(minutes=5)

# RFC 5280 5.3.1 ReasonFlags: what a complete set of CRLs must cover (6.3.3 "all-reasons").
ALL_REASONS = frozenset(
    {
        x509.ReasonFlags.key_compromise,
        x509.ReasonFlags.ca_compromise,
        x509.ReasonFlags.affiliation_changed,
        x509.ReasonFlags.superseded,
        x509.ReasonFlags.cessation_of_operation,
        x509.ReasonFlags.certificate_hold,
        x509.ReasonFlags.privilege_withdrawn,
        x509.ReasonFlags.aa_compromise,
    }
)

# Extensions whose meaning Referee applies (or which do not change what the evidence says); any
# other extension marked critical makes the evidence unusable (RFC 5280 5.2 and 5.3, RFC 6960 4.4).
_CRL_EXTENSIONS = {
    ExtensionOID.CRL_NUMBER,
    ExtensionOID.DELTA_CRL_INDICATOR,
    ExtensionOID.ISSUING_DISTRIBUTION_POINT,
    ExtensionOID.FRESHEST_CRL,
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    ExtensionOID.ISSUER_ALTERNATIVE_NAME,
    ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
}
_ENTRY_EXTENSIONS = {CRLEntryExtensionOID.CRL_REASON, CRLEntryExtensionOID.INVALIDITY_DATE}
_OCSP_EXTENSIONS = {OCSPExtensionOID.NONCE}

# What cryptography raises when it meets damaged or unsupported content while reading evidence.
_EVIDENCE_ERRORS = (
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    InvalidSignature,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
    x509.InvalidVersion,
)


class RevocationSource(Protocol):
    """Where OCSP responses and CRLs come from. ``None`` / ``[]`` means "could not get one"."""

    def ocsp(self, request: bytes, url: str) -> bytes | None:
        """The DER OCSP response of the responder at ``url`` (an http URL) to ``request``."""
        ...

    def crl(self, url: str) -> bytes | None:
        """The CRL (DER or PEM) at ``url`` (an http URL), or None (unreachable, or offline)."""
        ...

    def offline_crls(self, issuer: x509.Name) -> Sequence[bytes]:
        """The CRLs an operator supplied whose issuer is ``issuer``; with any, no base CRL is downloaded."""
        ...

    def crl_verified(self, url: str, raw: bytes) -> None:
        """``raw``, fetched from ``url``, is a CRL signed by its issuer (a source may keep it now)."""
        ...


class RevocationStatus(Enum):
    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"
    NOT_REVOCABLE = "not revocable"  # no OCSP endpoint and no CRL distribution point


@dataclass(frozen=True)
class CertStatus:
    cert: x509.Certificate
    status: RevocationStatus
    detail: str


class _Unusable(Exception):
    """This piece of evidence cannot be used; the message says why."""


def _extension(extensions: x509.Extensions, kind: type[ExtensionT]) -> ExtensionT | None:
    try:
        return extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _unknown_critical(extensions: x509.Extensions, understood: set[x509.ObjectIdentifier], what: str) -> None:
    unknown = [e.oid.dotted_string for e in extensions if e.critical and e.oid not in understood]
    if unknown:
        raise _Unusable(f"{what} has unknown critical extension(s) {', '.join(unknown)}")


# --- endpoints -------------------------------------------------------------------------------------


def http_url(name: str) -> str | None:
    """``name`` as an http URL Referee can fetch (scheme matched case-insensitively, surrounding
    spaces dropped), or None for any other scheme (https, ldap, ...) or a name that is no URL."""
    try:
        parts = urlsplit(name.strip())
    except ValueError:
        return None
    if parts.scheme.lower() != "http" or not parts.hostname:
        return None
    return urlunsplit(parts._replace(scheme="http"))


@dataclass(frozen=True)
class _Point:
    """One CRL distribution point (RFC 5280 4.2.1.13): its names are alternatives for one CRL."""

    names: tuple[x509.GeneralName, ...]
    urls: tuple[str, ...]  # the http ones, in order
    reasons: frozenset[x509.ReasonFlags]
    indirect: bool  # names a cRLIssuer other than the certificate's issuer

    def describe(self) -> str:
        return ", ".join(_name_text(n) for n in self.names) or "a distribution point without a full name"


def _name_text(name: x509.GeneralName) -> str:
    return name.value if isinstance(name, x509.UniformResourceIdentifier) else str(name)


def _points(extension: x509.CRLDistributionPoints | x509.FreshestCRL | None) -> list[_Point]:
    points = []
    for point in list(extension or [])[:MAX_ENDPOINTS]:
        names = tuple(point.full_name or ())[:MAX_ENDPOINTS]
        urls = tuple(
            u
            for u in (http_url(n.value) for n in names if isinstance(n, x509.UniformResourceIdentifier))
            if u is not None
        )
        reasons = ALL_REASONS & point.reasons if point.reasons is not None else ALL_REASONS
        points.append(_Point(names, urls, reasons, bool(point.crl_issuer)))
    return points


@dataclass(frozen=True)
class _Endpoint:
    name: str  # as written in the certificate
    url: str | None  # the http URL to ask, or None when Referee cannot fetch it


def _ocsp_endpoints(cert: x509.Certificate) -> list[_Endpoint]:
    aia = _extension(cert.extensions, x509.AuthorityInformationAccess)
    out = []
    for d in list(aia or [])[: MAX_ENDPOINTS * 2]:
        if d.access_method != AuthorityInformationAccessOID.OCSP:
            continue
        name = d.access_location
        text = name.value if isinstance(name, x509.UniformResourceIdentifier) else str(name)
        out.append(
            _Endpoint(text, http_url(text) if isinstance(name, x509.UniformResourceIdentifier) else None)
        )
    return out[:MAX_ENDPOINTS]


@dataclass(frozen=True)
class _Ask:
    """One certificate's check: it, its issuer, its CRL distribution points, where evidence comes
    from, now, and the time the signature is known to have existed by (if any)."""

    cert: x509.Certificate
    issuer: x509.Certificate
    points: tuple[_Point, ...]
    source: RevocationSource
    now: dt.datetime
    signing_time: dt.datetime | None


def has_revocation_endpoints(cert: x509.Certificate) -> bool:
    """An OCSP endpoint or a CRL distribution point of any kind, fetchable or not."""
    return bool(_ocsp_endpoints(cert) or _points(_extension(cert.extensions, x509.CRLDistributionPoints)))


# --- the chain -------------------------------------------------------------------------------------


def check_chain(
    chain: Sequence[x509.Certificate],
    source: RevocationSource,
    now: dt.datetime,
    signing_time: dt.datetime | None = None,
) -> list[CertStatus]:
    """The status of every certificate of the chain but the root, leaf first.

    ``signing_time`` is a time the signature is known to have existed by (the authentic signing
    time of a signing authority, or a verified timestamp): a revocation whose invalidity date is
    later does not count against the signature (the specification's one relaxation).
    """
    out = []
    for i in range(len(chain) - 1):
        try:
            out.append(check_certificate(chain[i], chain[i + 1], source, now, signing_time))
        except _EVIDENCE_ERRORS as exc:  # a last guard: evidence never fails the run
            out.append(
                CertStatus(
                    chain[i], RevocationStatus.UNKNOWN, f"the revocation evidence cannot be used ({exc})"
                )
            )
    return out


def summarise(statuses: Sequence[CertStatus]) -> str | None:
    """``None`` when no certificate is revoked or undeterminable, else why (revoked first)."""
    for wanted in (RevocationStatus.REVOKED, RevocationStatus.UNKNOWN):
        for s in statuses:
            if s.status is wanted:
                return f"certificate {describe(s.cert)!r} is {s.status.value}: {s.detail}"
    return None


def check_certificate(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    source: RevocationSource,
    now: dt.datetime,
    signing_time: dt.datetime | None = None,
) -> CertStatus:
    endpoints = _ocsp_endpoints(cert)
    points = tuple(_points(_extension(cert.extensions, x509.CRLDistributionPoints)))
    if not endpoints and not points:
        return CertStatus(cert, RevocationStatus.NOT_REVOCABLE, "no OCSP or CRL endpoint")
    ask = _Ask(cert, issuer, points, source, now, signing_time)
    detail = ""
    if endpoints:
        # Spec: OCSP is preferred; when it cannot determine the status, fall back to CRLs.
        status, text = _by_ocsp(ask, endpoints)
        if status is not RevocationStatus.UNKNOWN or not points:
            return CertStatus(cert, status, text)
        detail = f"{text}; "
    status, text = _by_crl(ask)
    return CertStatus(cert, status, detail + text)


# --- OCSP (RFC 6960) -------------------------------------------------------------------------------


def _by_ocsp(ask: _Ask, endpoints: list[_Endpoint]) -> tuple[RevocationStatus, str]:
    request = ocsp.OCSPRequestBuilder().add_certificate(ask.cert, ask.issuer, hashes.SHA256()).build()
    der = request.public_bytes(serialization.Encoding.DER)
    problems = []
    # Spec "OCSP Download": the URLs in order; a responder that gives no usable answer (no answer,
    # tryLater, a response that cannot be used) does not stop the next one from being asked.
    for endpoint in endpoints:
        if endpoint.url is None:
            problems.append(f"OCSP endpoint {endpoint.name!r} is not an http URL Referee can ask")
            continue
        raw = ask.source.ocsp(der, endpoint.url)
        if raw is None:
            problems.append(f"no OCSP answer from {endpoint.url}")
            continue
        try:
            return _judge_ocsp(ask, raw)
        except (_Unusable, *_EVIDENCE_ERRORS) as exc:
            problems.append(f"OCSP {endpoint.url}: {_why(exc)}")
    return RevocationStatus.UNKNOWN, "; ".join(problems)


def _why(exc: Exception) -> str:
    return str(exc) if isinstance(exc, _Unusable) else f"the evidence cannot be read ({exc})"


def _judge_ocsp(ask: _Ask, raw: bytes) -> tuple[RevocationStatus, str]:
    now = ask.now
    try:
        response = ocsp.load_der_ocsp_response(raw)
    except ValueError:
        raise _Unusable("the OCSP response is malformed") from None
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise _Unusable(f"the responder said {response.response_status.name}")
    # RFC 6960 4.2.2.2: signed by the issuing CA, or by a responder the CA authorised.
    _check_responder(ask, response)
    # RFC 6960 4.4: an extension the client does not understand and that is marked critical.
    _unknown_critical(response.extensions, _OCSP_EXTENSIONS, "the OCSP response")
    # RFC 6960 4.1.1 and 3.2 (1): the CertID (hash of issuer name and key, serial) is this certificate.
    singles = list(response.responses)
    single = next((s for s in singles if _covers(s, ask.cert, ask.issuer)), None)
    if single is None:
        raise _Unusable("the OCSP response does not cover the certificate")
    if len(singles) != 1:
        raise _Unusable("the OCSP response answers for several certificates; Referee reads single answers")
    extensions = response.single_extensions
    _unknown_critical(extensions, _ENTRY_EXTENSIONS, "the OCSP single response")
    # RFC 6960 3.2 (5)-(6) and 4.2.2.1: current; no nextUpdate means no bound on its age (stale, as
    # notation treats it).
    if single.this_update_utc > now + CLOCK_SKEW:
        raise _Unusable(
            f"the OCSP response is from the future (thisUpdate {single.this_update_utc.isoformat()})"
        )
    if single.next_update_utc is None:
        raise _Unusable("the OCSP response has no nextUpdate (its age is unbounded: treated as out of date)")
    if now > single.next_update_utc:
        raise _Unusable(f"the OCSP response is out of date (nextUpdate {single.next_update_utc.isoformat()})")
    if single.certificate_status == ocsp.OCSPCertStatus.GOOD:
        return RevocationStatus.GOOD, "OCSP: good"
    if single.certificate_status == ocsp.OCSPCertStatus.REVOKED:
        when = single.revocation_time_utc
        invalid = _extension(extensions, x509.InvalidityDate)
        relaxed = _after_signing(invalid.invalidity_date_utc if invalid else None, ask.signing_time)
        if relaxed:
            return RevocationStatus.GOOD, f"OCSP: revoked, but {relaxed}"
        return RevocationStatus.REVOKED, f"OCSP: revoked at {when.isoformat() if when else 'an unknown time'}"
    return RevocationStatus.UNKNOWN, "OCSP: the responder does not know the certificate"


def _after_signing(invalidity: dt.datetime | None, signing_time: dt.datetime | None) -> str | None:
    """Spec: an invalidity date later than the authentic signing time does not revoke the signature."""
    if invalidity is None or signing_time is None:
        return None
    if invalidity.tzinfo is None:
        invalidity = invalidity.replace(tzinfo=dt.UTC)
    if signing_time < invalidity:
        return (
            f"only invalid from {invalidity.isoformat()}, after the authentic signing time "
            f"{signing_time.isoformat()}"
        )
    return None


def _covers(single: ocsp.OCSPSingleResponse, cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if single.serial_number != cert.serial_number:
        return False
    try:
        ours = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, single.hash_algorithm).build()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return (single.issuer_key_hash, single.issuer_name_hash) == (ours.issuer_key_hash, ours.issuer_name_hash)


def _check_responder(ask: _Ask, response: ocsp.OCSPResponse) -> None:
    issuer = ask.issuer
    hash_algorithm = response.signature_hash_algorithm  # UnsupportedAlgorithm for an unknown one
    if hash_algorithm is None:
        raise _Unusable("the OCSP response uses an unsupported signature algorithm")
    if _signed_by(issuer, response.signature, response.tbs_response_bytes, hash_algorithm):
        return
    issuer_der = issuer.public_bytes(serialization.Encoding.DER)
    for candidate in response.certificates[:MAX_RESPONSE_CERTIFICATES]:
        if candidate.public_bytes(serialization.Encoding.DER) == issuer_der:
            continue
        try:
            candidate.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            continue
        if not _signed_by(candidate, response.signature, response.tbs_response_bytes, hash_algorithm):
            continue
        _check_delegated(ask, candidate)
        return
    raise _Unusable("the OCSP response is not signed by the issuer or an OCSP responder it authorised")


def _check_delegated(ask: _Ask, responder: x509.Certificate) -> None:
    """RFC 6960 4.2.2.2: a delegated responder carries id-kp-OCSPSigning, is valid now, and (spec,
    RFC 6960 4.2.2.2.1) unless it carries id-pkix-ocsp-nocheck, is itself not revoked by CRL."""
    who = f"the OCSP responder {describe(responder)!r}"
    eku = _extension(responder.extensions, x509.ExtendedKeyUsage)
    if eku is None or ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
        raise _Unusable(f"{who} is not authorised for OCSP signing (no id-kp-OCSPSigning)")
    if not responder.not_valid_before_utc <= ask.now <= responder.not_valid_after_utc:
        raise _Unusable(
            f"{who} is not valid now (valid {responder.not_valid_before_utc.isoformat()} to "
            f"{responder.not_valid_after_utc.isoformat()})"
        )
    if _extension(responder.extensions, x509.OCSPNoCheck) is not None:
        return
    # Its own distribution points, else those of the certificate it answers for (the same issuer's CRL).
    own = tuple(_points(_extension(responder.extensions, x509.CRLDistributionPoints)))
    if not own and not ask.points:
        raise _Unusable(f"{who} has no id-pkix-ocsp-nocheck and no CRL to check it by")
    status, detail = _by_crl(_Ask(responder, ask.issuer, own or ask.points, ask.source, ask.now, None))
    if status is not RevocationStatus.GOOD:
        raise _Unusable(f"{who} has no id-pkix-ocsp-nocheck and is {status.value}: {detail}")


def _signed_by(
    signer: x509.Certificate, signature: bytes, data: bytes, hash_algorithm: hashes.HashAlgorithm
) -> bool:
    key = signer.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hash_algorithm))
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


# --- CRLs (RFC 5280 5 and 6.3) ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Crl:
    crl: x509.CertificateRevocationList
    number: int | None
    delta_base: int | None  # the BaseCRLNumber of a delta CRL, None for a complete CRL
    scope: x509.IssuingDistributionPoint | None
    expired: bool

    @property
    def this_update(self) -> dt.datetime:
        return self.crl.last_update_utc


def _read_crl(raw: bytes, issuer: x509.Certificate, now: dt.datetime) -> _Crl:
    """A CRL from ``issuer``, authentic, not from the future, without unknown critical extensions."""
    try:
        crl = x509.load_der_x509_crl(raw)
    except (ValueError, x509.InvalidVersion):
        try:
            crl = x509.load_pem_x509_crl(raw)
        except (ValueError, x509.InvalidVersion):
            raise _Unusable("the CRL is malformed") from None
    if crl.issuer.public_bytes() != issuer.subject.public_bytes():
        raise _Unusable(f"the CRL is from {crl.issuer.rfc4514_string()!r}, not the issuer")
    # RFC 5280 6.3.3 (f): the issuer's key usage, when present, must allow signing CRLs.
    usage = _extension(issuer.extensions, x509.KeyUsage)
    if usage is not None and not usage.crl_sign:
        raise _Unusable(f"the issuer {describe(issuer)!r} may not sign CRLs (no cRLSign key usage)")
    if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
        raise _Unusable("the CRL is not signed by the issuer")
    # RFC 5280 5.2 and 5.3: a critical extension Referee does not apply, on the CRL or any entry.
    _unknown_critical(crl.extensions, _CRL_EXTENSIONS, "the CRL")
    for entry in crl:
        _unknown_critical(entry.extensions, _ENTRY_EXTENSIONS, "a CRL entry")
    if crl.last_update_utc > now + CLOCK_SKEW:
        raise _Unusable(f"the CRL is from the future (thisUpdate {crl.last_update_utc.isoformat()})")
    if crl.next_update_utc is None:
        raise _Unusable("the CRL has no nextUpdate")
    number = _extension(crl.extensions, x509.CRLNumber)
    delta = _extension(crl.extensions, x509.DeltaCRLIndicator)
    return _Crl(
        crl,
        number.crl_number if number else None,
        delta.crl_number if delta else None,
        _extension(crl.extensions, x509.IssuingDistributionPoint),
        now > crl.next_update_utc,
    )


def _scope(crl: _Crl, cert: x509.Certificate, point: _Point) -> frozenset[x509.ReasonFlags]:
    """RFC 5280 6.3.3 (b) and (d): the reasons this complete CRL answers for ``cert`` at ``point``."""
    if crl.delta_base is not None:
        raise _Unusable("a delta CRL is served where a complete CRL is expected")
    idp = crl.scope
    if idp is None:
        return point.reasons
    constraints = _extension(cert.extensions, x509.BasicConstraints)
    is_ca = constraints is not None and constraints.ca
    if idp.indirect_crl:
        raise _Unusable("the CRL is an indirect CRL (not supported)")
    if idp.only_contains_attribute_certs:
        raise _Unusable("the CRL covers attribute certificates only")
    if idp.only_contains_user_certs and is_ca:
        raise _Unusable("the CRL covers end-entity certificates only, and this is a CA certificate")
    if idp.only_contains_ca_certs and not is_ca:
        raise _Unusable("the CRL covers CA certificates only, and this is an end-entity certificate")
    if idp.relative_name is not None:
        raise _Unusable("the CRL names its distribution point relative to the issuer (not supported)")
    if idp.full_name is not None and not _same_point(idp.full_name, point.names):
        named = ", ".join(_name_text(n) for n in idp.full_name)
        raise _Unusable(f"the CRL is that of another distribution point ({named})")
    return point.reasons & (idp.only_some_reasons if idp.only_some_reasons is not None else ALL_REASONS)


def _same_point(ours: Iterable[x509.GeneralName], theirs: Iterable[x509.GeneralName]) -> bool:
    def keys(names: Iterable[x509.GeneralName]) -> set[object]:
        out: set[object] = set()
        for n in names:
            out.add(n)
            if isinstance(n, x509.UniformResourceIdentifier) and (url := http_url(n.value)):
                out.add(url)
        return out

    return bool(keys(ours) & keys(theirs))


def _by_crl(ask: _Ask) -> tuple[RevocationStatus, str]:
    """RFC 5280 6.3.3: distribution points in order until the reasons covered are all reasons."""
    offline = list(ask.source.offline_crls(ask.issuer.subject))
    covered: frozenset[x509.ReasonFlags] = frozenset()
    problems = []
    for point in ask.points:
        if covered >= ALL_REASONS:
            break
        try:
            status, reasons, detail = _by_point(ask, point, offline)
        except (_Unusable, *_EVIDENCE_ERRORS) as exc:
            problems.append(f"CRL at {point.describe()}: {_why(exc)}")
            continue
        if status is RevocationStatus.REVOKED:
            return status, detail
        covered |= reasons
    if covered >= ALL_REASONS:
        return RevocationStatus.GOOD, "CRL: not listed"
    if not problems:
        missing = ", ".join(sorted(r.name for r in ALL_REASONS - covered))
        problems.append(f"the CRLs cover only some revocation reasons (not {missing})")
    return RevocationStatus.UNKNOWN, "; ".join(problems)


def _by_point(
    ask: _Ask, point: _Point, offline: list[bytes]
) -> tuple[RevocationStatus, frozenset[x509.ReasonFlags], str]:
    if point.indirect:
        raise _Unusable("the distribution point names another CRL issuer (indirect CRLs are not supported)")
    if offline:
        return _by_offline_files(ask, point, offline)
    if not point.urls:
        raise _Unusable("no http URL among its names (Referee fetches CRLs over http only)")
    problems = []
    # Spec "CRL Download" and RFC 5280 4.2.1.13: the names of one point are alternatives for one
    # CRL; a URL whose CRL cannot be used does not stop the next one from being tried.
    for url in point.urls:
        raw = ask.source.crl(url)
        if raw is None:
            problems.append(f"no CRL from {url}")
            continue
        try:
            base = _read_crl(raw, ask.issuer, ask.now)
            ask.source.crl_verified(url, raw)
            return _decide(ask, base, _scope(base, ask.cert, point), [])
        except (_Unusable, *_EVIDENCE_ERRORS) as exc:
            problems.append(f"{url}: {_why(exc)}")
    raise _Unusable("; ".join(problems))


def _by_offline_files(
    ask: _Ask, point: _Point, offline: list[bytes]
) -> tuple[RevocationStatus, frozenset[x509.ReasonFlags], str]:
    """Among the operator's files for this issuer, the newest complete CRL in scope decides (CRL
    number, then thisUpdate), with the newest delta CRL that belongs to it merged."""
    complete: list[tuple[_Crl, frozenset[x509.ReasonFlags]]] = []
    deltas: list[_Crl] = []
    problems = []
    for raw in offline:
        try:
            crl = _read_crl(raw, ask.issuer, ask.now)
            if crl.delta_base is not None:
                deltas.append(crl)
            else:
                complete.append((crl, _scope(crl, ask.cert, point)))
        except (_Unusable, *_EVIDENCE_ERRORS) as exc:
            problems.append(_why(exc))
    if not complete:
        raise _Unusable("no CRL file in scope for it" + (f" ({'; '.join(problems)})" if problems else ""))
    base, reasons = max(
        complete, key=lambda c: (c[0].number if c[0].number is not None else -1, c[0].this_update)
    )
    return _decide(ask, base, reasons, deltas)


def _decide(
    ask: _Ask, base: _Crl, reasons: frozenset[x509.ReasonFlags], offline_deltas: list[_Crl]
) -> tuple[RevocationStatus, frozenset[x509.ReasonFlags], str]:
    """The merged answer of ``base`` and its delta (RFC 5280 5.2.4, spec CRL steps 3.1-3.3)."""
    signing_time = ask.signing_time
    base_entry = base.crl.get_revoked_certificate_by_serial_number(ask.cert.serial_number)
    permanent = _permanent(base_entry, signing_time)
    if permanent is not None:
        # Spec: a certificate listed for a reason other than certificateHold is revoked, even if
        # the CRL is out of date.
        return RevocationStatus.REVOKED, reasons, f"CRL: revoked at {permanent}"
    if base.expired:
        next_update = base.crl.next_update_utc
        raise _Unusable(
            f"the CRL is out of date (nextUpdate {next_update.isoformat() if next_update else '-'})"
        )
    delta = _delta(ask, base, offline_deltas)
    delta_entry = (
        delta.crl.get_revoked_certificate_by_serial_number(ask.cert.serial_number) if delta else None
    )
    if delta_entry is not None:
        permanent = _permanent(delta_entry, signing_time)
        if permanent is not None:
            return RevocationStatus.REVOKED, reasons, f"delta CRL: revoked at {permanent}"
        if _reason(delta_entry) is x509.ReasonFlags.remove_from_crl:
            return RevocationStatus.GOOD, reasons, "delta CRL: released from hold (removeFromCRL)"
        if _reason(delta_entry) is x509.ReasonFlags.certificate_hold and not _relaxed(
            delta_entry, signing_time
        ):
            return (
                RevocationStatus.REVOKED,
                reasons,
                f"delta CRL: on hold since {delta_entry.revocation_date_utc.isoformat()}",
            )
    if (
        base_entry is not None
        and _reason(base_entry) is x509.ReasonFlags.certificate_hold
        and not _relaxed(base_entry, signing_time)
    ):
        return (
            RevocationStatus.REVOKED,
            reasons,
            f"CRL: on hold since {base_entry.revocation_date_utc.isoformat()}",
        )
    return RevocationStatus.GOOD, reasons, "CRL: not listed"


def _reason(entry: x509.RevokedCertificate) -> x509.ReasonFlags | None:
    reason = _extension(entry.extensions, x509.CRLReason)
    return reason.reason if reason else None


def _relaxed(entry: x509.RevokedCertificate, signing_time: dt.datetime | None) -> str | None:
    invalid = _extension(entry.extensions, x509.InvalidityDate)
    return _after_signing(invalid.invalidity_date_utc if invalid else None, signing_time)


def _permanent(entry: x509.RevokedCertificate | None, signing_time: dt.datetime | None) -> str | None:
    """When ``entry`` revokes for good (not a hold, not a removal, not after the signing time): when."""
    if entry is None or _reason(entry) in (
        x509.ReasonFlags.certificate_hold,
        x509.ReasonFlags.remove_from_crl,
    ):
        return None
    if _relaxed(entry, signing_time):
        return None
    return entry.revocation_date_utc.isoformat()


def _delta(ask: _Ask, base: _Crl, offline_deltas: list[_Crl]) -> _Crl | None:
    """The delta CRL to merge with ``base``: the newest that belongs to it among the operator's
    files, else the one the base CRL or the certificate names (freshestCRL). Named and not to be
    had: unusable (spec "Revocation Checking with Delta CRLs")."""
    fitting = [d for d in offline_deltas if _belongs(d, base) is None]
    if fitting:
        return max(fitting, key=lambda d: d.number or 0)
    named = _points(_extension(base.crl.extensions, x509.FreshestCRL)) or _points(
        _extension(ask.cert.extensions, x509.FreshestCRL)
    )
    if not named:
        return None
    problems = []
    for url in [u for p in named for u in p.urls][:MAX_ENDPOINTS]:
        raw = ask.source.crl(url)
        if raw is None:
            problems.append(f"no delta CRL from {url}")
            continue
        try:
            delta = _read_crl(raw, ask.issuer, ask.now)
        except (_Unusable, *_EVIDENCE_ERRORS) as exc:
            problems.append(f"delta CRL {url}: {_why(exc)}")
            continue
        ask.source.crl_verified(url, raw)
        mismatch = _belongs(delta, base)
        if mismatch is None:
            return delta
        problems.append(f"delta CRL {url}: {mismatch}")
    where = ", ".join(p.describe() for p in named)
    raise _Unusable(f"the delta CRL ({where}) cannot be had: {'; '.join(problems) or 'no http URL'}")


def _belongs(delta: _Crl, base: _Crl) -> str | None:
    """RFC 5280 5.2.4: None when ``delta`` may be merged with the complete CRL ``base``, else why not."""
    if delta.delta_base is None:
        return "it is not a delta CRL"
    if base.number is None or delta.number is None:
        return "a CRL number is missing"
    rules = (
        (delta.expired, "it is out of date"),
        (
            delta.delta_base > base.number,
            f"it builds on CRL {delta.delta_base}, newer than the complete CRL {base.number}",
        ),
        (
            delta.number <= base.number,
            f"it (CRL {delta.number}) is not newer than the complete CRL {base.number}",
        ),
        (delta.scope != base.scope, "its scope (issuing distribution point) differs from the complete CRL's"),
    )
    return next((why for broken, why in rules if broken), None)

"""Revocation services for tests: the real OpenSSL OCSP responder, CRLs served over HTTP, and the
crafted evidence (certificates, CRLs, OCSP answers) that tests/helpers/evidence_fake.py serves.

CRLs are made with ``cryptography`` and signed by the certificate's issuer; the HTTP server is the
standard library's file server. The OCSP responder is ``openssl ocsp`` reading an index file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from tests.helpers.codesign import Chain, subject
from tests.helpers.tools import free_port


def write_crl(path: Path, chain: Chain, revoked: list[x509.Certificate], *, next_update_h: int = 24) -> None:
    """A CRL from the leaf's issuer listing ``revoked`` (DER)."""
    issuer, key = chain.certs[1], chain.issuer_key
    assert key is not None
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(now - dt.timedelta(minutes=1))
        .next_update(now + dt.timedelta(hours=next_update_h))
    )
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(now - dt.timedelta(minutes=1))
            .build()
        )
    path.write_bytes(builder.sign(key, hashes.SHA384()).public_bytes(serialization.Encoding.DER))


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def file_server(directory: Path, port: int) -> Iterator[str]:
    """Serve ``directory`` over HTTP on 127.0.0.1:port; yields the base URL."""
    directory.mkdir(parents=True, exist_ok=True)
    server = ThreadingHTTPServer(("127.0.0.1", port), functools.partial(_Quiet, directory=str(directory)))
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


def _dn(name: x509.Name) -> str:
    short = {
        "countryName": "C",
        "stateOrProvinceName": "ST",
        "localityName": "L",
        "organizationName": "O",
        "commonName": "CN",
    }
    return "".join(f"/{short.get(a.oid._name, a.oid.dotted_string)}={a.value}" for a in name)


@contextlib.contextmanager
def ocsp_responder(workdir: Path, chain: Chain, port: int, revoked: bool) -> Iterator[str]:
    """``openssl ocsp`` answering for the leaf of ``chain`` (good, or revoked), signed by its issuer."""
    workdir.mkdir(parents=True, exist_ok=True)
    leaf, issuer, key = chain.certs[0], chain.certs[1], chain.issuer_key
    assert key is not None
    expiry = leaf.not_valid_after_utc.strftime("%y%m%d%H%M%SZ")
    serial = f"{leaf.serial_number:X}"
    serial = serial if len(serial) % 2 == 0 else "0" + serial
    when = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).strftime("%y%m%d%H%M%SZ")
    status, revoked_at = ("R", when) if revoked else ("V", "")
    (workdir / "index.txt").write_text(
        f"{status}\t{expiry}\t{revoked_at}\t{serial}\tunknown\t{_dn(leaf.subject)}\n"
    )
    (workdir / "issuer.crt").write_bytes(issuer.public_bytes(serialization.Encoding.PEM))
    (workdir / "issuer.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    log = (workdir / "ocsp.log").open("wb")
    # openssl 3.0 takes a bare port here and listens on every interface; only 127.0.0.1 is ever asked.
    # -resp_no_certs: notation (Go's x/crypto/ocsp) rejects a response signed by the issuer that
    # also carries the issuer's own certificate, though RFC 6960 allows it; Referee accepts both.
    args = ["openssl", "ocsp", "-index", str(workdir / "index.txt"), "-port", str(port),
            "-rsigner", str(workdir / "issuer.crt"), "-rkey", str(workdir / "issuer.key"),
            "-CA", str(workdir / "issuer.crt"), "-nmin", "10", "-ignore_err", "-resp_no_certs"]  # fmt: skip
    proc = subprocess.Popen(
        args,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        # openssl ocsp serves one connection at a time and does not survive a bare connect-and-close
        # probe well, so wait for it to say it is listening instead.
        deadline = time.monotonic() + 10
        while (
            time.monotonic() < deadline
            and b"waiting for OCSP client" not in (workdir / "ocsp.log").read_bytes()
        ):
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def unused_url() -> str:
    return f"http://127.0.0.1:{free_port()}/nothing-here"


# --- crafted evidence: any certificate shape, CRL and OCSP answer a revocation test needs -----------
#
# Certificates, CRLs and OCSP responses below are made with ``cryptography`` and signed by the test
# CA's key. What ``cryptography`` cannot build (OCSP single extensions, an unknown signature
# algorithm) is spliced into the DER it built, and the result signed again with the same key.

EC_SIGN = hashes.SHA256


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def point(*urls: str, reasons: frozenset[x509.ReasonFlags] | None = None) -> x509.DistributionPoint:
    """A distribution point whose full name is ``urls`` (any scheme, as written)."""
    return x509.DistributionPoint([x509.UniformResourceIdentifier(u) for u in urls], None, reasons, None)


def issue(
    cn: str,
    issuer: Issued | None,
    *,
    ca: bool = False,
    crl_sign: bool = True,
    ocsp: tuple[str, ...] = (),
    crl: tuple[x509.DistributionPoint, ...] = (),
    freshest: tuple[x509.DistributionPoint, ...] = (),
    eku: tuple[x509.ObjectIdentifier, ...] | None = None,
    nocheck: bool = False,
    valid: tuple[dt.timedelta, dt.timedelta] = (dt.timedelta(days=-1), dt.timedelta(days=30)),
) -> Issued:
    """A P-256 certificate shaped for the Notary profiles: a CA (keyCertSign, and cRLSign unless
    ``crl_sign`` is False) or a leaf (digitalSignature, the code-signing EKU by default)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = subject(cn)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + valid[0])
        .not_valid_after(now + valid[1])
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca and crl_sign,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    usages = eku if eku is not None else (() if ca else (ExtendedKeyUsageOID.CODE_SIGNING,))
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    if ocsp:
        method = AuthorityInformationAccessOID.OCSP
        access = [x509.AccessDescription(method, x509.UniformResourceIdentifier(u)) for u in ocsp]
        builder = builder.add_extension(x509.AuthorityInformationAccess(access), critical=False)
    if crl:
        builder = builder.add_extension(x509.CRLDistributionPoints(list(crl)), critical=False)
    if freshest:
        builder = builder.add_extension(x509.FreshestCRL(list(freshest)), critical=False)
    if nocheck:
        builder = builder.add_extension(x509.OCSPNoCheck(), critical=False)
    signer = issuer.key if issuer else key
    return Issued(builder.sign(signer, EC_SIGN()), key)


@dataclass(frozen=True)
class Pki:
    """root -> ca -> leaf, a code-signing chain whose revocation endpoints a test chooses."""

    root: Issued
    ca: Issued
    leaf: Issued

    @property
    def chain(self) -> Chain:
        return Chain(self.leaf.key, (self.leaf.cert, self.ca.cert, self.root.cert), self.ca.key)


def make_pki(
    *,
    ocsp: tuple[str, ...] = (),
    crl: tuple[x509.DistributionPoint, ...] = (),
    freshest: tuple[x509.DistributionPoint, ...] = (),
    ca_crl: tuple[x509.DistributionPoint, ...] = (),
    ca_crl_sign: bool = True,
) -> Pki:
    root = issue("Revocation Test Root", None, ca=True)
    ca = issue("Revocation Test CA", root, ca=True, crl=ca_crl, crl_sign=ca_crl_sign)
    leaf = issue("signer", ca, ocsp=ocsp, crl=crl, freshest=freshest)
    return Pki(root, ca, leaf)


@dataclass(frozen=True)
class Entry:
    """One revokedCertificates entry."""

    serial: int
    reason: x509.ReasonFlags | None = None
    invalidity: dt.datetime | None = None
    ago: dt.timedelta = dt.timedelta(hours=1)  # revocationDate, before now
    unknown_critical: bool = False


UNKNOWN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1.1")


def make_crl(
    issuer: Issued,
    entries: tuple[Entry, ...] = (),
    *,
    number: int | None = 1,
    delta_of: int | None = None,
    this_update: dt.timedelta = dt.timedelta(minutes=-1),  # relative to now
    next_update: dt.timedelta = dt.timedelta(days=1),
    scope: x509.IssuingDistributionPoint | None = None,
    freshest: tuple[x509.DistributionPoint, ...] = (),
    unknown_critical: bool = False,
) -> bytes:
    """A DER CRL signed by ``issuer``: complete, or a delta CRL of base CRL ``delta_of``."""
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(now + this_update)
        .next_update(now + next_update)
    )
    if number is not None:
        builder = builder.add_extension(x509.CRLNumber(number), critical=False)
    if delta_of is not None:
        builder = builder.add_extension(x509.DeltaCRLIndicator(delta_of), critical=True)
    if scope is not None:
        builder = builder.add_extension(scope, critical=True)
    if freshest:
        builder = builder.add_extension(x509.FreshestCRL(list(freshest)), critical=False)
    if unknown_critical:
        builder = builder.add_extension(x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00"), critical=True)
    for e in entries:
        entry = x509.RevokedCertificateBuilder().serial_number(e.serial).revocation_date(now - e.ago)
        if e.reason is not None:
            entry = entry.add_extension(x509.CRLReason(e.reason), critical=False)
        if e.invalidity is not None:
            entry = entry.add_extension(
                x509.InvalidityDate(e.invalidity.replace(tzinfo=None)), critical=False
            )
        if e.unknown_critical:
            entry = entry.add_extension(x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00"), critical=True)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(issuer.key, EC_SIGN()).public_bytes(serialization.Encoding.DER)


def scope(
    *urls: str,
    user_only: bool = False,
    ca_only: bool = False,
    reasons: frozenset[x509.ReasonFlags] | None = None,
) -> x509.IssuingDistributionPoint:
    """An issuingDistributionPoint extension value."""
    names = [x509.UniformResourceIdentifier(u) for u in urls] or None
    return x509.IssuingDistributionPoint(names, None, user_only, ca_only, reasons, False, False)


def make_ocsp(
    cert: x509.Certificate,
    issuer: Issued,
    status: str = "good",
    *,
    signer: Issued | None = None,
    include: tuple[x509.Certificate, ...] = (),
    this_update: dt.timedelta = dt.timedelta(minutes=-5),
    fresh_for: dt.timedelta | None = dt.timedelta(hours=1),  # nextUpdate - now; None: no nextUpdate
    hashes_of: tuple[bytes, bytes] | None = None,  # (issuer name hash, issuer key hash) to claim
    unknown_critical: bool = False,
) -> bytes:
    """A DER OCSP response (good, revoked or unknown) for ``cert``, signed by ``signer`` (default the
    issuer), carrying the certificates ``include``."""
    now = dt.datetime.now(dt.UTC)
    cert_status = {
        "good": ocsp.OCSPCertStatus.GOOD,
        "revoked": ocsp.OCSPCertStatus.REVOKED,
        "unknown": ocsp.OCSPCertStatus.UNKNOWN,
    }[status]
    common = {
        "cert_status": cert_status,
        "this_update": now + this_update,
        "next_update": now + fresh_for if fresh_for is not None else None,
        "revocation_time": now - dt.timedelta(hours=1) if status == "revoked" else None,
        "revocation_reason": None,
    }
    builder = ocsp.OCSPResponseBuilder()
    # SHA-1 CertIDs, as most responders answer (and notation asks); a hash, not a signature.
    if hashes_of is None:
        builder = builder.add_response(cert=cert, issuer=issuer.cert, algorithm=hashes.SHA1(), **common)  # noqa: S303
    else:
        builder = builder.add_response_by_hash(
            issuer_name_hash=hashes_of[0], issuer_key_hash=hashes_of[1], serial_number=cert.serial_number,
            algorithm=hashes.SHA1(), **common,  # noqa: S303
        )  # fmt: skip
    by = signer or issuer
    builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, by.cert)
    if include:
        builder = builder.certificates(list(include))
    if unknown_critical:
        builder = builder.add_extension(x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00"), critical=True)
    return builder.sign(by.key, EC_SIGN()).public_bytes(serialization.Encoding.DER)


# DER splicing for what the builders above cannot express.


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(body)]) + body + content


def _elements(data: bytes) -> list[bytes]:
    """The DER elements (tag, length and content) that make up ``data``."""
    out, i = [], 0
    while i < len(data):
        first = data[i + 1]
        if first < 0x80:
            start, length = i + 2, first
        else:
            count = first & 0x7F
            start, length = i + 2 + count, int.from_bytes(data[i + 2 : i + 2 + count], "big")
        out.append(data[i : start + length])
        i = start + length
    return out


def _inner(element: bytes) -> bytes:
    first = element[1]
    return element[2:] if first < 0x80 else element[2 + (first & 0x7F) :]


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytearray([parts[0] * 40 + parts[1]])
    for arc in parts[2:]:
        chunk, rest = [arc & 0x7F], arc >> 7
        while rest:
            chunk.insert(0, 0x80 | (rest & 0x7F))
            rest >>= 7
        body.extend(chunk)
    return _der(0x06, bytes(body))


def extension_der(oid: str, value: bytes, *, critical: bool) -> bytes:
    return _der(0x30, _oid(oid) + (b"\x01\x01\xff" if critical else b"") + _der(0x04, value))


def invalidity_date_der(when: dt.datetime) -> bytes:
    """The extnValue of an invalidityDate extension (a GeneralizedTime)."""
    return _der(0x18, when.astimezone(dt.UTC).strftime("%Y%m%d%H%M%SZ").encode())


def splice_ocsp(
    response: bytes,
    key: ec.EllipticCurvePrivateKey,
    *,
    single_extensions: tuple[bytes, ...] = (),
    signature_algorithm: str | None = None,
) -> bytes:
    """``response`` with singleExtensions added to its (first) SingleResponse and signed again by
    ``key``; with ``signature_algorithm``, the BasicOCSPResponse names that algorithm OID instead."""
    (outer,) = _elements(response)
    status, response_bytes = _elements(_inner(outer))
    (rb_seq,) = _elements(_inner(response_bytes))
    response_type, octets = _elements(_inner(rb_seq))
    (basic,) = _elements(_inner(octets))
    tbs, algorithm, _signature, *rest = _elements(_inner(basic))
    if single_extensions:
        fields = _elements(_inner(tbs))
        index = next(i for i, f in enumerate(fields) if f[0] == 0x30 and i > 0)  # responses
        singles = _elements(_inner(fields[index]))
        singles[0] = _der(0x30, _inner(singles[0]) + _der(0xA1, _der(0x30, b"".join(single_extensions))))
        fields[index] = _der(0x30, b"".join(singles))
        tbs = _der(0x30, b"".join(fields))
    if signature_algorithm is not None:
        algorithm = _der(0x30, _oid(signature_algorithm))
    signature = _der(0x03, b"\x00" + key.sign(tbs, ec.ECDSA(EC_SIGN())))
    basic = _der(0x30, tbs + algorithm + signature + b"".join(rest))
    rb_seq = _der(0x30, response_type + _der(0x04, basic))
    return _der(0x30, status + _der(0xA0, rb_seq))

"""RFC 3161 timestamp countersignatures on Notary signatures, verified with ``rfc3161-client``.

The envelope carries a TimeStampToken (CMS SignedData) over the raw signature bytes. Verification
(trust store and trust policy specification, "authentic timestamp"): the token is well formed, its
message imprint is the hash of the signature, it is signed by a TSA whose chain reaches a root in
the policy's ``tsa`` stores, the TSA certificate is a timestamping certificate, and the time it
vouches for is ``genTime`` plus or minus its accuracy. The TSA's chain (TSA certificate to the trusted
root) is returned with the time, for the caller to check its revocation. Pure.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import rfc3161_client
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

# RFC 3628 baseline time-stamp policy: one second of accuracy when the token states none.
BASELINE_POLICY = x509.ObjectIdentifier("0.4.0.2023.1.1")
MAX_TOKEN_BYTES = 64 * 1024
MAX_TSA_CHAIN_LENGTH = 8


class TimestampError(ValueError):
    """The timestamp token is malformed, untrusted or not over this signature."""


@dataclass(frozen=True)
class TimeRange:
    earliest: dt.datetime
    latest: dt.datetime
    chain: tuple[x509.Certificate, ...] = ()  # the TSA certificate first, the trusted root last


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _as_response(token: bytes) -> bytes:
    """Wrap a bare TimeStampToken in a granted TimeStampResp (status 0), the form the library reads."""
    status = b"\x30\x03\x02\x01\x00"
    content = status + token
    return b"\x30" + _der_length(len(content)) + content


def _tlv(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, start of content, end of element) of the DER element at ``offset``."""
    if offset + 2 > len(data):
        raise TimestampError("the timestamp token is truncated")
    tag, first = data[offset], data[offset + 1]
    if first < 0x80:
        start, length = offset + 2, first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or offset + 2 + count > len(data):
            raise TimestampError("the timestamp token has a malformed length")
        start, length = offset + 2 + count, int.from_bytes(data[offset + 2 : offset + 2 + count], "big")
    if start + length > len(data):
        raise TimestampError("the timestamp token is truncated")
    return tag, start, start + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, element start, content start, element end) of each element in data[start:end]."""
    out = []
    while start < end:
        tag, content, stop = _tlv(data, start)
        out.append((tag, start, content, stop))
        start = stop
    return out


def sort_certificate_set(token: bytes) -> bytes:
    """Put the SignedData ``certificates`` SET OF in DER order.

    OpenSSL's TSA (and others) emit the certificates in the order they were configured, which a
    strict DER parser refuses. The set is outside what the token's signature covers, so ordering it
    changes nothing that is verified.
    """
    _, ci_content, ci_end = _tlv(token, 0)  # ContentInfo SEQUENCE
    parts = _children(token, ci_content, ci_end)
    if len(parts) != 2 or parts[1][0] != 0xA0:
        raise TimestampError("the timestamp token is not a CMS ContentInfo")
    signed_data = _children(token, parts[1][2], parts[1][3])
    if not signed_data:
        raise TimestampError("the timestamp token holds no SignedData")
    _, _, sd_content, sd_end = signed_data[0]  # SignedData SEQUENCE
    fields = _children(token, sd_content, sd_end)
    certs = next((f for f in fields if f[0] == 0xA0), None)
    if certs is None:
        return token
    _, _, c_content, c_end = certs
    elements: list[bytes] = [token[s:e] for _, s, _, e in _children(token, c_content, c_end)]
    width = max((len(e) for e in elements), default=0)

    def der_order(element: bytes) -> bytes:  # X.690: compare as octet strings, shorter padded with 0
        return element + b"\x00" * (width - len(element))

    elements.sort(key=der_order)
    ordered = b"".join(elements)
    if ordered == token[c_content:c_end]:
        return token
    # Same lengths, so every enclosing length stays valid: splice the reordered content in place.
    return token[:c_content] + ordered + token[c_end:]


def verify_timestamp(token: bytes, signature: bytes, roots: Iterable[x509.Certificate]) -> TimeRange:
    """Verify ``token`` over ``signature`` against the TSA ``roots``; return the time range it vouches for."""
    trusted = list(roots)
    if not trusted:
        raise TimestampError("no tsa trust store certificates to verify the timestamp against")
    if len(token) > MAX_TOKEN_BYTES:
        raise TimestampError(f"the timestamp token is over {MAX_TOKEN_BYTES} bytes")
    try:
        response = rfc3161_client.decode_timestamp_response(_as_response(sort_certificate_set(token)))
    except (ValueError, TypeError) as exc:
        raise TimestampError(f"the timestamp token is malformed ({exc})") from None
    builder = rfc3161_client.VerifierBuilder()
    for root in trusted:
        builder = builder.add_root_certificate(root)
    # Only the tsa store's roots are trusted. The certificates inside the token are not handed to the
    # library: it would trust them like roots (a token could then vouch for itself). Its PKCS#7
    # check still uses them, untrusted, to build the path from the TSA certificate to a root.
    try:
        builder.build().verify_message(response, signature)
    except rfc3161_client.VerificationError as exc:
        raise TimestampError(f"the timestamp does not verify: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise TimestampError(f"the timestamp token is malformed ({exc})") from None
    info = response.tst_info
    gen_time = info.gen_time if info.gen_time.tzinfo else info.gen_time.replace(tzinfo=dt.UTC)
    accuracy = _accuracy(info)
    return TimeRange(gen_time - accuracy, gen_time + accuracy, _tsa_chain(response, trusted))


def _tsa_chain(
    response: rfc3161_client.TimeStampResponse, trusted: list[x509.Certificate]
) -> tuple[x509.Certificate, ...]:
    """The verified token's signer (its SignerInfo names it by issuer and serial, as the library
    found it) and the certificates up to the trusted root, each issued by the next."""
    try:
        certs = [x509.load_der_x509_certificate(c) for c in response.signed_data.certificates]
        signer = next(iter(response.signed_data.signer_infos))
    except (ValueError, StopIteration) as exc:
        raise TimestampError(f"the timestamp token is malformed ({exc})") from None
    leaf = next(
        (c for c in certs if (c.issuer, c.serial_number) == (signer.issuer, signer.serial_number)), None
    )
    if leaf is None:
        raise TimestampError("the timestamp token does not carry its signer's certificate")
    roots = {r.public_bytes(serialization.Encoding.DER) for r in trusted}
    chain = [leaf]
    while chain[-1].public_bytes(serialization.Encoding.DER) not in roots:
        if len(chain) >= MAX_TSA_CHAIN_LENGTH:
            raise TimestampError("the timestamp authority's chain is too long")
        issuer = next((c for c in [*trusted, *certs] if _issued(chain[-1], c)), None)
        if issuer is None:
            raise TimestampError("the timestamp authority's chain does not reach the tsa trust store")
        chain.append(issuer)
    return tuple(chain)


def _issued(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject or cert == issuer:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _accuracy(info: rfc3161_client.TimeStampTokenInfo) -> dt.timedelta:
    accuracy = info.accuracy
    if accuracy is not None:
        return dt.timedelta(
            seconds=accuracy.seconds or 0,
            milliseconds=accuracy.millis or 0,
            microseconds=accuracy.micros or 0,
        )
    if info.policy == BASELINE_POLICY:
        return dt.timedelta(seconds=1)
    return dt.timedelta(0)


# --- asking for a timestamp (referee sign) ---------------------------------------------------------

_HASH_OIDS = {
    "sha256": "2.16.840.1.101.3.4.2.1",
    "sha384": "2.16.840.1.101.3.4.2.2",
    "sha512": "2.16.840.1.101.3.4.2.3",
}


def _der(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(content)) + content


def _der_oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytearray([parts[0] * 40 + parts[1]])
    for arc in parts[2:]:
        chunk = [arc & 0x7F]
        rest = arc >> 7
        while rest:
            chunk.insert(0, 0x80 | (rest & 0x7F))
            rest >>= 7
        body.extend(chunk)
    return _der(0x06, bytes(body))


def _der_integer(value: int) -> bytes:
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")
    return _der(0x02, body)


def timestamp_request(signature: bytes, hash_name: str, nonce: int) -> bytes:
    """An RFC 3161 TimeStampReq over ``signature`` (certReq true), DER-encoded.

    Built here because the request builder of the timestamp library offers only SHA-256 and SHA-512,
    and Notary stamps with the hash of the signing algorithm (SHA-384 for PS384 and ES384).
    """
    imprint = hashlib.new(hash_name, signature).digest()
    algorithm = _der(0x30, _der_oid(_HASH_OIDS[hash_name]) + b"\x05\x00")
    message_imprint = _der(0x30, algorithm + _der(0x04, imprint))
    return _der(0x30, _der_integer(1) + message_imprint + _der_integer(nonce) + b"\x01\x01\xff")


def token_from_response(response: bytes, signature: bytes, root: x509.Certificate, nonce: int) -> bytes:
    """Check a TSA's TimeStampResp (granted, over ``signature``, nonce echoed, chained to ``root``)
    and return the TimeStampToken to embed in the envelope."""
    _, content, end = _tlv(response, 0)  # TimeStampResp ::= SEQUENCE { status, timeStampToken }
    parts = _children(response, content, end)
    if len(parts) != 2:
        raise TimestampError("the TSA granted no timestamp")
    status_fields = _children(response, parts[0][2], parts[0][3])
    status_tag, status_start, status_end = _tlv(response, status_fields[0][1]) if status_fields else (0, 0, 0)
    if status_tag != 0x02 or int.from_bytes(response[status_start:status_end], "big") not in (0, 1):
        raise TimestampError("the TSA did not grant the timestamp")
    token = response[parts[1][1] : parts[1][3]]
    try:
        decoded = rfc3161_client.decode_timestamp_response(_as_response(sort_certificate_set(token)))
        verifier = rfc3161_client.VerifierBuilder().add_root_certificate(root).nonce(nonce).build()
        verifier.verify_message(decoded, signature)
    except rfc3161_client.VerificationError as exc:
        raise TimestampError(f"the TSA's timestamp does not verify: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise TimestampError(f"the TSA's answer is malformed ({exc})") from None
    return token

"""Notary Project signature envelopes: JWS (``application/jose+json``) and COSE (``application/cose``).

``parse_envelope`` turns envelope bytes into a ``SignerInfo`` (payload, signed and unsigned
attributes, certificate chain, and the exact bytes the signature covers), enforcing the header rules
of the envelope specifications; ``SignerInfo.verify_signature`` checks the signature with the leaf
key and the algorithm that key implies. Every failure is an ``EnvelopeError`` whose message says
what is wrong. Pure: bytes in, no I/O.

A signature must mean one thing to every verifier. What two parsers could read differently is
refused: duplicate keys (JSON or CBOR), JSON members that differ from a defined name only by letter
case (Go's decoder, and so notation, would read them as that name), CBOR labels that are neither
integers nor text. docs/verification-differences.md lists every place where Referee and notation
decide differently, with the specification that says why.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import io
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import cbor2
from cryptography import x509

from webhook import strictjson
from webhook.notary.algorithms import (
    BY_COSE,
    BY_NAME,
    Algorithm,
    UnsupportedKey,
    algorithm_for,
    signature_matches,
)

JWS = "application/jose+json"
COSE = "application/cose"
ENVELOPE_TYPES = (JWS, COSE)
PAYLOAD_TYPE = "application/vnd.cncf.notary.payload.v1+json"

SCHEME_X509 = "notary.x509"
SCHEME_SIGNING_AUTHORITY = "notary.x509.signingAuthority"

H_SCHEME = "io.cncf.notary.signingScheme"
H_SIGNING_TIME = "io.cncf.notary.signingTime"
H_AUTHENTIC_TIME = "io.cncf.notary.authenticSigningTime"
H_EXPIRY = "io.cncf.notary.expiry"
H_TIMESTAMP = "io.cncf.notary.timestampSignature"
H_AGENT = "io.cncf.notary.signingAgent"
H_PLUGIN = "io.cncf.notary.verificationPlugin"
H_PLUGIN_MIN = "io.cncf.notary.verificationPluginMinVersion"

# A Notation envelope with a three-certificate chain and a timestamp is 5-15 KiB; notation allows
# 32 MiB, which sixteen images of a hostile registry turn into half a gigabyte in flight.
MAX_ENVELOPE_BYTES = 256 << 10
MAX_CHAIN_CERTS = 16


class EnvelopeError(ValueError):
    """The envelope is malformed or breaks a rule of its specification (an integrity failure)."""


@dataclass(frozen=True)
class SignerInfo:
    media_type: str
    payload: bytes
    payload_content_type: str
    algorithm: Algorithm
    signature: bytes
    signed_bytes: bytes  # what the signature covers: the JWS signing input, or COSE's Sig_structure
    signing_scheme: str
    signing_time: dt.datetime | None
    authentic_signing_time: dt.datetime | None
    expiry: dt.datetime | None
    critical: tuple[str, ...]
    extended_attributes: Mapping[str, Any] = field(hash=False)
    certificate_chain: tuple[x509.Certificate, ...] = ()
    timestamp_token: bytes | None = None
    signing_agent: str | None = None
    certificate_der: tuple[bytes, ...] = ()  # the chain's exact bytes, as the envelope carries them

    @property
    def leaf(self) -> x509.Certificate:
        return self.certificate_chain[0]

    @property
    def time_for_display(self) -> dt.datetime | None:
        return self.authentic_signing_time or self.signing_time

    def verify_signature(self) -> None:
        """Raise ``EnvelopeError`` unless the signature verifies with the leaf key (and its algorithm)."""
        try:
            implied = algorithm_for(self.leaf)
        except UnsupportedKey as exc:
            raise EnvelopeError(f"signing certificate: {exc}") from None
        if implied != self.algorithm:
            raise EnvelopeError(
                f"the envelope says {self.algorithm.name} but the signing key implies {implied.name}"
            )
        if not signature_matches(self.leaf, self.algorithm, self.signature, self.signed_bytes):
            raise EnvelopeError("the signature does not verify with the signing certificate's key")


def parse_envelope(media_type: str, data: bytes) -> SignerInfo:
    if len(data) > MAX_ENVELOPE_BYTES:
        raise EnvelopeError(f"the envelope is {len(data)} bytes, over the {MAX_ENVELOPE_BYTES}-byte cap")
    if media_type == JWS:
        info = _parse_jws(data)
    elif media_type == COSE:
        info = _parse_cose(data)
    else:
        raise EnvelopeError(f"unsupported signature envelope type {media_type!r} (expected {JWS} or {COSE})")
    _check_common(info)
    return info


# --- rules shared by both formats ----------------------------------------------------------------


def _check_common(info: SignerInfo) -> None:
    # Signed attributes, Notary signature specification.
    if info.signing_scheme not in (SCHEME_X509, SCHEME_SIGNING_AUTHORITY):
        raise EnvelopeError(f"unsupported signing scheme {info.signing_scheme!r}")
    if info.signing_scheme == SCHEME_X509:
        if info.signing_time is None:
            raise EnvelopeError(f"scheme {SCHEME_X509} requires the {H_SIGNING_TIME} header")
    elif info.authentic_signing_time is None:
        raise EnvelopeError(f"scheme {SCHEME_SIGNING_AUTHORITY} requires the {H_AUTHENTIC_TIME} header")
    signed_at = info.signing_time or info.authentic_signing_time
    if info.expiry is not None and signed_at is not None and info.expiry <= signed_at:
        raise EnvelopeError("the expiry is not after the signing time")
    if not info.payload:
        raise EnvelopeError("the envelope has no payload")
    if not info.signature:
        raise EnvelopeError("the envelope has no signature")
    if not info.certificate_chain:
        raise EnvelopeError("the envelope has no certificate chain")
    if len(info.certificate_chain) > MAX_CHAIN_CERTS:
        raise EnvelopeError(
            f"the certificate chain has {len(info.certificate_chain)} certificates, over {MAX_CHAIN_CERTS}"
        )
    required = {H_SCHEME}
    if info.expiry is not None:
        required.add(H_EXPIRY)
    if info.signing_scheme == SCHEME_SIGNING_AUTHORITY:
        required.add(H_AUTHENTIC_TIME)
    missing = sorted(required - set(info.critical))
    if missing:
        raise EnvelopeError(f"headers {missing} must be listed in crit")


def _certificates(ders: list[bytes]) -> tuple[x509.Certificate, ...]:
    if len(ders) > MAX_CHAIN_CERTS:
        raise EnvelopeError(f"the certificate chain has {len(ders)} certificates, over {MAX_CHAIN_CERTS}")
    certs = []
    for i, der in enumerate(ders):
        try:
            certs.append(x509.load_der_x509_certificate(der))
        except (ValueError, x509.InvalidVersion):
            raise EnvelopeError(f"certificate #{i} of the chain is not a valid DER certificate") from None
    return tuple(certs)


# --- JWS ------------------------------------------------------------------------------------------

_B64URL_RE = re.compile(r"[A-Za-z0-9_-]*")
_JWS_MEMBERS = ("payload", "protected", "header", "signature")
_JWS_KNOWN = ("alg", "cty", "crit", H_SCHEME, H_SIGNING_TIME, H_AUTHENTIC_TIME, H_EXPIRY)
# Names the specifications define, which no other member may imitate by letter case. The signing
# agent is not among them: notation has spelled it io.cncf.notary.SigningAgent too, and reads it
# without regard to case (it is unsigned and informational).
_JWS_PROTECTED_NAMES = (*_JWS_KNOWN, H_PLUGIN, H_PLUGIN_MIN)
_JWS_UNPROTECTED_NAMES = ("x5c", H_TIMESTAMP)
_RFC3339_RE = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _b64url(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not _B64URL_RE.fullmatch(value) or len(value) % 4 == 1:
        raise EnvelopeError(f"JWS {what} is not unpadded base64url")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _b64std(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise EnvelopeError(f"JWS {what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError(f"JWS {what} is not standard base64") from None


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    # RFC 7515 section 2 and RFC 8259: the envelope and its protected header are UTF-8 JSON; anything
    # two JSON parsers could read differently is refused (webhook.strictjson).
    try:
        doc = strictjson.loads(data)
    except strictjson.JSONError as exc:
        raise EnvelopeError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise EnvelopeError(f"{what} is not a JSON object")
    return doc


def _rfc3339(value: Any, name: str) -> dt.datetime:
    # RFC 3339 section 5.6 (lowercase t and z allowed, as its note says). Times are compared in UTC;
    # one whose UTC instant falls outside the years 1 to 9999 cannot be represented and is refused.
    if not isinstance(value, str) or not _RFC3339_RE.fullmatch(value):
        raise EnvelopeError(f"header {name} is not an RFC 3339 time")
    text = value.replace("z", "Z").replace("t", "T")
    if text.startswith("0000-"):
        raise EnvelopeError(_out_of_range(f"header {name}", value))
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise EnvelopeError(f"header {name} is not an RFC 3339 time") from None
    try:
        return parsed.astimezone(dt.UTC)
    except OverflowError:
        raise EnvelopeError(_out_of_range(f"header {name}", value)) from None


def _out_of_range(what: str, value: object) -> str:
    return f"{what} ({value}) is outside the years 1 to 9999 (UTC) that Referee can compare times in"


def _parse_jws(data: bytes) -> SignerInfo:
    envelope = _json_object(data, "JWS envelope")
    # RFC 7515 section 7.2.2 (flattened JWS JSON serialization): "signatures" must not be present;
    # section 7.2.1: other members that are not understood are ignored. A member that differs from
    # payload, protected, header or signature only by letter case is refused: Go's decoder (notation)
    # would read it as that member.
    _names(envelope, _JWS_MEMBERS, "the JWS envelope")
    if "signatures" in envelope:
        raise EnvelopeError(
            "the JWS envelope has a signatures member; only the flattened JSON serialization is allowed"
        )
    protected_b64 = envelope.get("protected")
    payload_b64 = envelope.get("payload")
    protected_raw = _b64url(protected_b64, "protected header")
    payload = _b64url(payload_b64, "payload")
    signature = _b64url(envelope.get("signature"), "signature")
    header = envelope.get("header")
    if not isinstance(header, dict):
        raise EnvelopeError("JWS envelope has no unprotected header")
    protected = _json_object(protected_raw, "JWS protected header")
    # Notary JWS envelope specification, protected headers: each is read under its exact name.
    _names(protected, _JWS_PROTECTED_NAMES, "the JWS protected header")
    _names(header, _JWS_UNPROTECTED_NAMES, "the JWS unprotected header")

    alg = protected.get("alg")
    if not isinstance(alg, str) or alg not in BY_NAME:
        raise EnvelopeError(f"JWS alg {alg!r} is not allowed (PS256/384/512 or ES256/384/512 only)")
    cty = protected.get("cty")
    if not isinstance(cty, str):
        raise EnvelopeError("JWS protected header has no cty")
    scheme = protected.get(H_SCHEME)
    if not isinstance(scheme, str):
        raise EnvelopeError(f"JWS protected header has no {H_SCHEME}")
    crit = protected.get("crit")
    if not isinstance(crit, list) or not crit or not all(isinstance(c, str) for c in crit):
        raise EnvelopeError("JWS protected header needs a non-empty crit list")
    if len(set(crit)) != len(crit):
        raise EnvelopeError("JWS crit lists a header twice")
    times = {
        name: _rfc3339(protected[name], name) if protected.get(name) is not None else None
        for name in (H_SIGNING_TIME, H_AUTHENTIC_TIME, H_EXPIRY)
    }
    if scheme == SCHEME_X509 and times[H_AUTHENTIC_TIME] is not None:
        raise EnvelopeError(f"scheme {SCHEME_X509} must not carry {H_AUTHENTIC_TIME}")
    if scheme == SCHEME_SIGNING_AUTHORITY and times[H_SIGNING_TIME] is not None:
        raise EnvelopeError(f"scheme {SCHEME_SIGNING_AUTHORITY} must not carry {H_SIGNING_TIME}")
    extended = {k: v for k, v in protected.items() if k not in _JWS_KNOWN}
    for name in crit:
        # crit may name the Notary headers that must be critical and extended attributes, and only
        # headers that are present; never registered JWS headers such as alg or cty.
        allowed = name in (H_SCHEME, H_AUTHENTIC_TIME, H_EXPIRY) and protected.get(name) is not None
        if not (allowed or name in extended):
            raise EnvelopeError(f"JWS crit names {name!r}, which is not a header that may be critical here")

    chain, ders, token, agent = _jws_unsigned(header)
    return SignerInfo(
        media_type=JWS,
        payload=payload,
        payload_content_type=cty,
        algorithm=BY_NAME[alg],
        signature=signature,
        signed_bytes=f"{protected_b64}.{payload_b64}".encode("ascii"),
        signing_scheme=scheme,
        signing_time=times[H_SIGNING_TIME],
        authentic_signing_time=times[H_AUTHENTIC_TIME],
        expiry=times[H_EXPIRY],
        critical=tuple(crit),
        extended_attributes=MappingProxyType(extended),
        certificate_chain=chain,
        certificate_der=ders,
        timestamp_token=token,
        signing_agent=agent,
    )


_AGENT_FOLDED = strictjson.fold(H_AGENT)


def _jws_unsigned(
    header: dict[str, Any],
) -> tuple[tuple[x509.Certificate, ...], tuple[bytes, ...], bytes | None, str | None]:
    """The unprotected header: certificate chain, timestamp token and signing agent, typed as notation
    reads them (x5c an array of standard base64 strings; the others a base64 string and a string)."""
    x5c = header.get("x5c")
    if not isinstance(x5c, list) or not x5c:
        raise EnvelopeError("JWS unprotected header has no x5c certificate chain")
    ders = tuple(_b64std(c, "x5c entry") for c in x5c[: MAX_CHAIN_CERTS + 1])
    chain = _certificates(list(ders))
    token = header.get(H_TIMESTAMP)
    agent = next((v for k, v in header.items() if strictjson.fold(k) == _AGENT_FOLDED), None)
    if agent is not None and not isinstance(agent, str):
        raise EnvelopeError(f"JWS header {H_AGENT} is not a string")
    return chain, ders, _b64std(token, H_TIMESTAMP) if token is not None else None, agent


def _names(obj: dict[str, Any], defined: tuple[str, ...], what: str) -> None:
    try:
        strictjson.check_names(obj, defined, what)
    except strictjson.JSONError as exc:
        raise EnvelopeError(str(exc)) from None


# --- COSE -----------------------------------------------------------------------------------------

COSE_SIGN1_TAG_PREFIX = b"\xd2\x84"  # tag 18, then an array of four
L_ALG, L_CRIT, L_CTY, L_KID, L_IV, L_PARTIAL_IV, L_TYPE, L_X5CHAIN = 1, 2, 3, 4, 5, 6, 16, 33
L_COUNTER_SIGNATURES = (7, 9, 11, 12)  # RFC 9052 (7, 9: deprecated) and RFC 9338 (11, 12)
_COSE_KNOWN = {L_ALG, L_CRIT, L_CTY, H_SCHEME, H_SIGNING_TIME, H_AUTHENTIC_TIME, H_EXPIRY}
_INT64 = range(-(1 << 63), 1 << 63)
_MAX_CBOR_DEPTH_LEVELS = 16


@dataclass(frozen=True)
class _EpochTime:
    value: Any


class _OtherTime:
    pass


class _RawTags(dict[int, Any]):
    """cbor2 semantic decoders for every tag: none is interpreted (a bignum stays a tag, not an int;
    shared and string references are not followed), only tag 1 and tag 0 times are marked."""

    def __missing__(self, tag: int) -> Any:
        if tag == 1:
            return lambda value, _immutable: _EpochTime(value)
        if tag == 0:
            return lambda _value, _immutable: _OtherTime()
        return lambda value, _immutable: cbor2.CBORTag(tag, value)


def _cbor(data: bytes, what: str) -> Any:
    """Decode exactly one CBOR item; duplicate map keys (1 and 1.0 included: they are equal as numbers),
    indefinite lengths and trailing bytes are refused, and no tag is interpreted."""
    stream = io.BytesIO(data)
    try:
        decoder = cbor2.CBORDecoder(
            stream,
            allow_duplicate_keys=False,
            allow_indefinite=False,
            max_depth=_MAX_CBOR_DEPTH_LEVELS,
            semantic_decoders=_RawTags(),
        )
        value = decoder.decode()
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError, EOFError) as exc:
        raise EnvelopeError(f"{what} is not valid CBOR ({exc})") from None
    if stream.tell() != len(data):
        raise EnvelopeError(f"{what} has {len(data) - stream.tell()} bytes after its CBOR item")
    return value


_KINDS = {
    bool: "a boolean", float: "a floating-point number", bytes: "a byte string", int: "an integer",
    str: "a text string", list: "an array", dict: "a map", type(None): "null",
    _EpochTime: "a CBOR time tag", _OtherTime: "a CBOR time tag",
}  # fmt: skip


def _kind_of(value: Any) -> str:
    """What a decoded CBOR value is, in a person's words (for messages)."""
    if isinstance(value, cbor2.CBORTag):
        return f"a CBOR tag {value.tag}" + (" (bignum)" if value.tag in (2, 3) else "")
    return _KINDS.get(type(value), f"a {type(value).__name__}")


def _check_labels(header: Mapping[Any, Any], where: str) -> None:
    """RFC 9052 section 3: a header label is an integer or a text string. A float, boolean or bignum
    label would collide with the integer one in some decoders and not in others."""
    for label in header:
        if type(label) is str:
            continue
        if type(label) is not int:
            raise EnvelopeError(
                f"COSE {where} header label {label!r} is {_kind_of(label)}; "
                "labels must be integers or text strings (RFC 9052 section 3)"
            )
        if label not in _INT64:
            raise EnvelopeError(f"COSE {where} header label {label} does not fit in a 64-bit integer")


def _has_tag(value: Any, depth: int = 0) -> bool:
    if isinstance(value, cbor2.CBORTag | _EpochTime | _OtherTime):
        return True
    if depth > _MAX_CBOR_DEPTH_LEVELS:
        return False
    if isinstance(value, list | tuple):
        return any(_has_tag(v, depth + 1) for v in value)
    if isinstance(value, Mapping):
        return any(_has_tag(k, depth + 1) or _has_tag(v, depth + 1) for k, v in value.items())
    return False


def _check_parameters(protected: Mapping[Any, Any], unprotected: Mapping[Any, Any]) -> None:
    """The common header parameters as RFC 9052 section 3.1 types them, in both buckets."""
    _check_labels(protected, "protected")
    _check_labels(unprotected, "unprotected")
    if L_CRIT in unprotected:
        raise EnvelopeError("COSE crit (label 2) must be in the protected header (RFC 9052 section 3.1)")
    # RFC 9052 section 3: a label must not be in both buckets (readers disagree on which one counts).
    both = [label for label in protected if label in unprotected]
    if both:
        raise EnvelopeError(
            f"COSE header label {both[0]!r} is in both the protected and the unprotected header"
        )
    for where, header in (("protected", protected), ("unprotected", unprotected)):
        for label, name in ((L_KID, "kid"), (L_IV, "IV"), (L_PARTIAL_IV, "Partial IV")):
            if label in header and type(header[label]) is not bytes:
                raise EnvelopeError(
                    f"COSE {where} {name} (label {label}) is {_kind_of(header[label])}, not a byte string"
                )
        for label in L_COUNTER_SIGNATURES:
            if label in header:
                raise EnvelopeError(
                    f"COSE {where} header has a counter signature (label {label}); Notary envelopes "
                    "carry none (the RFC 3161 timestamp is their only countersignature)"
                )
        kind = header.get(L_TYPE)
        if kind is not None and type(kind) is not str and not (type(kind) is int and kind >= 0):
            raise EnvelopeError(f"COSE {where} typ (label 16) is {_kind_of(kind)} (RFC 9596: text or uint)")
    present = {*protected, *unprotected}
    if L_IV in present and L_PARTIAL_IV in present:
        raise EnvelopeError("COSE header has both an IV and a Partial IV (RFC 9052 section 3.1 forbids it)")
    if any(_has_tag(v) for v in unprotected.values()):
        raise EnvelopeError("COSE unprotected header holds a CBOR tag; Notary's unsigned attributes never do")


def _epoch(value: Any, name: str) -> dt.datetime:
    if isinstance(value, _OtherTime):
        raise EnvelopeError(f"COSE header {name} uses a tag-0 time; only tag 1 (epoch) times are allowed")
    # RFC 8949 section 3.4.2: tag 1 holds an integer or a floating-point number, nothing else (no bignum).
    if not isinstance(value, _EpochTime) or type(value.value) not in (int, float):
        raise EnvelopeError(f"COSE header {name} is not a tag-1 epoch time (an integer or a float)")
    if isinstance(value.value, float) and not math.isfinite(value.value):
        raise EnvelopeError(f"COSE header {name} is not a finite time")
    try:
        return dt.datetime.fromtimestamp(value.value, dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise EnvelopeError(_out_of_range(f"COSE header {name}", value.value)) from None


def _parse_cose(data: bytes) -> SignerInfo:
    if not data.startswith(COSE_SIGN1_TAG_PREFIX):
        raise EnvelopeError("COSE envelope is not a tagged COSE_Sign1 (CBOR tag 18 with four elements)")
    message = _cbor(data, "COSE envelope")
    if not isinstance(message, cbor2.CBORTag) or message.tag != 18:
        raise EnvelopeError("COSE envelope is not a tagged COSE_Sign1")
    items = message.value
    if not isinstance(items, list | tuple) or len(items) != 4:
        raise EnvelopeError("COSE_Sign1 must be an array of four elements")
    protected_raw, unprotected, payload, signature = items
    if not isinstance(protected_raw, bytes) or not protected_raw:
        raise EnvelopeError("COSE protected header is missing")
    if not isinstance(unprotected, Mapping):
        raise EnvelopeError("COSE unprotected header is not a map")
    if not isinstance(payload, bytes):
        raise EnvelopeError("COSE payload is missing (detached payloads are not allowed)")
    if not isinstance(signature, bytes):
        raise EnvelopeError("COSE signature is not a byte string")
    protected = _cbor(protected_raw, "COSE protected header")
    if not isinstance(protected, Mapping):
        raise EnvelopeError("COSE protected header is not a map")
    _check_parameters(protected, unprotected)

    alg, cty, scheme, crit, signing_time, expiry, extended = _cose_protected(protected)
    chain_raw = unprotected.get(L_X5CHAIN, protected.get(L_X5CHAIN))
    if (
        not isinstance(chain_raw, list | tuple)
        or not chain_raw
        or not all(isinstance(c, bytes) for c in chain_raw)
    ):
        raise EnvelopeError("COSE x5chain (label 33) must be a non-empty array of certificates")
    token = unprotected.get(H_TIMESTAMP)
    agent = unprotected.get(H_AGENT)
    sig_structure = cbor2.dumps(["Signature1", protected_raw, b"", payload])
    return SignerInfo(
        media_type=COSE,
        payload=payload,
        payload_content_type=cty,
        algorithm=BY_COSE[alg],
        signature=signature,
        signed_bytes=sig_structure,
        signing_scheme=scheme,
        signing_time=signing_time if scheme == SCHEME_X509 else None,
        authentic_signing_time=signing_time if scheme == SCHEME_SIGNING_AUTHORITY else None,
        expiry=expiry,
        critical=tuple(str(c) for c in crit),
        extended_attributes=MappingProxyType(extended),
        certificate_chain=_certificates(list(chain_raw)),
        certificate_der=tuple(chain_raw),
        timestamp_token=token if isinstance(token, bytes) else None,
        signing_agent=agent if isinstance(agent, str) else None,
    )


def _cose_protected(
    protected: Mapping[Any, Any],
) -> tuple[int, str, str, tuple[Any, ...], dt.datetime | None, dt.datetime | None, dict[str, Any]]:
    """The signed attributes of a COSE protected header."""
    alg = protected.get(L_ALG)
    if type(alg) is not int or alg not in BY_COSE:
        raise EnvelopeError(f"COSE alg {alg!r} is not allowed (PS256/384/512 or ES256/384/512 only)")
    cty = protected.get(L_CTY)
    if not isinstance(cty, str):
        raise EnvelopeError("COSE content type (label 3) is missing or not a text string")
    scheme = protected.get(H_SCHEME)
    if not isinstance(scheme, str):
        raise EnvelopeError(f"COSE protected header has no text {H_SCHEME}")
    crit = protected.get(L_CRIT)
    if not isinstance(crit, list | tuple) or not crit:
        raise EnvelopeError("COSE protected header needs a non-empty crit list")
    for label in crit:
        if type(label) not in (int, str):
            raise EnvelopeError(
                f"COSE crit entry {label!r} is {_kind_of(label)}, not an integer or text label"
            )
        if isinstance(label, int) and 0 <= label <= 8:
            raise EnvelopeError(f"COSE crit must not list the registered label {label}")
        if label not in protected:
            raise EnvelopeError(f"COSE crit names {label!r}, which is not in the protected header")
    time_label = H_SIGNING_TIME if scheme == SCHEME_X509 else H_AUTHENTIC_TIME
    signing_time = _epoch(protected[time_label], time_label) if time_label in protected else None
    expiry = _epoch(protected[H_EXPIRY], H_EXPIRY) if H_EXPIRY in protected else None
    extended = {str(k): v for k, v in protected.items() if k not in _COSE_KNOWN}

    return alg, cty, scheme, tuple(crit), signing_time, expiry, extended

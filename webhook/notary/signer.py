"""Making Notary Project signatures: the payload, the envelope (JWS or COSE) and the signature manifest.

What ``referee sign`` produces must verify with ``notation verify``, so the envelopes follow the
specifications exactly: JWS flattened JSON with ``crit`` listing the Notary headers that must be
critical; COSE_Sign1 tagged, with epoch (tag 1) times and the chain in ``x5chain``. Pure: the key,
chain and times come in, bytes come out.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from webhook import __version__
from webhook.notary.algorithms import Algorithm, algorithm_for
from webhook.notary.envelope import (
    COSE,
    H_AGENT,
    H_AUTHENTIC_TIME,
    H_EXPIRY,
    H_SCHEME,
    H_SIGNING_TIME,
    H_TIMESTAMP,
    JWS,
    L_ALG,
    L_CRIT,
    L_CTY,
    L_X5CHAIN,
    PAYLOAD_TYPE,
    SCHEME_SIGNING_AUTHORITY,
    SCHEME_X509,
)
from webhook.oci.model import (
    EMPTY_DIGEST,
    NOTARY_SIGNATURE,
    OCI_EMPTY,
    OCI_MANIFEST,
    Descriptor,
    compute_digest,
)

SIGNING_AGENT = f"referee/{__version__}"
THUMBPRINT_ANNOTATION = "io.cncf.notary.x509chain.thumbprint#S256"
CREATED_ANNOTATION = "org.opencontainers.image.created"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class SignRequest:
    target: Descriptor
    key: PrivateKey
    chain: tuple[x509.Certificate, ...]  # leaf first, root last
    signing_time: dt.datetime
    scheme: str = SCHEME_X509
    expiry: dt.datetime | None = None
    envelope: str = JWS
    # Extra signed attributes; names listed in ``critical`` are marked critical.
    extra_attributes: Mapping[str, Any] = field(default_factory=dict, hash=False)
    critical: tuple[str, ...] = ()
    # User metadata: annotations of the payload's targetArtifact (notation sign --user-metadata).
    user_metadata: Mapping[str, str] = field(default_factory=dict, hash=False)


def payload_bytes(target: Descriptor, user_metadata: Mapping[str, str] | None = None) -> bytes:
    artifact: dict[str, Any] = {"mediaType": target.media_type, "digest": target.digest, "size": target.size}
    annotations = {**target.annotations, **(user_metadata or {})}
    if annotations:
        artifact["annotations"] = annotations
    return json.dumps({"targetArtifact": artifact}, separators=(",", ":")).encode()


def raw_signature(key: PrivateKey, algorithm: Algorithm, data: bytes) -> bytes:
    """RSASSA-PSS (salt = hash length) or ECDSA as fixed-length ``r || s``."""
    digest = algorithm.hash()
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(
            data, padding.PSS(mgf=padding.MGF1(algorithm.hash()), salt_length=digest.digest_size), digest
        )
    der = key.sign(data, ec.ECDSA(digest))
    r, s = decode_dss_signature(der)
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def _times(request: SignRequest) -> dict[str, dt.datetime]:
    name = H_AUTHENTIC_TIME if request.scheme == SCHEME_SIGNING_AUTHORITY else H_SIGNING_TIME
    out = {name: request.signing_time.replace(microsecond=0)}
    if request.expiry is not None:
        out[H_EXPIRY] = request.expiry.replace(microsecond=0)
    return out


def _critical(request: SignRequest) -> list[str]:
    crit = [H_SCHEME]
    if request.scheme == SCHEME_SIGNING_AUTHORITY:
        crit.append(H_AUTHENTIC_TIME)
    if request.expiry is not None:
        crit.append(H_EXPIRY)
    return crit + list(request.critical)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


Timestamper = Callable[[bytes, str], bytes]  # (signature bytes, hash name) -> RFC 3161 TimeStampToken


def sign_jws(request: SignRequest, timestamper: Timestamper | None = None) -> bytes:
    algorithm = algorithm_for(request.chain[0])
    protected: dict[str, Any] = {
        "alg": algorithm.name,
        "crit": _critical(request),
        "cty": PAYLOAD_TYPE,
        H_SCHEME: request.scheme,
    }
    for name, when in _times(request).items():
        protected[name] = when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    protected.update(request.extra_attributes)
    protected_b64 = _b64url(json.dumps(protected, separators=(",", ":")).encode())
    payload_b64 = _b64url(payload_bytes(request.target, request.user_metadata))
    signature = raw_signature(request.key, algorithm, f"{protected_b64}.{payload_b64}".encode("ascii"))
    header: dict[str, Any] = {
        "x5c": [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in request.chain],
        H_AGENT: SIGNING_AGENT,
    }
    if timestamper is not None:
        header[H_TIMESTAMP] = base64.b64encode(timestamper(signature, algorithm.hash().name)).decode()
    envelope = {
        "payload": payload_b64,
        "protected": protected_b64,
        "header": header,
        "signature": _b64url(signature),
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


def sign_cose(request: SignRequest, timestamper: Timestamper | None = None) -> bytes:
    algorithm = algorithm_for(request.chain[0])
    protected: dict[Any, Any] = {
        L_ALG: algorithm.cose,
        L_CRIT: _critical(request),
        L_CTY: PAYLOAD_TYPE,
        H_SCHEME: request.scheme,
    }
    for name, when in _times(request).items():
        protected[name] = cbor2.CBORTag(1, int(when.timestamp()))
    protected.update(request.extra_attributes)
    protected_raw = cbor2.dumps(protected)
    payload = payload_bytes(request.target, request.user_metadata)
    signature = raw_signature(
        request.key, algorithm, cbor2.dumps(["Signature1", protected_raw, b"", payload])
    )
    unprotected: dict[Any, Any] = {
        L_X5CHAIN: [c.public_bytes(serialization.Encoding.DER) for c in request.chain],
        H_AGENT: SIGNING_AGENT,
    }
    if timestamper is not None:
        unprotected[H_TIMESTAMP] = timestamper(signature, algorithm.hash().name)
    return cbor2.dumps(cbor2.CBORTag(18, [protected_raw, unprotected, payload, signature]))


def sign(request: SignRequest, timestamper: Timestamper | None = None) -> bytes:
    """The envelope; with a ``timestamper``, countersigned by a TSA (only for ``notary.x509``)."""
    if timestamper is not None and request.scheme != SCHEME_X509:
        raise ValueError("timestamps countersign notary.x509 signatures only")
    return sign_cose(request, timestamper) if request.envelope == COSE else sign_jws(request, timestamper)


def signature_manifest(envelope: bytes, envelope_type: str, request: SignRequest) -> bytes:
    """The OCI image manifest that carries an envelope as a referrer of the signed artifact.

    Image-spec 1.1 form (``artifactType`` with the empty config), which notation reads as it reads its
    own (config media type) form.
    """
    thumbprints = [
        compute_digest(c.public_bytes(serialization.Encoding.DER)).split(":")[1] for c in request.chain
    ]
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": NOTARY_SIGNATURE,
        "config": {"mediaType": OCI_EMPTY, "digest": EMPTY_DIGEST, "size": 2},
        "layers": [{"mediaType": envelope_type, "digest": compute_digest(envelope), "size": len(envelope)}],
        "subject": request.target.to_json(),
        "annotations": {
            THUMBPRINT_ANNOTATION: json.dumps(thumbprints),
            CREATED_ANNOTATION: request.signing_time.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }
    return json.dumps(manifest, separators=(",", ":")).encode()

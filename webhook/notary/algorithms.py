"""Signature algorithms of the Notary Project signature specification, and nothing else.

The leaf certificate's key decides the algorithm (Notary spec "Algorithm Selection"); the envelope's
declared algorithm must be that one, which defeats algorithm substitution:

    RSA 2048 -> PS256    RSA 3072 -> PS384    RSA 4096 -> PS512      (RSASSA-PSS, MGF1 same hash,
    P-256    -> ES256    P-384    -> ES384    P-521    -> ES512       salt length = hash length)

No ``none``, no HMAC, no RSA PKCS#1 v1.5, no other key sizes. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509 import Certificate


@dataclass(frozen=True)
class Algorithm:
    name: str  # JWS name: PS256 ...
    cose: int  # COSE alg value
    hash: type[hashes.HashAlgorithm]
    key: str  # "RSA-2048", "EC-P256", ...


ALGORITHMS = (
    Algorithm("PS256", -37, hashes.SHA256, "RSA-2048"),
    Algorithm("PS384", -38, hashes.SHA384, "RSA-3072"),
    Algorithm("PS512", -39, hashes.SHA512, "RSA-4096"),
    Algorithm("ES256", -7, hashes.SHA256, "EC-P256"),
    Algorithm("ES384", -35, hashes.SHA384, "EC-P384"),
    Algorithm("ES512", -36, hashes.SHA512, "EC-P521"),
)
BY_NAME = {a.name: a for a in ALGORITHMS}
BY_COSE = {a.cose: a for a in ALGORITHMS}
BY_KEY = {a.key: a for a in ALGORITHMS}
_CURVES = {"secp256r1": "EC-P256", "secp384r1": "EC-P384", "secp521r1": "EC-P521"}
_EC_SIZE = {"EC-P256": 32, "EC-P384": 48, "EC-P521": 66}


class UnsupportedKey(ValueError):
    """The certificate's key is not one the Notary specification allows."""


def key_label(cert: Certificate) -> str:
    """``RSA-2048`` ... ``EC-P521`` for a supported key; raise ``UnsupportedKey`` otherwise."""
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise UnsupportedKey("the certificate's public key cannot be read") from None
    if isinstance(key, rsa.RSAPublicKey):
        label = f"RSA-{key.key_size}"
    elif isinstance(key, ec.EllipticCurvePublicKey):
        label = _CURVES.get(key.curve.name, f"EC-{key.curve.name}")
    else:
        raise UnsupportedKey(f"key type {type(key).__name__} is not allowed (RSA or ECDSA only)")
    if label not in BY_KEY:
        raise UnsupportedKey(
            f"{label} keys are not allowed (RSA 2048/3072/4096 or ECDSA P-256/P-384/P-521 only)"
        )
    return label


def algorithm_for(cert: Certificate) -> Algorithm:
    return BY_KEY[key_label(cert)]


def signature_matches(cert: Certificate, algorithm: Algorithm, signature: bytes, signed: bytes) -> bool:
    """True when ``signature`` over ``signed`` verifies with the certificate's key and ``algorithm``.

    ECDSA signatures are the fixed-length ``r || s`` of JWS and COSE, not DER.
    """
    key = cert.public_key()
    digest = algorithm.hash()
    try:
        if isinstance(key, rsa.RSAPublicKey) and algorithm.key.startswith("RSA"):
            pss = padding.PSS(mgf=padding.MGF1(algorithm.hash()), salt_length=digest.digest_size)
            key.verify(signature, signed, pss, digest)
            return True
        if isinstance(key, ec.EllipticCurvePublicKey) and algorithm.key.startswith("EC"):
            size = _EC_SIZE[algorithm.key]
            if len(signature) != 2 * size:
                return False
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            key.verify(encode_dss_signature(r, s), signed, ec.ECDSA(digest))
            return True
    except InvalidSignature:
        return False
    return False

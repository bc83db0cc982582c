"""Certificate rules of the Notary Project signature specification, for the envelope's chain.

The chain in an envelope is ordered and complete (leaf, intermediates, root), so nothing is built:
each link is checked with ``cryptography``'s issuer check (signature and names), the root must be
self-signed, and every certificate must meet the code-signing profile ("Certificate Requirements").
Authenticity is then a byte-for-byte match of some chain certificate with a trusted one, and
validity is checked at the time the signing scheme says (``valid_at``). Pure.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Set
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from webhook.notary.algorithms import UnsupportedKey, key_label

# EKUs a code-signing leaf must not carry (the specification's list; notation also bans OCSPSigning).
_FORBIDDEN_EKUS = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
}
_WEAK_HASHES = (hashes.SHA1, hashes.MD5)


class ChainError(ValueError):
    """The certificate chain breaks an ordering or profile rule."""


def describe(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def _ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.Extension[x509.ExtensionType] | None:
    try:
        return cert.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return None
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise ChainError(f"certificate {describe(cert)!r} has malformed extensions ({exc})") from None


def is_self_signed(cert: x509.Certificate) -> bool:
    """Issuer equals subject and the certificate's own key verifies its signature."""
    if cert.subject.public_bytes() != cert.issuer.public_bytes():
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _check_signature_hash(cert: x509.Certificate) -> None:
    algorithm = cert.signature_hash_algorithm
    if isinstance(algorithm, _WEAK_HASHES):
        raise ChainError(
            f"certificate {describe(cert)!r} is signed with {algorithm.name.upper()}, which is not allowed"
        )


def check_leaf(cert: x509.Certificate) -> None:
    """The code-signing leaf profile."""
    name = describe(cert)
    bc = _ext(cert, x509.BasicConstraints)
    if bc is not None and bc.value.ca:  # type: ignore[attr-defined]
        raise ChainError(f"signing certificate {name!r} is a CA certificate")
    ku = _ext(cert, x509.KeyUsage)
    if ku is None or not ku.critical:
        raise ChainError(f"signing certificate {name!r} needs a critical keyUsage extension")
    usage: x509.KeyUsage = ku.value  # type: ignore[assignment]
    if not usage.digital_signature:
        raise ChainError(f"signing certificate {name!r}: keyUsage lacks digitalSignature")
    forbidden = [
        label
        for label, present in (
            ("keyEncipherment", usage.key_encipherment),
            ("dataEncipherment", usage.data_encipherment),
            ("keyAgreement", usage.key_agreement),
            ("keyCertSign", usage.key_cert_sign),
            ("cRLSign", usage.crl_sign),
        )
        if present
    ]
    if usage.key_agreement and (usage.encipher_only or usage.decipher_only):
        forbidden.append("encipherOnly/decipherOnly")
    if forbidden:
        raise ChainError(f"signing certificate {name!r}: keyUsage must not include {', '.join(forbidden)}")
    eku = _ext(cert, x509.ExtendedKeyUsage)
    if eku is not None:
        bad = [label for oid, label in _FORBIDDEN_EKUS.items() if oid in eku.value]  # type: ignore[operator]
        if bad:
            raise ChainError(
                f"signing certificate {name!r}: extendedKeyUsage must not include {', '.join(bad)}"
            )
    try:
        key_label(cert)
    except UnsupportedKey as exc:
        raise ChainError(f"signing certificate {name!r}: {exc}") from None


def check_ca(cert: x509.Certificate, depth_below: int) -> None:
    """The CA profile; ``depth_below`` counts the intermediates between this CA and the leaf."""
    name = describe(cert)
    bc = _ext(cert, x509.BasicConstraints)
    if bc is None or not bc.value.ca:  # type: ignore[attr-defined]
        raise ChainError(
            f"certificate {name!r} issues another certificate but is not a CA (basicConstraints)"
        )
    path_length = bc.value.path_length  # type: ignore[attr-defined]
    if path_length is not None and path_length < depth_below:
        raise ChainError(f"certificate {name!r}: pathLenConstraint {path_length} is exceeded")
    ku = _ext(cert, x509.KeyUsage)
    if ku is None or not ku.critical or not ku.value.key_cert_sign:  # type: ignore[attr-defined]
        raise ChainError(f"CA certificate {name!r} needs a critical keyUsage with keyCertSign")


class ChainMemory(Protocol):
    """Keys (``chain_key``) of chains that passed ``check_chain`` and reached a trusted root."""

    def __contains__(self, key: object) -> bool: ...

    def add(self, key: bytes) -> None: ...


def check_chain(
    chain: tuple[x509.Certificate, ...], known: ChainMemory | None = None, key: bytes | None = None
) -> None:
    """Order, issuance and profile of an envelope's chain (leaf first, root last).

    These checks depend on the certificates alone, not on time or trust; a chain that passed them
    and then reached a trusted root (its key in ``known``) is not checked again: one signer signs
    many images, and the issuer signatures are the costly part of a cold verification. Only a hash
    of such a chain is kept, so no registry can fill that memory with chains of its own. ``key`` is
    the chain's ``chain_key`` when the caller has it already.
    """
    if known is not None and (key if key is not None else chain_key(chain)) in known:
        return
    _check_chain_uncached(chain)


def chain_key(chain: tuple[x509.Certificate, ...]) -> bytes:
    return chain_key_of(cert.public_bytes(serialization.Encoding.DER) for cert in chain)


def chain_key_of(ders: Iterable[bytes]) -> bytes:
    """SHA-256 over the chain's exact DER bytes, each prefixed with its length."""
    digest = hashlib.sha256()
    for der in ders:
        digest.update(len(der).to_bytes(4, "big") + der)
    return digest.digest()


def _check_chain_uncached(chain: tuple[x509.Certificate, ...]) -> None:
    if not chain:
        raise ChainError("the certificate chain is empty")
    for cert in chain:
        _check_signature_hash(cert)
    seen: set[bytes] = set()
    for cert in chain:
        der = cert.public_bytes(serialization.Encoding.DER)
        if der in seen:
            raise ChainError(f"certificate {describe(cert)!r} appears twice in the chain")
        seen.add(der)
    if len(chain) == 1:
        if not is_self_signed(chain[0]):
            raise ChainError("a single-certificate chain must be a self-signed certificate")
    else:
        for i, cert in enumerate(chain):
            last = i == len(chain) - 1
            if last:
                if not is_self_signed(cert):
                    raise ChainError(f"the last certificate {describe(cert)!r} is not a self-signed root")
                continue
            if is_self_signed(cert):
                raise ChainError(
                    f"certificate {describe(cert)!r} is self-signed but is not last in the chain"
                )
            issuer = chain[i + 1]
            try:
                cert.verify_directly_issued_by(issuer)
            except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
                raise ChainError(
                    f"certificate {describe(cert)!r} is not issued by the next one, {describe(issuer)!r}"
                ) from None
            check_ca(issuer, i)
    check_leaf(chain[0])


def trusted_anchor(
    chain: Iterable[x509.Certificate],
    trusted: Iterable[x509.Certificate] | Set[bytes],
    chain_der: Iterable[bytes] | None = None,
) -> x509.Certificate | None:
    """The first chain certificate that is byte-for-byte one of the trusted certificates (given as
    certificates, or as the set of their DER bytes); ``chain_der`` is the chain's bytes when the
    caller has them."""
    trusted_der = (
        trusted if isinstance(trusted, Set) else {c.public_bytes(serialization.Encoding.DER) for c in trusted}
    )
    chain = tuple(chain)
    ders = tuple(chain_der) if chain_der is not None else ()
    if len(ders) != len(chain):
        ders = tuple(cert.public_bytes(serialization.Encoding.DER) for cert in chain)
    for cert, der in zip(chain, ders, strict=True):
        if der in trusted_der:
            return cert
    return None


def valid_at(chain: Iterable[x509.Certificate], when: dt.datetime) -> str | None:
    """``None`` when every certificate is valid at ``when`` (bounds included), else why not."""
    for cert in chain:
        if when < cert.not_valid_before_utc:
            return (
                f"certificate {describe(cert)!r} is not valid until {cert.not_valid_before_utc.isoformat()}"
            )
        if when > cert.not_valid_after_utc:
            return f"certificate {describe(cert)!r} expired at {cert.not_valid_after_utc.isoformat()}"
    return None


def subject_attributes(cert: x509.Certificate) -> dict[str, str]:
    """The leaf subject as notation sees it for trusted-identity matching.

    notation renders the subject with Go's names (C, ST, L, O, OU, CN, SERIALNUMBER, STREET,
    POSTALCODE) and then parses it; an attribute outside that set, a repeated attribute or a
    multi-valued RDN makes the subject unusable there, so it is refused here too.
    """
    names = {
        "2.5.4.6": "C", "2.5.4.8": "ST", "2.5.4.7": "L", "2.5.4.10": "O", "2.5.4.11": "OU",
        "2.5.4.3": "CN", "2.5.4.5": "SERIALNUMBER", "2.5.4.9": "STREET", "2.5.4.17": "POSTALCODE",
    }  # fmt: skip
    out: dict[str, str] = {}
    for rdn in cert.subject.rdns:
        attributes = list(rdn)
        if len(attributes) != 1:
            raise ChainError(f"signing certificate subject {describe(cert)!r} has a multi-valued RDN")
        attribute = attributes[0]
        name = names.get(attribute.oid.dotted_string)
        if name is None:
            oid = attribute.oid.dotted_string
            raise ChainError(
                f"signing certificate subject {describe(cert)!r} has attribute {oid}, "
                "which trusted identities cannot match"
            )
        if name in out:
            raise ChainError(f"signing certificate subject {describe(cert)!r} repeats {name}")
        out[name] = str(attribute.value)
    return out

"""``referee sign``: make a Notation signature for an image and push it as a referrer."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from webhook.deadline import Deadline
from webhook.errors import ConfigError, RegistryUnavailable, VerificationFailed
from webhook.notary.algorithms import UnsupportedKey, algorithm_for
from webhook.notary.certs import ChainError, check_chain
from webhook.notary.envelope import SCHEME_X509
from webhook.notary.signer import PrivateKey, SignRequest, sign, signature_manifest
from webhook.notary.timestamp import TimestampError, timestamp_request, token_from_response
from webhook.notary.truststore import parse_certificates
from webhook.oci.model import OCI_EMPTY
from webhook.registry import Pusher, Repository
from webhook.transport import Transport, TransportError, opened, read_body
from webhook.verify.policy import RESERVED_METADATA_PREFIX

_DURATION_RE = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_user_metadata(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` pairs, as ``notation sign --user-metadata`` takes them."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--user-metadata {pair!r} is not KEY=VALUE")
        if key.startswith(RESERVED_METADATA_PREFIX):
            raise ConfigError(
                f"--user-metadata key {key!r} is reserved for notation ({RESERVED_METADATA_PREFIX}.*)"
            )
        if key in out:
            raise ConfigError(f"--user-metadata gives {key!r} twice")
        out[key] = value
    return out


def parse_duration(text: str) -> dt.timedelta:
    """``90s``, ``15m``, ``24h``, ``7d`` or combinations such as ``1h30m``."""
    match = _DURATION_RE.fullmatch(text)
    if not text or match is None:
        raise ConfigError(f"duration {text!r} is not like 30s, 15m, 24h, 7d or 1h30m")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    duration = dt.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if duration <= dt.timedelta(0):
        raise ConfigError(f"duration {text!r} must be positive")
    return duration


@dataclass(frozen=True)
class SigningKey:
    key: PrivateKey
    chain: tuple[x509.Certificate, ...]


def load_signing_key(key_file: Path, cert_file: Path) -> SigningKey:
    """A PEM private key and its PEM chain (leaf first, root last), checked as a verifier would."""
    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except OSError as exc:
        raise ConfigError(f"cannot read {key_file}: {exc.strerror}") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{key_file}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{key_file}: only RSA and ECDSA keys can make Notary signatures")
    try:
        chain = parse_certificates(cert_file.read_bytes(), str(cert_file))
    except OSError as exc:
        raise ConfigError(f"cannot read {cert_file}: {exc.strerror}") from None
    try:
        algorithm_for(chain[0])
        check_chain(chain)
    except (UnsupportedKey, ChainError) as exc:
        raise ConfigError(f"{cert_file}: {exc}") from None
    leaf_key = chain[0].public_key()
    if leaf_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise ConfigError(f"{key_file} is not the key of the first certificate in {cert_file}")
    return SigningKey(key, chain)


@dataclass(frozen=True)
class Signed:
    subject: str  # the signed manifest's digest
    signature: str  # the signature manifest's digest


@dataclass(frozen=True)
class TimestampAuthority:
    url: str
    root: x509.Certificate
    timeout_s: float = 10.0

    def stamp(self, signature: bytes, hash_name: str) -> bytes:
        """Ask the TSA for a token over ``signature`` and check it before it goes into the envelope."""
        nonce = secrets.randbits(63)
        request = timestamp_request(signature, hash_name, nonce)
        transport = Transport(max_redirects=0)
        try:
            resp = transport.open(
                "POST", self.url, headers={"Content-Type": "application/timestamp-query"},
                timeout_s=self.timeout_s, verify=True, body=request,
            )  # fmt: skip
            with opened(resp):
                if resp.status != 200:
                    raise RegistryUnavailable(f"timestamp authority {self.url} answered HTTP {resp.status}")
                body = read_body(resp, 1 << 20, Deadline.after(self.timeout_s), self.url)
        except TransportError as exc:
            raise RegistryUnavailable(f"timestamp authority {self.url} unreachable ({exc.reason})") from None
        try:
            return token_from_response(body, signature, self.root, nonce)
        except TimestampError as exc:
            raise VerificationFailed(f"timestamp authority {self.url}: {exc}") from None


def sign_image(
    repo: Repository,
    pusher: Pusher,
    target: str,
    signing_key: SigningKey,
    *,
    envelope_type: str,
    now: dt.datetime,
    expiry: dt.timedelta | None,
    deadline: Deadline,
    scheme: str = SCHEME_X509,
    tsa: TimestampAuthority | None = None,
    user_metadata: Mapping[str, str] | None = None,
) -> Signed:
    subject = repo.resolve(target, deadline).descriptor
    request = SignRequest(
        target=subject,
        key=signing_key.key,
        chain=signing_key.chain,
        signing_time=now,
        expiry=now + expiry if expiry else None,
        envelope=envelope_type,
        scheme=scheme,
        user_metadata=dict(user_metadata or {}),
    )
    envelope = sign(request, tsa.stamp if tsa else None)
    manifest = signature_manifest(envelope, envelope_type, request)
    pusher.push_blob(b"{}", OCI_EMPTY, deadline)
    pusher.push_blob(envelope, envelope_type, deadline)
    pushed = pusher.push_referrer(manifest, subject.digest, deadline)
    return Signed(subject.digest, pushed.digest)

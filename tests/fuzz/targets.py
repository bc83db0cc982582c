"""Every parser of untrusted input, as a fuzz target: bytes in, and either a result or one of
Referee's typed errors out. Anything else (an IndexError, a RecursionError, a MemoryError) is a
finding.

Each target has seeds made here by Referee's own signer and by ``cryptography`` (a signed JWS and
COSE envelope, a manifest, an index, an AdmissionReview, a ProviderRequest, a token answer, a CRL,
an OCSP response, headers): mutants start from them, so most inputs get past the first check.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from tests.helpers.codesign import make_chain
from tests.helpers.revocation import make_crl, make_ocsp, make_pki, point
from webhook import strictjson
from webhook.errors import RefereeError
from webhook.notary import revocation
from webhook.notary.envelope import COSE, JWS, EnvelopeError, parse_envelope
from webhook.notary.payload import PayloadError, parse_payload
from webhook.notary.signer import SignRequest, sign, signature_manifest
from webhook.notary.timestamp import TimestampError, verify_timestamp
from webhook.notary.trustpolicy import parse_trust_policy
from webhook.notary.truststore import TrustStore
from webhook.notary.verifier import verify_signature
from webhook.oci.model import OCI_INDEX, OCI_MANIFEST, Descriptor, compute_digest, parse_manifest
from webhook.registry.auth import parse_challenges, parse_token_response
from webhook.server.admission import parse_review, uid_from_prefix
from webhook.server.provider import parse_request
from webhook.transport import clip, next_link

NOW = dt.datetime.now(dt.UTC)
TYPED: tuple[type[Exception], ...] = (
    RefereeError,
    strictjson.JSONError,
    EnvelopeError,
    PayloadError,
    TimestampError,
)


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], object]
    seeds: Callable[[], list[bytes]]
    typed: tuple[type[Exception], ...] = TYPED  # the errors that are answers, not findings


@functools.cache
def _signing() -> tuple[Any, Descriptor, Any, TrustStore]:
    chain = make_chain()
    subject = Descriptor(OCI_MANIFEST, "sha256:" + "ab" * 32, 528)
    doc = {"version": "1.0", "trustPolicies": [{"name": "all", "registryScopes": ["*"],
           "signatureVerification": {"level": "strict"}, "trustStores": ["ca:test"],
           "trustedIdentities": ["*"]}]}  # fmt: skip
    policy = parse_trust_policy(json.dumps(doc).encode()).select("registry.example/app")
    return chain, subject, policy, TrustStore({("ca", "test"): (chain.root,)})


@functools.cache
def _envelopes() -> dict[str, bytes]:
    chain, subject, _, _ = _signing()
    return {
        kind: sign(SignRequest(subject, chain.leaf_key, chain.certs, NOW, envelope=kind))
        for kind in (JWS, COSE)
    }


def _verify(kind: str) -> Callable[[bytes], object]:
    def run(data: bytes) -> object:
        _, subject, policy, store = _signing()
        return verify_signature(kind, data, subject, policy=policy, store=store, now=NOW)

    return run


def _manifest_seeds() -> list[bytes]:
    chain, subject, _, _ = _signing()
    envelope = _envelopes()[JWS]
    request = SignRequest(subject, chain.leaf_key, chain.certs, NOW, envelope=JWS)
    return [signature_manifest(envelope, JWS, request)]


def _index_seeds() -> list[bytes]:
    entries = [{"mediaType": OCI_MANIFEST, "digest": f"sha256:{n:064x}", "size": 100 + n,
                "artifactType": "application/vnd.cncf.notary.signature"} for n in range(3)]  # fmt: skip
    return [json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()]


def _review_seeds() -> list[bytes]:
    new = {"containers": [{"name": "c", "image": "r.example/a:v1"}],
           "volumes": [{"name": "v", "image": {"reference": "r.example/b:v1"}}]}  # fmt: skip
    old = {"containers": [{"name": "c", "image": "r.example/a:v0"}]}
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u-1", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"}, "namespace": "a",
        "operation": "UPDATE", "userInfo": {"username": "alice"},
        "object": {"spec": {"template": {"spec": new}}},
        "oldObject": {"spec": {"template": {"spec": old}}}}}  # fmt: skip
    return [json.dumps(review).encode()]


def _review(data: bytes) -> object:
    uid_from_prefix(data)
    return parse_review(strictjson.loads(data))


def _provider(data: bytes) -> object:
    return parse_request(strictjson.loads(data))


def _provider_seeds() -> list[bytes]:
    doc = {"apiVersion": "externaldata.gatekeeper.sh/v1beta1", "kind": "ProviderRequest",
           "request": {"keys": ["[team-a]r.example/a:v1", "r.example/b@sha256:" + "c" * 64]}}  # fmt: skip
    return [json.dumps(doc).encode()]


def _text(parse: Callable[[str], object]) -> Callable[[bytes], object]:
    def run(data: bytes) -> object:
        text = data.decode("latin-1")  # headers are bytes on the wire; any byte may come
        clip(text)
        return parse(text)

    return run


@functools.cache
def _evidence() -> tuple[Any, bytes, bytes]:
    pki = make_pki(ocsp=("http://ocsp.invalid/",), crl=(point("http://crl.invalid/ca.crl"),))
    return pki, make_crl(pki.ca), make_ocsp(pki.leaf.cert, pki.ca)


class _OneAnswer:
    """A revocation source that answers every OCSP and CRL request with the fuzzed bytes."""

    def __init__(self, ocsp: bytes | None, crl: bytes | None) -> None:
        self._ocsp, self._crl = ocsp, crl

    def ocsp(self, request: bytes, url: str) -> bytes | None:
        return self._ocsp

    def crl(self, url: str) -> bytes | None:
        return self._crl

    def offline_crls(self, issuer: x509.Name) -> list[bytes]:
        return []

    def crl_verified(self, url: str, raw: bytes) -> None:
        pass


def _crl(data: bytes) -> object:
    pki = _evidence()[0]
    return revocation.check_chain(pki.chain.certs, _OneAnswer(None, data), NOW)


def _ocsp(data: bytes) -> object:
    pki = _evidence()[0]
    return revocation.check_chain(pki.chain.certs, _OneAnswer(data, None), NOW)


def _timestamp(data: bytes) -> object:
    chain = _signing()[0]
    return verify_timestamp(data, b"signature", [chain.root])


def _token(data: bytes) -> object:
    return parse_token_response(data, "https://auth.example/token")


def _payload_seeds() -> list[bytes]:
    subject = _signing()[1]
    artifact = {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.size}
    return [json.dumps({"targetArtifact": artifact}).encode()]


TARGETS: tuple[Target, ...] = (
    Target("admission-review", _review, _review_seeds),
    Target("provider-request", _provider, _provider_seeds),
    Target("manifest", lambda d: parse_manifest(d, OCI_MANIFEST, compute_digest(d), "fuzz"), _manifest_seeds),
    Target(
        "index",
        lambda d: parse_manifest(d, OCI_INDEX, compute_digest(d), "fuzz", max_entries=1000),
        _index_seeds,
    ),
    Target(
        "referrers-response", lambda d: parse_manifest(d, OCI_INDEX, compute_digest(d), "fuzz"), _index_seeds
    ),
    Target("jws", _verify(JWS), lambda: [_envelopes()[JWS]], typed=()),  # verification never raises
    Target("cose", _verify(COSE), lambda: [_envelopes()[COSE]], typed=()),
    Target(
        "envelope-parse",
        lambda d: parse_envelope(JWS if d[:1] == b"{" else COSE, d),
        lambda: list(_envelopes().values()),
    ),
    Target("payload", parse_payload, _payload_seeds),
    Target(
        "certificate",
        lambda d: verify_signature(
            JWS, _with_x5c(d), _signing()[1], policy=_signing()[2], store=_signing()[3], now=NOW
        ),
        lambda: [_signing()[0].certs[0].public_bytes(_der())],
        typed=(),
    ),
    Target("crl", _crl, lambda: [_evidence()[1]], typed=()),  # the rules make any evidence "unknown"
    Target("ocsp", _ocsp, lambda: [_evidence()[2]], typed=()),
    Target("timestamp-token", _timestamp, lambda: [bytes.fromhex("300d06092a864886f70d010702a000")]),
    Target("token-response", _token, lambda: [b'{"token":"abc","access_token":"abc","expires_in":300}']),
    Target("link-header", _text(next_link), lambda: [b'</v2/a/referrers/sha256:1?n=2>; rel="next"']),
    Target(
        "www-authenticate",
        _text(parse_challenges),
        lambda: [b'Bearer realm="https://auth.example/token",service="r",scope="repository:a:pull"'],
    ),
    Target("strict-json", strictjson.loads, lambda: [b'{"a":[1,2.5,"x",null,true,{"b":-0}]}']),
)


def _der() -> Any:
    from cryptography.hazmat.primitives.serialization import Encoding  # noqa: PLC0415

    return Encoding.DER


def _with_x5c(cert_der: bytes) -> bytes:
    """The signed JWS with its leaf certificate replaced by ``cert_der`` (the chain is unsigned)."""
    import base64  # noqa: PLC0415

    doc = json.loads(_envelopes()[JWS])
    doc["header"]["x5c"][0] = base64.b64encode(cert_der).decode()
    return json.dumps(doc).encode()


def check(target: Target, data: bytes) -> BaseException | None:
    """None when ``target`` answered or raised a typed error; else the exception (a finding)."""
    try:
        target.run(data)
    except target.typed:
        return None
    except BaseException as exc:  # every other exception is what fuzzing looks for
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return exc
    return None

"""Verifying envelopes made here (webhook.notary.signer) against chains with every property that matters.

Pure: a fixed ``now``, certificates from tests/helpers/codesign.py, no registry.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import random
import time
from typing import Any

import cbor2
import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.helpers.codesign import Chain, LeafSpec, make_chain
from webhook.notary.envelope import COSE, JWS, SCHEME_SIGNING_AUTHORITY, EnvelopeError, parse_envelope
from webhook.notary.signer import SignRequest, sign
from webhook.notary.trustpolicy import parse_trust_policy
from webhook.notary.truststore import TrustStore
from webhook.notary.verifier import SignatureOutcome, Status, verify_signature
from webhook.oci.model import OCI_MANIFEST, Descriptor

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
TARGET = Descriptor(OCI_MANIFEST, "sha256:" + "ab" * 32, 528)


def policy(
    level: str = "strict",
    stores: tuple[str, ...] = ("ca:test",),
    identities: tuple[str, ...] = ("*",),
    **verification: Any,
) -> Any:
    doc = {
        "version": "1.0",
        "trustPolicies": [
            {
                "name": "p",
                "registryScopes": ["*"],
                "signatureVerification": {"level": level, **verification},
                "trustStores": list(stores),
                "trustedIdentities": list(identities),
            }
        ],
    }
    return parse_trust_policy(json.dumps(doc)).policies[0]


def store_for(chain: Chain, kind: str = "ca") -> TrustStore:
    return TrustStore({(kind, "test"): (chain.root,)})


def request(chain: Chain, envelope: str = JWS, **kw: Any) -> SignRequest:
    return SignRequest(
        target=kw.pop("target", TARGET),
        key=chain.leaf_key,
        chain=kw.pop("certs", chain.certs),
        signing_time=kw.pop("signing_time", NOW - dt.timedelta(minutes=1)),
        envelope=envelope,
        **kw,
    )


def verify(
    envelope: bytes,
    media_type: str,
    chain: Chain,
    pol: Any = None,
    store: TrustStore | None = None,
    *,
    now: dt.datetime = NOW,
    target: Descriptor = TARGET,
) -> SignatureOutcome:
    return verify_signature(
        media_type, envelope, target, policy=pol or policy(), store=store or store_for(chain), now=now
    )


def status(outcome: SignatureOutcome, check: str) -> Status:
    found = outcome.check(check)
    assert found is not None
    return found.status


@pytest.mark.parametrize("envelope", [JWS, COSE])
@pytest.mark.parametrize("key", ["ec-p256", "ec-p384", "ec-p521", "rsa-2048", "rsa-3072", "rsa-4096"])
def test_round_trip(key: str, envelope: str) -> None:
    chain = make_chain(LeafSpec(key=key))
    outcome = verify(sign(request(chain, envelope)), envelope, chain)
    assert outcome.verified, outcome.reason
    assert outcome.signer is not None and "CN=signer" in outcome.signer.subject
    assert [c.status for c in outcome.checks] == [Status.PASSED] * 5


@pytest.mark.parametrize("envelope", [JWS, COSE])
def test_signing_authority_scheme(envelope: str) -> None:
    chain = make_chain()
    signed = sign(request(chain, envelope, scheme=SCHEME_SIGNING_AUTHORITY))
    sa_policy = policy(stores=("signingAuthority:test",))
    assert verify(signed, envelope, chain, sa_policy, store_for(chain, "signingAuthority")).verified
    # The same root in a "ca" store does not vouch for a signing authority (nor the reverse).
    outcome = verify(signed, envelope, chain, policy(), store_for(chain, "ca"))
    assert not outcome.verified and status(outcome, "authenticity") is Status.FAILED
    plain = sign(request(chain, envelope))
    assert not verify(plain, envelope, chain, sa_policy, store_for(chain, "signingAuthority")).verified


def test_signing_authority_time_outside_chain_validity() -> None:
    chain = make_chain()
    signed = sign(request(chain, scheme=SCHEME_SIGNING_AUTHORITY, signing_time=NOW - dt.timedelta(days=400)))
    sa_policy = policy(stores=("signingAuthority:test",))
    outcome = verify(signed, JWS, chain, sa_policy, store_for(chain, "signingAuthority"))
    assert not outcome.verified and status(outcome, "authenticTimestamp") is Status.FAILED


@pytest.mark.parametrize(
    ("level", "verified", "authenticity"),
    [("strict", False, Status.FAILED), ("permissive", False, Status.FAILED), ("audit", True, Status.LOGGED)],
)
def test_untrusted_root_by_level(level: str, verified: bool, authenticity: Status) -> None:
    chain = make_chain()
    outcome = verify(sign(request(chain)), JWS, chain, policy(level), store_for(make_chain()))
    assert outcome.verified is verified
    assert status(outcome, "authenticity") is authenticity


@pytest.mark.parametrize(
    ("level", "verified", "want"),
    [("strict", False, Status.FAILED), ("permissive", True, Status.LOGGED), ("audit", True, Status.LOGGED)],
)
def test_expiry_and_expired_chain_by_level(level: str, verified: bool, want: Status) -> None:
    chain = make_chain()
    expired = sign(
        request(chain, expiry=NOW - dt.timedelta(seconds=1), signing_time=NOW - dt.timedelta(hours=1))
    )
    outcome = verify(expired, JWS, chain, policy(level))
    assert outcome.verified is verified and status(outcome, "expiry") is want
    later = NOW + dt.timedelta(days=60)  # the leaf is valid for 30 days
    outcome = verify(sign(request(chain)), JWS, chain, policy(level), now=later)
    assert outcome.verified is verified and status(outcome, "authenticTimestamp") is want


def test_not_yet_valid_certificate() -> None:
    chain = make_chain(LeafSpec(not_before=dt.timedelta(days=2), not_after=dt.timedelta(days=30)))
    outcome = verify(sign(request(chain)), JWS, chain)
    assert status(outcome, "authenticTimestamp") is Status.FAILED and "not valid until" in outcome.reason


def test_revocation_skip_override_and_enforced_failure_stops_the_run() -> None:
    chain = make_chain()
    outcome = verify(sign(request(chain)), JWS, chain, policy(override={"revocation": "skip"}))
    assert outcome.verified and status(outcome, "revocation") is Status.SKIPPED
    outcome = verify(sign(request(chain)), JWS, chain, policy(), store_for(make_chain()))
    assert [status(outcome, c) for c in ("expiry", "authenticTimestamp", "revocation")] == [
        Status.SKIPPED
    ] * 3


@pytest.mark.parametrize(
    ("identity", "verified"),
    [
        ("x509.subject: C=US, ST=WA, O=Referee Test", True),
        ("x509.subject: C=US, ST=WA, O=Referee Test, CN=signer, L=Seattle", True),
        ("x509.subject: C=US, ST=WA, O=Referee Test, CN=someone", False),
        ("x509.subject: C=CA, ST=WA, O=Referee Test", False),
    ],
)
def test_trusted_identity(identity: str, verified: bool) -> None:
    chain = make_chain()
    outcome = verify(sign(request(chain)), JWS, chain, policy(identities=(identity,)))
    assert outcome.verified is verified


def test_signature_for_another_artifact() -> None:
    chain = make_chain()
    other = Descriptor(OCI_MANIFEST, "sha256:" + "cd" * 32, 528)
    outcome = verify(sign(request(chain, target=other)), JWS, chain, policy("audit"))
    assert not outcome.verified and status(outcome, "integrity") is Status.FAILED
    assert "not for this image" in outcome.reason
    resized = Descriptor(OCI_MANIFEST, TARGET.digest, 529)
    assert not verify(sign(request(chain, target=resized)), JWS, chain).verified


# --- certificates that break the code-signing profile ----------------------------------------------


@pytest.mark.parametrize(
    ("leaf", "phrase"),
    [
        (LeafSpec(eku=[ExtendedKeyUsageOID.SERVER_AUTH]), "serverAuth"),
        (LeafSpec(eku=[ExtendedKeyUsageOID.CODE_SIGNING, ExtendedKeyUsageOID.CLIENT_AUTH]), "clientAuth"),
        (LeafSpec(eku=[ExtendedKeyUsageOID.TIME_STAMPING]), "timeStamping"),
        (LeafSpec(eku=[ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE]), "anyExtendedKeyUsage"),
        (LeafSpec(key_encipherment=True), "keyEncipherment"),
        (LeafSpec(digital_signature=False), "digitalSignature"),
        (LeafSpec(ca=True), "CA certificate"),
    ],
)
def test_leaf_profile(leaf: LeafSpec, phrase: str) -> None:
    chain = make_chain(leaf)
    outcome = verify(sign(request(chain)), JWS, chain, policy("audit"))
    assert not outcome.verified and status(outcome, "integrity") is Status.FAILED
    assert phrase in outcome.reason


def test_no_eku_is_allowed() -> None:
    chain = make_chain(LeafSpec(eku=None))
    assert verify(sign(request(chain)), JWS, chain).verified


def test_missing_intermediate() -> None:
    chain = make_chain()
    outcome = verify(sign(request(chain, certs=(chain.certs[0], chain.root))), JWS, chain)
    assert not outcome.verified and "not issued by the next" in outcome.reason


def test_chain_without_root_and_with_a_loop() -> None:
    chain = make_chain()
    no_root = verify(sign(request(chain, certs=chain.certs[:2])), JWS, chain)
    assert not no_root.verified and "not a self-signed root" in no_root.reason
    looped = verify(sign(request(chain, certs=(*chain.certs[:2], chain.certs[1], chain.root))), JWS, chain)
    assert not looped.verified and "appears twice" in looped.reason


def test_ten_thousand_certificates_are_refused_quickly() -> None:
    chain = make_chain()
    envelope = json.loads(sign(request(chain)))
    for count, phrase in ((200, "over 16"), (10_000, "-byte cap")):  # the count cap, then the size cap
        envelope["header"]["x5c"] = envelope["header"]["x5c"][:1] * count
        start = time.monotonic()
        outcome = verify(json.dumps(envelope).encode(), JWS, chain)
        assert not outcome.verified and phrase in outcome.reason
        assert time.monotonic() - start < 1


# --- envelopes that break their specification ------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jws_with(chain: Chain, mutate: Any, resign: bool = True) -> bytes:
    """A JWS whose protected header is changed by ``mutate`` and (by default) signed again, so only
    the rule under test can fail."""
    from webhook.notary.algorithms import algorithm_for  # noqa: PLC0415
    from webhook.notary.signer import raw_signature  # noqa: PLC0415

    envelope = json.loads(sign(request(chain)))
    protected = json.loads(base64.urlsafe_b64decode(envelope["protected"] + "=="))
    mutate(protected)
    envelope["protected"] = b64url(json.dumps(protected).encode())
    if resign:
        signed = f"{envelope['protected']}.{envelope['payload']}".encode()
        envelope["signature"] = b64url(raw_signature(chain.leaf_key, algorithm_for(chain.certs[0]), signed))
    return json.dumps(envelope).encode()


@pytest.mark.parametrize(
    ("mutate", "phrase"),
    [
        (lambda p: p.update(alg="none"), "alg 'none'"),
        (lambda p: p.update(alg="HS256"), "alg 'HS256'"),
        (lambda p: p.update(alg="RS256"), "alg 'RS256'"),
        (lambda p: p.update(alg="ES384"), "implies ES256"),
        (lambda p: p.pop("crit"), "crit"),
        (lambda p: p.update(crit=["alg", "io.cncf.notary.signingScheme"]), "'alg'"),
        (lambda p: p.update(crit=["io.cncf.notary.signingScheme", "io.cncf.notary.expiry"]), "expiry"),
        (lambda p: p.update(crit=[]), "crit"),
        (lambda p: p.update({"io.cncf.notary.signingScheme": "notary.x509.custom"}), "signing scheme"),
        (lambda p: p.pop("io.cncf.notary.signingTime"), "signingTime"),
        (lambda p: p.update({"io.cncf.notary.signingTime": "yesterday"}), "RFC 3339"),
        (
            lambda p: p.update({"io.cncf.notary.authenticSigningTime": "2026-01-01T00:00:00Z"}),
            "must not carry",
        ),
        (
            lambda p: p.update(
                {
                    "io.cncf.notary.expiry": p["io.cncf.notary.signingTime"],
                    "crit": [*p["crit"], "io.cncf.notary.expiry"],
                }
            ),
            "not after the signing time",
        ),
        (lambda p: p.update(cty="application/json"), "content type"),
        (
            lambda p: p.update({"acme.example.policy": "x", "crit": [*p["crit"], "acme.example.policy"]}),
            "unknown critical",
        ),
        (
            lambda p: p.update(
                {
                    "io.cncf.notary.verificationPlugin": "acme",
                    "crit": [*p["crit"], "io.cncf.notary.verificationPlugin"],
                }
            ),
            "plugin",
        ),
    ],
)
def test_jws_header_rules(mutate: Any, phrase: str) -> None:
    chain = make_chain()
    outcome = verify(jws_with(chain, mutate), JWS, chain, policy("audit"))
    assert not outcome.verified and status(outcome, "integrity") is Status.FAILED
    assert phrase in outcome.reason, outcome.reason


def test_non_critical_extended_attribute_is_fine() -> None:
    chain = make_chain()
    assert verify(jws_with(chain, lambda p: p.update({"acme.example.note": "hello"})), JWS, chain).verified


def test_tampered_payload_and_signature() -> None:
    chain = make_chain()
    envelope = json.loads(sign(request(chain)))
    envelope["payload"] = b64url(json.dumps({"targetArtifact": TARGET.to_json() | {"size": 1}}).encode())
    assert "does not verify" in verify(json.dumps(envelope).encode(), JWS, chain).reason
    changed = jws_with(
        chain, lambda p: p.update({"io.cncf.notary.signingTime": "2020-01-01T00:00:00Z"}), False
    )
    assert "does not verify" in verify(changed, JWS, chain).reason


@pytest.mark.parametrize(
    "raw",
    [
        b'{"payload":"a","payload":"b","protected":"x","header":{},"signature":"s"}',
        b'{"payload":"e30","protected":"e30","header":{},"signature":"AA","signatures":[]}',
        b'{"payload":"e30=","protected":"e30","header":{},"signature":"AA"}',
        b"",
        b"[]",
        b"\xff\xfe",
    ],
)
def test_malformed_jws(raw: bytes) -> None:
    with pytest.raises(EnvelopeError):
        parse_envelope(JWS, raw)


def test_duplicate_protected_header_member() -> None:
    chain = make_chain()
    envelope = json.loads(sign(request(chain)))
    protected = base64.urlsafe_b64decode(envelope["protected"] + "==").decode()
    envelope["protected"] = b64url(protected.replace('{"alg"', '{"alg":"ES256","alg"', 1).encode())
    with pytest.raises(EnvelopeError) as info:
        parse_envelope(JWS, json.dumps(envelope).encode())
    assert "duplicate" in str(info.value)


def cose_parts(chain: Chain) -> list[Any]:
    tag = cbor2.loads(sign(request(chain, COSE)))
    return list(tag.value)


def test_cose_rules() -> None:
    chain = make_chain()
    good = sign(request(chain, COSE))
    with pytest.raises(EnvelopeError, match="tagged COSE_Sign1"):
        parse_envelope(COSE, good[1:])  # untagged
    protected_raw, unprotected, payload, signature = cose_parts(chain)
    protected = cbor2.loads(protected_raw)
    protected["io.cncf.notary.signingTime"] = cbor2.CBORTag(0, "2026-01-01T00:00:00Z")
    bad_time = cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps(protected), unprotected, payload, signature]))
    with pytest.raises(EnvelopeError, match="tag-0"):
        parse_envelope(COSE, bad_time)
    with pytest.raises(EnvelopeError, match="detached"):
        parse_envelope(COSE, cbor2.dumps(cbor2.CBORTag(18, [protected_raw, unprotected, None, signature])))
    assert protected_raw[0] == 0xA5  # a map of five entries
    dup = b"\xa6" + protected_raw[1:] + cbor2.dumps(1) + cbor2.dumps(-7)  # a sixth: alg again
    with pytest.raises(EnvelopeError, match="Duplicate"):
        parse_envelope(COSE, cbor2.dumps(cbor2.CBORTag(18, [dup, unprotected, payload, signature])))
    trailing = protected_raw + b"\x00"
    with pytest.raises(EnvelopeError, match="after its CBOR item"):
        parse_envelope(COSE, cbor2.dumps(cbor2.CBORTag(18, [trailing, unprotected, payload, signature])))
    with pytest.raises(EnvelopeError, match="after its CBOR item"):
        parse_envelope(COSE, good + b"\x00")


def test_unsupported_envelope_type_and_size_cap() -> None:
    with pytest.raises(EnvelopeError, match="unsupported signature envelope type"):
        parse_envelope("application/pkcs7-signature", b"x")
    with pytest.raises(EnvelopeError, match="cap"):
        parse_envelope(JWS, b" " * (32 * 1024 * 1024 + 1))


# Mangled certificates make cryptography warn about what it will refuse one day.
@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("envelope", [JWS, COSE])
def test_random_mutations_never_crash_and_never_verify_fuzz(envelope: str) -> None:
    """Bounded fuzzing: flip, drop and insert bytes in a valid envelope for a fixed time (2 s, or
    REFEREE_FUZZ_SECONDS). Every result is an outcome (no exception), and a mutated envelope verifies
    only if what the signature covers is unchanged."""
    chain = make_chain()
    good = sign(request(chain, envelope))
    assert verify(good, envelope, chain).verified
    rng = random.Random(1234)  # noqa: S311 (reproducible mutations, not cryptography)
    deadline = time.monotonic() + float(os.environ.get("REFEREE_FUZZ_SECONDS", "2"))
    runs = 0
    while time.monotonic() < deadline:
        data = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(data))
            op = rng.random()
            if op < 0.6:
                data[i] ^= 1 << rng.randrange(8)
            elif op < 0.8:
                del data[i]
            else:
                data.insert(i, rng.randrange(256))
        mutated = bytes(data)
        outcome = verify(mutated, envelope, chain)
        if outcome.verified:
            # Only what the signature does not cover may have changed (e.g. the signing agent).
            info, original = parse_envelope(envelope, mutated), parse_envelope(envelope, good)
            assert (info.signed_bytes, info.signature) == (original.signed_bytes, original.signature)
        runs += 1
    assert runs > 50
    for size in (0, 1, 10, 1000):
        assert not verify(rng.randbytes(size), envelope, chain).verified


class _FakeRevocationSource:
    """In-process fake (this is the pure unit level; the real OpenSSL responder is in the
    integration tests): answers every OCSP request with a response signed by the issuer."""

    def __init__(self, chain: Chain, status: str) -> None:
        self.chain, self.status = chain, status

    def ocsp(self, request: bytes, url: str) -> bytes | None:
        from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
        from cryptography.x509 import ocsp  # noqa: PLC0415

        if self.status == "unreachable":
            return None
        leaf, issuer, key = self.chain.certs[0], self.chain.certs[1], self.chain.issuer_key
        assert key is not None
        cert_status = ocsp.OCSPCertStatus.REVOKED if self.status == "revoked" else ocsp.OCSPCertStatus.GOOD
        builder = ocsp.OCSPResponseBuilder().add_response(
            cert=leaf, issuer=issuer, algorithm=hashes.SHA256(), cert_status=cert_status,
            this_update=NOW - dt.timedelta(minutes=5), next_update=NOW + dt.timedelta(hours=1),
            revocation_time=NOW - dt.timedelta(hours=1) if self.status == "revoked" else None,
            revocation_reason=None,
        ).responder_id(ocsp.OCSPResponderEncoding.HASH, issuer)  # fmt: skip
        return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def crl(self, url: str) -> bytes | None:
        return None

    def offline_crls(self, issuer: Any) -> list[bytes]:
        return []

    def crl_verified(self, url: str, raw: bytes) -> None:
        pass


@pytest.mark.parametrize(
    ("level", "answer", "verified", "want"),
    [
        ("strict", "good", True, Status.PASSED),
        ("strict", "revoked", False, Status.FAILED),
        ("permissive", "revoked", True, Status.LOGGED),
        ("audit", "revoked", True, Status.LOGGED),
        ("strict", "unreachable", False, Status.FAILED),
        ("permissive", "unreachable", True, Status.LOGGED),
    ],
)
def test_revocation_by_level(level: str, answer: str, verified: bool, want: Status) -> None:
    chain = make_chain(LeafSpec(ocsp_url="http://ocsp.invalid"))
    outcome = verify_signature(
        JWS, sign(request(chain)), TARGET, policy=policy(level), store=store_for(chain), now=NOW,
        revocation_source=_FakeRevocationSource(chain, answer),
    )  # fmt: skip
    assert outcome.verified is verified
    assert status(outcome, "revocation") is want


class _RecordingRevocationSource:
    """Records every URL the verifier asks for; answers nothing."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def ocsp(self, request: bytes, url: str) -> bytes | None:
        self.urls.append(url)
        return None

    def crl(self, url: str) -> bytes | None:
        self.urls.append(url)
        return None

    def offline_crls(self, issuer: Any) -> list[bytes]:
        return []


@pytest.mark.parametrize("level", ["audit", "strict"])
def test_untrusted_chain_cannot_make_referee_fetch_its_revocation_urls(level: str) -> None:
    # Attack: anyone who can push a signature next to an image (any repository of an allowed
    # registry) signs it with a chain of their own whose OCSP and CRL URLs name an internal host.
    # Where authenticity is only logged (level audit), the chain is not trusted, yet its URLs were
    # fetched: a pod spec made Referee connect to a host the operator never listed. A chain that
    # does not reach the trust store has no revocation status worth asking anyone for.
    attacker = make_chain(
        LeafSpec(ocsp_url="http://169.254.169.254/ocsp", crl_url="http://10.0.0.1:8080/crl")
    )
    source = _RecordingRevocationSource()
    verify_signature(
        JWS, sign(request(attacker)), TARGET, policy=policy(level), store=store_for(make_chain()), now=NOW,
        revocation_source=source,
    )  # fmt: skip
    assert source.urls == []

"""Revocation that cannot be sidestepped: crafted OCSP answers and CRLs, every one validly signed by
the certificate's CA, served on loopback by a fake endpoint, fetched by the real HTTP fetcher and
judged through ``verify_signature``.

Each test builds a chain whose signing certificate is revoked (or, for the rules where Referee used
to be stricter than the specification, one that is not), the evidence, and the server. Where notation
(notation-go 1.3 with notation-core-go 1.3) answers differently, the docstring says which answer is
right and why.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.helpers.evidence_fake import EvidenceServerFake, evidence_server_fake
from tests.helpers.fake_registry import fake_registry
from tests.helpers.revocation import (
    UNKNOWN_OID,
    Entry,
    Issued,
    Pki,
    extension_der,
    invalidity_date_der,
    issue,
    make_crl,
    make_ocsp,
    make_pki,
    point,
    scope,
    splice_ocsp,
)
from tests.helpers.tsa import local_tsa
from webhook.cli.sign import TimestampAuthority
from webhook.deadline import Deadline
from webhook.notary.envelope import JWS, SCHEME_SIGNING_AUTHORITY, SCHEME_X509
from webhook.notary.signer import SignRequest, Timestamper, sign
from webhook.notary.trustpolicy import TrustPolicy, parse_trust_policy
from webhook.notary.truststore import TrustStore
from webhook.notary.verifier import Check, SignatureOutcome, Status, verify_signature
from webhook.oci.model import OCI_MANIFEST, Descriptor
from webhook.trust.revocation import HttpRevocationSource

TARGET = Descriptor(OCI_MANIFEST, "sha256:" + "ab" * 32, 528)
R = x509.ReasonFlags
HOLD, REMOVE, SUPERSEDED = R.certificate_hold, R.remove_from_crl, R.superseded


@pytest.fixture
def fake() -> Any:
    with evidence_server_fake() as server:
        yield server


def policy(level: str = "strict", stores: tuple[str, ...] = ("ca:test",)) -> TrustPolicy:
    doc = {
        "version": "1.0",
        "trustPolicies": [
            {
                "name": "p",
                "registryScopes": ["*"],
                "signatureVerification": {"level": level},
                "trustStores": list(stores),
                "trustedIdentities": ["*"],
            }
        ],
    }
    return parse_trust_policy(json.dumps(doc)).policies[0]


def verify(
    pki: Pki,
    source: HttpRevocationSource | None = None,
    level: str = "strict",
    *,
    scheme: str = SCHEME_X509,
    signing_time: dt.datetime | None = None,
    timestamper: Timestamper | None = None,
    tsa_root: x509.Certificate | None = None,
) -> SignatureOutcome:
    """Sign with ``pki``'s leaf and verify, asking ``source`` (default: the real HTTP fetcher)."""
    chain = pki.chain
    when = signing_time or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    envelope = sign(
        SignRequest(TARGET, chain.leaf_key, chain.certs, when, scheme=scheme, envelope=JWS), timestamper
    )
    kind = "signingAuthority" if scheme == SCHEME_SIGNING_AUTHORITY else "ca"
    stores = {(kind, "test"): (chain.root,)}
    names: tuple[str, ...] = (f"{kind}:test",)
    if tsa_root is not None:
        stores[("tsa", "test")] = (tsa_root,)
        names = (*names, "tsa:test")
    return verify_signature(
        JWS, envelope, TARGET, policy=policy(level, names), store=TrustStore(stores),
        now=dt.datetime.now(dt.UTC), revocation_source=source or HttpRevocationSource(),
    )  # fmt: skip


def check(outcome: SignatureOutcome, name: str = "revocation") -> Check:
    found = outcome.check(name)
    assert found is not None
    return found


def refused(outcome: SignatureOutcome, *phrases: str, name: str = "revocation") -> None:
    result = check(outcome, name)
    assert not outcome.verified and result.status is Status.FAILED, outcome
    for phrase in phrases:
        assert phrase in result.message, result.message


def passed(outcome: SignatureOutcome) -> None:
    assert outcome.verified, outcome.reason
    assert check(outcome).status is Status.PASSED


def crl_pki(fake: EvidenceServerFake, *points: x509.DistributionPoint, **kw: Any) -> Pki:
    return make_pki(crl=points or (point(fake.url("/ca.crl")),), **kw)


def revoked(pki: Pki, reason: x509.ReasonFlags | None = None, **kw: Any) -> Entry:
    return Entry(pki.leaf.cert.serial_number, reason, **kw)


# --- 1. Evidence that is complete ------------------------------------------------------------------


def test_delta_crl_named_by_the_base_crl_is_fetched_and_its_revocation_counts(
    fake: EvidenceServerFake,
) -> None:
    """A weekly base CRL and a daily delta: today's revocation is only in the delta. notation agrees
    (notation-core-go fetches the delta the base CRL's freshestCRL names)."""
    pki = crl_pki(fake)
    delta_point = point(fake.url("/ca-delta.crl"))
    fake.routes["/ca.crl"] = make_crl(pki.ca, number=10, freshest=(delta_point,))
    fake.routes["/ca-delta.crl"] = make_crl(pki.ca, (revoked(pki, SUPERSEDED),), number=11, delta_of=10)
    refused(verify(pki), "revoked", "delta CRL")
    assert fake.asked("/ca-delta.crl")


def test_delta_crl_named_by_the_certificate_is_fetched_and_its_revocation_counts(
    fake: EvidenceServerFake,
) -> None:
    """RFC 5280 4.2.1.15: the certificate's freshestCRL says where its deltas are. notation refuses
    this chain too, but as "unknown": notation-core-go does not support a freshestCRL in the
    certificate and gives up; Referee fetches it, as the specification asks of delta CRLs."""
    pki = crl_pki(fake, freshest=(point(fake.url("/delta.crl")),))
    fake.routes["/ca.crl"] = make_crl(pki.ca, number=3)
    fake.routes["/delta.crl"] = make_crl(pki.ca, (revoked(pki),), number=4, delta_of=3)
    refused(verify(pki), "revoked", "delta CRL")


def test_delta_crl_that_cannot_be_had_makes_the_status_unknown_not_good(fake: EvidenceServerFake) -> None:
    """Spec "Revocation Checking with Delta CRLs": a delta that cannot be retrieved is "revocation
    unavailable". notation agrees."""
    pki = crl_pki(fake)
    fake.routes["/ca.crl"] = make_crl(pki.ca, number=10, freshest=(point(fake.url("/gone.crl")),))
    refused(verify(pki), "unknown", "delta CRL", "cannot be had")


@pytest.mark.parametrize(
    ("delta", "phrase"),
    [
        ({"number": 12, "delta_of": 11}, "newer than the complete CRL"),  # built on a base not served
        ({"number": 9, "delta_of": 8}, "not newer than the complete CRL"),  # older than the base
        ({"number": 11, "delta_of": 10, "scope": scope(ca_only=True)}, "scope"),
    ],
)
def test_delta_crl_that_does_not_belong_to_the_base_is_not_merged(
    fake: EvidenceServerFake, delta: dict[str, Any], phrase: str
) -> None:
    """RFC 5280 5.2.4: a delta combines with a complete CRL whose number is at least its
    BaseCRLNumber, of the same scope; it must be newer to add anything. A delta that cannot be
    combined leaves the base incomplete: unknown, never good. notation checks the numbers (so agrees
    on the first two) but not the scope: it merges a CA-only delta and answers good."""
    pki = crl_pki(fake)
    fake.routes["/ca.crl"] = make_crl(pki.ca, number=10, freshest=(point(fake.url("/d.crl")),))
    fake.routes["/d.crl"] = make_crl(pki.ca, **delta)
    refused(verify(pki), "unknown", phrase)


def test_revocation_in_the_second_distribution_point_is_not_hidden_by_the_first(
    fake: EvidenceServerFake,
) -> None:
    """Reason-partitioned CRLs (RFC 5280 6.3.3): the key-compromise CRL does not list the
    certificate, the CRL for every other reason does. The union must cover all reasons; the first
    CRL that answers is not the whole answer. notation agrees (it reads every distribution point)."""
    compromise = frozenset({R.key_compromise, R.ca_compromise})
    others = frozenset(set(R) - compromise - {R.unspecified, R.remove_from_crl})
    pki = crl_pki(
        fake, point(fake.url("/kc.crl"), reasons=compromise), point(fake.url("/other.crl"), reasons=others)
    )
    fake.routes["/kc.crl"] = make_crl(pki.ca, scope=scope(fake.url("/kc.crl"), reasons=compromise))
    fake.routes["/other.crl"] = make_crl(
        pki.ca, (revoked(pki, SUPERSEDED),), scope=scope(fake.url("/other.crl"), reasons=others)
    )
    refused(verify(pki), "revoked")


@pytest.mark.parametrize(
    ("crl", "phrase"),
    [
        ({"number": 5, "delta_of": 4}, "delta CRL is served where a complete CRL"),
        ({"scope": scope(ca_only=True)}, "CA certificates only"),
        ({"scope": scope(reasons=frozenset({R.key_compromise}))}, "only some revocation reasons"),
        ({"scope": scope("http://elsewhere.example/part2.crl")}, "another distribution point"),
    ],
)
def test_crl_out_of_scope_is_not_a_complete_answer(
    fake: EvidenceServerFake, crl: dict[str, Any], phrase: str
) -> None:
    """RFC 5280 6.3.3 (b): a delta CRL, a CA-only CRL for an end-entity certificate, a CRL for some
    reasons only, or the CRL of another distribution point says nothing about the rest. The real
    base CRL lists the certificate; the one served does not. notation takes each of these as a
    complete CRL (notation-core-go skips the issuingDistributionPoint extension and does not look
    for a deltaCRLIndicator in a base) and answers good: Referee is right, by RFC 5280 5.2.4-5.2.5."""
    pki = crl_pki(fake)
    fake.routes["/ca.crl"] = make_crl(pki.ca, **crl)
    refused(verify(pki), "unknown", phrase)


def test_user_only_crl_does_not_answer_for_an_intermediate(fake: EvidenceServerFake) -> None:
    """RFC 5280 6.3.3 (b)(2)(ii): a CRL for end-entity certificates only cannot clear a CA
    certificate. The intermediate is revoked; the root's CRL served covers users only. notation
    answers good (see above)."""
    root = issue("Revocation Test Root", None, ca=True)
    ca = issue("Revocation Test CA", root, ca=True, crl=(point(fake.url("/root.crl")),))
    pki = Pki(root, ca, issue("signer", ca))
    fake.routes["/root.crl"] = make_crl(root, scope=scope(user_only=True))
    refused(verify(pki), "unknown", "end-entity certificates only")
    fake.routes["/root.crl"] = make_crl(root, (Entry(ca.cert.serial_number),))
    refused(verify(pki), "Revocation Test CA", "revoked")


@pytest.mark.parametrize("newest_first", [False, True])
@pytest.mark.parametrize("numbered", [True, False])
def test_offline_crl_files_newest_complete_crl_decides(
    tmp_path: Path, newest_first: bool, numbered: bool
) -> None:
    """During a rotation an operator has yesterday's CRL (still within its nextUpdate) and today's,
    which lists the certificate. The newest decides (CRL number, then thisUpdate), whatever the
    order of the files. notation has no offline CRL files."""
    pki = make_pki(crl=(point("http://crl.invalid/ca.crl"),))
    old = make_crl(pki.ca, number=1 if numbered else None, this_update=dt.timedelta(hours=-20))
    new = make_crl(pki.ca, (revoked(pki),), number=2 if numbered else None)
    files = []
    for i, data in enumerate([new, old] if newest_first else [old, new]):
        files.append(tmp_path / f"{i}.crl")
        files[-1].write_bytes(data)
    refused(verify(pki, HttpRevocationSource(network=False, crl_files=files)), "revoked")


def test_offline_delta_crl_file_is_merged(tmp_path: Path) -> None:
    """Offline files: the base and the delta that belongs to it are merged."""
    pki = make_pki(crl=(point("http://crl.invalid/ca.crl"),))
    (tmp_path / "base.crl").write_bytes(make_crl(pki.ca, number=7))
    (tmp_path / "delta.crl").write_bytes(make_crl(pki.ca, (revoked(pki),), number=8, delta_of=7))
    files = [tmp_path / "base.crl", tmp_path / "delta.crl"]
    refused(verify(pki, HttpRevocationSource(network=False, crl_files=files)), "revoked", "delta CRL")
    passed(verify(pki, HttpRevocationSource(network=False, crl_files=files[:1])))


# --- 2. Evidence that is current and authorised ----------------------------------------------------


def ocsp_pki(fake: EvidenceServerFake, **kw: Any) -> Pki:
    return make_pki(ocsp=(fake.url("/ocsp"),), **kw)


def test_replayed_ocsp_good_without_next_update_is_stale(fake: EvidenceServerFake) -> None:
    """A "good" from three months ago without nextUpdate, replayed after the revocation. RFC 6960
    4.2.2.1 leaves its freshness to the client; notation treats it as expired, and so does Referee."""
    pki = ocsp_pki(fake)
    fake.routes["/ocsp"] = make_ocsp(
        pki.leaf.cert, pki.ca, this_update=dt.timedelta(days=-90), fresh_for=None
    )
    refused(verify(pki), "unknown", "no nextUpdate")


def test_crl_from_the_future_is_not_used(fake: EvidenceServerFake) -> None:
    """A CRL issued for next week (it does not list today's revocation) is not evidence today.
    RFC 5280 has no rule for a thisUpdate in the future; RFC 6960 4.2.2.1 calls such OCSP answers
    unreliable, and Referee treats CRLs alike. notation checks only nextUpdate and answers good."""
    pki = crl_pki(fake)
    fake.routes["/ca.crl"] = make_crl(
        pki.ca, this_update=dt.timedelta(days=7), next_update=dt.timedelta(days=14)
    )
    refused(verify(pki), "unknown", "from the future")


def responder(pki: Pki, **kw: Any) -> Issued:
    return issue("OCSP Responder", pki.ca, eku=(ExtendedKeyUsageOID.OCSP_SIGNING,), **kw)


def test_expired_delegated_ocsp_responder_is_not_believed(fake: EvidenceServerFake) -> None:
    """RFC 6960 4.2.2.2: the responder's certificate is part of what is validated, so it must be
    valid now. Its key, retired last month, signs "good" for the revoked certificate. notation
    (x/crypto/ocsp) checks only that the CA issued it and answers good: Referee is right."""
    pki = ocsp_pki(fake)
    old = responder(pki, nocheck=True, valid=(dt.timedelta(days=-60), dt.timedelta(days=-30)))
    fake.routes["/ocsp"] = make_ocsp(pki.leaf.cert, pki.ca, signer=old, include=(old.cert,))
    refused(verify(pki), "unknown", "not valid now")


def test_revoked_delegated_ocsp_responder_without_nocheck_is_not_believed(fake: EvidenceServerFake) -> None:
    """Spec (OCSP step 4) and RFC 6960 4.2.2.2.1: a responder certificate without
    id-pkix-ocsp-nocheck is checked by CRL. This one is revoked, so its "good" is worthless.
    notation does not check the responder (a TODO in notation-core-go) and answers good."""
    pki = ocsp_pki(fake)
    delegated = responder(pki, crl=(point(fake.url("/ca.crl")),))
    fake.routes["/ocsp"] = make_ocsp(pki.leaf.cert, pki.ca, signer=delegated, include=(delegated.cert,))
    fake.routes["/ca.crl"] = make_crl(pki.ca, (Entry(delegated.cert.serial_number),))
    refused(verify(pki), "unknown", "OCSP Responder", "id-pkix-ocsp-nocheck", "revoked")
    fake.routes["/ca.crl"] = make_crl(pki.ca)  # not revoked: its answer counts
    passed(verify(pki))
    with_nocheck = responder(pki, nocheck=True)
    fake.routes["/ocsp"] = make_ocsp(pki.leaf.cert, pki.ca, signer=with_nocheck, include=(with_nocheck.cert,))
    passed(verify(pki))


def test_crl_signed_by_issuer_without_crl_sign_is_not_evidence(fake: EvidenceServerFake) -> None:
    """RFC 5280 6.3.3 (f): the CA's key usage does not include cRLSign, so a CRL signed with its key
    says nothing. notation agrees (Go's CheckSignatureFrom refuses it)."""
    pki = crl_pki(fake, ca_crl_sign=False)
    fake.routes["/ca.crl"] = make_crl(pki.ca)
    refused(verify(pki), "unknown", "cRLSign")


def critical_single(pki: Pki) -> bytes:
    raw = make_ocsp(pki.leaf.cert, pki.ca)
    return splice_ocsp(
        raw,
        pki.ca.key,
        single_extensions=(extension_der(UNKNOWN_OID.dotted_string, b"\x05\x00", critical=True),),
    )


@pytest.mark.parametrize(
    ("where", "phrase"),
    [("crl", "the CRL has unknown critical"), ("crl entry", "a CRL entry has unknown critical"),
     ("ocsp response", "the OCSP response has unknown critical"),
     ("ocsp single", "the OCSP single response has unknown critical")],
)  # fmt: skip
def test_unknown_critical_extension_makes_evidence_unusable(
    fake: EvidenceServerFake, where: str, phrase: str
) -> None:
    """RFC 5280 5.2 and 5.3 (a CRL, or any of its entries) and RFC 6960 4.4 with RFC 5280 4.2 (an
    OCSP response): a critical extension the client does not understand may change what the
    evidence means, so it is not used. notation agrees for the CRL and the single response; it
    ignores critical responseExtensions (x/crypto/ocsp does not look) and critical extensions on
    other CRL entries, and answers good there."""
    pki = make_pki(ocsp=(fake.url("/ocsp"),)) if where.startswith("ocsp") else crl_pki(fake)
    if where == "crl":
        fake.routes["/ca.crl"] = make_crl(pki.ca, unknown_critical=True)
    elif where == "crl entry":
        other = Entry(pki.leaf.cert.serial_number + 1, unknown_critical=True)
        fake.routes["/ca.crl"] = make_crl(pki.ca, (other,))
    elif where == "ocsp response":
        fake.routes["/ocsp"] = make_ocsp(pki.leaf.cert, pki.ca, unknown_critical=True)
    else:
        fake.routes["/ocsp"] = critical_single(pki)
    refused(verify(pki), "unknown", phrase)


def test_ocsp_answer_for_another_issuer_name_is_not_used(fake: EvidenceServerFake) -> None:
    """RFC 6960 4.1.1: the CertID is the hash of the issuer's name and key and the serial; all three
    must be this certificate's. A "good" for the same serial and key under another issuer name (a
    renamed CA that kept its key) is not about this certificate. notation (x/crypto/ocsp) matches
    the serial only and answers good."""
    pki = ocsp_pki(fake)
    real = make_ocsp(pki.leaf.cert, pki.ca)
    key_hash = ocsp.load_der_ocsp_response(real).issuer_key_hash
    fake.routes["/ocsp"] = make_ocsp(pki.leaf.cert, pki.ca, hashes_of=(b"\x01" * 20, key_hash))
    refused(verify(pki), "unknown", "does not cover")


# --- 3. No endpoint is overlooked ------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["HTTP://{}", "Http://{}", "  http://{} "])
@pytest.mark.parametrize("kind", ["ocsp", "crl"])
def test_endpoint_spelled_in_capitals_or_with_spaces_is_not_overlooked(
    fake: EvidenceServerFake, kind: str, spelling: str
) -> None:
    """URL schemes are case-insensitive (RFC 3986 3.1); surrounding spaces are not part of the URL.
    Such a certificate was taken for one without endpoints ("not revocable") and passed. notation
    (Go's url.Parse lowercases the scheme) agrees on the capitals; it refuses the spaces as unknown."""
    url = spelling.format(f"127.0.0.1:{fake.port}/{kind}")
    pki = make_pki(ocsp=(url,)) if kind == "ocsp" else make_pki(crl=(point(url),))
    fake.routes[f"/{kind}"] = (
        make_ocsp(pki.leaf.cert, pki.ca, "revoked") if kind == "ocsp" else make_crl(pki.ca, (revoked(pki),))
    )
    refused(verify(pki), "revoked")


@pytest.mark.parametrize(
    ("ocsp_urls", "crl_urls"),
    [((), ("https://{}/ca.crl",)), ((), ("ldap://{}/cn=CA?certificateRevocationList",)),
     (("ldap://{}/ocsp",), ()), (("https://{}/ocsp",), ())],
)  # fmt: skip
def test_endpoint_referee_cannot_fetch_makes_status_unknown_not_revocable(
    fake: EvidenceServerFake, ocsp_urls: tuple[str, ...], crl_urls: tuple[str, ...]
) -> None:
    """The spec supports http CRL URLs only, and RFC 6960's transport is http; an endpoint Referee
    cannot fetch still says the certificate can be revoked, so its status is unknown (notation
    agrees: "OCSPServer protocol ... is not supported", "unsupported scheme"). Nothing is fetched."""
    host = f"127.0.0.1:{fake.port}"
    pki = make_pki(
        ocsp=tuple(u.format(host) for u in ocsp_urls), crl=tuple(point(u.format(host)) for u in crl_urls)
    )
    refused(verify(pki), "unknown", "http URL")
    assert not fake.requests


# --- 4. The TSA chain ------------------------------------------------------------------------------


def test_revoked_timestamp_authority_fails_authentic_timestamp(
    fake: EvidenceServerFake, tmp_path: Path
) -> None:
    """Spec (timestamp verification) and notation-go (verifyTimestamp step 5): the TSA's chain is
    checked for revocation with the same machinery. The TSA's certificate is revoked by its root's
    CRL: the timestamp vouches for nothing. notation agrees."""
    pki = make_pki()
    with local_tsa(tmp_path / "tsa", crl_url=fake.url("/tsa.crl")) as tsa:
        assert isinstance(tsa.root_key, type(pki.ca.key))
        root = Issued(tsa.root, tsa.root_key)
        stamper = TimestampAuthority(tsa.url, tsa.root).stamp
        fake.routes["/tsa.crl"] = make_crl(root, (Entry(tsa.cert.serial_number, R.key_compromise),))
        outcome = verify(pki, timestamper=stamper, tsa_root=tsa.root)
        refused(outcome, "timestamp authority", "Referee Test TSA", "revoked", name="authenticTimestamp")
        fake.routes["/tsa.crl"] = make_crl(root)
        outcome = verify(pki, timestamper=stamper, tsa_root=tsa.root)
        assert outcome.verified and check(outcome, "authenticTimestamp").status is Status.PASSED
        del fake.routes["/tsa.crl"]  # unreachable: unknown, and the timestamp is not trusted
        refused(verify(pki, timestamper=stamper, tsa_root=tsa.root), "unknown", name="authenticTimestamp")


# --- 5. Failures stay in their check ---------------------------------------------------------------


def unknown_algorithm_ocsp(pki: Pki) -> bytes:
    return splice_ocsp(
        make_ocsp(pki.leaf.cert, pki.ca), pki.ca.key, signature_algorithm="1.2.840.10045.4.3.9"
    )


def unknown_version_crl(pki: Pki) -> bytes:
    raw = make_crl(pki.ca)
    i = raw.index(b"\x02\x01\x01")  # tbsCertList version v2
    return raw[:i] + b"\x02\x01\x05" + raw[i + 3 :]


@pytest.mark.parametrize("level", ["permissive", "audit"])
@pytest.mark.parametrize("evidence", ["ocsp with unknown signature algorithm", "crl of unknown version"])
def test_unusable_evidence_is_logged_not_failed_at_permissive(
    fake: EvidenceServerFake, level: str, evidence: str
) -> None:
    """A network attacker who serves unreadable evidence turns the status unknown, nothing more:
    the level decides (permissive and audit log revocation). It used to raise and fail the
    signature at every level."""
    if evidence.startswith("ocsp"):
        pki = ocsp_pki(fake)
        fake.routes["/ocsp"] = unknown_algorithm_ocsp(pki)
    else:
        pki = crl_pki(fake)
        fake.routes["/ca.crl"] = unknown_version_crl(pki)
    outcome = verify(pki, level=level)
    assert outcome.verified, outcome.reason
    result = check(outcome)
    assert result.status is Status.LOGGED and "unknown" in result.message, result
    refused(verify(pki), "unknown")


@pytest.mark.parametrize("kind", ["ocsp", "crl"])
def test_invalidity_date_after_authentic_signing_time_is_not_held_against_the_signature(
    fake: EvidenceServerFake, kind: str
) -> None:
    """Spec (CRL step 3.1, OCSP step 3.1): a revocation whose invalidity date is after the authentic
    signing time does not revoke what was signed before. Referee used to refuse it (stricter than
    the specification). notation agrees for signing-authority signatures."""
    later = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    signed_at = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    if kind == "ocsp":
        pki = ocsp_pki(fake)
        raw = make_ocsp(pki.leaf.cert, pki.ca, "revoked")
        ext = extension_der("2.5.29.24", invalidity_date_der(later), critical=False)
        fake.routes["/ocsp"] = splice_ocsp(raw, pki.ca.key, single_extensions=(ext,))
    else:
        pki = crl_pki(fake)
        fake.routes["/ca.crl"] = make_crl(pki.ca, (revoked(pki, R.key_compromise, invalidity=later),))
    outcome = verify(pki, scheme=SCHEME_SIGNING_AUTHORITY, signing_time=signed_at)
    passed(outcome)
    # Signed after the key became invalid: revoked.
    refused(verify(pki, scheme=SCHEME_SIGNING_AUTHORITY), "revoked")


def test_certificate_released_from_hold_by_delta_crl_verifies(fake: EvidenceServerFake) -> None:
    """RFC 5280 5.3.1 and the spec (CRL step 3.3): removeFromCRL in a delta releases a hold the base
    lists. Referee used to count any entry as a revocation. notation agrees."""
    pki = crl_pki(fake)
    fake.routes["/ca.crl"] = make_crl(
        pki.ca, (revoked(pki, HOLD, ago=dt.timedelta(days=2)),), number=4,
        freshest=(point(fake.url("/d.crl")),),
    )  # fmt: skip
    fake.routes["/d.crl"] = make_crl(pki.ca, (revoked(pki, REMOVE),), number=5, delta_of=4)
    passed(verify(pki))
    fake.routes["/d.crl"] = make_crl(pki.ca, number=5, delta_of=4)  # still on hold
    refused(verify(pki), "on hold")


def test_expired_crl_listing_the_certificate_still_revokes(fake: EvidenceServerFake) -> None:
    """Spec (CRL step 3.2): listed for a reason other than certificateHold, the certificate is
    revoked even when the CRL is out of date. notation refuses the expired CRL as unknown."""
    pki = crl_pki(fake)
    fake.routes["/ca.crl"] = make_crl(
        pki.ca,
        (revoked(pki, R.key_compromise),),
        this_update=dt.timedelta(days=-8),
        next_update=dt.timedelta(days=-1),
    )
    refused(verify(pki), "is revoked")


def test_ocsp_try_later_falls_through_to_the_next_responder(fake: EvidenceServerFake) -> None:
    """Spec "OCSP Download": URLs in order until one answers; a tryLater is no answer. Referee used to
    stop at it (stricter than the specification). notation agrees."""
    pki = make_pki(ocsp=(fake.url("/busy"), fake.url("/ocsp")))
    busy = ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER)
    fake.routes["/busy"] = busy.public_bytes(serialization.Encoding.DER)
    fake.routes["/ocsp"] = make_ocsp(pki.leaf.cert, pki.ca)
    passed(verify(pki))


def test_unreadable_crl_at_first_url_falls_through_to_the_next(fake: EvidenceServerFake) -> None:
    """Spec "CRL Download" and RFC 5280 4.2.1.13: the names of a distribution point are alternatives;
    one that serves an unreadable CRL does not stop the next. Referee used to stop at the first that
    answered (stricter than the specification). notation reads every URL and gives up at the first
    failure (unknown)."""
    pki = crl_pki(fake, point(fake.url("/broken.crl"), fake.url("/ca.crl")))
    fake.routes["/broken.crl"] = b"<html>maintenance</html>"
    fake.routes["/ca.crl"] = make_crl(pki.ca)
    passed(verify(pki))


# --- what a signature's author can make Referee fetch ---------------------------------------------


def test_revocation_is_not_fetched_for_a_chain_that_never_reached_a_trusted_root(
    fake: EvidenceServerFake,
) -> None:
    """At level audit a failed authenticity check only logs: a chain nobody trusts used to make
    Referee fetch the OCSP and CRL URLs its author wrote."""
    pki = make_pki(ocsp=(fake.url("/ocsp"),), crl=(point(fake.url("/ca.crl")),))
    stranger = make_pki()  # the trust store holds another root
    chain = pki.chain
    when = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    envelope = sign(SignRequest(TARGET, chain.leaf_key, chain.certs, when, envelope=JWS))
    store = TrustStore({("ca", "test"): (stranger.root.cert,)})
    outcome = verify_signature(
        JWS, envelope, TARGET, policy=policy("audit"), store=store, now=dt.datetime.now(dt.UTC),
        revocation_source=HttpRevocationSource(),
    )  # fmt: skip
    assert fake.requests == []
    assert check(outcome).status is Status.LOGGED and "not checked" in check(outcome).message


def test_revocation_fetches_end_by_the_admissions_deadline() -> None:
    with fake_registry() as silent:
        silent.fallback = lambda h: time.sleep(5)  # accepts, never answers
        pki = make_pki(ocsp=(f"http://{silent.host}/ocsp",))
        started = time.monotonic()
        outcome = verify(pki, HttpRevocationSource().within(Deadline.after(0.5)))
        assert time.monotonic() - started < 1.5  # not the 2 s OCSP timeout
        refused(outcome, "unknown")


def test_revocation_urls_asked_for_one_verification_are_capped(fake: EvidenceServerFake) -> None:
    pki = make_pki(
        ocsp=tuple(fake.url(f"/ocsp{i}") for i in range(8)),
        crl=(point(*[fake.url(f"/crl{i}") for i in range(8)]),),
    )
    outcome = verify(pki, HttpRevocationSource().within(Deadline.after(10), max_urls=3))
    assert len(fake.requests) == 3
    refused(outcome, "unknown")


def test_a_crl_is_kept_only_once_it_verified(fake: EvidenceServerFake) -> None:
    """A CRL that parses but is signed by another key used to be cached (and served from memory)."""
    pki = crl_pki(fake)
    impostor = Issued(pki.ca.cert, make_pki().ca.key)  # the CA's name, another key
    fake.routes["/ca.crl"] = make_crl(impostor)
    source = HttpRevocationSource()
    for _ in range(2):
        refused(verify(pki, source), "not signed by the issuer")
    assert len(fake.requests) == 2  # asked again: the forged CRL was not kept
    fake.routes["/ca.crl"] = make_crl(pki.ca)
    for _ in range(2):
        passed(verify(pki, source))
    assert len(fake.requests) == 3  # the good one was

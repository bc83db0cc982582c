"""One meaning per signature: envelopes that verifiers could read differently are refused.

Each envelope here is signed with the test chain's key over exactly the bytes shown, so the
signature is valid and only the rule under test can refuse it. Each refusal is an integrity
failure whose message says what is wrong. Pure: a fixed ``now``, no registry.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from tests.helpers import envelopes
from tests.helpers import rawcbor as C
from tests.helpers.codesign import Chain, make_chain
from webhook.notary.envelope import COSE, JWS
from webhook.notary.trustpolicy import parse_trust_policy
from webhook.notary.truststore import TrustStore
from webhook.notary.verifier import SignatureOutcome, Status, verify_signature
from webhook.oci.model import OCI_MANIFEST, Descriptor

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
SIGNED_AT = NOW - dt.timedelta(minutes=1)
TARGET = Descriptor(OCI_MANIFEST, "sha256:" + "ab" * 32, 528)
OTHER = Descriptor(OCI_MANIFEST, "sha256:" + "cd" * 32, 777)


@pytest.fixture(scope="module")
def chain() -> Chain:
    return make_chain()


def verify(envelope: bytes, media_type: str, chain: Chain) -> SignatureOutcome:
    doc = {"version": "1.0", "trustPolicies": [{
        "name": "p", "registryScopes": ["*"], "signatureVerification": {"level": "strict"},
        "trustStores": ["ca:test"], "trustedIdentities": ["*"]}]}  # fmt: skip
    policy = parse_trust_policy(json.dumps(doc)).policies[0]
    store = TrustStore({("ca", "test"): (chain.root,)})
    return verify_signature(media_type, envelope, TARGET, policy=policy, store=store, now=NOW)


def refused(outcome: SignatureOutcome, phrase: str) -> None:
    """The signature is refused at the integrity check, for the reason ``phrase`` names."""
    integrity = outcome.check("integrity")
    assert not outcome.verified
    assert integrity is not None and integrity.status is Status.FAILED, outcome
    assert phrase in outcome.reason, outcome.reason


def test_the_helpers_make_envelopes_that_verify(chain: Chain) -> None:
    """The control: without a change, what the helpers sign verifies (JWS and COSE)."""
    payload = envelopes.payload_json(TARGET)
    jws = envelopes.jws_bytes(chain, envelopes.protected_json(chain, SIGNED_AT), payload)
    assert verify(jws, JWS, chain).verified
    cose = envelopes.cose(chain, envelopes.cose_protected_entries(chain, SIGNED_AT), payload)
    assert verify(cose, COSE, chain).verified


# --- JSON that is not JSON -------------------------------------------------------------------------------


def test_utf16_protected_header_is_refused(chain: Chain) -> None:
    protected = envelopes.protected_json(chain, SIGNED_AT).encode("utf-16-le")
    outcome = verify(envelopes.jws_bytes(chain, protected, envelopes.payload_json(TARGET)), JWS, chain)
    refused(outcome, "UTF-16 or UTF-32")


def test_utf32_envelope_is_refused(chain: Chain) -> None:
    envelope = envelopes.jws(
        chain, envelopes.protected_json(chain, SIGNED_AT), envelopes.payload_json(TARGET)
    )
    outcome = verify(json.dumps(envelope).encode("utf-32"), JWS, chain)
    refused(outcome, "UTF-16 or UTF-32")


def test_nan_in_protected_header_is_refused(chain: Chain) -> None:
    protected = envelopes.protected_json(chain, SIGNED_AT)[:-1] + ',"io.example.n":NaN}'
    outcome = verify(envelopes.jws_bytes(chain, protected, envelopes.payload_json(TARGET)), JWS, chain)
    refused(outcome, "NaN, which is not a JSON number")


def test_deeply_nested_protected_header_is_an_integrity_failure_not_a_crash(chain: Chain) -> None:
    deep = "[" * 5000 + "]" * 5000
    protected = envelopes.protected_json(chain, SIGNED_AT)[:-1] + f',"io.example.n":{deep}' + "}"
    outcome = verify(envelopes.jws_bytes(chain, protected, envelopes.payload_json(TARGET)), JWS, chain)
    refused(outcome, "nested more than 100 levels")


def test_deeply_nested_envelope_is_an_integrity_failure_not_a_crash(chain: Chain) -> None:
    envelope = envelopes.jws(
        chain, envelopes.protected_json(chain, SIGNED_AT), envelopes.payload_json(TARGET)
    )
    text = json.dumps(envelope)[:-1] + ', "x": ' + "[" * 3000 + "]" * 3000 + "}"
    refused(verify(text.encode(), JWS, chain), "nested more than 100 levels")


# --- the payload: one target, read one way ---------------------------------------------------------------


def _artifact(target: Descriptor) -> dict[str, object]:
    return {"mediaType": target.media_type, "digest": target.digest, "size": target.size}


def _both(chain: Chain, payload: str) -> list[tuple[bytes, str]]:
    """The payload in a JWS and in a COSE envelope, each signed by ``chain``."""
    jws = envelopes.jws_bytes(chain, envelopes.protected_json(chain, SIGNED_AT), payload)
    cose = envelopes.cose(chain, envelopes.cose_protected_entries(chain, SIGNED_AT), payload)
    return [(jws, JWS), (cose, COSE)]


def test_case_folded_payload_digest_is_refused(chain: Chain) -> None:
    """The attack: ``digest`` names this image, ``Digest`` another. Go's decoder (notation) reads the
    last of the two case-insensitively, so the same signed bytes would bind to two images."""
    artifact = _artifact(TARGET)
    text = json.dumps({"targetArtifact": artifact})[:-2] + f', "Digest": "{OTHER.digest}"' + "}}"
    for envelope, media_type in _both(chain, text):
        refused(
            verify(envelope, media_type, chain), "'Digest', which differs from 'digest' only by letter case"
        )


@pytest.mark.parametrize("member", ["TargetArtifact", "targetartifact", "TARGETARTIFACT"])
def test_case_folded_target_artifact_is_refused(chain: Chain, member: str) -> None:
    text = json.dumps({"targetArtifact": _artifact(TARGET), member: _artifact(OTHER)})
    for envelope, media_type in _both(chain, text):
        refused(verify(envelope, media_type, chain), "differs from 'targetArtifact' only by letter case")


@pytest.mark.parametrize("member", ["Size", "\u017fize", "MediaType", "mediatype"])
def test_case_folded_descriptor_field_is_refused(chain: Chain, member: str) -> None:
    artifact = {**_artifact(TARGET), member: 1}
    for envelope, media_type in _both(chain, json.dumps({"targetArtifact": artifact})):
        refused(verify(envelope, media_type, chain), "only by letter case")


def test_duplicate_payload_digest_is_refused(chain: Chain) -> None:
    text = json.dumps({"targetArtifact": _artifact(TARGET)})[:-2] + f', "digest": "{OTHER.digest}"' + "}}"
    for envelope, media_type in _both(chain, text):
        refused(verify(envelope, media_type, chain), "duplicate member 'digest'")


@pytest.mark.parametrize(
    ("member", "value", "phrase"),
    [
        ("annotations", {"a": 1}, "annotations is not an object of strings"),
        ("annotations", ["a"], "annotations is not an object of strings"),
        ("urls", "https://example.com", "urls is not an array of strings"),
        ("urls", [1], "urls is not an array of strings"),
        ("platform", "linux/amd64", "platform is not a JSON object"),
        ("platform", {"architecture": 1, "os": "linux"}, "platform.architecture is not a string"),
        ("platform", {"Architecture": 1, "os": "linux"}, "only by letter case"),
        ("platform", {"os": "linux", "os.features": "x"}, "platform.os.features is not an array"),
        ("data", "!!!!", "data is not standard base64"),
        ("data", 5, "data is not a base64 string"),
        ("artifactType", 5, "artifactType is not a string"),
        ("mediaType", 5, "mediaType is not a string"),
    ],
)
def test_descriptor_field_of_the_wrong_type_is_refused(
    chain: Chain, member: str, value: object, phrase: str
) -> None:
    """notation's reader refuses these (ocispec.Descriptor types); a verifier that ignores them
    accepts what the signer's own tools reject."""
    artifact = {**_artifact(TARGET), member: value}
    for envelope, media_type in _both(chain, json.dumps({"targetArtifact": artifact})):
        refused(verify(envelope, media_type, chain), phrase)


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("annotations", {"org.example": "yes"}),
        ("annotations", None),
        ("urls", ["https://example.com/a"]),
        ("platform", {"architecture": "amd64", "os": "linux", "os.features": ["a"], "variant": "v8"}),
        ("data", "e30="),
        ("artifactType", "application/vnd.example"),
        ("x-unknown", {"any": ["thing", 12345678901234567890123456789]}),
    ],
)
def test_well_typed_descriptor_fields_are_fine(chain: Chain, member: str, value: object) -> None:
    artifact = {**_artifact(TARGET), member: value}
    for envelope, media_type in _both(chain, json.dumps({"targetArtifact": artifact})):
        assert verify(envelope, media_type, chain).verified


def test_nan_in_payload_is_refused(chain: Chain) -> None:
    text = json.dumps({"targetArtifact": _artifact(TARGET)})[:-1] + ', "n": NaN}'
    for envelope, media_type in _both(chain, text):
        refused(verify(envelope, media_type, chain), "NaN, which is not a JSON number")


def test_deeply_nested_payload_is_an_integrity_failure_not_a_crash(chain: Chain) -> None:
    text = json.dumps({"targetArtifact": _artifact(TARGET)})[:-1] + ', "n": ' + "[" * 5000 + "]" * 5000 + "}"
    for envelope, media_type in _both(chain, text):
        refused(verify(envelope, media_type, chain), "nested more than 100 levels")


def test_very_long_number_in_payload_is_fine(chain: Chain) -> None:
    """RFC 8259 leaves the range of numbers to implementations; an unknown member's value is unused."""
    text = json.dumps({"targetArtifact": _artifact(TARGET)})[:-1] + ', "n": ' + "9" * 5000 + "}"
    for envelope, media_type in _both(chain, text):
        assert verify(envelope, media_type, chain).verified


# --- JWS member names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Alg", "ES384"),
        ("ALG", "PS256"),
        ("Cty", "application/json"),
        ("cRit", ["io.cncf.notary.signingScheme", "io.cncf.notary.expiry"]),
        ("io.cncf.notary.\u017figningScheme", "notary.x509.signingAuthority"),
        ("io.cncf.notary.SigningTime", "2001-01-01T00:00:00Z"),
        ("io.cncf.notary.EXPIRY", "2001-01-01T00:00:00Z"),
    ],
)
def test_case_folded_protected_header_name_is_refused(chain: Chain, name: str, value: object) -> None:
    """Go's decoder reads ``Alg`` as ``alg`` (the last one wins), a reader that compares names exactly
    sees an unknown attribute: two verifiers, two meanings. Refused."""
    protected = envelopes.protected_json(chain, SIGNED_AT, **{name: value})
    outcome = verify(envelopes.jws_bytes(chain, protected, envelopes.payload_json(TARGET)), JWS, chain)
    refused(outcome, "only by letter case")


def test_case_folded_x5c_is_refused(chain: Chain) -> None:
    header = {"x5c": envelopes.x5c(chain), "X5C": envelopes.x5c(make_chain())}
    envelope = envelopes.jws_bytes(chain, envelopes.protected_json(chain, SIGNED_AT),
                                   envelopes.payload_json(TARGET), header)  # fmt: skip
    refused(verify(envelope, JWS, chain), "'X5C', which differs from 'x5c' only by letter case")


@pytest.mark.parametrize("name", ["Payload", "PROTECTED", "Signature", "heaDer"])
def test_case_folded_envelope_member_is_refused(chain: Chain, name: str) -> None:
    envelope = envelopes.jws(
        chain, envelopes.protected_json(chain, SIGNED_AT), envelopes.payload_json(TARGET)
    )
    envelope[name] = envelope[name.lower()]
    refused(verify(json.dumps(envelope).encode(), JWS, chain), "only by letter case")


def test_unknown_top_level_jws_member_is_ignored(chain: Chain) -> None:
    """RFC 7515 section 7.2.1: members that are not understood are ignored."""
    envelope = envelopes.jws(
        chain, envelopes.protected_json(chain, SIGNED_AT), envelopes.payload_json(TARGET)
    )
    envelope["x-note"] = {"any": "thing"}
    assert verify(json.dumps(envelope).encode(), JWS, chain).verified


def test_signatures_member_is_refused(chain: Chain) -> None:
    """RFC 7515 section 7.2.2: in the flattened serialization the signatures member must not be present."""
    envelope = envelopes.jws(
        chain, envelopes.protected_json(chain, SIGNED_AT), envelopes.payload_json(TARGET)
    )
    envelope["signatures"] = [{"protected": envelope["protected"], "signature": envelope["signature"]}]
    refused(verify(json.dumps(envelope).encode(), JWS, chain), "signatures member")


def test_signing_agent_that_is_not_a_string_is_refused(chain: Chain) -> None:
    """notation's reader types the signing agent as a string and refuses anything else."""
    header = {"x5c": envelopes.x5c(chain), "io.cncf.notary.signingAgent": 5}
    envelope = envelopes.jws_bytes(chain, envelopes.protected_json(chain, SIGNED_AT),
                                   envelopes.payload_json(TARGET), header)  # fmt: skip
    refused(verify(envelope, JWS, chain), "signingAgent is not a string")


@pytest.mark.parametrize("name", ["io.cncf.notary.signingAgent", "io.cncf.notary.SigningAgent"])
def test_signing_agent_is_read_in_either_spelling(chain: Chain, name: str) -> None:
    header = {"x5c": envelopes.x5c(chain), name: "notation/1.0.0"}
    envelope = envelopes.jws_bytes(chain, envelopes.protected_json(chain, SIGNED_AT),
                                   envelopes.payload_json(TARGET), header)  # fmt: skip
    from webhook.notary.envelope import parse_envelope  # noqa: PLC0415

    assert verify(envelope, JWS, chain).verified
    assert parse_envelope(JWS, envelope).signing_agent == "notation/1.0.0"


# --- times Python cannot hold --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("io.cncf.notary.signingTime", "9999-12-31T23:59:59-01:00"),  # year 10000 in UTC
        ("io.cncf.notary.signingTime", "0001-01-01T00:00:00+01:00"),  # year 0 in UTC
        ("io.cncf.notary.signingTime", "0000-06-01T00:00:00Z"),
        ("io.cncf.notary.expiry", "9999-12-31T23:59:59-01:00"),
    ],
)
def test_time_outside_years_1_to_9999_is_an_integrity_failure_not_a_crash(
    chain: Chain, name: str, value: str
) -> None:
    protected = json.loads(envelopes.protected_json(chain, SIGNED_AT))
    protected[name] = value
    if name.endswith("expiry"):
        protected["crit"].append(name)
    text = json.dumps(protected)
    outcome = verify(envelopes.jws_bytes(chain, text, envelopes.payload_json(TARGET)), JWS, chain)
    refused(outcome, "outside the years 1 to 9999")


@pytest.mark.parametrize("seconds", [253402300800, 2**40, -62135596801])
def test_cose_time_outside_years_1_to_9999_is_an_integrity_failure(chain: Chain, seconds: int) -> None:
    protected = envelopes.cose_protected_entries(chain, SIGNED_AT)
    protected[-1] = (protected[-1][0], C.tag(1, C.integer(seconds)))
    outcome = verify(envelopes.cose(chain, protected, envelopes.payload_json(TARGET)), COSE, chain)
    refused(outcome, "outside the years 1 to 9999")


def test_lowercase_t_and_z_in_rfc3339_times_are_fine(chain: Chain) -> None:
    """RFC 3339 section 5.6 allows them."""
    protected = json.loads(envelopes.protected_json(chain, SIGNED_AT))
    protected["io.cncf.notary.signingTime"] = (
        protected["io.cncf.notary.signingTime"].replace("T", "t").lower()
    )
    outcome = verify(
        envelopes.jws_bytes(chain, json.dumps(protected), envelopes.payload_json(TARGET)), JWS, chain
    )
    assert outcome.verified


# --- COSE labels and parameters ---------------------------------------------------------------------------


def _cose_with(chain: Chain, change: object, unprotected_change: object = None) -> bytes:
    """A COSE envelope whose protected (and unprotected) entries ``change`` rewrites, signed again."""
    protected = envelopes.cose_protected_entries(chain, SIGNED_AT)
    unprotected = envelopes.cose_unprotected_entries(chain)
    if callable(change):
        protected = change(protected)
    if callable(unprotected_change):
        unprotected = unprotected_change(unprotected)
    return envelopes.cose(chain, protected, envelopes.payload_json(TARGET), unprotected)


def _relabel(number: int, label: bytes) -> object:
    return lambda entries: [(label if k == C.integer(number) else k, v) for k, v in entries]


@pytest.mark.parametrize(
    ("number", "label", "kind"),
    [
        (1, C.float16(1.0), "floating-point"),
        (1, C.float64(1.0), "floating-point"),
        (1, C.TRUE, "boolean"),
        (1, C.bignum(1), "bignum"),
        (2, C.float32(2.0), "floating-point"),
        (2, C.bignum(2), "bignum"),
        (3, C.float32(3.0), "floating-point"),
    ],
)
def test_cose_label_that_is_not_an_integer_or_text_is_refused(
    chain: Chain, number: int, label: bytes, kind: str
) -> None:
    """Python's dict treats 1, 1.0 and True as one key and cbor2 reads a bignum 1 as 1: an alg, crit or
    content type written that way would be read as the real one here and refused by go-cose."""
    outcome = verify(_cose_with(chain, _relabel(number, label)), COSE, chain)
    refused(outcome, f"is {'a ' if kind != 'bignum' else ''}")
    refused(outcome, "labels must be integers or text strings")
    assert kind in outcome.reason


def test_cose_labels_equal_as_numbers_are_refused(chain: Chain) -> None:
    outcome = verify(_cose_with(chain, lambda e: [*e, (C.float16(1.0), C.integer(-35))]), COSE, chain)
    refused(outcome, "Duplicate map key")


def test_cose_float_label_in_unprotected_header_is_refused(chain: Chain) -> None:
    change = _relabel(33, C.float32(33.0))
    outcome = verify(_cose_with(chain, None, change), COSE, chain)
    refused(outcome, "unprotected header label 33.0 is a floating-point number")


@pytest.mark.parametrize(
    ("entry", "phrase"),
    [(C.float16(1.0), "floating-point"), (C.TRUE, "boolean"), (C.bignum(5), "bignum")],
)
def test_cose_crit_entry_that_is_not_an_integer_or_text_is_refused(
    chain: Chain, entry: bytes, phrase: str
) -> None:
    crit = C.array([C.tstr("io.cncf.notary.signingScheme"), entry])
    change = lambda e: [(k, crit if k == C.integer(2) else v) for k, v in e]  # noqa: E731
    refused(verify(_cose_with(chain, change), COSE, chain), phrase)


def test_cose_bignum_alg_is_refused(chain: Chain) -> None:
    from webhook.notary.algorithms import algorithm_for  # noqa: PLC0415

    alg = C.bignum(algorithm_for(chain.certs[0]).cose)
    change = lambda e: [(k, alg if k == C.integer(1) else v) for k, v in e]  # noqa: E731
    refused(verify(_cose_with(chain, change), COSE, chain), "COSE alg")


def test_cose_bignum_epoch_time_is_refused(chain: Chain) -> None:
    """RFC 8949 section 3.4.2: tag 1 holds an integer or a float; a bignum inside it is invalid."""
    when = C.tag(1, C.bignum(int(SIGNED_AT.timestamp())))
    change = lambda e: [*e[:-1], (e[-1][0], when)]  # noqa: E731
    refused(verify(_cose_with(chain, change), COSE, chain), "not a tag-1 epoch time")


@pytest.mark.parametrize(
    ("entries", "phrase"),
    [
        ([(C.integer(4), C.tstr("key-1"))], "kid (label 4) is a text string, not a byte string"),
        ([(C.integer(5), C.tstr("iv"))], "IV (label 5) is a text string"),
        ([(C.integer(6), C.integer(7))], "Partial IV (label 6) is an integer"),
        ([(C.integer(5), C.bstr(b"iv")), (C.integer(6), C.bstr(b"piv"))], "both an IV and a Partial IV"),
        ([(C.integer(7), C.bstr(b"sig"))], "counter signature (label 7)"),
        ([(C.integer(16), C.bstr(b"x"))], "typ (label 16)"),
    ],
)
def test_cose_protected_parameter_of_the_wrong_type_is_refused(
    chain: Chain, entries: list[tuple[bytes, bytes]], phrase: str
) -> None:
    refused(verify(_cose_with(chain, lambda e: [*e, *entries]), COSE, chain), phrase)


@pytest.mark.parametrize(
    ("entries", "phrase"),
    [
        (
            [(C.integer(2), C.array([C.tstr("io.cncf.notary.signingAgent")]))],
            "crit (label 2) must be in the protected",
        ),
        ([(C.integer(4), C.tstr("key-1"))], "unprotected kid (label 4)"),
        ([(C.integer(11), C.bstr(b"sig"))], "counter signature (label 11)"),
        ([(C.tstr("io.example.when"), C.tag(1, C.integer(5)))], "holds a CBOR tag"),
        ([(C.integer(1), C.integer(-7))], "in both the protected and the unprotected header"),
    ],
)
def test_cose_unprotected_parameter_of_the_wrong_kind_is_refused(
    chain: Chain, entries: list[tuple[bytes, bytes]], phrase: str
) -> None:
    """What the signature does not cover, and go-cose refuses: refused here too."""
    refused(verify(_cose_with(chain, None, lambda e: [*e, *entries]), COSE, chain), phrase)


def test_cose_x5chain_in_both_headers_is_refused(chain: Chain) -> None:
    """RFC 9052 section 3: with a label in both buckets the protected one counts; notation reads the
    unprotected one. One chain, one meaning: refused."""
    x5chain = (C.integer(33), envelopes.cose_chain(chain))
    refused(verify(_cose_with(chain, lambda e: [*e, x5chain]), COSE, chain), "label 33 is in both")


def test_cose_x5chain_in_the_protected_header_is_fine(chain: Chain) -> None:
    """The Notary COSE specification allows it (notation reads only the unprotected one)."""
    x5chain = (C.integer(33), envelopes.cose_chain(chain))
    assert verify(_cose_with(chain, lambda e: [*e, x5chain], lambda e: []), COSE, chain).verified


def test_cose_kid_as_bytes_is_fine(chain: Chain) -> None:
    assert verify(_cose_with(chain, lambda e: [*e, (C.integer(4), C.bstr(b"k"))]), COSE, chain).verified

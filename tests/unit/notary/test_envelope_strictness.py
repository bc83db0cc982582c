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
from tests.helpers.codesign import Chain, make_chain
from webhook.notary.envelope import COSE, JWS
from webhook.notary.trustpolicy import parse_trust_policy
from webhook.notary.truststore import TrustStore
from webhook.notary.verifier import SignatureOutcome, Status, verify_signature
from webhook.oci import OCI_MANIFEST, Descriptor

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

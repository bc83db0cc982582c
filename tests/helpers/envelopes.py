"""Notary envelopes over exactly the bytes a test chooses, signed with a test chain's key.

``webhook.notary.signer`` writes only well-formed envelopes; a regression test for a parsing rule
needs a protected header or payload with a duplicate member, a member spelled in another case, a
CBOR label that is a float... These helpers sign whatever bytes they are given, so the signature is
valid and only the rule under test can refuse the envelope.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

from cryptography.hazmat.primitives import serialization

from tests.helpers import rawcbor
from tests.helpers.codesign import Chain
from webhook.notary.algorithms import algorithm_for
from webhook.notary.signer import raw_signature
from webhook.oci.model import Descriptor

PAYLOAD_TYPE = "application/vnd.cncf.notary.payload.v1+json"
SCHEME = "io.cncf.notary.signingScheme"
SIGNING_TIME = "io.cncf.notary.signingTime"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def payload_json(target: Descriptor) -> str:
    artifact = {"mediaType": target.media_type, "digest": target.digest, "size": target.size}
    return json.dumps({"targetArtifact": artifact}, separators=(",", ":"))


def protected_json(chain: Chain, when: dt.datetime, **extra: Any) -> str:
    """The JWS protected header notation writes, as text, with ``extra`` members appended."""
    header = {
        "alg": algorithm_for(chain.certs[0]).name,
        "crit": [SCHEME],
        "cty": PAYLOAD_TYPE,
        SCHEME: "notary.x509",
        SIGNING_TIME: when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        **extra,
    }
    return json.dumps(header, separators=(",", ":"))


def x5c(chain: Chain) -> list[str]:
    return [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in chain.certs]


def jws(chain: Chain, protected: bytes | str, payload: bytes | str, header: Any = None) -> dict[str, Any]:
    """A flattened JWS (as a dict) signed over exactly ``protected`` and ``payload``."""
    protected_b64 = b64url(protected.encode() if isinstance(protected, str) else protected)
    payload_b64 = b64url(payload.encode() if isinstance(payload, str) else payload)
    signed = f"{protected_b64}.{payload_b64}".encode()
    signature = raw_signature(chain.leaf_key, algorithm_for(chain.certs[0]), signed)
    return {
        "payload": payload_b64,
        "protected": protected_b64,
        "header": {"x5c": x5c(chain)} if header is None else header,
        "signature": b64url(signature),
    }


def jws_bytes(chain: Chain, protected: bytes | str, payload: bytes | str, header: Any = None) -> bytes:
    return json.dumps(jws(chain, protected, payload, header)).encode()


# --- COSE ------------------------------------------------------------------------------------------------


def cose_protected_entries(chain: Chain, when: dt.datetime) -> list[tuple[bytes, bytes]]:
    """The protected header notation writes, as raw (label, value) CBOR pairs."""
    return [
        (rawcbor.integer(1), rawcbor.integer(algorithm_for(chain.certs[0]).cose)),
        (rawcbor.integer(2), rawcbor.array([rawcbor.tstr(SCHEME)])),
        (rawcbor.integer(3), rawcbor.tstr(PAYLOAD_TYPE)),
        (rawcbor.tstr(SCHEME), rawcbor.tstr("notary.x509")),
        (rawcbor.tstr(SIGNING_TIME), rawcbor.tag(1, rawcbor.integer(int(when.timestamp())))),
    ]


def cose_chain(chain: Chain) -> bytes:
    return rawcbor.array([rawcbor.bstr(c.public_bytes(serialization.Encoding.DER)) for c in chain.certs])


def cose_unprotected_entries(chain: Chain) -> list[tuple[bytes, bytes]]:
    return [(rawcbor.integer(33), cose_chain(chain))]


def cose(
    chain: Chain,
    protected: list[tuple[bytes, bytes]],
    payload: bytes | str,
    unprotected: list[tuple[bytes, bytes]] | None = None,
) -> bytes:
    """A tagged COSE_Sign1 signed over exactly this protected map (entries in this order) and payload."""
    body = payload.encode() if isinstance(payload, str) else payload
    protected_bytes = rawcbor.cmap(protected)
    to_be_signed = rawcbor.array(
        [rawcbor.tstr("Signature1"), rawcbor.bstr(protected_bytes), rawcbor.bstr(b""), rawcbor.bstr(body)]
    )
    signature = raw_signature(chain.leaf_key, algorithm_for(chain.certs[0]), to_be_signed)
    entries = cose_unprotected_entries(chain) if unprotected is None else unprotected
    return rawcbor.tag(
        18,
        rawcbor.array(
            [
                rawcbor.bstr(protected_bytes),
                rawcbor.cmap(entries),
                rawcbor.bstr(body),
                rawcbor.bstr(signature),
            ]
        ),
    )

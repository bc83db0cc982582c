"""Structured mutants of real notation signatures, by family.

A family names one kind of change, fine enough that "Referee and notation differ on this family"
is one statement the documentation can make (docs/verification-differences.md). Each generator
takes a random source, the workbench and a seed (a signature notation made) and returns a
``Mutant``. Families whose name has ``resign`` or a header/payload part re-sign the changed bytes
with the seed's own key; ``unsigned`` families change bytes the signature does not cover; the
``manifest`` and ``layout`` families leave the envelope alone and change what carries it.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.differential.kit import (
    COSE,
    COSE_ALG,
    JWS,
    NOTARY,
    OCI_INDEX,
    OCI_MANIFEST,
    PAYLOAD_TYPE,
    LeafSpec,
    Mutant,
    Seed,
    Signer,
    Workbench,
    b64url_decode,
    compact,
    cose_envelope,
    cose_x5chain,
    digest_of,
    jws_envelope,
    raw_sign,
)
from tests.helpers import rawcbor as cbor

H_SCHEME = "io.cncf.notary.signingScheme"
H_TIME = "io.cncf.notary.signingTime"
H_AUTH_TIME = "io.cncf.notary.authenticSigningTime"
H_EXPIRY = "io.cncf.notary.expiry"
H_AGENT = "io.cncf.notary.signingAgent"
H_TIMESTAMP = "io.cncf.notary.timestampSignature"

Pairs = list[tuple[str, str]]  # JSON object members: (name, the value's JSON text)
Gen = Callable[[random.Random, Workbench, Seed], Mutant]


def j(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def obj(pairs: Pairs) -> str:
    return "{" + ",".join(f"{j(k)}:{v}" for k, v in pairs) + "}"


def pairs_of(doc: dict[str, Any]) -> Pairs:
    return [(k, j(v)) for k, v in doc.items()]


def case_variant(rng: random.Random, name: str) -> str:
    """``name`` spelled differently, but equal to it under Go's case folding."""
    letters = [i for i, c in enumerate(name) if c.isalpha()]
    choice = rng.randrange(5)
    if choice == 0:
        return name.upper() if name.upper() != name else name.lower()
    if choice == 1 and ("s" in name or "k" in name):
        i = rng.choice([i for i, c in enumerate(name) if c in "sk"])
        return name[:i] + ("\u017f" if name[i] == "s" else "\u212a") + name[i + 1 :]
    i = rng.choice(letters)
    return name[:i] + name[i].swapcase() + name[i + 1 :]


def other_descriptor(rng: random.Random) -> dict[str, Any]:
    """An image descriptor that is not the one being verified."""
    data = rng.randbytes(16)
    return {"mediaType": OCI_MANIFEST, "digest": digest_of(data), "size": rng.randint(100, 2000)}


def place(rng: random.Random, pairs: Pairs, member: tuple[str, str]) -> Pairs:
    i = rng.randint(0, len(pairs))
    return [*pairs[:i], member, *pairs[i:]]


# --- seeds, taken apart --------------------------------------------------------------------------


@dataclass(frozen=True)
class JwsParts:
    protected: dict[str, Any]
    payload: bytes
    header: dict[str, Any]
    envelope: dict[str, Any]


def jws_parts(seed: Seed) -> JwsParts:
    envelope = json.loads(seed.envelope)
    protected = json.loads(b64url_decode(envelope["protected"]))
    return JwsParts(protected, b64url_decode(envelope["payload"]), envelope["header"], envelope)


@dataclass(frozen=True)
class CoseParts:
    protected: list[tuple[bytes, bytes]]  # raw (label, value) pairs of the protected map
    unprotected: list[tuple[bytes, bytes]]
    payload: bytes


def cose_parts(seed: Seed) -> CoseParts:
    message = cbor2.loads(seed.envelope).value
    unprotected = cbor.entries_of(cbor2.dumps(message[1]))
    return CoseParts(cbor.entries_of(message[0]), unprotected, message[2])


def seed_payload(seed: Seed) -> dict[str, Any]:
    if seed.media_type == JWS:
        doc: dict[str, Any] = json.loads(jws_parts(seed).payload)
    else:
        doc = json.loads(cose_parts(seed).payload)
    return doc


def _kind(seed: Seed) -> str:
    return "jws" if seed.media_type == JWS else "cose"


def resigned(seed: Seed, family: str, note: str, *, protected: bytes | None = None,
             payload: bytes | None = None, signer: Signer | None = None,
             sign: Callable[[bytes], bytes] | None = None, header: dict[str, Any] | None = None,
             cose_protected: list[tuple[bytes, bytes]] | None = None,
             cose_unprotected: list[tuple[bytes, bytes]] | None = None) -> Mutant:  # fmt: skip
    """The seed with its signed parts replaced, signed again with the seed's key (or ``signer``)."""
    signer = signer or seed.signer
    if seed.media_type == JWS:
        parts = jws_parts(seed)
        protected_bytes = protected if protected is not None else compact(parts.protected)
        payload_bytes = payload if payload is not None else parts.payload
        if header is None and signer is not seed.signer:
            header = {**parts.header, "x5c": [base64.b64encode(d).decode() for d in signer.ders()]}
        env = jws_envelope(protected_bytes, payload_bytes, signer, header=header or parts.header, sign=sign)
        return Mutant(family, note, compact(env), JWS)
    cparts = cose_parts(seed)
    prot = cose_protected if cose_protected is not None else cparts.protected
    unprot = cose_unprotected if cose_unprotected is not None else cparts.unprotected
    if cose_unprotected is None and signer is not seed.signer:
        unprot = [(k, cose_x5chain(signer) if k == cbor.integer(33) else v) for k, v in unprot]
    body = payload if payload is not None else cparts.payload
    envelope = cose_envelope(cbor.cmap(prot), cbor.cmap(unprot), body, signer, sign=sign)
    return Mutant(family, note, envelope, COSE)


# --- payload families (both envelopes) -------------------------------------------------------------

DESCRIPTOR_FIELDS = ("mediaType", "digest", "size")


def payload_casefold(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    target = seed_payload(seed)["targetArtifact"]
    other = other_descriptor(rng)
    mode = rng.choice(["after", "before", "rename"])
    if rng.random() < 0.25:  # the whole targetArtifact under another spelling
        name = case_variant(rng, "targetArtifact")
        inner = obj(pairs_of(target))
        alt = obj(pairs_of(other)) if mode != "rename" else inner
        base: Pairs = [("targetArtifact", inner)]
        pairs = (
            [(name, alt)]
            if mode == "rename"
            else ([("targetArtifact", inner), (name, alt)] if mode == "after" else [(name, alt), *base])
        )
        payload = obj(pairs)
        note = f"{name} {mode}"
    else:
        field = rng.choice(DESCRIPTOR_FIELDS)
        name = case_variant(rng, field)
        value = j(other[field]) if rng.random() < 0.8 else j(target[field])
        members = pairs_of(target)
        i = next(k for k, (n, _) in enumerate(members) if n == field)
        if mode == "rename":
            members[i] = (name, members[i][1])
        elif mode == "after":
            members.insert(i + 1, (name, value))
        else:
            members.insert(i, (name, value))
        payload = obj([("targetArtifact", obj(members))])
        note = f"targetArtifact.{name} {mode}"
    return resigned(seed, f"{_kind(seed)}.payload.casefold", note, payload=payload.encode())


def payload_duplicate(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    target = seed_payload(seed)["targetArtifact"]
    other = other_descriptor(rng)
    first_is_real = rng.random() < 0.5
    if rng.random() < 0.3:
        real, fake = obj(pairs_of(target)), obj(pairs_of(other))
        pairs = [("targetArtifact", real), ("targetArtifact", fake)]
        payload = obj(pairs if first_is_real else pairs[::-1])
        note = "targetArtifact twice"
    else:
        field = rng.choice(DESCRIPTOR_FIELDS)
        members = pairs_of(target)
        i = next(k for k, (n, _) in enumerate(members) if n == field)
        extra = (field, j(other[field]))
        members.insert(i + 1 if first_is_real else i, extra)
        payload = obj([("targetArtifact", obj(members))])
        note = f"targetArtifact.{field} twice"
    return resigned(seed, f"{_kind(seed)}.payload.duplicate", note, payload=payload.encode())


# (family suffix, member, JSON text of the value, note); the suffix says what a verifier should do.
_DESCRIPTOR_TYPES = [
    ("wrong-type", "annotations", '{"a":1}', "annotation value a number"),
    ("wrong-type", "annotations", '["a"]', "annotations an array"),
    ("wrong-type", "annotations", '"a"', "annotations a string"),
    ("wrong-type", "urls", '"https://example.com"', "urls a string"),
    ("wrong-type", "urls", "[1]", "urls holds a number"),
    ("wrong-type", "platform", '"linux/amd64"', "platform a string"),
    ("wrong-type", "platform", '{"architecture":1,"os":"linux"}', "platform.architecture a number"),
    ("wrong-type", "platform", '{"architecture":"amd64","os":["linux"]}', "platform.os an array"),
    ("wrong-type", "platform", '{"architecture":"amd64","os":"linux","os.features":"x"}', "os.features"),
    ("wrong-type", "platform", '{"Architecture":1,"os":"linux"}', "platform.Architecture a number"),
    ("wrong-type", "data", '"!!!!"', "data not base64"),
    ("wrong-type", "data", '"e30"', "data unpadded base64"),
    ("wrong-type", "data", "5", "data a number"),
    ("wrong-type", "artifactType", "5", "artifactType a number"),
    ("wrong-type", "artifactType", "true", "artifactType a boolean"),
    ("wrong-type", "size", '"SIZE"', "size a string"),
    ("wrong-type", "size", "SIZE.0", "size with a fraction"),
    ("wrong-type", "size", "SIZEe0", "size with an exponent"),
    ("wrong-type", "mediaType", "5", "mediaType a number"),
    ("wrong-type", "digest", "5", "digest a number"),
    ("valid", "annotations", '{"a":"b"}', "string annotations"),
    ("valid", "annotations", "null", "annotations null"),
    ("valid", "urls", '["https://example.com/x"]', "urls"),
    ("valid", "platform", '{"architecture":"amd64","os":"linux","os.features":["a"]}', "platform"),
    ("valid", "data", '"e30="', "data base64"),
    ("valid", "artifactType", '"application/vnd.example"', "artifactType"),
    ("valid", "artifactType", "null", "artifactType null"),
    ("base64-newline", "data", '"e3\\n0="', "data with a line break"),
]


def payload_types(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    target = seed_payload(seed)["targetArtifact"]
    suffix, member, value, note = rng.choice(_DESCRIPTOR_TYPES)
    value = value.replace("SIZE", str(target["size"]))
    members = [(k, v) for k, v in pairs_of(target) if k != member]
    members = place(rng, members, (member, value))
    payload = obj([("targetArtifact", obj(members))])
    return resigned(seed, f"{_kind(seed)}.payload.types.{suffix}", note, payload=payload.encode())


def _random_json(rng: random.Random, depth: int = 0) -> str:
    choice = rng.randrange(7 if depth < 3 else 4)
    if choice == 0:
        return j(rng.randint(-(10**6), 10**6))
    if choice == 1:
        return j("".join(rng.choice("abcxyz -_/:") for _ in range(rng.randint(0, 12))))
    if choice == 2:
        return rng.choice(["true", "false", "null"])
    if choice == 3:
        return j(rng.uniform(-1e6, 1e6))
    if choice == 4:
        return "[" + ",".join(_random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))) + "]"
    return obj([(f"k{i}", _random_json(rng, depth + 1)) for i in range(rng.randint(0, 3))])


def payload_unknown(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    doc = seed_payload(seed)
    name = rng.choice(["extra", "x-note", "signedBy", "io.example.field"])
    value = _random_json(rng)
    if rng.random() < 0.5:
        payload = obj(place(rng, [("targetArtifact", j(doc["targetArtifact"]))], (name, value)))
        note = f"top-level {name}"
    else:
        members = place(rng, pairs_of(doc["targetArtifact"]), (name, value))
        payload = obj([("targetArtifact", obj(members))])
        note = f"targetArtifact.{name}"
    return resigned(seed, f"{_kind(seed)}.payload.unknown", note, payload=payload.encode())


def payload_shape(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    doc = seed_payload(seed)
    choices = {
        "array": "[]", "string": '"x"', "empty": "{}", "null-target": '{"targetArtifact":null}',
        "array-target": '{"targetArtifact":[]}', "empty-target": '{"targetArtifact":{}}',
        "pretty": json.dumps(doc, indent=2), "spaced": "  " + j(doc) + "\n",
    }  # fmt: skip
    name = rng.choice(sorted(choices))
    suffix = "valid" if name in ("pretty", "spaced") else "invalid"
    return resigned(seed, f"{_kind(seed)}.payload.shape.{suffix}", name, payload=choices[name].encode())


def _encoding_variants(doc_text: str, rng: random.Random) -> tuple[str, bytes]:  # noqa: PLR0911 (one return per variant)
    """(suffix, bytes) of a JSON text re-encoded or given one invalid string."""
    name = rng.choice(["bom", "utf16", "utf32", "invalid-utf8", "surrogate", "nan", "infinity",
                       "non-ascii", "trailing-garbage", "control-char"])  # fmt: skip
    if name == "bom":
        return "encoding", b"\xef\xbb\xbf" + doc_text.encode()
    if name == "utf16":
        return "encoding", doc_text.encode("utf-16-le")
    if name == "utf32":
        return "encoding", doc_text.encode("utf-32-le")
    inner = doc_text[:-1]
    if name == "invalid-utf8":
        return "invalid-utf8", inner.encode() + b',"x":"\xff\xfe"}'
    if name == "surrogate":
        return "surrogate", (inner + ',"x":"\\ud800"}').encode()
    if name == "nan":
        return "non-finite", (inner + ',"x":NaN}').encode()
    if name == "infinity":
        return "non-finite", (inner + ',"x":-Infinity}').encode()
    if name == "non-ascii":
        return "valid", (inner + ',"x":"h\u00e9llo \u4e16\u754c"}').encode()
    if name == "control-char":
        return "encoding", (inner + ',"x":"a\tb"}').encode()
    return "encoding", (doc_text + " x").encode()


def payload_encoding(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    suffix, data = _encoding_variants(j(seed_payload(seed)), rng)
    return resigned(seed, f"{_kind(seed)}.payload.encoding.{suffix}", suffix, payload=data)


_NUMBERS = [
    ("huge", "1e400"), ("huge", "-1e400"), ("huge", "1" + "0" * 400), ("huge", "9" * 5000),
    ("large", "1e300"), ("large", "1" + "0" * 30), ("large", "123456789012345678901234567890.5"),
    ("small", "-0"), ("small", "1e-400"), ("small", "0.1"), ("small", "-5"),
]  # fmt: skip


def payload_numbers(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    doc = seed_payload(seed)
    suffix, number = rng.choice(_NUMBERS)
    payload = obj([("targetArtifact", j(doc["targetArtifact"])), ("n", number)])
    return resigned(seed, f"{_kind(seed)}.payload.numbers.{suffix}", number[:20], payload=payload.encode())


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


_DEPTHS = [("shallow", 20), ("shallow", 60), ("deep", 150), ("deep", 999), ("deep", 5000), ("deep", 20000)]


def payload_nesting(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    doc = seed_payload(seed)
    suffix, depth = rng.choice(_DEPTHS)
    payload = obj([("targetArtifact", j(doc["targetArtifact"])), ("n", _nested(depth))])
    return resigned(seed, f"{_kind(seed)}.payload.nesting.{suffix}", str(depth), payload=payload.encode())


# --- JWS protected header ----------------------------------------------------------------------------

_ALT_VALUES: dict[str, list[Any]] = {
    "alg": ["PS384", "ES256", "RS256", "none", "HS256"],
    "cty": ["application/json", "application/vnd.cncf.notary.payload.v2+json"],
    "crit": [[H_SCHEME, H_EXPIRY], ["x"], []],
    H_SCHEME: ["notary.x509.signingAuthority", "notary.other"],
    H_TIME: ["2001-01-01T00:00:00Z", "2099-01-01T00:00:00Z"],
}


def jws_protected_casefold(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    parts = jws_parts(seed)
    name = rng.choice(sorted(_ALT_VALUES))
    variant = case_variant(rng, name)
    members = pairs_of(parts.protected)
    i = next(k for k, (n, _) in enumerate(members) if n == name)
    mode = rng.choice(["after", "before", "rename", "same-value"])
    if mode == "rename":
        members[i] = (variant, members[i][1])
    elif mode == "same-value":
        members.insert(i + 1, (variant, members[i][1]))
    else:
        value = j(rng.choice(_ALT_VALUES[name]))
        members.insert(i + 1 if mode == "after" else i, (variant, value))
    return resigned(seed, "jws.protected.casefold", f"{variant} {mode}", protected=obj(members).encode())


def jws_protected_duplicate(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    parts = jws_parts(seed)
    name = rng.choice(sorted(_ALT_VALUES))
    members = pairs_of(parts.protected)
    i = next(k for k, (n, _) in enumerate(members) if n == name)
    value = members[i][1] if rng.random() < 0.3 else j(rng.choice(_ALT_VALUES[name]))
    members.insert(i + 1 if rng.random() < 0.5 else i, (name, value))
    return resigned(seed, "jws.protected.duplicate", name, protected=obj(members).encode())


def jws_protected_unknown(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    parts = jws_parts(seed)
    name = rng.choice(["io.example.attr", "x-extra", "typ", "kid"])
    critical = rng.random() < 0.4
    members = pairs_of({**parts.protected, name: "value"})
    if critical:
        crit = [*parts.protected["crit"], name]
        members = [(k, j(crit) if k == "crit" else v) for k, v in members]
    family = "jws.protected.unknown." + ("critical" if critical else "plain")
    return resigned(seed, family, name, protected=obj(members).encode())


def jws_protected_crit(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    parts = jws_parts(seed)
    choices: dict[str, Any] = {
        "missing": None, "empty": [], "string": H_SCHEME, "registered-alg": [H_SCHEME, "alg"],
        "absent-header": [H_SCHEME, "io.example.absent"], "twice": [H_SCHEME, H_SCHEME],
        "number": [H_SCHEME, 5], "without-scheme": ["alg"], "expiry-not-present": [H_SCHEME, H_EXPIRY],
    }  # fmt: skip
    name = rng.choice(sorted(choices))
    header = dict(parts.protected)
    if choices[name] is None:
        header.pop("crit")
    else:
        header["crit"] = choices[name]
    return resigned(seed, "jws.protected.crit", name, protected=compact(header))


def jws_protected_values(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    parts = jws_parts(seed)
    header = dict(parts.protected)
    what = rng.choice(["alg", "cty", "scheme"])
    if what == "alg":
        header["alg"] = rng.choice(["PS384", "PS512", "ES256", "ES384", "RS256", "none", "HS256", "ps256", 5,
                                    None, ""])  # fmt: skip
        note = f"alg {header['alg']!r}"
    elif what == "cty":
        header["cty"] = rng.choice(["application/json", "", 5, None, PAYLOAD_TYPE + " "])
        note = f"cty {header['cty']!r}"
    else:
        value = rng.choice(["notary.x509.signingAuthority", "notary.X509", "", 5, None])
        header[H_SCHEME] = value
        note = f"scheme {value!r}"
    header = {k: v for k, v in header.items() if v is not None}
    return resigned(seed, f"jws.protected.{what}", note, protected=compact(header))


# (family suffix, signing time text) for notary.x509 signatures.
_TIMES = [
    ("valid", "2026-01-01T00:00:00Z"), ("valid", "2026-01-01T00:00:00.5Z"),
    ("valid", "2026-01-01T09:00:00+09:00"), ("valid", "2026-01-01T00:00:00-00:00"),
    ("lowercase", "2026-01-01t00:00:00z"), ("lowercase", "2026-01-01T00:00:00z"),
    ("format", "2026-01-01 00:00:00Z"), ("format", "2026-01-01T00:00:00"), ("format", "20260101T000000Z"),
    ("format", "2026-02-30T00:00:00Z"), ("format", "2026-01-01T24:00:00Z"),
    ("format", "2026-01-01T23:59:60Z"),
    ("format", "2026-01-01T00:00:00+24:00"), ("format", ""), ("format", "yesterday"),
    ("range", "0000-01-01T00:00:00Z"), ("range", "0001-01-01T00:00:00+01:00"),
    ("range", "9999-12-31T23:59:59-01:00"), ("valid", "0001-01-01T00:00:01Z"),
    ("valid", "9999-12-31T23:59:59Z"),
]  # fmt: skip

_EXPIRIES = [
    ("valid", "2099-01-01T00:00:00Z"), ("past", "2020-01-01T00:00:00Z"),
    ("zero", "0001-01-01T00:00:00Z"), ("range", "9999-12-31T23:59:59-01:00"),
    ("lowercase", "2099-01-01t00:00:00z"), ("format", "never"),
]  # fmt: skip


def jws_protected_time(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    header = dict(jws_parts(seed).protected)
    if rng.random() < 0.6:
        suffix, value = rng.choice(_TIMES)
        header[H_TIME] = value
        return resigned(seed, f"jws.protected.time.{suffix}", value, protected=compact(header))
    suffix, value = rng.choice(_EXPIRIES)
    header[H_EXPIRY] = value
    if rng.random() < 0.8:
        header["crit"] = [*header["crit"], H_EXPIRY]
    else:
        suffix = "zero-not-critical" if suffix == "zero" else "not-critical"
    return resigned(seed, f"jws.protected.expiry.{suffix}", value, protected=compact(header))


def jws_protected_signing_authority(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    header = dict(jws_parts(seed).protected)
    time = header.pop(H_TIME)
    header[H_SCHEME] = "notary.x509.signingAuthority"
    choice = rng.choice(["authentic-time", "both-times", "not-critical", "no-time"])
    if choice in ("authentic-time", "both-times", "not-critical"):
        header[H_AUTH_TIME] = time
    if choice == "both-times":
        header[H_TIME] = time
    if choice != "not-critical":
        header["crit"] = [*header["crit"], H_AUTH_TIME]
    return resigned(seed, "jws.protected.signing-authority", choice, protected=compact(header))


def jws_protected_encoding(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    suffix, data = _encoding_variants(j(jws_parts(seed).protected), rng)
    return resigned(seed, f"jws.protected.encoding.{suffix}", suffix, protected=data)


def jws_protected_numbers(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    suffix, number = rng.choice(_NUMBERS)
    text = j(jws_parts(seed).protected)[:-1] + f',"io.example.n":{number}' + "}"
    return resigned(seed, f"jws.protected.numbers.{suffix}", number[:20], protected=text.encode())


def jws_protected_nesting(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    suffix, depth = rng.choice(_DEPTHS)
    text = j(jws_parts(seed).protected)[:-1] + f',"io.example.n":{_nested(depth)}' + "}"
    return resigned(seed, f"jws.protected.nesting.{suffix}", str(depth), protected=text.encode())


def jws_resign(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    parts = jws_parts(seed)
    members = pairs_of(parts.protected)
    if rng.random() < 0.5:
        rng.shuffle(members)
    return resigned(seed, "jws.resign", "same meaning", protected=obj(members).encode())


def pss_salt(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    salt = rng.choice([0, 20, 64, 222])  # the hash length (32) is what RFC 7518 and RFC 9053 fix
    return resigned(seed, f"{_kind(seed)}.pss-salt", f"salt {salt}",
                    sign=lambda data: raw_sign(seed.signer, data, salt=salt))  # fmt: skip


def ecdsa_der(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    def der(data: bytes) -> bytes:
        key = seed.signer.key
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key.sign(data, ec.ECDSA(hashes.SHA256()))

    return resigned(seed, f"{_kind(seed)}.ecdsa-der", "DER signature", sign=der)


# --- JWS: what the signature does not cover ------------------------------------------------------------


def jws_envelope_members(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    env = dict(jws_parts(seed).envelope)
    other = jws_parts(rng.choice([s for s in bench.seeds if s.media_type == JWS])).envelope
    choice = rng.choice(["unknown", "signatures", "casefold", "casefold-same", "duplicate", "reorder",
                         "pretty", "trailing", "missing-header", "header-null"])  # fmt: skip
    text: str
    if choice == "unknown":
        env["x-note"] = _random_json_value(rng)
        text = j(env)
    elif choice == "signatures":
        env["signatures"] = [{"protected": env["protected"], "signature": env["signature"]}]
        text = j(env)
    elif choice in ("casefold", "casefold-same"):
        name = rng.choice(["payload", "protected", "signature", "header"])
        value = env[name] if choice == "casefold-same" else other[name]
        members = place(rng, pairs_of(env), (case_variant(rng, name), j(value)))
        text = obj(members)
    elif choice == "duplicate":
        name = rng.choice(["payload", "protected", "signature", "header"])
        members = pairs_of(env)
        members.insert(rng.randint(0, len(members)), (name, j(other[name])))
        text = obj(members)
    elif choice == "reorder":
        members = pairs_of(env)
        rng.shuffle(members)
        text = obj(members)
    elif choice == "pretty":
        text = json.dumps(env, indent=2)
    elif choice == "trailing":
        text = j(env) + "{}"
    elif choice == "missing-header":
        env.pop("header")
        text = j(env)
    else:
        env["header"] = None
        text = j(env)
    return Mutant(f"jws.unsigned.envelope.{choice}", choice, text.encode(), JWS)


def _random_json_value(rng: random.Random) -> Any:
    return json.loads(_random_json(rng))


def jws_envelope_base64(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    env = dict(jws_parts(seed).envelope)
    name = rng.choice(["payload", "protected", "signature"])
    value: str = env[name]
    choice = rng.choice(["padded", "newline", "crlf", "space", "standard-alphabet", "truncated"])
    if choice == "padded":
        value = value + "=" * (-len(value) % 4 or 4)
    elif choice in ("newline", "crlf", "space"):
        i = rng.randint(1, len(value) - 1)
        value = value[:i] + {"newline": "\n", "crlf": "\r\n", "space": " "}[choice] + value[i:]
    elif choice == "standard-alphabet":
        value = value.replace("-", "+").replace("_", "/")
        if value == env[name]:
            choice = "unchanged"
    else:
        value = value[:-1]
    env[name] = value
    return Mutant(f"jws.unsigned.base64.{choice}", f"{name} {choice}", compact(env), JWS)


def jws_unprotected(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:  # noqa: PLR0912 (one branch per variant)
    env = dict(jws_parts(seed).envelope)
    header = dict(env["header"])
    x5c = list(header["x5c"])
    choice = rng.choice(["casefold-x5c", "duplicate-x5c", "x5c-newline", "x5c-not-array", "x5c-empty",
                         "x5c-entry-number", "agent-number", "agent-null", "agent-other-case",
                         "agent-both-cases", "timestamp-garbage", "timestamp-number", "timestamp-null",
                         "unknown", "x5c-urlsafe"])  # fmt: skip
    family = choice
    text: str | None = None
    if choice == "casefold-x5c":
        header.pop("x5c")
        header[case_variant(rng, "x5c")] = x5c
    elif choice == "duplicate-x5c":
        members = pairs_of(header)
        members.append(("x5c", j(x5c[:1])))
        text = obj([(k, obj(members) if k == "header" else j(v)) for k, v in env.items()])
    elif choice == "x5c-newline":
        header["x5c"] = [x5c[0][:40] + "\n" + x5c[0][40:], *x5c[1:]]
    elif choice == "x5c-not-array":
        header["x5c"] = x5c[0]
    elif choice == "x5c-empty":
        header["x5c"] = []
    elif choice == "x5c-entry-number":
        header["x5c"] = [*x5c, 5]
    elif choice == "x5c-urlsafe":
        header["x5c"] = [c.replace("+", "-").replace("/", "_") for c in x5c]
        if header["x5c"] == x5c:
            family = "x5c-unchanged"
    elif choice == "agent-number":
        header[H_AGENT] = 5
    elif choice == "agent-null":
        header[H_AGENT] = None
    elif choice == "agent-other-case":
        agent = header.pop(H_AGENT, "notation")
        header["io.cncf.notary.SigningAgent"] = agent
    elif choice == "agent-both-cases":
        header["io.cncf.notary.SigningAgent"] = "other/1.0"
    elif choice == "timestamp-garbage":
        header[H_TIMESTAMP] = base64.b64encode(rng.randbytes(20)).decode()
    elif choice == "timestamp-number":
        header[H_TIMESTAMP] = 5
    elif choice == "timestamp-null":
        header[H_TIMESTAMP] = None
    else:
        header["x-extra"] = _random_json_value(rng)
    env["header"] = header
    data = text.encode() if text is not None else compact(env)
    return Mutant(f"jws.unsigned.header.{family}", choice, data, JWS)


def bitflip(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    data = bytearray(seed.envelope)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)
    return Mutant(f"{_kind(seed)}.unsigned.bitflip", "flipped bits", bytes(data), seed.media_type)


# --- COSE ----------------------------------------------------------------------------------------------

L_ALG, L_CRIT, L_CTY, L_X5CHAIN = cbor.integer(1), cbor.integer(2), cbor.integer(3), cbor.integer(33)


def _relabel(pairs: list[tuple[bytes, bytes]], old: bytes, new: bytes) -> list[tuple[bytes, bytes]]:
    return [(new if k == old else k, v) for k, v in pairs]


def _label_variants(n: int) -> list[tuple[str, bytes]]:
    return [
        ("float", cbor.float16(float(n))), ("float", cbor.float32(float(n))),
        ("float", cbor.float64(float(n))),
        ("bignum", cbor.bignum(n)), ("text", cbor.tstr(str(n))), ("non-minimal", cbor.integer(n, width=2)),
        ("bool", cbor.TRUE if n == 1 else cbor.FALSE), ("tagged", cbor.tag(1, cbor.integer(n))),
    ]  # fmt: skip


def cose_protected_labels(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    parts = cose_parts(seed)
    n = rng.choice([1, 2, 3])
    old = cbor.integer(n)
    suffix, new = rng.choice(_label_variants(n))
    mode = rng.choice(["rename", "add"])
    if mode == "rename":
        protected = _relabel(parts.protected, old, new)
    else:
        value = dict(parts.protected)[old]
        alt = {1: cbor.integer(-35), 2: cbor.array([cbor.tstr(H_SCHEME), cbor.tstr("x")]),
               3: cbor.tstr("application/json")}[n] if rng.random() < 0.6 else value  # fmt: skip
        i = rng.randint(0, len(parts.protected))
        protected = [*parts.protected[:i], (new, alt), *parts.protected[i:]]
    family = f"cose.protected.label.{suffix}"
    return resigned(seed, family, f"label {n} as {suffix} ({mode})", cose_protected=protected)


def cose_protected_duplicate(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    parts = cose_parts(seed)
    label, value = rng.choice(parts.protected)
    protected = list(parts.protected)
    protected.insert(rng.randint(0, len(protected)), (label, value))
    return resigned(seed, "cose.protected.duplicate", "same label twice", cose_protected=protected)


def cose_protected_types(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    parts = cose_parts(seed)
    protected = dict(parts.protected)
    alg = COSE_ALG["PS256" if seed.signer.name == "rsa" else "ES256"]
    choices: dict[str, tuple[bytes, bytes | None]] = {
        "alg-text": (L_ALG, cbor.tstr("PS256" if alg == -37 else "ES256")),
        "alg-bignum": (L_ALG, cbor.bignum(alg)),
        "alg-float": (L_ALG, cbor.float32(float(alg))),
        "alg-non-minimal": (L_ALG, cbor.integer(alg, width=4)),
        "alg-other": (L_ALG, cbor.integer(-38 if alg == -37 else -35)),
        "crit-float-entry": (L_CRIT, cbor.array([cbor.tstr(H_SCHEME), cbor.float16(1.0)])),
        "crit-bool-entry": (L_CRIT, cbor.array([cbor.tstr(H_SCHEME), cbor.TRUE])),
        "crit-registered": (L_CRIT, cbor.array([cbor.tstr(H_SCHEME), cbor.integer(1)])),
        "crit-not-array": (L_CRIT, cbor.tstr(H_SCHEME)),
        "crit-empty": (L_CRIT, cbor.array([])),
        "crit-absent-label": (L_CRIT, cbor.array([cbor.tstr(H_SCHEME), cbor.integer(99)])),
        "cty-uint": (L_CTY, cbor.integer(50)),
        "cty-other": (L_CTY, cbor.tstr("application/json")),
        "kid-text": (cbor.integer(4), cbor.tstr("key")),
        "kid-bytes": (cbor.integer(4), cbor.bstr(b"key")),
        "iv-text": (cbor.integer(5), cbor.tstr("iv")),
        "iv-bytes": (cbor.integer(5), cbor.bstr(b"iv")),
        "partial-iv-text": (cbor.integer(6), cbor.tstr("iv")),
        "counter-signature": (cbor.integer(7), cbor.bstr(b"sig")),
        "counter-signature0": (cbor.integer(9), cbor.bstr(b"sig")),
        "typ-bytes": (cbor.integer(16), cbor.bstr(b"x")),
        "typ-text": (cbor.integer(16), cbor.tstr("application/example")),
        "scheme-bytes": (cbor.tstr(H_SCHEME), cbor.bstr(b"notary.x509")),
        "no-alg": (L_ALG, None),
        "no-cty": (L_CTY, None),
    }
    name = rng.choice([*sorted(choices), "iv-and-partial-iv"])
    if name == "iv-and-partial-iv":
        protected[cbor.integer(5)] = cbor.bstr(b"iv")
        protected[cbor.integer(6)] = cbor.bstr(b"piv")
    else:
        label, value = choices[name]
        if value is None:
            protected.pop(label)
        else:
            protected[label] = value
    return resigned(seed, f"cose.protected.param.{name}", name, cose_protected=list(protected.items()))


_EPOCH = 1_800_000_000


def _time_variants() -> list[tuple[str, bytes]]:
    return [
        ("valid", cbor.tag(1, cbor.integer(_EPOCH))), ("valid", cbor.tag(1, cbor.float64(_EPOCH + 0.5))),
        ("valid", cbor.tag(1, cbor.integer(_EPOCH, width=8))), ("valid", cbor.tag(1, cbor.float32(1.5e9))),
        ("before-1970", cbor.tag(1, cbor.integer(-1000))),
        ("bignum", cbor.tag(1, cbor.bignum(_EPOCH))), ("untagged", cbor.integer(_EPOCH)),
        ("tag0", cbor.tag(0, cbor.tstr("2027-01-15T08:00:00Z"))), ("text", cbor.tag(1, cbor.tstr("x"))),
        ("non-finite", cbor.tag(1, cbor.float64(float("nan")))),
        ("non-finite", cbor.tag(1, cbor.float64(float("inf")))),
        ("range", cbor.tag(1, cbor.integer(253402300800))), ("range", cbor.tag(1, cbor.integer(2**40))),
        ("range", cbor.tag(1, cbor.integer(-62135596801))), ("range", cbor.tag(1, cbor.integer(2**63 - 1))),
        ("other-tag", cbor.tag(100, cbor.integer(20000))), ("bool", cbor.tag(1, cbor.TRUE)),
    ]  # fmt: skip


def cose_protected_time(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    parts = cose_parts(seed)
    protected = dict(parts.protected)
    suffix, value = rng.choice(_time_variants())
    if rng.random() < 0.6:
        protected[cbor.tstr(H_TIME)] = value
        family = f"cose.protected.time.{suffix}"
    else:
        protected[cbor.tstr(H_EXPIRY)] = value
        crit = cbor.array([cbor.tstr(H_SCHEME), cbor.tstr(H_EXPIRY)])
        if rng.random() < 0.85:
            protected[L_CRIT] = crit
            family = f"cose.protected.expiry.{suffix}"
        else:
            family = "cose.protected.expiry.not-critical"
    return resigned(seed, family, suffix, cose_protected=list(protected.items()))


def cose_protected_unknown(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    parts = cose_parts(seed)
    protected = dict(parts.protected)
    label = rng.choice([cbor.tstr("io.example.attr"), cbor.integer(-70000), cbor.integer(500)])
    protected[label] = cbor.value(rng.choice(["v", 5, [1, 2], {"a": b"b"}]))
    critical = rng.random() < 0.4
    if critical:
        protected[L_CRIT] = cbor.array([cbor.tstr(H_SCHEME), label])
    family = "cose.protected.unknown." + ("critical" if critical else "plain")
    return resigned(seed, family, "extra label", cose_protected=list(protected.items()))


def cose_resign(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    parts = cose_parts(seed)
    protected = list(parts.protected)
    rng.shuffle(protected)
    return resigned(seed, "cose.resign", "same meaning", cose_protected=protected)


def cose_x5chain_place(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    parts = cose_parts(seed)
    chain = dict(parts.unprotected)[L_X5CHAIN]
    choice = rng.choice(["protected-only", "both"])
    protected = [*parts.protected, (L_X5CHAIN, chain)]
    unprotected = [(k, v) for k, v in parts.unprotected if choice == "both" or k != L_X5CHAIN]
    return resigned(seed, f"cose.x5chain.{choice}", choice, cose_protected=protected,
                    cose_unprotected=unprotected)  # fmt: skip


def _resplice(seed: Seed, unprotected: list[tuple[bytes, bytes]]) -> bytes:
    """The seed with another unprotected header; the signature does not cover it."""
    message = cbor2.loads(seed.envelope).value
    return cbor.tag(18, cbor.array([cbor.bstr(message[0]), cbor.cmap(unprotected), cbor.bstr(message[2]),
                                    cbor.bstr(message[3])]))  # fmt: skip


def cose_unprotected(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    parts = cose_parts(seed)
    unprotected = dict(parts.unprotected)
    chain = unprotected[L_X5CHAIN]
    certs = cbor2.loads(chain)
    choices: dict[str, Callable[[], None]] = {
        "label-float": lambda: unprotected.update({cbor.float32(33.0): unprotected.pop(L_X5CHAIN)}),
        "label-bignum": lambda: unprotected.update({cbor.bignum(33): unprotected.pop(L_X5CHAIN)}),
        "x5chain-single": lambda: unprotected.update({L_X5CHAIN: cbor.bstr(certs[0])}),
        "x5chain-text-entry": lambda: unprotected.update(
            {L_X5CHAIN: cbor.array([cbor.bstr(c) for c in certs] + [cbor.tstr("x")])}),
        "x5chain-empty": lambda: unprotected.update({L_X5CHAIN: cbor.array([])}),
        "crit": lambda: unprotected.update({L_CRIT: cbor.array([cbor.tstr(H_AGENT)])}),
        "kid-text": lambda: unprotected.update({cbor.integer(4): cbor.tstr("k")}),
        "kid-bytes": lambda: unprotected.update({cbor.integer(4): cbor.bstr(b"k")}),
        "counter-signature": lambda: unprotected.update({cbor.integer(7): cbor.bstr(b"s")}),
        "counter-signature-v2": lambda: unprotected.update({cbor.integer(11): cbor.bstr(b"s")}),
        "iv-and-partial-iv": lambda: unprotected.update(
            {cbor.integer(5): cbor.bstr(b"a"), cbor.integer(6): cbor.bstr(b"b")}),
        "tagged-value": lambda: unprotected.update({cbor.tstr("io.example.t"): cbor.tag(1, cbor.integer(5))}),
        "agent-number": lambda: unprotected.update({cbor.tstr(H_AGENT): cbor.integer(5)}),
        "timestamp-text": lambda: unprotected.update({cbor.tstr(H_TIMESTAMP): cbor.tstr("x")}),
        "timestamp-garbage": lambda: unprotected.update(
            {cbor.tstr(H_TIMESTAMP): cbor.bstr(rng.randbytes(20))}),
        "unknown": lambda: unprotected.update({cbor.tstr("io.example.u"): cbor.value([1, "a"])}),
        "duplicate": lambda: None,
        "alg": lambda: unprotected.update({L_ALG: cbor.integer(-7)}),
    }  # fmt: skip
    name = rng.choice(sorted(choices))
    choices[name]()
    entries = list(unprotected.items())
    if name == "duplicate":
        entries.append((L_X5CHAIN, chain))
    return Mutant(f"cose.unsigned.header.{name}", name, _resplice(seed, entries), COSE)


def cose_structure(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    message = cbor2.loads(seed.envelope).value
    protected, unprotected, payload, signature = (
        cbor.bstr(message[0]),
        cbor.value(message[1]),
        cbor.bstr(message[2]),
        cbor.bstr(message[3]),
    )
    choices = {
        "untagged": cbor.array([protected, unprotected, payload, signature]),
        "other-tag": cbor.tag(98, cbor.array([protected, unprotected, payload, signature])),
        "trailing": seed.envelope + b"\x00",
        "five-items": cbor.tag(18, cbor.array([protected, unprotected, payload, signature, cbor.NULL])),
        "three-items": cbor.tag(18, cbor.array([protected, unprotected, payload])),
        "detached": cbor.tag(18, cbor.array([protected, unprotected, cbor.NULL, signature])),
        "empty-signature": cbor.tag(18, cbor.array([protected, unprotected, payload, cbor.bstr(b"")])),
        "indefinite": b"\xd2\x9f" + protected + unprotected + payload + signature + b"\xff",
        "non-minimal-length": cbor.tag(18, cbor.head(4, 4, width=1) + protected + unprotected + payload
                                       + signature),
        "tagged-payload": cbor.tag(
            18, cbor.array([protected, unprotected, cbor.tag(24, payload), signature])),
        "double-tag": cbor.tag(18, cbor.tag(18, cbor.array([protected, unprotected, payload, signature]))),
        "truncated": seed.envelope[:-5],
    }  # fmt: skip
    name = rng.choice(sorted(choices))
    return Mutant(f"cose.unsigned.structure.{name}", name, choices[name], COSE)


# --- certificate chains --------------------------------------------------------------------------------

_LEAVES: dict[str, LeafSpec] = {
    "any-eku": LeafSpec(
        key="ec-p256", eku=(ExtendedKeyUsageOID.CODE_SIGNING, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE)),
    "no-eku": LeafSpec(key="ec-p256", eku=None),
    "server-auth": LeafSpec(key="ec-p256", eku=(ExtendedKeyUsageOID.SERVER_AUTH,)),
    "ca-leaf": LeafSpec(key="ec-p256", ca=True),
    "expired": LeafSpec(key="ec-p256", not_before=dt.timedelta(days=-3),
                        not_after=dt.timedelta(days=-1)),
    "not-yet-valid": LeafSpec(key="ec-p256", not_before=dt.timedelta(days=2)),
    "rsa-1024": LeafSpec(key="rsa-1024"),
    "rsa-3072": LeafSpec(key="rsa-3072"),
    "ec-p384": LeafSpec(key="ec-p384"),
    "ku-not-critical": LeafSpec(key="ec-p256", key_usage_critical=False),
    "no-digital-signature": LeafSpec(key="ec-p256", digital_signature=False),
    "key-encipherment": LeafSpec(key="rsa-2048", key_encipherment=True),
}  # fmt: skip


def chain_profile(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    name = rng.choice(sorted(_LEAVES))
    try:
        signer = bench.variant(name, _LEAVES[name])
    except (ValueError, TypeError):  # cryptography may refuse to make a certificate this weak
        name = "any-eku"
        signer = bench.variant(name, _LEAVES[name])
    header = dict(jws_parts(seed).protected) if seed.media_type == JWS else None
    if header is not None:
        header["alg"] = _alg_name(signer)
        return resigned(seed, f"jws.chain.{name}", name, signer=signer, protected=compact(header))
    parts = cose_parts(seed)
    protected = [
        (k, cbor.integer(COSE_ALG[_alg_name(signer)]) if k == L_ALG else v) for k, v in parts.protected
    ]
    return resigned(seed, f"cose.chain.{name}", name, signer=signer, cose_protected=protected)


def _alg_name(signer: Signer) -> str:
    from tests.differential.kit import alg_for  # noqa: PLC0415

    return alg_for(signer)


def chain_order(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    leaf, intermediate, root = seed.signer.chain
    stranger = bench.pki.self_signed("Stranger")
    choices = {
        "leaf-only": (leaf,), "no-root": (leaf, intermediate), "no-intermediate": (leaf, root),
        "reversed": (root, intermediate, leaf), "leaf-twice": (leaf, leaf, intermediate, root),
        "stranger-appended": (leaf, intermediate, root, stranger), "swapped": (leaf, root, intermediate),
    }  # fmt: skip
    name = rng.choice(sorted(choices))
    signer = Signer(seed.signer.name, seed.signer.key, choices[name])
    return resigned(seed, f"{_kind(seed)}.chain.order.{name}", name, signer=signer)


# --- signature manifests and layouts ---------------------------------------------------------------------


def _manifest(seed: Seed, bench: Workbench) -> dict[str, Any]:
    return json.loads(bench.default_manifest(seed, seed.envelope, seed.media_type))


def manifest_form(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    m = _manifest(seed, bench)
    empty = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest_of(b"{}"), "size": 2}
    choice = rng.choice(["v1.1", "v1.1-notary-config", "artifact-type-other", "config-other",
                         "artifact-type-empty-string", "no-config", "v1.1-other-config"])  # fmt: skip
    if choice == "v1.1":
        m["artifactType"], m["config"] = NOTARY, empty
    elif choice == "v1.1-notary-config":
        m["artifactType"] = NOTARY
    elif choice == "artifact-type-other":
        m["artifactType"] = "application/vnd.example"
    elif choice == "config-other":
        m["config"] = {**empty, "mediaType": "application/vnd.example.config"}
    elif choice == "artifact-type-empty-string":
        m["artifactType"] = ""
    elif choice == "no-config":
        m.pop("config")
    else:
        m["artifactType"], m["config"] = NOTARY, {**empty, "mediaType": "application/vnd.example"}
    return Mutant(f"manifest.form.{choice}", choice, seed.envelope, seed.media_type, manifest=compact(m))


def manifest_layers(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    m = _manifest(seed, bench)
    layer = m["layers"][0]
    choice = rng.choice(["none", "two", "other-type", "size-plus", "size-minus", "missing-blob",
                         "not-array", "extra-fields"])  # fmt: skip
    drop: tuple[str, ...] = ()
    if choice == "none":
        m["layers"] = []
    elif choice == "two":
        m["layers"] = [layer, layer]
    elif choice == "other-type":
        layer["mediaType"] = "application/octet-stream"
    elif choice == "size-plus":
        layer["size"] += 1
    elif choice == "size-minus":
        layer["size"] -= 1
    elif choice == "missing-blob":
        drop = (layer["digest"],)
    elif choice == "not-array":
        m["layers"] = layer
    else:
        layer["annotations"] = {"a": "b"}
        layer["urls"] = ["https://example.com"]
    return Mutant(f"manifest.layers.{choice}", choice, seed.envelope, seed.media_type, manifest=compact(m),
                  drop_blobs=drop)  # fmt: skip


def manifest_subject(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    m = _manifest(seed, bench)
    subject = m["subject"]
    choice = rng.choice(["exact", "size-plus", "size-minus", "media-type-index", "media-type-docker",
                         "other-digest", "missing", "extra-fields", "null", "size-string"])  # fmt: skip
    if choice == "size-plus":
        subject["size"] += 1
    elif choice == "size-minus":
        subject["size"] -= 1
    elif choice == "media-type-index":
        subject["mediaType"] = OCI_INDEX
    elif choice == "media-type-docker":
        subject["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json"
    elif choice == "other-digest":
        subject["digest"] = other_descriptor(rng)["digest"]
    elif choice == "missing":
        m.pop("subject")
    elif choice == "extra-fields":
        subject["annotations"] = {"a": "b"}
        subject["artifactType"] = "application/vnd.example"
    elif choice == "null":
        m["subject"] = None
    elif choice == "size-string":
        subject["size"] = str(subject["size"])
    return Mutant(f"manifest.subject.{choice}", choice, seed.envelope, seed.media_type, manifest=compact(m))


def manifest_members(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:  # noqa: PLR0912 (one branch per variant)
    m = _manifest(seed, bench)
    other = dict(m["subject"], size=m["subject"]["size"] + 7)
    choice = rng.choice(["casefold-subject", "casefold-subject-extra", "duplicate-subject",
                         "casefold-layers", "casefold-config", "unknown", "annotations-number",
                         "thumbprint-wrong", "schema-1", "schema-missing", "media-type-missing",
                         "media-type-index", "casefold-media-type"])  # fmt: skip
    members = pairs_of(m)
    if choice == "casefold-subject":
        members = [(case_variant(rng, k) if k == "subject" else k, v) for k, v in members]
    elif choice == "casefold-subject-extra":
        members.append((case_variant(rng, "subject"), j(other)))
    elif choice == "duplicate-subject":
        members.insert(rng.randint(0, len(members)), ("subject", j(other)))
    elif choice == "casefold-layers":
        members.append((case_variant(rng, "layers"), j([])))
    elif choice == "casefold-config":
        members.append((case_variant(rng, "config"), j({**m["config"], "mediaType": "application/x"})))
    elif choice == "casefold-media-type":
        members.append((case_variant(rng, "mediaType"), j(OCI_INDEX)))
    elif choice == "unknown":
        members.append(("x-extra", _random_json(rng)))
    elif choice == "annotations-number":
        members = [(k, j({"a": 1}) if k == "annotations" else v) for k, v in members]
    elif choice == "thumbprint-wrong":
        members = [(k, j({"io.cncf.notary.x509chain.thumbprint#S256": '["00"]'}) if k == "annotations" else v)
                   for k, v in members]  # fmt: skip
    elif choice == "schema-1":
        members = [(k, "1" if k == "schemaVersion" else v) for k, v in members]
    elif choice == "schema-missing":
        members = [(k, v) for k, v in members if k != "schemaVersion"]
    elif choice == "media-type-missing":
        members = [(k, v) for k, v in members if k != "mediaType"]
    else:
        members = [(k, j(OCI_INDEX) if k == "mediaType" else v) for k, v in members]
    return Mutant(f"manifest.members.{choice}", choice, seed.envelope, seed.media_type,
                  manifest=obj(members).encode())  # fmt: skip


def manifest_encoding(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    suffix, data = _encoding_variants(j(_manifest(seed, bench)), rng)
    return Mutant(f"manifest.encoding.{suffix}", suffix, seed.envelope, seed.media_type, manifest=data)


def layout_index(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:  # noqa: PLR0912 (one branch per variant)
    manifest = bench.default_manifest(seed, seed.envelope, seed.media_type)
    sig_entry = {"mediaType": OCI_MANIFEST, "digest": digest_of(manifest), "size": len(manifest)}
    entries: list[dict[str, Any]] = [bench.image_entry, sig_entry]
    blobs: dict[str, bytes] = {}
    drop: tuple[str, ...] = ()
    choice = rng.choice(["unrelated-invalid-json", "unrelated-missing-blob", "unrelated-bad-digest",
                         "unrelated-unknown-type", "unrelated-schema-3", "nested-index", "signature-unlisted",
                         "signature-entry-size", "signature-entry-index-type", "signature-missing-blob",
                         "image-entry-size", "tag-twice", "unrelated-bad-size"])  # fmt: skip
    if choice == "unrelated-invalid-json":
        junk = b"{not json"
        blobs[digest_of(junk)] = junk
        entries.append({"mediaType": OCI_MANIFEST, "digest": digest_of(junk), "size": len(junk)})
    elif choice == "unrelated-missing-blob":
        entries.append({"mediaType": OCI_MANIFEST, "digest": digest_of(b"gone"), "size": 4})
    elif choice == "unrelated-bad-digest":
        entries.append({"mediaType": OCI_MANIFEST, "digest": "sha256:xyz", "size": 4})
    elif choice == "unrelated-bad-size":
        other = compact({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": bench.image_config(),
                         "layers": []})  # fmt: skip
        blobs[digest_of(other)] = other
        entries.append({"mediaType": OCI_MANIFEST, "digest": digest_of(other), "size": -1})
    elif choice == "unrelated-unknown-type":
        entries.append({"mediaType": "application/vnd.example", "digest": digest_of(b"gone"), "size": 4})
    elif choice == "unrelated-schema-3":
        other = compact({"schemaVersion": 3, "mediaType": OCI_MANIFEST, "config": bench.image_config(),
                         "layers": [{"mediaType": "x", "digest": "sha256:bad", "size": 1}]})  # fmt: skip
        blobs[digest_of(other)] = other
        entries.append({"mediaType": OCI_MANIFEST, "digest": digest_of(other), "size": len(other)})
    elif choice == "nested-index":
        nested = compact({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [sig_entry]})
        blobs[digest_of(nested)] = nested
        entries = [
            bench.image_entry,
            {"mediaType": OCI_INDEX, "digest": digest_of(nested), "size": len(nested)},
        ]
    elif choice == "signature-unlisted":
        entries = [bench.image_entry]
    elif choice == "signature-entry-size":
        sig_entry["size"] += 1
    elif choice == "signature-entry-index-type":
        sig_entry["mediaType"] = OCI_INDEX
    elif choice == "signature-missing-blob":
        drop = (digest_of(manifest),)
    elif choice == "image-entry-size":
        entries[0] = {**bench.image_entry, "size": bench.image_entry["size"] + 1}
    else:
        entries.append(dict(entries[1], annotations={"org.opencontainers.image.ref.name": "v1"}))
    index = compact({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    return Mutant(f"layout.index.{choice}", choice, seed.envelope, seed.media_type, manifest=manifest,
                  index=index, blobs=blobs, drop_blobs=drop)  # fmt: skip


def random_bytes(rng: random.Random, bench: Workbench, seed: Seed) -> Mutant:
    choice = rng.choice(["random", "truncated", "empty", "json-prefix", "cbor-prefix"])
    if choice == "random":
        data = rng.randbytes(rng.randint(1, 4000))
    elif choice == "truncated":
        data = seed.envelope[: rng.randrange(len(seed.envelope))]
    elif choice == "empty":
        data = b""
    elif choice == "json-prefix":
        data = b'{"payload":' + rng.randbytes(rng.randint(1, 200))
    else:
        data = b"\xd2\x84" + rng.randbytes(rng.randint(1, 200))
    media_type = rng.choice([JWS, COSE])
    return Mutant(f"random.{choice}", choice, data, media_type)


@dataclass(frozen=True)
class Family:
    generate: Gen
    kinds: tuple[str, ...]  # the seeds it applies to: "jws", "cose", "rsa", "ec"


def _f(generate: Gen, *kinds: str) -> Family:
    return Family(generate, kinds or ("jws", "cose"))


GENERATORS: dict[str, Family] = {
    "payload.casefold": _f(payload_casefold),
    "payload.duplicate": _f(payload_duplicate),
    "payload.types": _f(payload_types),
    "payload.unknown": _f(payload_unknown),
    "payload.shape": _f(payload_shape),
    "payload.encoding": _f(payload_encoding),
    "payload.numbers": _f(payload_numbers),
    "payload.nesting": _f(payload_nesting),
    "jws.protected.casefold": _f(jws_protected_casefold, "jws"),
    "jws.protected.duplicate": _f(jws_protected_duplicate, "jws"),
    "jws.protected.unknown": _f(jws_protected_unknown, "jws"),
    "jws.protected.crit": _f(jws_protected_crit, "jws"),
    "jws.protected.values": _f(jws_protected_values, "jws"),
    "jws.protected.time": _f(jws_protected_time, "jws"),
    "jws.protected.signing-authority": _f(jws_protected_signing_authority, "jws"),
    "jws.protected.encoding": _f(jws_protected_encoding, "jws"),
    "jws.protected.numbers": _f(jws_protected_numbers, "jws"),
    "jws.protected.nesting": _f(jws_protected_nesting, "jws"),
    "jws.resign": _f(jws_resign, "jws"),
    "pss-salt": _f(pss_salt, "rsa"),
    "ecdsa-der": _f(ecdsa_der, "ec"),
    "jws.unsigned.envelope": _f(jws_envelope_members, "jws"),
    "jws.unsigned.base64": _f(jws_envelope_base64, "jws"),
    "jws.unsigned.header": _f(jws_unprotected, "jws"),
    "unsigned.bitflip": _f(bitflip),
    "cose.protected.labels": _f(cose_protected_labels, "cose"),
    "cose.protected.duplicate": _f(cose_protected_duplicate, "cose"),
    "cose.protected.types": _f(cose_protected_types, "cose"),
    "cose.protected.time": _f(cose_protected_time, "cose"),
    "cose.protected.unknown": _f(cose_protected_unknown, "cose"),
    "cose.resign": _f(cose_resign, "cose"),
    "cose.x5chain": _f(cose_x5chain_place, "cose"),
    "cose.unsigned.header": _f(cose_unprotected, "cose"),
    "cose.unsigned.structure": _f(cose_structure, "cose"),
    "chain.profile": _f(chain_profile),
    "chain.order": _f(chain_order),
    "manifest.form": _f(manifest_form),
    "manifest.layers": _f(manifest_layers),
    "manifest.subject": _f(manifest_subject),
    "manifest.members": _f(manifest_members),
    "manifest.encoding": _f(manifest_encoding),
    "layout.index": _f(layout_index),
    "random": _f(random_bytes),
}


def applies(family: Family, seed: Seed) -> bool:
    kind = "jws" if seed.media_type == JWS else "cose"
    return kind in family.kinds or seed.signer.name in family.kinds


def generate(rng: random.Random, bench: Workbench, name: str) -> tuple[Mutant, Seed]:
    family = GENERATORS[name]
    seed = rng.choice([s for s in bench.seeds if applies(family, s)])
    return family.generate(rng, bench, seed), seed

"""The differential workbench: one PKI, one OCI layout signed by the real notation, and a way to put
any mutant signature into a fresh layout and ask ``notation verify`` and Referee about it.

What the real notation made (JWS and COSE, with an RSA and an ECDSA key) are the seeds; mutants are
built from them by ``tests.differential.mutants``. Re-signing uses the signer's own key, so a mutant
whose bytes verify is one whose meaning changed, not a forgery.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.helpers import rawcbor as cbor
from tests.helpers.codesign import install_notation_key, new_key, write_trust_policy, write_trust_store
from tests.helpers.tools import run, tool

SCOPE = "local/differential"
JWS = "application/jose+json"
COSE = "application/cose"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
NOTARY = "application/vnd.cncf.notary.signature"
PAYLOAD_TYPE = "application/vnd.cncf.notary.payload.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def compact(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


# --- PKI -------------------------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "WA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Referee Differential"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _usage(*, sign: bool = False, cert_sign: bool = False, encipher: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign, content_commitment=False, key_encipherment=encipher,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip


@dataclass(frozen=True)
class Signer:
    """A leaf key and the chain notation and Referee see (leaf first, root last)."""

    name: str
    key: PrivateKey
    chain: tuple[x509.Certificate, ...]

    def ders(self) -> list[bytes]:
        return [c.public_bytes(serialization.Encoding.DER) for c in self.chain]


@dataclass(frozen=True)
class LeafSpec:
    key: str = "rsa-2048"
    eku: tuple[x509.ObjectIdentifier, ...] | None = (ExtendedKeyUsageOID.CODE_SIGNING,)
    ca: bool = False
    not_before: dt.timedelta = dt.timedelta(days=-1)
    not_after: dt.timedelta = dt.timedelta(days=30)
    hash: type[hashes.HashAlgorithm] = hashes.SHA384
    key_usage_critical: bool = True
    digital_signature: bool = True
    key_encipherment: bool = False


class Pki:
    """A root and an intermediate (ECDSA P-384) that issue any leaf a mutant needs."""

    def __init__(self) -> None:
        now = dt.datetime.now(dt.UTC)
        self.root_key = new_key("ec-p384")
        root_name = _name("Differential Root")
        self.root = (
            x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
            .public_key(self.root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=10)).not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_usage(cert_sign=True), critical=True)
            .sign(self.root_key, hashes.SHA384())
        )  # fmt: skip
        self.ca_key = new_key("ec-p384")
        self.intermediate = (
            x509.CertificateBuilder().subject_name(_name("Differential Intermediate"))
            .issuer_name(root_name).public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=5)).not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_usage(cert_sign=True), critical=True)
            .sign(self.root_key, hashes.SHA384())
        )  # fmt: skip

    def leaf(self, name: str, spec: LeafSpec | None = None) -> Signer:
        spec = spec or LeafSpec()
        now = dt.datetime.now(dt.UTC)
        key: PrivateKey = (
            rsa.generate_private_key(65537, int(spec.key[4:])) if spec.key.startswith("rsa-")
            else new_key(spec.key)
        )  # fmt: skip
        builder = (
            x509.CertificateBuilder().subject_name(_name(f"signer {name}"))
            .issuer_name(self.intermediate.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + spec.not_before).not_valid_after(now + spec.not_after)
            .add_extension(x509.BasicConstraints(ca=spec.ca, path_length=None), critical=True)
            .add_extension(
                _usage(sign=spec.digital_signature, encipher=spec.key_encipherment, cert_sign=spec.ca),
                critical=spec.key_usage_critical,
            )
        )  # fmt: skip
        if spec.eku is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(spec.eku)), critical=False)
        cert = builder.sign(self.ca_key, spec.hash())
        return Signer(name, key, (cert, self.intermediate, self.root))

    def self_signed(self, name: str) -> x509.Certificate:
        key = new_key("ec-p256")
        now = dt.datetime.now(dt.UTC)
        subject = _name(name)
        return (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_usage(cert_sign=True), critical=True)
            .sign(key, hashes.SHA256())
        )  # fmt: skip


# --- signing primitives (independent of webhook.notary.signer) ---------------------------------------

_HASH_FOR_ALG = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
COSE_ALG = {"PS256": -37, "PS384": -38, "PS512": -39, "ES256": -7, "ES384": -35, "ES512": -36}


def alg_for(signer: Signer) -> str:
    key = signer.key
    if isinstance(key, rsa.RSAPrivateKey):
        return {2048: "PS256", 3072: "PS384", 4096: "PS512"}.get(key.key_size, "PS256")
    return {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}.get(key.curve.name, "ES256")


def raw_sign(signer: Signer, data: bytes, alg: str | None = None, *, salt: int | None = None) -> bytes:
    """RSASSA-PSS (salt = hash length unless told) or ECDSA as fixed-length r || s."""
    alg = alg or alg_for(signer)
    digest = _HASH_FOR_ALG[alg[2:]]()
    key = signer.key
    if isinstance(key, rsa.RSAPrivateKey):
        length = digest.digest_size if salt is None else salt
        return key.sign(data, padding.PSS(padding.MGF1(_HASH_FOR_ALG[alg[2:]]()), length), digest)
    der = key.sign(data, ec.ECDSA(digest))
    r, s = decode_dss_signature(der)
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def jws_envelope(
    protected: bytes,
    payload: bytes,
    signer: Signer,
    *,
    header: dict[str, Any] | None = None,
    sign: Callable[[bytes], bytes] | None = None,
) -> dict[str, Any]:
    """A flattened JWS over exactly these protected-header and payload bytes."""
    protected_b64, payload_b64 = b64url(protected), b64url(payload)
    signing_input = f"{protected_b64}.{payload_b64}".encode()
    signature = (sign or (lambda d: raw_sign(signer, d)))(signing_input)
    if header is None:
        header = {"x5c": [base64.b64encode(d).decode() for d in signer.ders()]}
    return {"payload": payload_b64, "protected": protected_b64, "header": header,
            "signature": b64url(signature)}  # fmt: skip


def cose_envelope(
    protected: bytes,
    unprotected: bytes,
    payload: bytes,
    signer: Signer,
    *,
    sign: Callable[[bytes], bytes] | None = None,
) -> bytes:
    """A tagged COSE_Sign1 over exactly these protected-header bytes (a CBOR map) and payload."""
    to_be_signed = cbor.array([cbor.tstr("Signature1"), cbor.bstr(protected), cbor.bstr(b""),
                               cbor.bstr(payload)])  # fmt: skip
    signature = (sign or (lambda d: raw_sign(signer, d)))(to_be_signed)
    return cbor.tag(18, cbor.array([cbor.bstr(protected), unprotected, cbor.bstr(payload),
                                    cbor.bstr(signature)]))  # fmt: skip


def cose_x5chain(signer: Signer) -> bytes:
    return cbor.array([cbor.bstr(d) for d in signer.ders()])


# --- the workbench ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    """One signature made by the real notation."""

    name: str  # e.g. "rsa-jws"
    signer: Signer
    media_type: str
    envelope: bytes
    manifest: dict[str, Any]  # the signature manifest notation wrote


@dataclass
class Mutant:
    family: str
    note: str
    envelope: bytes
    media_type: str
    manifest: bytes | None = None  # the signature manifest; None: the seed's, pointing at this envelope
    index: bytes | None = None  # index.json; None: the image (tag v1) and the signature manifest
    blobs: dict[str, bytes] = field(default_factory=dict)  # more blobs, by digest
    drop_blobs: tuple[str, ...] = ()  # digests to leave out of blobs/


@dataclass(frozen=True)
class Outcome:
    family: str
    note: str
    notation: bool
    referee: bool
    crash: str | None
    notation_says: str
    referee_says: str

    @property
    def agree(self) -> bool:
        return self.crash is None and self.notation == self.referee

    @property
    def direction(self) -> str:
        """``referee-accepts`` (Referee is the lenient one), ``referee-refuses``, ``crash`` or ``agree``."""
        if self.crash is not None:
            return "crash"
        if self.notation == self.referee:
            return "agree"
        return "referee-accepts" if self.referee else "referee-refuses"


class Workbench:
    """Everything both verifiers need, built once under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for stale in ("home", "base", "image", "mutant"):  # a folder reused from an earlier run
            shutil.rmtree(root / stale, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
        self.pki = Pki()
        self.rsa = self.pki.leaf("rsa", LeafSpec(key="rsa-2048"))
        self.ec = self.pki.leaf("ec", LeafSpec(key="ec-p256"))
        self.home = root / "home"
        self.config = self.home / "notation"
        self.store = self.config / "truststore"
        self.policy = self.config / "trustpolicy.json"
        for signer in (self.rsa, self.ec):
            install_notation_key(self.home, signer.name, _as_chain(signer), default=signer.name == "rsa")
        write_trust_store(self.store, "ca", "differential", self.pki.root)
        write_trust_store(self.store, "signingAuthority", "differential", self.pki.root)
        write_trust_policy(self.policy, stores=["ca:differential", "signingAuthority:differential"],
                           scopes=[SCOPE], name="differential")  # fmt: skip
        self.base = root / "base"
        self._build_base()
        self._variants: dict[str, Signer] = {}
        self._referee_trust: Any = None

    def env(self) -> dict[str, str]:
        return {**os.environ, "XDG_CONFIG_HOME": str(self.home), "XDG_CACHE_HOME": str(self.home / "cache"),
                "NOTATION_EXPERIMENTAL": "1"}  # fmt: skip

    def variant(self, name: str, spec: LeafSpec) -> Signer:
        """A leaf of the same intermediate with other properties, made once per name."""
        if name not in self._variants:
            self._variants[name] = self.pki.leaf(name, spec)
        return self._variants[name]

    def _build_base(self) -> None:
        work = self.root / "image"
        work.mkdir(exist_ok=True)
        (work / "config.json").write_text('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}')
        (work / "layer.txt").write_text("differential\n")
        run([tool("oras"), "push", "--oci-layout", f"{self.base}:v1",
             "--config", "config.json:application/vnd.oci.image.config.v1+json",
             "layer.txt:application/vnd.oci.image.layer.v1.tar"], cwd=work)  # fmt: skip
        for key in ("rsa", "ec"):
            for fmt in ("jws", "cose"):
                run([tool("notation"), "sign", "--oci-layout", "--key", key, "--signature-format", fmt,
                     f"{self.base}:v1"], env=self.env())  # fmt: skip
        index = json.loads((self.base / "index.json").read_text())
        image_entry = next(e for e in index["manifests"] if e.get("annotations", {}).get(REF_NAME) == "v1")
        self.image_entry: dict[str, Any] = image_entry
        self.image = {k: image_entry[k] for k in ("mediaType", "digest", "size")}
        self.base_blobs: dict[str, bytes] = {}
        for path in (self.base / "blobs" / "sha256").iterdir():
            self.base_blobs[f"sha256:{path.name}"] = path.read_bytes()
        seeds = []
        for entry in index["manifests"]:
            if entry is image_entry:
                continue
            manifest = json.loads(self.base_blobs[entry["digest"]])
            layer = manifest["layers"][0]
            envelope = self.base_blobs[layer["digest"]]
            signer = self._signer_of(layer["mediaType"], envelope)
            kind = "jws" if layer["mediaType"] == JWS else "cose"
            seeds.append(Seed(f"{signer.name}-{kind}", signer, layer["mediaType"], envelope, manifest))
        self.seeds = sorted(seeds, key=lambda s: s.name)
        assert [s.name for s in self.seeds] == ["ec-cose", "ec-jws", "rsa-cose", "rsa-jws"], self.seeds
        # Only the image and its own blobs are kept as the base of every mutant's layout.
        keep = {self.image["digest"]}
        image_manifest = json.loads(self.base_blobs[self.image["digest"]])
        keep.add(image_manifest["config"]["digest"])
        keep.update(layer["digest"] for layer in image_manifest["layers"])
        self.base_blobs = {d: b for d, b in self.base_blobs.items() if d in keep}

    def image_config(self) -> dict[str, Any]:
        """The config descriptor of the image under verification."""
        config: dict[str, Any] = json.loads(self.base_blobs[self.image["digest"]])["config"]
        return config

    def _signer_of(self, media_type: str, envelope: bytes) -> Signer:
        if media_type == JWS:
            leaf_der = base64.b64decode(json.loads(envelope)["header"]["x5c"][0])
        else:
            import cbor2  # noqa: PLC0415

            leaf_der = cbor2.loads(envelope).value[1][33][0]
        for signer in (self.rsa, self.ec):
            if signer.ders()[0] == leaf_der:
                return signer
        raise AssertionError("a seed signed by an unknown key")

    # --- one mutant ---------------------------------------------------------------------------------

    def default_manifest(self, seed: Seed, envelope: bytes, media_type: str) -> bytes:
        manifest = json.loads(json.dumps(seed.manifest))
        manifest["layers"] = [{"mediaType": media_type, "digest": digest_of(envelope), "size": len(envelope)}]
        return compact(manifest)

    def default_index(self, manifest: bytes) -> bytes:
        entry = {"mediaType": OCI_MANIFEST, "digest": digest_of(manifest), "size": len(manifest)}
        return compact({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [self.image_entry, entry]})

    def materialize(self, mutant: Mutant, seed: Seed, where: Path) -> Path:
        manifest = mutant.manifest
        if manifest is None:
            manifest = self.default_manifest(seed, mutant.envelope, mutant.media_type)
        index = mutant.index if mutant.index is not None else self.default_index(manifest)
        blobs = dict(self.base_blobs)
        blobs[digest_of(mutant.envelope)] = mutant.envelope
        blobs[digest_of(manifest)] = manifest
        blobs[digest_of(b"{}")] = b"{}"
        blobs.update(mutant.blobs)
        for gone in mutant.drop_blobs:
            blobs.pop(gone, None)
        if where.exists():
            shutil.rmtree(where)
        (where / "blobs" / "sha256").mkdir(parents=True)
        (where / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        (where / "index.json").write_bytes(index)
        for digest, data in blobs.items():
            (where / "blobs" / "sha256" / digest.split(":", 1)[1]).write_bytes(data)
        return where

    def notation_verify(self, layout: Path) -> tuple[bool, str]:
        proc = subprocess.run(
            [tool("notation"), "verify", "--oci-layout", "--scope", SCOPE, f"{layout}:v1"],
            env=self.env(), capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        said = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        return proc.returncode == 0, said[-1][:300] if said else ""

    def referee_verify(self, layout: Path) -> tuple[bool, str, str | None]:
        """What ``referee verify --oci-layout --scope SCOPE LAYOUT:v1`` decides, run in this process:
        (verified, reason, the uncaught exception if it crashed)."""
        from webhook.cli.main import main  # noqa: PLC0415

        out, err = io.StringIO(), io.StringIO()
        args = ["verify", "--oci-layout", "--scope", SCOPE, "--trust-policy", str(self.policy),
                "--trust-store", str(self.store), "--output", "json", f"{layout}:v1"]  # fmt: skip
        try:
            with redirect_stdout(out), redirect_stderr(err):
                code = main(args)
        except Exception as exc:  # noqa: BLE001 (a crash is an outcome to report, whatever its type)
            return False, "", f"{type(exc).__name__}: {exc}"[:300]
        if code == 0:
            return True, "", None
        reason = err.getvalue().strip()
        if out.getvalue().strip():
            try:
                reason = json.loads(out.getvalue()).get("reason", "")
            except ValueError:
                reason = out.getvalue()[:300]
        return False, reason[:300], None

    def judge(self, mutant: Mutant, seed: Seed, where: Path) -> Outcome:
        layout = self.materialize(mutant, seed, where)
        theirs, their_reason = self.notation_verify(layout)
        ours, our_reason, crash = self.referee_verify(layout)
        shutil.rmtree(layout, ignore_errors=True)
        return Outcome(mutant.family, mutant.note, theirs, ours, crash, their_reason, our_reason)


def _as_chain(signer: Signer) -> Any:
    """``tests.helpers.codesign.Chain`` for install_notation_key."""
    from tests.helpers.codesign import Chain  # noqa: PLC0415

    return Chain(signer.key, signer.chain)

"""``referee verify`` against ``notation verify`` on signatures made by the real notation CLI.

Each case builds its own keys and certificates, signs with notation, and asks both verifiers with the
same trust policy and trust store; they must agree, and Referee must name the failing check.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.helpers.artifacts import Notation, oras, push_image
from tests.helpers.codesign import (
    Chain,
    LeafSpec,
    install_notation_key,
    make_chain,
    write_trust_policy,
    write_trust_store,
)
from tests.helpers.registries import RunningRegistry
from tests.helpers.revocation import Entry, Issued, file_server, make_crl, ocsp_responder, point, write_crl
from tests.helpers.tools import free_port, run, tool
from tests.helpers.tsa import Tsa, local_tsa


@dataclass
class Case:
    notation: Notation
    registry: RunningRegistry
    image: str  # host/repo@digest
    chain: Chain

    @property
    def config(self) -> Path:
        return self.notation.home / "notation"

    def policy(
        self,
        level: str = "strict",
        *,
        identities: list[str] | None = None,
        stores: list[str] | None = None,
        override: dict[str, str] | None = None,
        scopes: list[str] | None = None,
        verify_timestamp: str | None = None,
    ) -> None:
        write_trust_policy(
            self.config / "trustpolicy.json",
            stores=stores,
            identities=identities,
            level=level,
            scopes=scopes,
            override=override,
            verifyTimestamp=verify_timestamp,
        )

    def notation_verify(self) -> bool:
        args = [tool("notation"), "verify", self.image]
        if self.registry.plain_http:
            args.insert(2, "--insecure-registry")
        return run(args, env=self.notation.env(), check=False).returncode == 0

    def referee_verify(self) -> tuple[int, dict[str, Any]]:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "webhook",
                "verify",
                "--plain-http",
                "--output",
                "json",
                "--trust-policy",
                str(self.config / "trustpolicy.json"),
                "--trust-store",
                str(self.config / "truststore"),
                self.image,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        doc = json.loads(proc.stdout) if proc.stdout.strip() else {"stderr": proc.stderr}
        return proc.returncode, doc

    def both(self) -> tuple[bool, int, dict[str, Any]]:
        theirs = self.notation_verify()
        code, doc = self.referee_verify()
        return theirs, code, doc


def new_case(
    registry: RunningRegistry,
    tmp: Path,
    leaf: LeafSpec | None = None,
    *,
    trust_root: bool = True,
    sign: bool = True,
    sign_flags: tuple[str, ...] = (),
) -> Case:
    notation = Notation(tmp / "home")
    chain = make_chain(leaf)
    install_notation_key(notation.home, "test", chain)
    store = notation.home / "notation" / "truststore"
    write_trust_store(store, "ca", "test", chain.root if trust_root else make_chain().root)
    repo = f"interop/{tmp.name.lower().replace('_', '-')[:40]}"
    digest = push_image(registry, repo, "v1", tmp / "image", content=tmp.name)
    image = f"{registry.host}/{repo}@{digest}"
    case = Case(notation, registry, image, chain)
    case.policy()
    if sign:
        notation.sign(registry, image, *sign_flags)
    return case


def check_status(doc: dict[str, Any], name: str) -> str:
    return str(doc["signatures"][0]["checks"][name]["status"])


@pytest.mark.parametrize("envelope", ["jws", "cose"])
@pytest.mark.parametrize("key", ["ec-p256", "ec-p384", "ec-p521", "rsa-2048", "rsa-3072", "rsa-4096"])
def test_valid_signature_is_accepted_by_both(
    olareg: RunningRegistry, tmp_path: Path, key: str, envelope: str
) -> None:
    case = new_case(olareg, tmp_path, LeafSpec(key=key), sign_flags=("--signature-format", envelope))
    theirs, code, doc = case.both()
    assert theirs is True
    assert code == 0, doc
    assert doc["verified"] is True
    sig = doc["signatures"][0]
    assert sig["envelope"] == ("application/jose+json" if envelope == "jws" else "application/cose")
    assert sig["signingScheme"] == "notary.x509"
    assert "CN=signer" in sig["signer"]["subject"]
    assert {c["status"] for c in sig["checks"].values()} == {"passed"}


def test_tag_schema_registry_too(distribution: RunningRegistry, tmp_path: Path) -> None:
    case = new_case(distribution, tmp_path)
    theirs, code, _ = case.both()
    assert theirs is True and code == 0


@pytest.mark.parametrize(("level", "allowed"), [("strict", False), ("permissive", False), ("audit", True)])
def test_untrusted_root(olareg: RunningRegistry, tmp_path: Path, level: str, allowed: bool) -> None:
    case = new_case(olareg, tmp_path, trust_root=False)
    case.policy(level)
    theirs, code, doc = case.both()
    assert theirs is allowed
    assert (code == 0) is allowed, doc
    assert check_status(doc, "authenticity") == ("logged" if allowed else "failed")


@pytest.mark.parametrize(
    ("identity", "allowed"),
    [
        ("x509.subject: C=US, ST=WA, O=Referee Test", True),
        ("x509.subject: C=US, ST=WA, O=Referee Test, CN=signer", True),
        ("x509.subject: C=US, ST=WA, O=Someone Else", False),
        ("x509.subject: C=US, ST=OR, O=Referee Test", False),
    ],
)
def test_trusted_identities(olareg: RunningRegistry, tmp_path: Path, identity: str, allowed: bool) -> None:
    case = new_case(olareg, tmp_path)
    case.policy(identities=[identity])
    theirs, code, doc = case.both()
    assert theirs is allowed
    assert (code == 0) is allowed, doc


@pytest.mark.parametrize(("level", "allowed"), [("strict", False), ("permissive", True), ("audit", True)])
def test_expired_signature(olareg: RunningRegistry, tmp_path: Path, level: str, allowed: bool) -> None:
    case = new_case(olareg, tmp_path, sign_flags=("--expiry", "1s"))
    time.sleep(2.1)
    case.policy(level)
    theirs, code, doc = case.both()
    assert theirs is allowed
    assert (code == 0) is allowed, doc
    assert check_status(doc, "expiry") == ("failed" if not allowed else "logged")


@pytest.mark.parametrize(("level", "allowed"), [("strict", False), ("permissive", True), ("audit", True)])
def test_expired_certificate(olareg: RunningRegistry, tmp_path: Path, level: str, allowed: bool) -> None:
    case = new_case(olareg, tmp_path, LeafSpec(not_after=dt.timedelta(seconds=3)))
    time.sleep(3.5)
    case.policy(level)
    theirs, code, doc = case.both()
    assert theirs is allowed
    assert (code == 0) is allowed, doc
    assert check_status(doc, "authenticTimestamp") == ("failed" if not allowed else "logged")


def test_expiry_override_to_log(olareg: RunningRegistry, tmp_path: Path) -> None:
    case = new_case(olareg, tmp_path, sign_flags=("--expiry", "1s"))
    time.sleep(2.1)
    case.policy("strict", override={"expiry": "log"})
    theirs, code, _ = case.both()
    assert theirs is True and code == 0


def test_no_signature(olareg: RunningRegistry, tmp_path: Path) -> None:
    case = new_case(olareg, tmp_path, sign=False)
    theirs, code, doc = case.both()
    assert theirs is False
    assert code == 1 and doc["reason"] == "no Notation signature found"


def test_skip_level_allows_an_unsigned_image(olareg: RunningRegistry, tmp_path: Path) -> None:
    case = new_case(olareg, tmp_path, sign=False)
    case.policy("skip")
    theirs, code, _ = case.both()
    assert theirs is True and code == 0


def test_no_applicable_policy(olareg: RunningRegistry, tmp_path: Path) -> None:
    case = new_case(olareg, tmp_path)
    case.policy(scopes=["registry.example.com/other/app"])
    theirs, code, doc = case.both()
    assert theirs is False
    assert code == 1 and "no trust policy statement applies" in doc.get("stderr", "")


def test_signature_for_another_digest_is_rejected(olareg: RunningRegistry, tmp_path: Path) -> None:
    """A valid signature of image A, re-attached to image B: both verifiers refuse it for B."""
    a = new_case(olareg, tmp_path / "a")
    repo = a.image.split("@")[0].split("/", 1)[1]
    b_digest = push_image(olareg, repo, "other", tmp_path / "b", content="another image")
    listed = json.loads(oras("discover", "--plain-http", "--format", "json", a.image))["referrers"]
    sig_manifest = json.loads(
        oras("manifest", "fetch", "--plain-http", f"{olareg.host}/{repo}@{listed[0]['digest']}")
    )
    b_manifest = json.loads(oras("manifest", "fetch", "--plain-http", f"{olareg.host}/{repo}@{b_digest}"))
    sig_manifest["subject"] = {
        "mediaType": b_manifest["mediaType"],
        "digest": b_digest,
        "size": len(json.dumps(b_manifest, separators=(",", ":"))),
    }
    raw = run([tool("oras"), "manifest", "fetch", "--plain-http", f"{olareg.host}/{repo}@{b_digest}"]).stdout
    sig_manifest["subject"]["size"] = len(raw.encode())
    moved = tmp_path / "moved.json"
    moved.write_text(json.dumps(sig_manifest))
    oras(
        "manifest",
        "push",
        "--plain-http",
        f"{olareg.host}/{repo}",
        str(moved),
        "--media-type",
        "application/vnd.oci.image.manifest.v1+json",
    )
    b = Case(a.notation, olareg, f"{olareg.host}/{repo}@{b_digest}", a.chain)
    theirs, code, doc = b.both()
    assert theirs is False
    assert code == 1, doc
    assert check_status(doc, "integrity") == "failed"
    assert "not for this image" in doc["signatures"][0]["reason"]


# --- RFC 3161 timestamps, from a local OpenSSL TSA ---------------------------------------------------


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tsa]:
    with local_tsa(tmp_path_factory.mktemp("tsa")) as authority:
        yield authority


def timestamped_case(
    registry: RunningRegistry, tmp: Path, tsa: Tsa, envelope: str, leaf: LeafSpec | None = None
) -> Case:
    case = new_case(
        registry,
        tmp,
        leaf,
        sign_flags=(
            "--signature-format",
            envelope,
            "--timestamp-url",
            tsa.url,
            "--timestamp-root-cert",
            str(tsa.root_path),
        ),
    )
    write_trust_store(case.config / "truststore", "tsa", "test-tsa", tsa.root)
    return case


@pytest.mark.parametrize("envelope", ["jws", "cose"])
def test_timestamped_signature(olareg: RunningRegistry, tmp_path: Path, tsa: Tsa, envelope: str) -> None:
    case = timestamped_case(olareg, tmp_path, tsa, envelope)
    case.policy(stores=["ca:test", "tsa:test-tsa"])
    theirs, code, doc = case.both()
    assert theirs is True
    assert code == 0, doc
    assert check_status(doc, "authenticTimestamp") == "passed"


def test_timestamp_from_an_untrusted_tsa(olareg: RunningRegistry, tmp_path: Path, tsa: Tsa) -> None:
    """Regression: the token carries its TSA's root; that must not make the TSA trusted."""
    case = timestamped_case(olareg, tmp_path, tsa, "jws")
    other = make_chain().root
    write_trust_store(case.config / "truststore", "tsa", "other-tsa", other)
    case.policy(stores=["ca:test", "tsa:other-tsa"])
    theirs, code, doc = case.both()
    assert theirs is False
    assert code == 1, doc
    assert check_status(doc, "authenticTimestamp") == "failed"


def test_timestamp_keeps_an_expired_certificate_valid(
    olareg: RunningRegistry, tmp_path: Path, tsa: Tsa
) -> None:
    """The point of timestamps: a signature made while the certificate was valid stays valid after."""
    case = timestamped_case(olareg, tmp_path, tsa, "cose", LeafSpec(not_after=dt.timedelta(seconds=3)))
    time.sleep(3.5)
    case.policy(stores=["ca:test", "tsa:test-tsa"])
    theirs, code, doc = case.both()
    assert theirs is True
    assert code == 0, doc
    case.policy(stores=["ca:test", "tsa:test-tsa"], verify_timestamp="afterCertExpiry")
    theirs, code, _ = case.both()
    assert theirs is True and code == 0


def test_policy_wanting_a_timestamp_refuses_a_signature_without_one(
    olareg: RunningRegistry, tmp_path: Path, tsa: Tsa
) -> None:
    case = new_case(olareg, tmp_path)
    write_trust_store(case.config / "truststore", "tsa", "test-tsa", tsa.root)
    case.policy(stores=["ca:test", "tsa:test-tsa"])
    theirs, code, doc = case.both()
    assert theirs is False
    assert code == 1 and check_status(doc, "authenticTimestamp") == "failed"


# --- revocation: the real OpenSSL OCSP responder, CRLs over HTTP -------------------------------------


def revocable_case(olareg: RunningRegistry, tmp: Path, *, ocsp: bool, crl: bool) -> tuple[Case, int, int]:
    ocsp_port, crl_port = free_port(), free_port()
    leaf = LeafSpec(
        ocsp_url=f"http://127.0.0.1:{ocsp_port}" if ocsp else None,
        crl_url=f"http://127.0.0.1:{crl_port}/issuer.crl" if crl else None,
    )
    return new_case(olareg, tmp, leaf), ocsp_port, crl_port


@pytest.mark.parametrize("revoked", [False, True])
def test_ocsp(olareg: RunningRegistry, tmp_path: Path, revoked: bool) -> None:
    case, ocsp_port, _ = revocable_case(olareg, tmp_path, ocsp=True, crl=False)
    with ocsp_responder(tmp_path / "ocsp", case.chain, ocsp_port, revoked):
        theirs, code, doc = case.both()
    assert theirs is not revoked
    assert (code == 0) is not revoked, doc
    assert check_status(doc, "revocation") == ("failed" if revoked else "passed")
    if revoked:
        assert "revoked" in doc["signatures"][0]["reason"]


@pytest.mark.parametrize("revoked", [False, True])
def test_crl(olareg: RunningRegistry, tmp_path: Path, revoked: bool) -> None:
    case, _, crl_port = revocable_case(olareg, tmp_path, ocsp=False, crl=True)
    served = tmp_path / "crls"
    served.mkdir()
    write_crl(served / "issuer.crl", case.chain, [case.chain.certs[0]] if revoked else [])
    with file_server(served, crl_port):
        theirs, code, doc = case.both()
    assert theirs is not revoked
    assert (code == 0) is not revoked, doc
    assert check_status(doc, "revocation") == ("failed" if revoked else "passed")


@pytest.mark.parametrize(
    ("override", "allowed"), [(None, False), ({"revocation": "log"}, True), ({"revocation": "skip"}, True)]
)
def test_unreachable_ocsp_responder(
    olareg: RunningRegistry, tmp_path: Path, override: dict[str, str] | None, allowed: bool
) -> None:
    case, _, _ = revocable_case(olareg, tmp_path, ocsp=True, crl=False)  # nothing listens there
    case.policy(override=override)
    theirs, code, doc = case.both()
    assert theirs is allowed
    assert (code == 0) is allowed, doc


@pytest.mark.parametrize("revoked", [False, True])
def test_offline_crl_file(olareg: RunningRegistry, tmp_path: Path, revoked: bool) -> None:
    """Air-gapped: the CRL comes from a file the operator supplies; no endpoint is contacted."""
    case, _, _ = revocable_case(olareg, tmp_path, ocsp=True, crl=True)  # neither endpoint is served
    crl = tmp_path / "issuer.crl"
    write_crl(crl, case.chain, [case.chain.certs[0]] if revoked else [])
    proc = subprocess.run(
        [sys.executable, "-m", "webhook", "verify", "--plain-http", "--output", "json", "--offline",
         "--crl-file", str(crl), "--trust-policy", str(case.config / "trustpolicy.json"),
         "--trust-store", str(case.config / "truststore"), case.image],
        capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert (proc.returncode == 0) is not revoked, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert check_status(doc, "revocation") == ("failed" if revoked else "passed")


def test_revocation_in_a_delta_crl(olareg: RunningRegistry, tmp_path: Path) -> None:
    """The base CRL names a delta (freshestCRL) that lists the signing certificate: both verifiers
    fetch the delta and refuse the signature."""
    case, _, crl_port = revocable_case(olareg, tmp_path, ocsp=False, crl=True)
    key = case.chain.issuer_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    ca = Issued(case.chain.certs[1], key)
    served = tmp_path / "crls"
    served.mkdir()
    delta = point(f"http://127.0.0.1:{crl_port}/issuer-delta.crl")
    (served / "issuer.crl").write_bytes(make_crl(ca, number=10, freshest=(delta,)))
    (served / "issuer-delta.crl").write_bytes(
        make_crl(ca, (Entry(case.chain.certs[0].serial_number),), number=11, delta_of=10)
    )
    with file_server(served, crl_port):
        theirs, code, doc = case.both()
    assert theirs is False
    assert code == 1, doc
    assert check_status(doc, "revocation") == "failed"
    assert "delta CRL" in doc["signatures"][0]["reason"]

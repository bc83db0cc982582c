"""``referee sign``: what it pushes must pass ``notation verify`` (and ``referee verify``), in both
envelope formats, for RSA and EC keys, on both registry kinds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.helpers.artifacts import Notation, oras_discover, push_image
from tests.helpers.codesign import Chain, LeafSpec, make_chain, write_trust_policy, write_trust_store
from tests.helpers.registries import RunningRegistry
from tests.helpers.tools import referee, run, tool
from tests.helpers.tsa import local_tsa

NOTARY = "application/vnd.cncf.notary.signature"


def setup(tmp: Path, chain: Chain) -> tuple[Notation, Path, Path]:
    notation = Notation(tmp / "home")
    config = notation.home / "notation"
    write_trust_store(config / "truststore", "ca", "test", chain.root)
    write_trust_policy(config / "trustpolicy.json", identities=["x509.subject: C=US, ST=WA, O=Referee Test"])
    key, cert = tmp / "key.pem", tmp / "chain.pem"
    key.write_bytes(chain.key_pem())
    cert.write_bytes(chain.pem())
    return notation, key, cert


@pytest.mark.parametrize("fmt", ["jws", "cose"])
@pytest.mark.parametrize("key_type", ["ec-p256", "rsa-3072"])
def test_notation_accepts_what_referee_signs(
    registry: RunningRegistry, tmp_path: Path, key_type: str, fmt: str
) -> None:
    chain = make_chain(LeafSpec(key=key_type))
    notation, key, cert = setup(tmp_path, chain)
    repo = f"signed/{key_type}-{fmt}"
    digest = push_image(registry, repo, "v1", tmp_path / "img", content=f"{key_type}{fmt}")
    image = f"{registry.host}/{repo}:v1"
    proc = referee(
        "sign", "--plain-http", "--key", str(key), "--cert", str(cert), "--signature-format", fmt,
        "--expiry", "1h", image,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert digest in proc.stdout

    listed = oras_discover(registry, image)["referrers"]
    assert isinstance(listed, list)
    assert [r["artifactType"] for r in listed] == [NOTARY]

    theirs = run(
        [tool("notation"), "verify", "--insecure-registry", f"{registry.host}/{repo}@{digest}"],
        env=notation.env(),
        check=False,
    )
    assert theirs.returncode == 0, theirs.stderr

    config = notation.home / "notation"
    ours = referee(
        "verify", "--plain-http", "--output", "json", "--trust-policy", str(config / "trustpolicy.json"),
        "--trust-store", str(config / "truststore"), image,
    )  # fmt: skip
    assert ours.returncode == 0, ours.stdout + ours.stderr
    assert json.loads(ours.stdout)["signatures"][0]["envelope"].endswith(
        "jose+json" if fmt == "jws" else "cose"
    )


def test_sign_refuses_a_key_that_does_not_match_the_certificate(
    olareg: RunningRegistry, tmp_path: Path
) -> None:
    chain = make_chain()
    _, _, cert = setup(tmp_path, chain)
    other = tmp_path / "other.pem"
    other.write_bytes(make_chain().key_pem())
    proc = referee("sign", "--plain-http", "--key", str(other), "--cert", str(cert), f"{olareg.host}/x/y:v1")
    assert proc.returncode == 2
    assert "is not the key of the first certificate" in proc.stderr


def test_sign_refuses_a_certificate_notation_would_reject(olareg: RunningRegistry, tmp_path: Path) -> None:
    chain = make_chain(LeafSpec(eku=[ExtendedKeyUsageOID.SERVER_AUTH]))
    _, key, cert = setup(tmp_path, chain)
    proc = referee("sign", "--plain-http", "--key", str(key), "--cert", str(cert), f"{olareg.host}/x/y:v1")
    assert proc.returncode == 2
    assert "serverAuth" in proc.stderr


def policy_file(config: Path, stores: list[str]) -> None:
    write_trust_policy(config / "trustpolicy.json", stores=stores)


def both_verify(notation: Notation, registry: RunningRegistry, repo: str, digest: str) -> tuple[bool, bool]:
    config = notation.home / "notation"
    theirs = run(
        [tool("notation"), "verify", "--insecure-registry", f"{registry.host}/{repo}@{digest}"],
        env=notation.env(),
        check=False,
    )
    ours = referee(
        "verify", "--plain-http", "--trust-policy", str(config / "trustpolicy.json"),
        "--trust-store", str(config / "truststore"), f"{registry.host}/{repo}@{digest}",
    )  # fmt: skip
    return theirs.returncode == 0, ours.returncode == 0


@pytest.mark.parametrize(("key_type", "fmt"), [("ec-p384", "jws"), ("rsa-2048", "cose")])
def test_timestamped_signature_from_referee_sign(
    olareg: RunningRegistry, tmp_path: Path, key_type: str, fmt: str
) -> None:
    """SHA-384 (P-384) and SHA-256 (RSA 2048) timestamp requests to the local OpenSSL TSA."""
    chain = make_chain(LeafSpec(key=key_type))
    notation, key, cert = setup(tmp_path, chain)
    config = notation.home / "notation"
    with local_tsa(tmp_path / "tsa") as tsa:
        write_trust_store(config / "truststore", "tsa", "tsa", tsa.root)
        policy_file(config, ["ca:test", "tsa:tsa"])
        repo = f"stamped/{key_type}"
        digest = push_image(olareg, repo, "v1", tmp_path / "img", content=key_type)
        proc = referee(
            "sign", "--plain-http", "--key", str(key), "--cert", str(cert), "--signature-format", fmt,
            "--timestamp-url", tsa.url, "--timestamp-root", str(tsa.root_path), f"{olareg.host}/{repo}:v1",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    assert both_verify(notation, olareg, repo, digest) == (True, True)


@pytest.mark.parametrize("fmt", ["jws", "cose"])
def test_signing_authority_scheme_from_referee_sign(
    olareg: RunningRegistry, tmp_path: Path, fmt: str
) -> None:
    chain = make_chain()
    notation, key, cert = setup(tmp_path, chain)
    config = notation.home / "notation"
    write_trust_store(config / "truststore", "signingAuthority", "sa", chain.root)
    repo = f"authority/{fmt}"
    digest = push_image(olareg, repo, "v1", tmp_path / "img", content=fmt)
    proc = referee(
        "sign", "--plain-http", "--key", str(key), "--cert", str(cert), "--signature-format", fmt,
        "--signing-scheme", "notary.x509.signingAuthority", f"{olareg.host}/{repo}:v1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    policy_file(config, ["signingAuthority:sa"])
    assert both_verify(notation, olareg, repo, digest) == (True, True)
    # A signing-authority signature is not vouched for by a "ca" store holding the same root.
    policy_file(config, ["ca:test"])
    assert both_verify(notation, olareg, repo, digest) == (False, False)

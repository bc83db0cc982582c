"""Trust stores read from notation's directory layout, with notation's refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tests.helpers.codesign import LeafSpec, make_chain, write_trust_store
from webhook.errors import ConfigError
from webhook.notary.trustpolicy import parse_trust_policy
from webhook.notary.truststore import parse_certificates
from webhook.trust import files as trustfiles
from webhook.trust.files import load_trust_policy, load_trust_store


def policy(*stores: str) -> str:
    return json.dumps(
        {
            "version": "1.0",
            "trustPolicies": [
                {
                    "name": "p",
                    "registryScopes": ["*"],
                    "signatureVerification": {"level": "strict"},
                    "trustStores": list(stores),
                    "trustedIdentities": ["*"],
                }
            ],
        }
    )


def test_loads_only_the_named_stores(tmp_path: Path) -> None:
    chain = make_chain()
    write_trust_store(tmp_path, "ca", "acme", chain.root)
    write_trust_store(tmp_path, "ca", "unused", chain.certs[0])  # a leaf: would be refused if read
    store = load_trust_store(tmp_path, parse_trust_policy(policy("ca:acme")))
    assert store.certificates("ca", ["acme"]) == (chain.root,)
    assert not store.has("ca", "unused")


def test_pem_bundle_and_der_files(tmp_path: Path) -> None:
    a, b = make_chain(), make_chain()
    d = tmp_path / "x509" / "ca" / "acme"
    d.mkdir(parents=True)
    (d / "bundle.pem").write_bytes(a.pem((a.root,)) + b.pem((b.root,)))
    (d / "root.der").write_bytes(a.certs[1].public_bytes(serialization.Encoding.DER))  # intermediate CA
    store = load_trust_store(tmp_path, parse_trust_policy(policy("ca:acme")))
    assert len(store.certificates("ca", ["acme"])) == 3


def test_store_fingerprint_changes_with_content(tmp_path: Path) -> None:
    chain = make_chain()
    write_trust_store(tmp_path, "ca", "acme", chain.root)
    p = parse_trust_policy(policy("ca:acme"))
    first = load_trust_store(tmp_path, p).fingerprint()
    assert load_trust_store(tmp_path, p).fingerprint() == first
    write_trust_store(tmp_path, "ca", "acme", chain.root, make_chain().root)
    assert load_trust_store(tmp_path, p).fingerprint() != first


@pytest.mark.parametrize(
    ("setup", "phrase"),
    [
        ("missing", "does not exist"),
        ("empty", "holds no certificates"),
        ("leaf", "neither a CA certificate nor self-signed"),
        ("tsa-intermediate", "not a self-signed root"),
        ("symlink-file", "not a regular file"),
        ("symlink-dir", "not a regular directory"),
        ("subdir", "not a regular file"),
        ("garbage", "not a PEM or DER"),
    ],
)
def test_refusals(tmp_path: Path, setup: str, phrase: str) -> None:
    chain = make_chain(LeafSpec())
    kind = "tsa" if setup.startswith("tsa") else "ca"
    d = tmp_path / "x509" / kind / "acme"
    if setup != "missing":
        d.mkdir(parents=True)
    if setup == "leaf":
        write_trust_store(tmp_path, "ca", "acme", chain.certs[0])
    elif setup == "tsa-intermediate":
        write_trust_store(tmp_path, "tsa", "acme", chain.certs[1])
    elif setup == "symlink-file":
        (tmp_path / "real.pem").write_bytes(chain.pem((chain.root,)))
        (d / "root.pem").symlink_to(tmp_path / "real.pem")
    elif setup == "symlink-dir":
        d.rmdir()
        (tmp_path / "elsewhere").mkdir()
        d.symlink_to(tmp_path / "elsewhere")
    elif setup == "subdir":
        (d / "nested").mkdir()
    elif setup == "garbage":
        (d / "x.pem").write_bytes(b"\x01\x02 not a certificate")
    with pytest.raises(ConfigError) as info:
        load_trust_store(tmp_path, parse_trust_policy(policy(f"{kind}:acme")))
    assert phrase in str(info.value)


def test_trust_policy_file(tmp_path: Path) -> None:
    (tmp_path / "trustpolicy.json").write_text(policy("ca:acme"))
    assert load_trust_policy(tmp_path / "trustpolicy.json").policies[0].name == "p"
    with pytest.raises(ConfigError) as info:
        load_trust_policy(tmp_path / "nope.json")
    assert "does not exist" in str(info.value)


def test_parse_certificates_rejects_empty() -> None:
    with pytest.raises(ConfigError):
        parse_certificates(b"", "x")


def test_policy_edited_while_it_loads_gets_the_fingerprint_of_the_rules_in_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Race: the policy was parsed from one read and fingerprinted from a second one. An edit that
    landed in between gave the old rules the new rules' fingerprint, so verdicts made under the
    old rules were served as if made under the new ones."""
    chain = make_chain()
    write_trust_store(tmp_path, "ca", "acme", chain.root)
    path = tmp_path / "trustpolicy.json"
    path.write_text(policy("ca:acme"))
    edited = json.loads(policy("ca:acme"))
    edited["trustPolicies"][0]["signatureVerification"] = {"level": "audit"}
    real_load_store = trustfiles.load_trust_store

    def edit_while_loading(root: Path, doc: Any) -> Any:
        path.write_text(json.dumps(edited))  # the edit lands between the two reads
        return real_load_store(root, doc)

    monkeypatch.setattr(trustfiles, "load_trust_store", edit_while_loading)
    during_edit = trustfiles.TrustFiles(path, tmp_path, check_every_s=3600).current()
    monkeypatch.setattr(trustfiles, "load_trust_store", real_load_store)
    after_edit = trustfiles.TrustFiles(path, tmp_path).current()
    assert during_edit.policy.policies[0].level == "strict"
    assert after_edit.policy.policies[0].level == "audit"
    assert during_edit.fingerprint != after_edit.fingerprint


def test_weaker_global_statement_shows_in_the_loaded_material(tmp_path: Path) -> None:
    chain = make_chain()
    write_trust_store(tmp_path, "ca", "acme", chain.root)
    doc = json.loads(policy("ca:acme"))
    scoped = dict(doc["trustPolicies"][0], name="prod", registryScopes=["registry.example.com/app"])
    doc["trustPolicies"][0]["signatureVerification"] = {"level": "audit"}
    doc["trustPolicies"].append(scoped)
    (tmp_path / "trustpolicy.json").write_text(json.dumps(doc))
    material = trustfiles.TrustFiles(tmp_path / "trustpolicy.json", tmp_path).current()
    assert len(material.warnings) == 1 and "registry.example.com/app" in material.warnings[0]


@pytest.mark.parametrize(("store_type", "digest", "name"), [("ca", "sha1", "SHA-1"), ("tsa", "sha1", "SHA-1"),
                                                            ("ca", "md5", "MD5")])  # fmt: skip
def test_sha1_self_signed_certificate_is_refused_saying_sha1(
    tmp_path: Path, store_type: str, digest: str, name: str
) -> None:
    """The refusal was right (the specification forbids SHA-1) but said "neither a CA certificate nor
    self-signed". The certificate is made by openssl, which still signs with SHA-1 and MD5."""
    import subprocess  # noqa: PLC0415

    folder = tmp_path / "x509" / store_type / "old"
    folder.mkdir(parents=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", f"-{digest}", "-nodes", "-days", "30",
         "-subj", f"/CN={name} signer", "-addext", "basicConstraints=critical,CA:FALSE",
         "-keyout", str(tmp_path / "key.pem"), "-out", str(folder / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    with pytest.raises(ConfigError, match=f"is signed with {name}, which the Notary Project specification"):
        load_trust_store(tmp_path, parse_trust_policy(policy(f"{store_type}:old")))

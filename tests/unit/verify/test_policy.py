"""Referee's policy document: what it accepts, what it refuses (each error says where), how a
statement is selected, and how a manifest's signatures meet a statement's signer rule."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path
from types import MappingProxyType

import pytest

from webhook.errors import ConfigError
from webhook.notary.verifier import SignatureOutcome, Signer
from webhook.oci.model import Platform
from webhook.verify.policy import (
    PlatformSpec,
    PolicyFile,
    SignerRule,
    parse_policy_document,
    read_policy_document,
)

IDENTITY = "x509.subject: C=US, ST=WA, O=Example, CN=release"


def doc(text: str) -> bytes:
    return textwrap.dedent(text).encode()


FULL = doc(
    """\
    version: "1.0"
    statements:
      - name: web
        registryScopes: [registry.example.com/team/web]
        signedManifest: referencedOrPlatforms
        platforms: [linux/amd64, linux/arm64/v8]
        userMetadata: {pipeline: release}
        minSigners: 2
        requiredIdentities: ["x509.subject: C=US, ST=WA, O=Example, CN=release"]
        referrers:
          - {artifactType: application/spdx+json, signed: true, trustPolicy: sbom}
          - {artifactType: application/vnd.in-toto+json, required: false}
      - name: everything-else
        registryScopes: ["*"]
    """
)


def test_a_full_document_parses_into_its_requirements() -> None:
    policy = parse_policy_document(FULL)
    web, rest = policy.statements
    assert web.signed_manifest == "referencedOrPlatforms"
    assert web.platforms == (PlatformSpec("linux", "amd64"), PlatformSpec("linux", "arm64", "v8"))
    assert dict(web.signers.user_metadata) == {"pipeline": "release"}
    assert web.signers.min_signers == 2 and web.signers.required_identities[0].attributes["CN"] == "release"
    sbom, attestation = web.referrers
    assert (sbom.artifact_type, sbom.signed, sbom.trust_policy, sbom.required) == (
        "application/spdx+json", True, "sbom", True,
    )  # fmt: skip
    assert not attestation.signed and not attestation.required
    assert rest.is_global and rest.signers.is_default
    assert len(policy.fingerprint) == 64


def test_a_statement_is_selected_as_the_trust_policy_selects() -> None:
    policy = parse_policy_document(FULL)
    assert policy.select("registry.example.com/team/web").name == "web"  # type: ignore[union-attr]
    assert policy.select("REGISTRY.example.com:443/team/web").name == "web"  # type: ignore[union-attr]
    assert policy.select("registry.example.com/team/api").name == "everything-else"  # type: ignore[union-attr]
    only = parse_policy_document(
        doc('version: "1.0"\nstatements: [{name: a, registryScopes: [r.example/a]}]')
    )
    assert only.select("r.example/b") is None


def test_an_empty_document_applies_no_statement() -> None:
    assert parse_policy_document(b'version: "1.0"\n').select("r.example/a") is None


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("{name: a, registryScopes: ['*'], minSigner: 2}", "statement 'a': unknown key(s) minSigner"),
        ("{name: a, registryScopes: ['*'], minSigners: 2, minSigners: 1}", "appears twice"),
        ("{name: a, registryScopes: ['r.example/A']}", "registry scope 'r.example/A' is not valid"),
        ("{name: a, registryScopes: ['r.example/*']}", "contains a wildcard"),
        ("{name: a, registryScopes: ['*', 'r.example/a']}", "cannot be combined"),
        ("{name: a, registryScopes: ['*'], platforms: [linux/amd64]}", "platforms are for signedManifest"),
        ("{name: a, registryScopes: ['*'], signedManifest: platforms}", "needs platforms"),
        ("{name: a, registryScopes: ['*'], signedManifest: index}", "signedManifest must be one of"),
        (
            "{name: a, registryScopes: ['*'], signedManifest: platforms, platforms: [amd64]}",
            "OS/ARCHITECTURE",
        ),
        ("{name: a, registryScopes: ['*'], userMetadata: {n: 1}}", "the value of 'n' must be a string"),
        ("{name: a, registryScopes: ['*'], userMetadata: {io.cncf.notary.x: y}}", "reserved for notation"),
        ("{name: a, registryScopes: ['*'], minSigners: 0}", "minSigners must be a whole number from 1"),
        ("{name: a, registryScopes: ['*'], minSigners: true}", "minSigners must be a whole number"),
        ("{name: a, registryScopes: ['*'], requiredIdentities: ['CN=x']}", "must be written x509.subject:"),
        ("{name: a, registryScopes: ['*'], requiredIdentities: ['x509.subject: CN=x']}", "has no 'C'"),
        ("{name: a, registryScopes: ['*'], referrers: [{artifactType: sbom}]}", "must be a media type"),
        (
            "{name: a, registryScopes: ['*'], referrers: [{artifactType: a/b, trustPolicy: t}]}",
            "is for signed",
        ),
        ("{name: a, registryScopes: ['*'], referrers: [{artifactType: a/b, singed: true}]}", "singed"),
        ("{registryScopes: ['*']}", "statement #1 has no name"),
    ],
)
def test_a_malformed_statement_is_refused_saying_where(statement: str, message: str) -> None:
    with pytest.raises(
        ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")
    ):
        parse_policy_document(f'version: "1.0"\nstatements: [{statement}]\n'.encode())


def test_one_scope_in_two_statements_is_refused_whatever_its_spelling() -> None:
    text = doc(
        """\
        version: "1.0"
        statements:
          - {name: a, registryScopes: [registry.example.com/app]}
          - {name: b, registryScopes: ["REGISTRY.example.com:443/app"]}
        """
    )
    with pytest.raises(ConfigError, match="appears in statements 'a' and 'b'"):
        parse_policy_document(text)


def test_a_document_without_its_version_or_with_unknown_keys_is_refused() -> None:
    with pytest.raises(ConfigError, match=re.escape('version must be "1.0"')):
        parse_policy_document(b"statements: []\n")
    with pytest.raises(ConfigError, match="unknown key"):
        parse_policy_document(b'version: "1.0"\nstatement: []\n')


def test_a_platform_without_variant_stands_for_every_variant() -> None:
    arm = PlatformSpec("linux", "arm")
    assert arm.matches(Platform("linux", "arm", "v6")) and arm.matches(Platform("linux", "arm", "v7"))
    assert not PlatformSpec("linux", "arm", "v7").matches(Platform("linux", "arm", "v6"))
    assert not PlatformSpec("linux", "amd64").matches(Platform("windows", "amd64"))


# --- the signer rule -----------------------------------------------------------------------------


def signed_by(cn: str, issuer: str = "CN=CA", **metadata: str) -> SignatureOutcome:
    attributes = {"C": "US", "ST": "WA", "O": "Example", "CN": cn}
    subject = f"CN={cn},O=Example,ST=WA,C=US"
    return SignatureOutcome(
        True, "", (), signer=Signer(subject, issuer, MappingProxyType(attributes)),
        user_metadata=MappingProxyType(metadata),
    )  # fmt: skip


def rule(extra: str) -> SignerRule:
    policy = parse_policy_document(
        f'version: "1.0"\nstatements: [{{name: a, registryScopes: ["*"], {extra}}}]'.encode()
    )
    return policy.statements[0].signers


def test_user_metadata_names_the_missing_key_and_a_wrong_value() -> None:
    r = rule("userMetadata: {pipeline: release, team: web}")
    judged = r.judge([("sha256:s1", signed_by("ci", pipeline="release"))])
    assert not judged.met and not judged.metadata_met
    assert "no valid signature carries the user metadata pipeline=release, team=web" in judged.reason
    assert "sha256:s1 by 'CN=ci,O=Example,ST=WA,C=US' lacks team" in judged.reason
    wrong = r.judge([("sha256:s2", signed_by("ci", pipeline="dev", team="web"))])
    assert "has pipeline=dev, not pipeline=release" in wrong.reason
    assert r.judge([("sha256:s3", signed_by("ci", pipeline="release", team="web"))]).met


def test_two_signatures_by_one_signer_are_one_signer() -> None:
    r = rule("minSigners: 2")
    same = r.judge([("sha256:a", signed_by("build")), ("sha256:b", signed_by("build"))])
    assert not same.met and "2 distinct signers are required and 1 signed" in same.reason
    # The same subject from another issuer is another identity.
    assert r.judge([("sha256:a", signed_by("build")), ("sha256:b", signed_by("build", "CN=Other CA"))]).met
    assert r.judge([("sha256:a", signed_by("build")), ("sha256:b", signed_by("release"))]).met


def test_a_signature_that_failed_verification_is_no_signer() -> None:
    r = rule("minSigners: 2")
    failed = SignatureOutcome(False, "authenticity: untrusted", (), signer=Signer("CN=x", "CN=CA"))
    assert not r.judge([("sha256:a", signed_by("build")), ("sha256:b", failed)]).met


def test_one_certificate_matching_two_required_identities_counts_for_one() -> None:
    """Two identities that one subject satisfies (L=Seattle, and CN=release) still need two signers."""
    r = rule(
        'requiredIdentities: ["x509.subject: C=US, ST=WA, O=Example, L=Seattle", '
        '"x509.subject: C=US, ST=WA, O=Example, CN=release"]'
    )
    both = SignatureOutcome(True, "", (), signer=Signer("CN=release", "CN=CA", MappingProxyType(
        {"C": "US", "ST": "WA", "O": "Example", "L": "Seattle", "CN": "release"})))  # fmt: skip
    other = signed_by("nobody")
    judged = r.judge([("sha256:a", both), ("sha256:b", other)])
    assert not judged.met and "required identity" in judged.reason
    seattle = SignatureOutcome(True, "", (), signer=Signer("CN=ops", "CN=CA", MappingProxyType(
        {"C": "US", "ST": "WA", "O": "Example", "L": "Seattle", "CN": "ops"})))  # fmt: skip
    assert r.judge([("sha256:a", both), ("sha256:c", seattle)]).met


# --- the file --------------------------------------------------------------------------------------


def test_a_malformed_file_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text('version: "1.0"\nstatements: [{name: a, registryScopes: ["*"], minSigners: 0}]\n')
    with pytest.raises(ConfigError, match=rf"^policy {path}: statement 'a': minSigners"):
        read_policy_document(path)
    with pytest.raises(ConfigError, match=rf"^policy {path}: statement 'a'"):
        PolicyFile(path)


def test_a_change_that_does_not_load_keeps_the_last_good_document(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text('version: "1.0"\nstatements: [{name: a, registryScopes: ["*"]}]\n')
    files = PolicyFile(path, check_every_s=0)
    first = files.current()
    path.write_text('version: "1.0"\nstatements: [{name: a, registryScopes: ["*"], minSigners: x}]\n')
    os.utime(path, ns=(1, 1))
    assert files.current() is first
    assert "minSigners must be a whole number" in files.last_error
    path.write_text('version: "1.0"\nstatements: [{name: b, registryScopes: ["*"], minSigners: 2}]\n')
    os.utime(path, ns=(2, 2))
    second = files.current()
    assert second.statements[0].name == "b" and second.fingerprint != first.fingerprint
    assert files.last_error == ""

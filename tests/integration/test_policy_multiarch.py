"""Multi-platform images under Referee's policy document (signedManifest): real OCI image indexes
pushed with oras to both registry kinds, signed by the real notation on the index or on platform
manifests, verified with ``referee verify --policy``; and ``referee discover`` on an index."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.artifacts import Notation, oras, push_index
from tests.helpers.codesign import install_notation_key, make_chain, write_trust_policy, write_trust_store
from tests.helpers.registries import RunningRegistry
from tests.helpers.tools import referee

PLATFORMS = ["linux/amd64", "linux/arm64"]


@dataclass(frozen=True)
class Index:
    repo: str  # host/path
    digest: str
    children: dict[str, str]  # platform -> manifest digest

    @property
    def reference(self) -> str:
        return f"{self.repo}:v1"


@dataclass(frozen=True)
class Setup:
    registry: RunningRegistry
    work: Path
    trust_policy: Path
    trust_store: Path
    half: Index  # index unsigned; linux/amd64 signed, linux/arm64 not
    children: Index  # index unsigned; both platform manifests signed
    signed: Index  # index signed; no platform manifest signed

    def verify(self, image: str, statement: dict[str, Any] | None, *extra: str) -> tuple[int, dict[str, Any]]:
        args = [
            "verify",
            image,
            "--trust-policy",
            str(self.trust_policy),
            "--trust-store",
            str(self.trust_store),
        ]
        if statement is not None:
            policy = self.work / "policy.json"  # YAML is a superset of JSON
            policy.write_text(
                json.dumps({"version": "1.0", "statements": [{"name": "multiarch", **statement}]})
            )
            args += ["--policy", str(policy)]
        args += ["--plain-http", "--output", "json", *extra]
        proc = referee(*args)
        assert proc.returncode in (0, 1), proc.stderr
        return proc.returncode, json.loads(proc.stdout)


@pytest.fixture(scope="module")
def setup(registry: RunningRegistry, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    work = tmp_path_factory.mktemp(f"multiarch-{registry.kind}")
    chain = make_chain()
    notation = Notation(work / "home")
    install_notation_key(notation.home, "test", chain)
    host = registry.host

    def index(name: str, signed: list[str]) -> Index:
        digest, children = push_index(registry, f"multi/{name}", "v1", PLATFORMS, work / name)
        for platform in signed:
            target = digest if platform == "index" else children[platform]
            notation.sign(registry, f"{host}/multi/{name}@{target}")
        return Index(f"{host}/multi/{name}", digest, children)

    store = work / "truststore"
    write_trust_store(store, "ca", "test", chain.root)
    return Setup(
        registry, work, write_trust_policy(work / "trustpolicy.json"), store,
        half=index("half", ["linux/amd64"]),
        children=index("children", ["linux/amd64", "linux/arm64"]),
        signed=index("signed", ["index"]),
    )  # fmt: skip


def both(mode: str, platforms: list[str] | None = None) -> dict[str, Any]:
    return {"registryScopes": ["*"], "signedManifest": mode, "platforms": platforms or PLATFORMS}


def test_an_unsigned_index_is_denied_by_default_though_its_platform_manifests_are_signed(
    setup: Setup,
) -> None:
    """notation's rule, and Referee's without a statement or with signedManifest: referenced: the
    digest the pod names (the index) must be signed."""
    for statement in (None, {"registryScopes": ["*"]}):
        code, out = setup.verify(setup.children.reference, statement)
        assert code == 1 and out["verified"] is False, out
        assert out["reason"].startswith("no Notation signature found"), out["reason"]


def test_a_signed_index_covers_its_platform_manifests(setup: Setup) -> None:
    code, out = setup.verify(setup.signed.reference, {"registryScopes": ["*"]})
    assert code == 0 and out["verified"] is True, out
    [requirement] = out["refereePolicy"]["requirements"]
    assert requirement["name"] == "signedManifest" and requirement["met"] is True
    code, out = setup.verify(setup.signed.reference, both("referencedOrPlatforms"))
    assert code == 0, out
    assert [m["label"] for m in out["refereePolicy"]["manifests"]] == ["image index"]  # children not read


def test_referenced_or_platforms_accepts_an_unsigned_index_whose_listed_manifests_are_signed(
    setup: Setup,
) -> None:
    code, out = setup.verify(setup.children.reference, both("referencedOrPlatforms"))
    assert code == 0 and out["verified"] is True, out
    labels = {m["label"]: m["met"] for m in out["refereePolicy"]["manifests"]}
    assert labels == {"image index": False, "linux/amd64 manifest": True, "linux/arm64 manifest": True}


def test_the_denial_names_the_platform_manifest_that_is_not_signed(setup: Setup) -> None:
    half = setup.half
    code, out = setup.verify(half.reference, both("referencedOrPlatforms"))
    assert code == 1, out
    assert out["reason"] == (
        f"Referee policy statement 'multiarch': image index {half.digest} is not signed; its linux/arm64 "
        f"manifest {half.children['linux/arm64']} has no Notation signature "
        "(signedManifest referencedOrPlatforms for linux/amd64, linux/arm64)"
    )
    # Listing only the signed platform is enough.
    code, out = setup.verify(half.reference, both("referencedOrPlatforms", ["linux/amd64"]))
    assert code == 0, out


def test_a_listed_platform_the_index_lacks_is_a_denial(setup: Setup) -> None:
    image = setup.children
    code, out = setup.verify(image.reference, both("referencedOrPlatforms", ["linux/amd64", "linux/s390x"]))
    assert code == 1, out
    assert f"image index {image.digest} is not signed; it has no linux/s390x manifest" in out["reason"]


def test_platforms_asks_for_signed_platform_manifests_whatever_the_index(setup: Setup) -> None:
    signed = setup.signed
    code, out = setup.verify(signed.reference, both("platforms"))
    assert code == 1, out
    assert out["reason"].startswith(
        f"Referee policy statement 'multiarch': image index {signed.digest}: its linux/amd64 manifest "
        f"{signed.children['linux/amd64']} has no Notation signature; its linux/arm64 manifest "
        f"{signed.children['linux/arm64']} has no Notation signature"
    ), out["reason"]
    assert out["signatures"] == []  # the index's own signatures are not read
    code, out = setup.verify(setup.children.reference, both("platforms"))
    assert code == 0, out


def test_a_platform_manifest_named_directly_is_judged_as_the_image(setup: Setup) -> None:
    """A pod may name one platform's manifest by digest: that is what runs, and it must be signed."""
    half = setup.half
    for platform, expected in (("linux/amd64", 0), ("linux/arm64", 1)):
        code, out = setup.verify(f"{half.repo}@{half.children[platform]}", both("platforms"))
        assert code == expected, out


def test_the_text_output_shows_each_manifest_and_requirement(setup: Setup) -> None:
    half = setup.half
    policy = setup.work / "text-policy.yaml"
    policy.write_text(
        'version: "1.0"\nstatements:\n  - name: multiarch\n    registryScopes: ["*"]\n'
        "    signedManifest: referencedOrPlatforms\n    platforms: [linux/amd64, linux/arm64]\n"
    )
    proc = referee("verify", half.reference, "--plain-http", "--trust-policy", str(setup.trust_policy),
                   "--trust-store", str(setup.trust_store), "--policy", str(policy))  # fmt: skip
    print(proc.stdout)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(
        f"FAILED {half.reference} ({half.digest}): Referee policy statement 'multiarch': image index"
    )
    assert "  Referee policy: statement multiarch" in lines
    assert any(
        line.startswith("  [NOT ] signedManifest: referencedOrPlatforms [linux/amd64, linux/arm64]")
        for line in lines
    )
    assert f"  linux/amd64 manifest {half.children['linux/amd64']}:" in lines


def test_discover_lists_an_index_s_manifests_and_their_referrers(setup: Setup) -> None:
    half = setup.half
    proc = referee("discover", "--plain-http", "--output", "json", half.reference)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    manifests = {m["platform"]: m for m in out["manifests"]}
    assert sorted(manifests) == PLATFORMS
    amd64 = manifests["linux/amd64"]
    assert amd64["digest"] == half.children["linux/amd64"]
    # The same signature oras lists for that manifest.
    listed = json.loads(oras("discover", *setup.registry.oras_flags(), "--format", "json",
                             f"{half.repo}@{amd64['digest']}"))["referrers"]  # fmt: skip
    assert [r["digest"] for r in amd64["referrers"]] == [r["digest"] for r in listed]
    assert [r["artifactType"] for r in amd64["referrers"]] == ["application/vnd.cncf.notary.signature"]
    assert manifests["linux/arm64"]["referrers"] == []
    text = referee("discover", "--plain-http", half.reference).stdout
    print(text)
    assert "  manifests of the index: 2" in text
    assert f"linux/arm64  {half.children['linux/arm64']}" in text

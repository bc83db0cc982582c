"""Required referrers: SBOMs attached with the real oras, signed (or not) with the real notation, on
both registry kinds, through ``referee verify --policy``; and a referrers listing that names another
image's SBOM (a tag-schema index written by hand into a real Distribution registry) does not count."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.artifacts import Notation, attach, oras, push_image
from tests.helpers.codesign import install_notation_key, make_chain, write_trust_store
from tests.helpers.registries import RunningRegistry
from tests.helpers.tools import referee

SBOM = "application/spdx+json"
SBOM_CONTENT = '{"spdxVersion":"SPDX-2.3","name":"app"}'


@dataclass(frozen=True)
class Setup:
    registry: RunningRegistry
    work: Path
    notation: Notation
    trust_policy: Path  # "all" (ca:test, for every repository) and "sbom-signers" (ca:sbom only)
    trust_store: Path

    def image(self, repo: str, *, sbom: bool = False, sign_sbom: bool = False) -> tuple[str, str]:
        """``repo:v1``, signed by notation; with an SBOM attached by oras, itself signed or not.
        Returns the image (by digest) and the SBOM's digest ("" without one)."""
        digest = push_image(self.registry, repo, "v1", self.work / repo, content=repo)
        image = f"{self.registry.host}/{repo}@{digest}"
        self.notation.sign(self.registry, image)
        sbom_digest = ""
        if sbom:
            sbom_digest = attach(self.registry, image, SBOM, self.work / repo, name="sbom.spdx.json",
                                 content=SBOM_CONTENT)  # fmt: skip
            if sign_sbom:
                self.notation.sign(self.registry, f"{self.registry.host}/{repo}@{sbom_digest}")
        return image, sbom_digest

    def verify(self, image: str, *referrers: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        policy = self.work / "policy.json"
        policy.write_text(json.dumps({"version": "1.0", "statements": [
            {"name": "sbom", "registryScopes": ["*"], "referrers": list(referrers)}]}))  # fmt: skip
        proc = referee("verify", image, "--plain-http", "--output", "json", "--policy", str(policy),
                       "--trust-policy", str(self.trust_policy),
                       "--trust-store", str(self.trust_store))  # fmt: skip
        assert proc.returncode in (0, 1), proc.stderr
        return proc.returncode, json.loads(proc.stdout)


@pytest.fixture(scope="module")
def setup(registry: RunningRegistry, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return make_setup(registry, tmp_path_factory.mktemp(f"referrers-{registry.kind}"))


def make_setup(registry: RunningRegistry, work: Path) -> Setup:
    chain = make_chain()
    notation = Notation(work / "home")
    install_notation_key(notation.home, "test", chain)
    store = work / "truststore"
    write_trust_store(store, "ca", "test", chain.root)
    write_trust_store(store, "ca", "sbom", make_chain(root_cn="SBOM Signers Root").root)
    statement = {"signatureVerification": {"level": "strict"}, "trustedIdentities": ["*"]}
    policy = work / "trustpolicy.json"
    policy.write_text(json.dumps({"version": "1.0", "trustPolicies": [
        {"name": "all", "registryScopes": ["*"], "trustStores": ["ca:test"], **statement},
        {"name": "sbom-signers", "registryScopes": ["sbom.invalid/only"], "trustStores": ["ca:sbom"],
         **statement},
    ]}))  # fmt: skip
    return Setup(registry, work, notation, policy, store)


SIGNED_SBOM = {"artifactType": SBOM, "signed": True}


def test_a_signed_sbom_meets_the_requirement_and_is_reported(setup: Setup) -> None:
    image, sbom = setup.image("ref/signed", sbom=True, sign_sbom=True)
    code, out = setup.verify(image, SIGNED_SBOM)
    assert code == 0, out
    [artifact] = out["refereePolicy"]["artifacts"]
    assert artifact["artifactType"] == SBOM and artifact["digest"] == sbom and artifact["signed"] is True
    assert artifact["signer"].startswith("CN=signer")
    labels = [m["label"] for m in out["refereePolicy"]["manifests"]]
    assert labels == ["image", f"{SBOM} artifact"]


def test_an_image_without_an_sbom_is_denied(setup: Setup) -> None:
    image, _ = setup.image("ref/none")
    code, out = setup.verify(image, SIGNED_SBOM)
    assert code == 1, out
    assert out["reason"] == (
        f"Referee policy statement 'sbom': no {SBOM} artifact refers to it "
        f"(required: a signed {SBOM} artifact)"
    )


def test_an_unsigned_sbom_is_denied_when_a_signed_one_is_required(setup: Setup) -> None:
    image, sbom = setup.image("ref/unsigned", sbom=True)
    code, out = setup.verify(image, SIGNED_SBOM)
    assert code == 1, out
    assert out["reason"] == (
        f"Referee policy statement 'sbom': its {SBOM} artifact {sbom} has no Notation signature "
        f"(required: a signed {SBOM} artifact)"
    )
    assert out["refereePolicy"]["artifacts"] == [
        {"artifactType": SBOM, "digest": sbom, "signed": False, "signer": None}
    ]
    # Without signed: true, the SBOM's presence is enough.
    code, out = setup.verify(image, {"artifactType": SBOM})
    assert code == 0 and out["refereePolicy"]["artifacts"][0]["signed"] is None, out


def test_the_sbom_signature_must_pass_the_named_trust_policy_statement(setup: Setup) -> None:
    image, sbom = setup.image("ref/named", sbom=True, sign_sbom=True)
    code, out = setup.verify(image, {**SIGNED_SBOM, "trustPolicy": "sbom-signers"})
    assert code == 1, out
    assert f"its {SBOM} artifact {sbom} is not accepted: the signature failed verification" in out["reason"]
    assert "the signing chain does not lead to a certificate in trust store(s) ca:sbom" in out["reason"]
    code, out = setup.verify(image, {**SIGNED_SBOM, "trustPolicy": "nope"})
    assert code == 1 and "the trust policy has no statement named 'nope'" in out["reason"], out


def test_a_reported_only_referrer_never_denies(setup: Setup) -> None:
    image, _ = setup.image("ref/optional")
    code, out = setup.verify(image, {**SIGNED_SBOM, "required": False})
    assert code == 0, out
    [requirement] = [r for r in out["refereePolicy"]["requirements"] if r["name"] == "referrer"]
    assert requirement["met"] is False and "reported only" in requirement["detail"]


def test_an_sbom_of_another_image_in_the_referrers_tag_does_not_count(
    distribution: RunningRegistry, tmp_path: Path
) -> None:
    """The referrers tag schema is an index anyone who can push can write. One that lists another
    image's (signed) SBOM under this image's digest must not make this image pass: the SBOM's own
    manifest, read by digest, names its real subject. (Distribution has no referrers API, so the
    tag is its listing.)"""
    setup = make_setup(distribution, tmp_path)
    other, sbom = setup.image("ref/forged", sbom=True, sign_sbom=True)
    victim_digest = push_image(distribution, "ref/forged", "victim", setup.work / "victim", content="victim")
    victim = f"{distribution.host}/ref/forged@{victim_digest}"
    setup.notation.sign(distribution, victim)
    # The victim's referrers index, with the other image's SBOM added as if it referred here.
    flags = distribution.oras_flags()
    tag = f"{distribution.host}/ref/forged:sha256-{victim_digest.split(':')[1]}"
    index = json.loads(oras("manifest", "fetch", *flags, tag))
    described = json.loads(
        oras("manifest", "fetch", "--descriptor", *flags, f"{distribution.host}/ref/forged@{sbom}")
    )
    index["manifests"].append({**described, "artifactType": SBOM})
    (setup.work / "forged-index.json").write_text(json.dumps(index))
    oras(
        "manifest",
        "push",
        *flags,
        "--media-type",
        index["mediaType"],
        tag,
        str(setup.work / "forged-index.json"),
    )
    code, out = setup.verify(victim, SIGNED_SBOM)
    assert code == 1, out
    assert f"{sbom} does not refer to this image" in out["reason"], out["reason"]
    assert other != victim

"""What a statement asks of an image's signatures: user metadata in the signed payload (interop with
``notation sign --user-metadata`` and ``notation verify --user-metadata`` both ways) and signer
thresholds (``minSigners``, ``requiredIdentities``) over signatures made by the real notation with
two signing keys, on both registry kinds, through ``referee verify --policy``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.artifacts import Notation, push_image
from tests.helpers.codesign import (
    LeafSpec,
    install_notation_key,
    make_chain,
    write_trust_policy,
    write_trust_store,
)
from tests.helpers.registries import RunningRegistry
from tests.helpers.tools import referee, run, tool

BUILD = "CN=build,O=Referee Test,L=Seattle,ST=WA,C=US"
RELEASE_IDENTITY = "x509.subject: C=US, ST=WA, O=Referee Test, CN=release"


@dataclass(frozen=True)
class Signers:
    registry: RunningRegistry
    work: Path
    notation: Notation  # keys "build" (the default) and "release"; its trust policy accepts both
    key: Path  # the build key and chain, for referee sign
    cert: Path

    @property
    def config(self) -> Path:
        return self.notation.home / "notation"

    def image(self, repo: str, *signings: list[str]) -> str:
        """Push ``repo:v1`` and sign it once per entry with notation (each entry: extra arguments)."""
        digest = push_image(self.registry, repo, "v1", self.work / repo, content=repo)
        reference = f"{self.registry.host}/{repo}@{digest}"
        for extra in signings:
            self.notation.sign(self.registry, reference, *extra)
        return reference

    def verify(self, image: str, statement: dict[str, Any], *extra: str) -> tuple[int, dict[str, Any]]:
        policy = self.work / "policy.json"
        policy.write_text(json.dumps({"version": "1.0", "statements": [
            {"name": "release", "registryScopes": ["*"], **statement}]}))  # fmt: skip
        proc = referee(
            "verify", image, "--plain-http", "--output", "json", "--policy", str(policy),
            "--trust-policy", str(self.config / "trustpolicy.json"),
            "--trust-store", str(self.config / "truststore"), *extra,
        )  # fmt: skip
        assert proc.returncode in (0, 1), proc.stderr
        return proc.returncode, json.loads(proc.stdout)

    def notation_verify(self, image: str, *extra: str) -> bool:
        args = [tool("notation"), "verify", "--insecure-registry", *extra, image]
        return run(args, env=self.notation.env(), check=False).returncode == 0


@pytest.fixture(scope="module")
def signers(registry: RunningRegistry, tmp_path_factory: pytest.TempPathFactory) -> Signers:
    work = tmp_path_factory.mktemp(f"signers-{registry.kind}")
    build, release = make_chain(LeafSpec(cn="build")), make_chain(LeafSpec(cn="release"))
    notation = Notation(work / "home")
    install_notation_key(notation.home, "build", build)
    install_notation_key(notation.home, "release", release, default=False)
    config = notation.home / "notation"
    write_trust_store(config / "truststore", "ca", "test", build.root, release.root)
    write_trust_policy(config / "trustpolicy.json")
    key, cert = work / "build.key", work / "build.pem"
    key.write_bytes(build.key_pem())
    cert.write_bytes(build.pem())
    return Signers(registry, work, notation, key, cert)


# --- userMetadata ------------------------------------------------------------------------------------

PIPELINE = {"userMetadata": {"pipeline": "release"}}


def test_a_signature_made_with_notation_user_metadata_passes(signers: Signers) -> None:
    image = signers.image("meta/with", ["--user-metadata", "pipeline=release", "--user-metadata", "team=web"])
    code, out = signers.verify(image, PIPELINE)
    assert code == 0 and out["verified"] is True, out
    assert out["signatures"][0]["userMetadata"] == {"pipeline": "release", "team": "web"}
    met = {r["name"]: r["met"] for r in out["refereePolicy"]["requirements"]}
    assert met == {"signedManifest": True, "userMetadata": True}


def test_a_signature_without_the_user_metadata_fails_naming_the_missing_key(signers: Signers) -> None:
    image = signers.image("meta/without", [])
    code, out = signers.verify(image, PIPELINE)
    assert code == 1, out
    [signature] = out["signatures"]
    assert signature["verified"] is True  # valid under the trust policy; it is the metadata that is missing
    assert out["reason"] == (
        "Referee policy statement 'release': no valid signature carries the user metadata pipeline=release "
        f"(signature {signature['digest']} by '{BUILD}' lacks pipeline)"
    )
    assert not signers.notation_verify(image, "--user-metadata", "pipeline=release")  # notation agrees


def test_a_signature_with_another_value_fails_saying_which(signers: Signers) -> None:
    image = signers.image("meta/wrong", ["--user-metadata", "pipeline=dev"])
    code, out = signers.verify(image, PIPELINE)
    assert code == 1 and "has pipeline=dev, not pipeline=release" in out["reason"], out
    assert not signers.notation_verify(image, "--user-metadata", "pipeline=release")


def test_notation_verify_user_metadata_accepts_what_referee_signs(signers: Signers) -> None:
    digest_ref = signers.image("meta/ours")
    proc = referee("sign", "--plain-http", "--key", str(signers.key), "--cert", str(signers.cert),
                   "--user-metadata", "pipeline=release", digest_ref)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert signers.notation_verify(digest_ref, "--user-metadata", "pipeline=release")
    assert not signers.notation_verify(digest_ref, "--user-metadata", "pipeline=other")
    code, out = signers.verify(digest_ref, PIPELINE)
    assert code == 0, out


def test_referee_sign_refuses_notations_reserved_keys(signers: Signers) -> None:
    proc = referee("sign", "--plain-http", "--key", str(signers.key), "--cert", str(signers.cert),
                   "--user-metadata", "io.cncf.notary.signingAgent=x",
                   f"{signers.registry.host}/meta/x:v1")  # fmt: skip
    assert proc.returncode == 2 and "reserved for notation" in proc.stderr


# --- minSigners and requiredIdentities ----------------------------------------------------------------


def test_two_signers_meet_min_signers_two(signers: Signers) -> None:
    image = signers.image("two/both", [], ["--key", "release"])
    code, out = signers.verify(image, {"minSigners": 2})
    assert code == 0, out
    [manifest] = out["refereePolicy"]["manifests"]
    assert sorted(s["subject"].split(",")[0] for s in manifest["signers"]) == ["CN=build", "CN=release"]
    # Once enough signers are found, no further signature is read: one is enough by default.
    code, out = signers.verify(image, {})
    assert code == 0 and len(out["signatures"]) == 1, out


def test_two_signatures_by_one_signer_do_not_meet_min_signers_two(signers: Signers) -> None:
    image = signers.image("two/same", [], [])
    code, out = signers.verify(image, {"minSigners": 2})
    assert code == 1, out
    assert len(out["signatures"]) == 2 and all(s["verified"] for s in out["signatures"])
    assert out["reason"] == (
        f"Referee policy statement 'release': 2 distinct signers are required and 1 signed ('{BUILD}')"
    )


def test_the_signature_cap_is_said_when_it_stops_the_count(signers: Signers) -> None:
    image = signers.image("two/capped", [], ["--key", "release"])
    code, out = signers.verify(image, {"minSigners": 2}, "--max-signatures", "1")
    assert code == 1, out
    assert "(only the first 1 of its 2 signatures are tried: limits.maxSignatures)" in out["reason"]


def test_a_required_identity_needs_its_own_signature(signers: Signers) -> None:
    only_build = signers.image("two/build", [])
    code, out = signers.verify(only_build, {"requiredIdentities": [RELEASE_IDENTITY]})
    assert code == 1, out
    assert out["reason"] == (
        "Referee policy statement 'release': no valid signature from the required identity "
        f"{RELEASE_IDENTITY} (signed by '{BUILD}')"
    )
    both = signers.image("two/release", [], ["--key", "release"])
    code, out = signers.verify(both, {"minSigners": 2, "requiredIdentities": [RELEASE_IDENTITY]})
    assert code == 0, out


def test_a_signer_without_the_user_metadata_does_not_count_toward_min_signers(signers: Signers) -> None:
    image = signers.image("two/meta", ["--user-metadata", "pipeline=release"], ["--key", "release"])
    code, out = signers.verify(image, {"minSigners": 2, **PIPELINE})
    assert code == 1 and "2 distinct signers are required and 1 signed" in out["reason"], out

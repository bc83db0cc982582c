"""Referee's policy document in the webhook: `referee serve` with a policy file applies the same
statements to /validate, /mutate and /provider as `referee verify --policy` does, reloads the file
when it changes (a broken edit keeps the last good one and shows on /readyz), and refuses to start
with a document it cannot read. Images in a real olareg, signed by the real notation, SBOMs attached
by the real oras."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.helpers.artifacts import attach, push_image, push_index
from tests.helpers.codesign import make_chain, write_trust_policy, write_trust_store
from tests.helpers.registries import RunningRegistry
from tests.helpers.samples import SampleImages, sample_images
from tests.integration.test_webhook import Server, pod, provider_call, start_server

SBOM = "application/spdx+json"


@dataclass(frozen=True)
class Images:
    samples: SampleImages
    with_sbom: str  # host/pol/sbom:v1, signed, with a signed SBOM
    with_sbom_digest: str
    sbom: str  # the SBOM's digest
    multi: str  # host/pol/multi:v1, an unsigned index whose linux/amd64 manifest alone is signed
    multi_digest: str
    arm64: str  # that index's linux/arm64 manifest


@pytest.fixture(scope="module")
def images(olareg: RunningRegistry, tmp_path_factory: pytest.TempPathFactory) -> Images:
    work = tmp_path_factory.mktemp("policy-images")
    samples = sample_images(olareg, work, "pol")
    host, notation = olareg.host, samples.notation
    digest = push_image(olareg, "pol/sbom", "v1", work / "sbom", content="pol sbom")
    notation.sign(olareg, f"{host}/pol/sbom@{digest}")
    sbom = attach(olareg, f"{host}/pol/sbom@{digest}", SBOM, work / "sbom", name="sbom.spdx.json",
                  content='{"spdxVersion":"SPDX-2.3"}')  # fmt: skip
    notation.sign(olareg, f"{host}/pol/sbom@{sbom}")
    index, children = push_index(olareg, "pol/multi", "v1", ["linux/amd64", "linux/arm64"], work / "multi")
    notation.sign(olareg, f"{host}/pol/multi@{children['linux/amd64']}")
    return Images(samples, f"{host}/pol/sbom:v1", digest, sbom, f"{host}/pol/multi:v1", index,
                  children["linux/arm64"])  # fmt: skip


def policy_text(host: str, *, sbom_required: bool = True) -> str:
    referrers = f"[{{artifactType: {SBOM}, signed: true}}]" if sbom_required else "[]"
    return (
        'version: "1.0"\nstatements:\n'
        f"  - name: sbom\n    registryScopes: [{host}/pol/signed, {host}/pol/sbom]\n"
        f"    referrers: {referrers}\n"
        f"  - name: multiarch\n    registryScopes: [{host}/pol/multi]\n"
        "    signedManifest: referencedOrPlatforms\n    platforms: [linux/amd64, linux/arm64]\n"
    )


@pytest.fixture(scope="module")
def policy_file(olareg: RunningRegistry, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policy-file") / "policy.yaml"
    path.write_text(policy_text(olareg.host))
    return path


@pytest.fixture(scope="module")
def server(
    olareg: RunningRegistry, images: Images, policy_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    samples = images.samples
    yield from start_server(tmp_path_factory.mktemp("policy-server"), olareg, samples.policy, samples.store,
                            extra=f"policy: {policy_file}\n")  # fmt: skip


def sbom_denial(image: str, digest: str) -> str:
    return (
        f"image {image} ({digest}): Referee policy statement 'sbom': no {SBOM} artifact refers to it "
        f"(required: a signed {SBOM} artifact)"
    )


def test_validate_applies_the_statements(server: Server, images: Images) -> None:
    samples = images.samples
    assert server.review(pod(images.with_sbom))["allowed"] is True
    denied = server.review(pod(samples.signed))
    assert denied["allowed"] is False
    print(f"\n{denied['status']['message']}")
    assert denied["status"]["message"] == (
        "referee: Pod team-a/web not admitted: " + sbom_denial(samples.signed, samples.signed_digest)
    )
    multi = server.review(pod(images.multi))["status"]["message"]
    print(multi)
    assert multi == (
        f"referee: Pod team-a/web not admitted: image {images.multi} ({images.multi_digest}): Referee policy "
        f"statement 'multiarch': image index {images.multi_digest} is not signed; its linux/arm64 manifest "
        f"{images.arm64} has no Notation signature (signedManifest referencedOrPlatforms for linux/amd64, "
        "linux/arm64)"
    )
    # A repository no statement selects: the trust policy alone decides, as without a document.
    assert "no Notation signature found" in server.review(pod(samples.unsigned))["status"]["message"]


def test_provider_items_carry_what_was_found(server: Server, images: Images) -> None:
    samples = images.samples
    items = {
        i["key"]: i
        for i in provider_call(server, [images.with_sbom, samples.signed]).json()["response"]["items"]
    }
    value = items[images.with_sbom]["value"]
    assert value["verified"] is True and value["statement"] == "sbom"
    [artifact] = value["artifacts"]
    assert (
        artifact["artifactType"] == SBOM and artifact["digest"] == images.sbom and artifact["signed"] is True
    )
    # (the denial may come from the cache, which adds how old it is)
    assert items[samples.signed]["error"].startswith(sbom_denial(samples.signed, samples.signed_digest))


def test_mutate_pins_only_images_the_statements_admit(server: Server, images: Images) -> None:
    samples = images.samples
    containers = [{"name": "a", "image": images.with_sbom}, {"name": "b", "image": samples.signed}]
    body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "m1", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": "team-a",
        "operation": "CREATE", "object": {"spec": {"containers": containers}}}}  # fmt: skip
    resp = requests.post(f"{server.url}/mutate", json=body, verify=str(server.ca), timeout=30).json()[
        "response"
    ]
    patch = json.loads(base64.b64decode(resp["patch"]))
    assert [op["value"] for op in patch if op["op"] == "replace"] == [
        f"{images.with_sbom}@{images.with_sbom_digest}"
    ]


def test_a_changed_policy_file_takes_effect_and_a_broken_one_is_shown_on_readyz(
    server: Server, images: Images, policy_file: Path, olareg: RunningRegistry
) -> None:
    samples = images.samples
    try:
        policy_file.write_text(policy_text(olareg.host).replace("signed: true", "signed: maybe"))
        time.sleep(2.1)  # the file is looked at every two seconds
        ready = requests.get(f"{server.url}/readyz", verify=str(server.ca), timeout=5).json()
        assert ready["status"] == "ready"
        assert (
            "statement 'sbom': referrers[0]: signed and required are true or false"
            in ready["policyReloadError"]
        )
        assert server.review(pod(samples.signed))["allowed"] is False  # the last good document still applies
        policy_file.write_text(policy_text(olareg.host, sbom_required=False))
        time.sleep(2.1)
        assert server.review(pod(samples.signed))["allowed"] is True  # not the cached denial
        ready = requests.get(f"{server.url}/readyz", verify=str(server.ca), timeout=5).json()
        assert "policyReloadError" not in ready
    finally:
        policy_file.write_text(policy_text(olareg.host))


def test_serve_refuses_a_policy_document_it_cannot_read(tmp_path: Path) -> None:
    write_trust_store(tmp_path / "truststore", "ca", "test", make_chain().root)
    write_trust_policy(tmp_path / "trustpolicy.json")
    (tmp_path / "policy.yaml").write_text(
        'version: "1.0"\nstatements: [{name: web, registryScopes: ["*"], minSigners: 0}]\n'
    )
    (tmp_path / "config.yaml").write_text(
        "trustPolicy: trustpolicy.json\ntrustStore: truststore\npolicy: policy.yaml\n"
    )
    argv = [sys.executable, "-m", "webhook", "serve", "--config", str(tmp_path / "config.yaml")]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 2, proc.stderr
    assert (
        f"referee: error: policy {tmp_path / 'policy.yaml'}: statement 'web': minSigners must be a whole "
        "number from 1 to 16, not 0"
    ) in proc.stderr

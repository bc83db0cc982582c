"""Gatekeeper for real: its manager (v3.23.1) runs against the real kube-apiserver with its webhooks
registered by URL, at Gatekeeper's default webhook timeouts (3 s validating, 1 s mutating), and
external data calling a local Referee over mutual TLS; `policies/` is applied with the real kubectl,
and the real kubectl's pods are admitted, refused or pinned to digests."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import gatekeeper as gk
from tests.helpers import pki
from tests.helpers.artifacts import attach, push_image
from tests.helpers.cluster import Cluster
from tests.helpers.registries import RunningRegistry
from tests.helpers.samples import SampleImages, sample_images
from tests.helpers.serving import referee_serve
from tests.helpers.tools import ROOT, free_port

POLICIES = ROOT / "policies"
VERIFIED = POLICIES / "referee-verified-images"
PINNED = POLICIES / "referee-pinned-images"
NS = "gk-verified"  # the constraint applies here
NS_PINNED = "gk-pinned"  # and here the Assign pins images to their digests first
NS_SBOM = "gk-sbom"  # and here images must have an SBOM (requiredArtifactTypes)
CONSTRAINT = "signed-images-only"
SBOM_CONSTRAINT = "images-with-sbom"
SBOM = "application/spdx+json"
PINNED_CONSTRAINT = "pinned-images-only"
DENIED = 'admission webhook "validation.gatekeeper.sh" denied the request'
# Referee's own webhooks (the rest of the suite registers them) skip namespaces with this label, so
# every decision in these namespaces is Gatekeeper's.
REFEREE_OPT_OUT = {"referee.dev/ignore": "true"}

pytestmark = pytest.mark.needs_tools


@dataclass(frozen=True)
class Referee:
    url: str
    ca: Path


@pytest.fixture(scope="module")
def gk_images(olareg: RunningRegistry, tmp_path_factory: pytest.TempPathFactory) -> SampleImages:
    """A signed and an unsigned image in olareg (signed by the real notation), with the trust
    policy and store that accept the signer."""
    return sample_images(olareg, tmp_path_factory.mktemp("gk-images"), "gk")


@pytest.fixture(scope="module")
def gk_sbom_image(
    olareg: RunningRegistry, gk_images: SampleImages, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A signed image with an SPDX SBOM attached by oras and signed by notation."""
    work = tmp_path_factory.mktemp("gk-sbom")
    digest = push_image(olareg, "gk/sbom", "v1", work, content="gk sbom")
    gk_images.notation.sign(olareg, f"{olareg.host}/gk/sbom@{digest}")
    sbom = attach(olareg, f"{olareg.host}/gk/sbom@{digest}", SBOM, work, name="sbom.spdx.json",
                  content='{"spdxVersion":"SPDX-2.3"}')  # fmt: skip
    gk_images.notation.sign(olareg, f"{olareg.host}/gk/sbom@{sbom}")
    return f"{olareg.host}/gk/sbom:v1"


@pytest.fixture(scope="module")
def gatekeeper(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[gk.Gatekeeper]:
    work = tmp_path_factory.mktemp("gatekeeper")
    for ns in (NS, NS_PINNED):
        cluster.create_namespace(ns, REFEREE_OPT_OUT)
    cluster.create_namespace(NS_SBOM, {**REFEREE_OPT_OUT, "sbom": "required"})
    with gk.installed_crds(cluster), gk.running_manager(cluster, work, [NS, NS_PINNED, NS_SBOM]) as manager:
        yield manager


@pytest.fixture(scope="module")
def provider_referee(
    olareg: RunningRegistry,
    gk_images: SampleImages,
    gatekeeper: gk.Gatekeeper,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Referee]:
    """`referee serve` on 127.0.0.1, answering /provider only to clients whose certificate
    Gatekeeper's CA issued (Gatekeeper presents its webhook certificate)."""
    policy, store = gk_images.policy, gk_images.store
    work = tmp_path_factory.mktemp("referee")
    ca = pki.make_ca(work)
    cert = pki.make_server_cert(work, ca)
    port = free_port()
    # Referee's policy document reports SBOMs (required: false); the constraints decide where they must be.
    statements = work / "policy.yaml"
    statements.write_text(
        'version: "1.0"\nstatements:\n  - name: all\n    registryScopes: ["*"]\n'
        f"    referrers: [{{artifactType: {SBOM}, signed: true, required: false}}]\n"
    )
    config = work / "config.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{port}\n"
        f"trustPolicy: {policy}\ntrustStore: {store}\npolicy: {statements}\n"
        f"registries: {{'{olareg.host}': {{plainHTTP: true}}}}\n"
        f"tls: {{certFile: {cert.cert_path}, keyFile: {cert.key_path}, "
        f"clientCAFile: {gatekeeper.ca.cert_path}}}\n"
        "timeouts: {admissionSeconds: 10, marginSeconds: 1, providerSeconds: 2, providerMutationSeconds: 1}\n"
        "server: {workers: 1, threads: 8}\n"
    )
    url = f"https://127.0.0.1:{port}"
    with referee_serve(config, url, ca.cert_path):
        yield Referee(url, ca.cert_path)


def provider(doc: dict[str, Any], referee: Referee, path: str) -> dict[str, Any]:
    spec = {**doc["spec"], "url": f"{referee.url}{path}",
            "caBundle": base64.b64encode(referee.ca.read_bytes()).decode()}  # fmt: skip
    return {**doc, "spec": spec}


def load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def pod_manifest(name: str, image: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"automountServiceAccountToken": False,
                                "containers": [{"name": "app", "image": image}]}})  # fmt: skip


@pytest.fixture(scope="module")
def policies(
    cluster: Cluster,
    gatekeeper: gk.Gatekeeper,
    provider_referee: Referee,
    gk_images: SampleImages,
) -> Iterator[None]:
    """policies/ applied with kubectl: the Provider, the RefereeVerifiedImages template and its
    constraint, and the Assign samples with their mutation Provider and the RefereePinnedImages
    template and constraint (these limited to NS_PINNED); each waited for until Gatekeeper reports
    it in force."""
    logs = gk.log_tail(gatekeeper.log)
    [verified_provider] = load(POLICIES / "provider.yaml")
    mutate_provider, *assigns = load(PINNED / "samples" / "assign-pin-digests.yaml")
    [pinned_constraint] = load(PINNED / "samples" / "constraint.yaml")
    for doc in (*assigns, pinned_constraint):
        doc["spec"]["match"]["namespaces"] = [NS_PINNED]
    constraint = VERIFIED / "samples" / "constraint.yaml"
    sbom_constraint = VERIFIED / "samples" / "constraint-required-sbom.yaml"
    template = VERIFIED / "template.yaml"
    gk.apply(cluster, provider(verified_provider, provider_referee, "/provider"),
             provider(mutate_provider, provider_referee, "/provider/mutate"))  # fmt: skip
    cluster.kubectl("apply", "-f", str(template), "-f", str(PINNED / "template.yaml"))
    try:
        for name in ("referee", "referee-mutate"):
            gk.wait_for(f"provider {name} active", partial(gk.active, cluster, "provider", name), 60, logs)
        for kind in ("refereeverifiedimages", "refereepinnedimages"):
            gk.wait_for(f"template {kind} created", partial(gk.created, cluster, kind), 60, logs)
        cluster.kubectl("apply", "-f", str(constraint), "-f", str(sbom_constraint))
        gk.apply(cluster, pinned_constraint, *assigns)
        for kind, name in [("refereeverifiedimages", CONSTRAINT), ("refereeverifiedimages", SBOM_CONSTRAINT),
                           ("refereepinnedimages", PINNED_CONSTRAINT),
                           *(("assign", a["metadata"]["name"]) for a in assigns)]:  # fmt: skip
            gk.wait_for(f"{kind} {name} enforced", partial(gk.enforced, cluster, kind, name), 60, logs)

        # In force for admission: a server-side dry run of the unsigned pod is refused with
        # Referee's reason (the status above is written a little before the webhook's caches).
        unsigned = pod_manifest("probe", gk_images.unsigned)

        def refusing() -> bool:
            proc = kubectl_apply(cluster, NS, unsigned, "--dry-run=server")
            return proc.returncode != 0 and "no Notation signature found" in proc.stderr

        gk.wait_for("gatekeeper refusing unsigned pods", refusing, 60, logs)
        yield
    finally:
        for args in (["-f", str(constraint)], ["-f", str(sbom_constraint)],
                     ["refereepinnedimages", PINNED_CONSTRAINT],
                     ["assign", *(a["metadata"]["name"] for a in assigns)],
                     ["-f", str(template), "-f", str(PINNED / "template.yaml")],
                     ["provider", "referee", "referee-mutate"]):  # fmt: skip
            cluster.kubectl("delete", "--ignore-not-found", "--wait=false", *args, check=False)


def kubectl_apply(
    cluster: Cluster, namespace: str, manifest: str, *flags: str
) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("apply", *flags, "-n", namespace, "-f", "-", input=manifest, check=False)


def pod_image(cluster: Cluster, namespace: str, name: str) -> str:
    jsonpath = "jsonpath={.spec.containers[0].image}"
    return cluster.kubectl("get", "pod", "-n", namespace, name, "-o", jsonpath).stdout


def test_unsigned_pod_is_refused_by_gatekeeper_with_referees_reason(
    cluster: Cluster, policies: None, gk_images: SampleImages
) -> None:
    imgs = gk_images
    proc = kubectl_apply(cluster, NS, pod_manifest("unsigned", imgs.unsigned))
    print(f"\n$ kubectl apply -n {NS} -f unsigned.yaml\n{proc.stderr}")
    assert proc.returncode == 1
    expected = (
        f"{DENIED}: [{CONSTRAINT}] referee: image {imgs.unsigned} ({imgs.unsigned_digest}): "
        "no Notation signature found"
    )
    assert expected in proc.stderr
    assert cluster.kubectl("get", "pod", "-n", NS, "unsigned", check=False).returncode != 0


def test_unsigned_image_only_in_an_image_volume_is_refused(
    cluster: Cluster, policies: None, gk_images: SampleImages
) -> None:
    """The container is signed; the unsigned image comes in as a volume (volumes[].image), behind
    ordinary volumes. Gatekeeper asks Referee about it too, and refuses the pod."""
    imgs = gk_images
    volumes: list[dict[str, Any]] = [{"name": f"scratch-{i}", "emptyDir": {}} for i in range(40)]
    volumes.append({"name": "data", "image": {"reference": imgs.unsigned, "pullPolicy": "IfNotPresent"}})
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "volume"},
           "spec": {"automountServiceAccountToken": False, "volumes": volumes,
                    "containers": [{"name": "app", "image": imgs.signed,
                                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}}  # fmt: skip
    proc = kubectl_apply(cluster, NS, json.dumps(pod))
    print(f"\n$ kubectl apply -n {NS} -f image-volume.yaml\n{proc.stderr}")
    assert proc.returncode == 1, proc.stdout
    expected = (
        f"{DENIED}: [{CONSTRAINT}] referee: image {imgs.unsigned} ({imgs.unsigned_digest}): "
        "no Notation signature found"
    )
    assert expected in proc.stderr
    assert cluster.kubectl("get", "pod", "-n", NS, "volume", check=False).returncode != 0


def test_signed_pod_is_admitted(cluster: Cluster, policies: None, gk_images: SampleImages) -> None:
    imgs = gk_images
    proc = kubectl_apply(cluster, NS, pod_manifest("signed", imgs.signed))
    assert proc.returncode == 0, proc.stderr
    print(f"\n$ kubectl apply -n {NS} -f signed.yaml\n{proc.stdout}")
    assert proc.stdout.strip() == "pod/signed created"
    # No mutation in this namespace: the pod keeps the tag it was written with.
    assert pod_image(cluster, NS, "signed") == imgs.signed


def test_workload_with_an_unsigned_image_is_refused(
    cluster: Cluster, policies: None, gk_images: SampleImages
) -> None:
    imgs = gk_images
    template = {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "ok", "image": imgs.signed},
                                        {"name": "bad", "image": imgs.unsigned}]}}  # fmt: skip
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                  "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template}}  # fmt: skip
    proc = kubectl_apply(cluster, NS, json.dumps(deployment))
    assert proc.returncode == 1
    assert f"{DENIED}: [{CONSTRAINT}] referee: image {imgs.unsigned}" in proc.stderr
    assert imgs.signed not in proc.stderr


def test_assign_pins_the_image_to_its_verified_digest(
    cluster: Cluster, policies: None, gk_images: SampleImages
) -> None:
    imgs = gk_images
    proc = kubectl_apply(cluster, NS_PINNED, pod_manifest("pinned", imgs.signed))
    assert proc.returncode == 0, proc.stderr
    image = pod_image(cluster, NS_PINNED, "pinned")
    print(f"\n$ kubectl get pod -n {NS_PINNED} pinned -o jsonpath='{{.spec.containers[0].image}}'\n{image}")
    assert image == f"{imgs.signed}@{imgs.signed_digest}"


def test_assigns_pin_init_containers_and_image_volumes_too(
    cluster: Cluster, policies: None, gk_images: SampleImages
) -> None:
    """Wedge: with digest pinning through Gatekeeper, the Assign pinned spec.containers only, and
    RefereePinnedImages (which checks every position) refused every pod with an init container.
    Every position is pinned now; other volumes are left as they were."""
    imgs = gk_images
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "with-init"},
           "spec": {"automountServiceAccountToken": False,
                    "initContainers": [{"name": "setup", "image": imgs.signed}],
                    "containers": [{"name": "app", "image": imgs.signed,
                                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                    "volumes": [{"name": "scratch", "emptyDir": {}},
                                {"name": "data", "image": {"reference": imgs.signed}}]}}  # fmt: skip
    proc = kubectl_apply(cluster, NS_PINNED, json.dumps(pod))
    assert proc.returncode == 0, proc.stderr
    spec = cluster.get("pod", "with-init", NS_PINNED)["spec"]
    pinned = f"{imgs.signed}@{imgs.signed_digest}"
    print(f"\n$ kubectl get pod -n {NS_PINNED} with-init   # init container, container, image volume\n"
          f"{spec['initContainers'][0]['image']}\n{spec['containers'][0]['image']}\n"
          f"{spec['volumes'][1]['image']['reference']}")  # fmt: skip
    assert spec["initContainers"][0]["image"] == pinned
    assert spec["containers"][0]["image"] == pinned
    assert spec["volumes"][1]["image"]["reference"] == pinned
    assert spec["volumes"][0] == {"name": "scratch", "emptyDir": {}}


def test_assign_refuses_an_image_referee_cannot_pin(
    cluster: Cluster, policies: None, gk_images: SampleImages
) -> None:
    imgs = gk_images
    proc = kubectl_apply(cluster, NS_PINNED, pod_manifest("unpinnable", imgs.unsigned))
    print(f"\n$ kubectl apply -n {NS_PINNED} -f unpinnable.yaml\n{proc.stderr}")
    assert proc.returncode == 1
    assert (
        'admission webhook "mutation.gatekeeper.sh" denied the request: failed to resolve external data '
        "placeholders: failed to retrieve external data item from provider referee-mutate: "
        f"image {imgs.unsigned} ({imgs.unsigned_digest}): "
        "no Notation signature found"
    ) in proc.stderr


def test_forged_namespace_prefix_in_an_image_is_not_exempt_through_the_assign(
    cluster: Cluster, policies: None, gk_images: SampleImages
) -> None:
    """Gatekeeper's Assign sends the image field as it is to /provider/mutate. An image written
    `[kube-system]<unsigned image>` used to be read as namespace kube-system (exempt) and answered
    with the bare, unverified image; now the key is an image, which does not parse, and the
    mutation itself refuses the pod."""
    forged = f"[kube-system]{gk_images.unsigned}"
    proc = kubectl_apply(cluster, NS_PINNED, pod_manifest("forged", forged))
    print(f"\n$ kubectl apply -n {NS_PINNED} -f forged.yaml   # image: {forged}\n{proc.stderr}")
    assert proc.returncode == 1, proc.stdout
    assert (
        'admission webhook "mutation.gatekeeper.sh" denied the request: failed to resolve external data '
        "placeholders: failed to retrieve external data item from provider referee-mutate: "
        f"image {forged}: "
    ) in proc.stderr
    assert cluster.kubectl("get", "pod", "-n", NS_PINNED, "forged", check=False).returncode != 0


def test_an_image_without_a_required_sbom_is_refused_and_one_with_it_admitted(
    cluster: Cluster, policies: None, gk_images: SampleImages, gk_sbom_image: str
) -> None:
    """requiredArtifactTypes: Referee reports the SBOMs its policy document looks for; the constraint
    refuses a signed image without one in the namespaces it selects."""
    proc = kubectl_apply(cluster, NS_SBOM, pod_manifest("no-sbom", gk_images.signed))
    print(f"\n$ kubectl apply -n {NS_SBOM} -f no-sbom.yaml\n{proc.stderr}")
    assert proc.returncode == 1, proc.stdout
    assert (
        f"{DENIED}: [{SBOM_CONSTRAINT}] referee: image {gk_images.signed} has no {SBOM} artifact that "
        "Referee found (Referee looks only for the artifact types its policy statement for the repository "
        "lists under referrers)"
    ) in proc.stderr
    assert f"[{CONSTRAINT}]" not in proc.stderr  # the image itself is signed
    proc = kubectl_apply(cluster, NS_SBOM, pod_manifest("with-sbom", gk_sbom_image))
    assert proc.returncode == 0, proc.stderr
    print(f"$ kubectl apply -n {NS_SBOM} -f with-sbom.yaml\n{proc.stdout}")

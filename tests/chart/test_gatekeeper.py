"""The chart's Gatekeeper resources with the real Gatekeeper (its manager v3.23.1 against the real
kube-apiserver, at Gatekeeper's default webhook timeouts): a Gatekeeper-only `helm install`
(gatekeeper.enabled, webhook.enabled=false), then `helm upgrade` adding the constraints once
Gatekeeper has made their kinds, as the chart's NOTES say. Gatekeeper calls Referee (served from the
installed objects, reached through webhook.url) with the Provider the chart rendered: its CA bundle,
and mutual TLS with Gatekeeper's own certificate since tls.clientCA is Gatekeeper's CA."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.referee import run_locally
from tests.helpers import gatekeeper as gk
from tests.helpers.chart import CHART, helm, values_file
from tests.helpers.cluster import Cluster
from tests.helpers.samples import SampleImages
from tests.helpers.tools import free_port

RELEASE, NAMESPACE = "referee-gk", "referee-gk-system"
APPS = "chart-gk-apps"  # Gatekeeper decides here (the release has no webhooks of its own)
CONSTRAINT = f"{RELEASE}-signed-images-only"
DENIED = 'admission webhook "validation.gatekeeper.sh" denied the request'


def kube_helm(cluster: Cluster, *args: str) -> str:
    return helm(*args, "--kubeconfig", str(cluster.kubeconfig), "--namespace", NAMESPACE).stdout


def pod(name: str, image: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"automountServiceAccountToken": False,
                                "containers": [{"name": "app", "image": image}]}})  # fmt: skip


def dry_run(cluster: Cluster, manifest: str) -> tuple[int, str]:
    proc = cluster.kubectl("apply", "--dry-run=server", "-n", APPS, "-f", "-", input=manifest, check=False)
    return proc.returncode, proc.stderr


@pytest.fixture(scope="module")
def installed(
    cluster: Cluster,
    gatekeeper_kinds: None,
    material: tuple[SampleImages, dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[gk.Gatekeeper]:
    work = tmp_path_factory.mktemp("chart-gatekeeper")
    images, base = material
    cluster.create_namespace(APPS)
    with gk.running_manager(cluster, work / "gatekeeper", [APPS]) as manager:
        logs = gk.log_tail(manager.log)
        port = free_port()
        values = {
            **base,
            "mountRoot": str(work / "mnt"),
            "webhook": {"enabled": False, "url": f"https://127.0.0.1:{port}"},
            "tls": {"clientCA": manager.ca.cert_path.read_text()},
            "gatekeeper": {"enabled": True},
        }
        path = values_file(work, values)
        kube_helm(cluster, "install", RELEASE, str(CHART), "--create-namespace", "--values", str(path))
        try:
            objects = [d for d in yaml.safe_load_all(kube_helm(cluster, "get", "manifest", RELEASE)) if d]
            with run_locally(cluster, objects, f"127.0.0.1:{port}", work):
                gk.wait_for("provider active", partial(gk.active, cluster, "provider", RELEASE), 60, logs)
                gk.wait_for(
                    "template created", partial(gk.created, cluster, "refereeverifiedimages"), 60, logs
                )
                kube_helm(cluster, "upgrade", RELEASE, str(CHART), "--values", str(path),
                          "--set", "gatekeeper.constraints.enabled=true")  # fmt: skip
                in_force = partial(gk.enforced, cluster, "refereeverifiedimages", CONSTRAINT)
                gk.wait_for("constraint enforced", in_force, 60, logs)

                def refusing() -> bool:
                    code, err = dry_run(cluster, pod("probe", images.unsigned))
                    return code != 0 and "no Notation signature found" in err

                gk.wait_for("gatekeeper refusing unsigned pods", refusing, 60, logs)
                yield manager
        finally:
            kube_helm(cluster, "uninstall", RELEASE, "--wait")


def test_gatekeeper_refuses_an_unsigned_pod_with_referees_reason(
    cluster: Cluster, installed: gk.Gatekeeper, material: tuple[SampleImages, dict[str, Any]]
) -> None:
    images, _ = material
    code, err = dry_run(cluster, pod("unsigned", images.unsigned))
    assert code != 0
    assert f"{DENIED}: [{CONSTRAINT}] referee: image {images.unsigned}" in err, err


def test_gatekeeper_admits_a_signed_pod(
    cluster: Cluster, installed: gk.Gatekeeper, material: tuple[SampleImages, dict[str, Any]]
) -> None:
    images, _ = material
    code, err = dry_run(cluster, pod("signed", images.signed))
    assert code == 0, err


def test_the_provider_uses_mutual_tls(cluster: Cluster, installed: gk.Gatekeeper, tmp_path: Path) -> None:
    """Referee was configured with Gatekeeper's CA as its client CA, and the calls above succeeded:
    Gatekeeper presented its certificate. The installed Provider is the chart's, with its CA bundle."""
    provider = cluster.get("provider", RELEASE)
    config = yaml.safe_load(cluster.get("configmap", f"{RELEASE}-config", NAMESPACE)["data"]["config.yaml"])
    assert config["tls"]["clientCAFile"].endswith("/config/client-ca.crt")
    ca = cluster.get("configmap", f"{RELEASE}-ca", NAMESPACE)["data"]["ca.crt"]
    assert base64.b64decode(provider["spec"]["caBundle"]).decode().strip() == ca.strip()
    assert provider["spec"]["url"].endswith("/provider") and provider["spec"]["timeout"] == 2
    assert cluster.kubectl("get", "validatingwebhookconfiguration", RELEASE, check=False).returncode != 0

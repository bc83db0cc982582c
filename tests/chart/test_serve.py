"""`referee serve` started from what the chart renders: the Deployment's command and environment, its
ConfigMap, Secrets and projected volumes written to disk as the kubelet writes them (atomic-writer
folders with `..data` symbolic links), answering over TLS verified with the rendered CA bundle under
the Service's DNS name, as the API server and Gatekeeper call it. Images live in a real registry
(olareg), signed by the real notation."""

from __future__ import annotations

import base64
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3

from tests.helpers import pki
from tests.helpers.chart import (
    NAMESPACE,
    RELEASE,
    Rendered,
    container_env,
    render,
    values_file,
    volume_files,
    write_atomic,
)
from tests.helpers.samples import SampleImages
from tests.helpers.serving import running
from tests.helpers.tools import free_port

SERVICE_HOST = f"{RELEASE}.{NAMESPACE}.svc"  # the name the API server verifies


@dataclass(frozen=True)
class Deployed:
    port: int
    ca_file: Path
    client_cert: tuple[str, str]  # a certificate the client CA (Gatekeeper's) issued, and its key
    apiserver_cert: tuple[str, str]  # one tls.admissionClientCA issued: the API server's
    rendered: Rendered
    log: Path

    def call(
        self, method: str, path: str, body: Any = None, *, client_cert: tuple[str, str] | None = None
    ) -> urllib3.BaseHTTPResponse:
        cert_file, key_file = client_cert or (None, None)
        pool = urllib3.HTTPSConnectionPool(
            "127.0.0.1", self.port, ca_certs=str(self.ca_file), cert_reqs="CERT_REQUIRED",
            server_hostname=SERVICE_HOST, assert_hostname=SERVICE_HOST,
            cert_file=cert_file, key_file=key_file, timeout=20, retries=False,
        )  # fmt: skip
        data = None if body is None else json.dumps(body).encode()
        with pool:
            return pool.request(method, path, body=data, headers={"Content-Type": "application/json"})

    def review(self, path: str, *images: str) -> dict[str, Any]:
        """An AdmissionReview as the API server sends it, with the API server's certificate."""
        resp = self.call("POST", path, review_body(*images), client_cert=self.apiserver_cert)
        assert resp.status == 200, resp.data
        out: dict[str, Any] = json.loads(resp.data)["response"]
        return out


def review_body(*images: str) -> dict[str, Any]:
    pod = {"metadata": {"name": "web"}, "spec": {"containers": [
        {"name": f"c{i}", "image": image} for i, image in enumerate(images)]}}  # fmt: skip
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": "team-a",
        "operation": "CREATE", "userInfo": {"username": "alice"}, "object": pod}}  # fmt: skip


def lay_out_pod(rendered: Rendered, rootfs: Path, mount_root: Path) -> tuple[list[str], dict[str, str]]:
    """Write every volume of the Deployment's container where it is mounted; return its command and
    environment. Mounts under mountRoot (a temporary folder, set through the chart's value) are used
    as they are; any other mount path (the emptyDirs) is placed under ``rootfs``."""
    objects = {(o["kind"], o["metadata"]["name"]): o for o in rendered.objects}
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    moved: dict[str, str] = {}
    for mount in sorted(container["volumeMounts"], key=lambda m: m["mountPath"]):
        target = Path(mount["mountPath"])
        if not target.is_relative_to(mount_root):
            target = rootfs / target.relative_to("/")
            moved[mount["mountPath"]] = str(target)
        files = volume_files(volumes[mount["name"]], objects)
        if files is None:
            target.mkdir(parents=True, exist_ok=True)
        else:
            write_atomic(target, files)
    env = {name: moved.get(value, value) for name, value in container_env(container, NAMESPACE).items()}
    return container["command"], env


@pytest.fixture(scope="module")
def deployed(
    material: tuple[SampleImages, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployed]:
    _, values = material
    work = tmp_path_factory.mktemp("chart-serve")
    (work / "gatekeeper").mkdir()
    gatekeeper_ca = pki.make_ca(work / "gatekeeper", "Gatekeeper CA")
    client = pki.make_client_cert(work / "gatekeeper", gatekeeper_ca)
    (work / "apiserver").mkdir()
    apiserver_ca = pki.make_ca(work / "apiserver", "API Server Client CA")
    apiserver = pki.make_client_cert(work / "apiserver", apiserver_ca, cn="kube-apiserver-webhook-client")
    mount_root = work / "etc" / "referee"
    health = free_port()
    values = {
        **values,
        "server": {**values["server"], "healthPort": health},
        "mountRoot": str(mount_root),
        "tls": {
            "clientCA": gatekeeper_ca.cert_path.read_text(),
            "admissionClientCA": apiserver_ca.cert_path.read_text(),
            "admissionClientNames": ["kube-apiserver-webhook-client"],
        },
    }
    rendered = render(values_file(work, values))
    command, env = lay_out_pod(rendered, work / "rootfs", mount_root)
    [webhook] = rendered.one("ValidatingWebhookConfiguration")["webhooks"]
    ca_file = work / "webhook-ca.crt"
    ca_file.write_bytes(base64.b64decode(webhook["clientConfig"]["caBundle"]))
    assert command[:2] == ["referee", "serve"]
    port = free_port()
    # REFEREE_LISTEN is the documented override of `listen`: loopback and a free port here.
    environ = {**os.environ, **env, "REFEREE_LISTEN": f"127.0.0.1:{port}"}
    log = work / "serve.log"
    deployed = Deployed(port, ca_file, (str(client.cert_path), str(client.key_path)),
                        (str(apiserver.cert_path), str(apiserver.key_path)), rendered, log)  # fmt: skip

    def ready() -> bool:
        try:
            return deployed.call("GET", "/readyz").status == 200
        except urllib3.exceptions.HTTPError:
            return False

    with running([sys.executable, "-m", "webhook", *command[1:]], log=log, ready=ready, env=environ):
        yield deployed


def test_readyz_over_tls_verified_with_the_rendered_ca(deployed: Deployed) -> None:
    resp = deployed.call("GET", "/readyz")
    assert resp.status == 200
    assert deployed.call("GET", "/healthz").status == 200


def test_the_probes_are_answered_on_the_health_port_the_pod_names(deployed: Deployed) -> None:
    """The kubelet probes the Deployment's `health` port over plain HTTP; the rendered server answers
    there (from its own thread), with the same readiness as /readyz on the TLS port."""
    [container] = deployed.rendered.one("Deployment")["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert container[probe]["httpGet"] == {"path": path, "port": "health", "scheme": "HTTP"}
        answer = requests.get(f"http://127.0.0.1:{ports['health']}{path}", timeout=1)
        assert answer.status_code == 200, answer.text
    ready = requests.get(f"http://127.0.0.1:{ports['health']}/readyz", timeout=1).json()
    assert (
        ready["status"] == "ready"
        and ready["trust"] == json.loads(deployed.call("GET", "/readyz").data)["trust"]
    )


def test_the_server_reads_the_rendered_files_through_the_kubelet_links(deployed: Deployed) -> None:
    config = deployed.rendered.config()
    policy = Path(config["trustPolicy"])
    assert (policy.parent.parent / "..data").is_symlink() and policy.parent.is_symlink()
    assert not policy.is_symlink() and policy.is_file()  # one folder down: Referee refuses linked trust files
    log = deployed.log.read_text()
    assert "TLS certificate loaded from" in log or "Listening at" in log, log


def test_a_signed_pod_is_admitted_and_an_unsigned_one_denied(
    deployed: Deployed, material: tuple[SampleImages, dict[str, Any]]
) -> None:
    images, _ = material
    assert deployed.review("/validate", images.signed)["allowed"] is True
    denied = deployed.review("/validate", images.signed, images.unsigned)
    assert denied["allowed"] is False
    assert images.unsigned in denied["status"]["message"]
    assert "no Notation signature found" in denied["status"]["message"]


def test_mutation_pins_the_verified_digest(
    deployed: Deployed, material: tuple[SampleImages, dict[str, Any]]
) -> None:
    images, _ = material
    out = deployed.review("/mutate", images.signed)
    assert out["allowed"] is True
    patch = json.loads(base64.b64decode(out["patch"]))
    assert any(op.get("value") == f"{images.signed}@{images.signed_digest}" for op in patch)


def test_provider_answers_only_the_client_ca_of_the_values(
    deployed: Deployed, material: tuple[SampleImages, dict[str, Any]]
) -> None:
    images, _ = material
    body = {"apiVersion": "externaldata.gatekeeper.sh/v1beta1", "kind": "ProviderRequest",
            "request": {"keys": [images.signed]}}  # fmt: skip
    assert deployed.call("POST", "/provider", body).status == 403
    resp = deployed.call("POST", "/provider", body, client_cert=deployed.client_cert)
    assert resp.status == 200, resp.data
    [item] = json.loads(resp.data)["response"]["items"]
    assert item["value"]["verified"] is True and item["value"]["digest"] == images.signed_digest


def test_a_forged_review_without_the_api_servers_certificate_is_refused(
    deployed: Deployed, material: tuple[SampleImages, dict[str, Any]]
) -> None:
    """tls.admissionClientCA set: /validate and /mutate answer only the API server's certificate;
    no certificate, or Gatekeeper's (another group's CA), gets HTTP 403 and no verdict."""
    images, _ = material
    for path in ("/validate", "/mutate"):
        for cert in (None, deployed.client_cert):
            resp = deployed.call("POST", path, review_body(images.signed), client_cert=cert)
            assert resp.status == 403, (path, cert, resp.data)
            assert "response" not in json.loads(resp.data)
    assert deployed.review("/validate", images.signed)["allowed"] is True


def test_metrics_are_shared_through_the_mounted_folder(deployed: Deployed) -> None:
    resp = deployed.call("GET", "/metrics")
    assert resp.status == 200 and b"referee_admission_decisions_total" in resp.data


def alert_and_dashboard_queries(out: Rendered) -> list[str]:
    """Every PromQL expression of the rendered PrometheusRule and Grafana dashboard."""
    rules = [r["expr"] for g in out.one("PrometheusRule")["spec"]["groups"] for r in g["rules"]]
    [dashboard] = [c for c in out.of_kind("ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
    panels = json.loads(dashboard["data"]["referee.json"])["panels"]
    return rules + [t["expr"] for p in panels for t in p["targets"]]


def test_alerts_and_dashboard_read_metrics_referee_serves(
    deployed: Deployed, rendered: dict[str, Rendered]
) -> None:
    """A query naming a metric Referee does not export never fires; each one of Referee's names is
    in the served /metrics (the API server's are checked against a real one in test_install)."""
    text = deployed.call("GET", "/metrics").data.decode()
    served = {
        line.split("{")[0].split()[0] for line in text.splitlines() if line and not line.startswith("#")
    }
    names = {
        n for q in alert_and_dashboard_queries(rendered["extras"]) for n in re.findall(r"\breferee_\w+", q)
    }
    assert {"referee_admission_decisions_total", "referee_tls_certificate_expiry_timestamp_seconds",
            "referee_image_verification_seconds_count"} <= names  # fmt: skip
    assert names <= served, names - served

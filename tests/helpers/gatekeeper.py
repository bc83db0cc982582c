"""Gatekeeper's manager (built by scripts/gatekeeper.sh) run as a local process against a real
kube-apiserver, with its CRDs from the same module version and its webhooks registered by URL."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import requests

from tests.helpers import pki
from tests.helpers.serving import running
from tests.helpers.tools import ROOT, free_port, run, tool

NAMESPACE = "gatekeeper-system"
VALIDATING = "gatekeeper-validating-webhook-configuration"
MUTATING = "gatekeeper-mutating-webhook-configuration"
POD_NAME = "gatekeeper-local"


class Kubectl(Protocol):
    """What this module needs of the control plane (tests.helpers.cluster.Cluster)."""

    @property
    def kubeconfig(self) -> Path: ...

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]: ...


@dataclass(frozen=True)
class Gatekeeper:
    url: str  # https://127.0.0.1:PORT, the webhook server
    ca: pki.KeyPair  # issued the serving certificate, which is also the external-data client certificate
    cert_dir: Path  # tls.crt, tls.key
    log: Path


def crd_dir() -> Path:
    """The CRDs of the pinned Gatekeeper version, in Go's module cache."""
    out = run(["bash", str(ROOT / "scripts" / "gatekeeper.sh"), "crds"], timeout=300).stdout.strip()
    path = Path(out)
    assert path.is_dir(), out
    return path


def issue_certificates(directory: Path) -> pki.KeyPair:
    """A CA and, in ``directory``, tls.crt/tls.key for 127.0.0.1 with serverAuth and clientAuth: the
    certificate Gatekeeper serves its webhook with and presents to external-data providers."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = pki.make_ca(directory, "Gatekeeper Test CA")
    cn = "gatekeeper-webhook-service.gatekeeper-system.svc"
    pki.make_server_cert(directory, ca, "tls", cn=cn, client_auth=True)
    return ca


# Gatekeeper's default webhook timeouts (its Helm values validatingWebhookTimeoutSeconds and
# mutatingWebhookTimeoutSeconds): the Providers' timeouts must fit inside them.
VALIDATING_TIMEOUT_S, MUTATING_TIMEOUT_S = 3, 1


def webhook_configurations(url: str, ca_pem: bytes, namespaces: list[str]) -> list[dict[str, Any]]:
    """Gatekeeper's own validating and mutating webhooks (manifest_staging/deploy/gatekeeper.yaml),
    registered by URL, at Gatekeeper's default timeouts, with failurePolicy Fail (Gatekeeper's
    default is Ignore) and limited to ``namespaces``, so that a Gatekeeper that is not answering in
    time fails the test and nothing else in the cluster goes through it."""
    bundle = base64.b64encode(ca_pem).decode()
    selector = {"matchExpressions": [
        {"key": "admission.gatekeeper.sh/ignore", "operator": "DoesNotExist"},
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": namespaces}]}  # fmt: skip
    rules = [{"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"],
              "resources": ["*", "pods/ephemeralcontainers"]}]  # fmt: skip

    def hook(name: str, path: str, timeout_s: int) -> dict[str, Any]:
        return {"name": name, "admissionReviewVersions": ["v1", "v1beta1"],
                "clientConfig": {"url": f"{url}{path}", "caBundle": bundle},
                "failurePolicy": "Fail", "matchPolicy": "Exact", "namespaceSelector": selector,
                "rules": rules, "sideEffects": "None", "timeoutSeconds": timeout_s}  # fmt: skip

    def configuration(kind: str, name: str, webhook: dict[str, Any]) -> dict[str, Any]:
        metadata = {"name": name, "labels": {"gatekeeper.sh/system": "yes"}}
        return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": metadata,
                "webhooks": [webhook]}  # fmt: skip

    mutating = hook("mutation.gatekeeper.sh", "/v1/mutate", MUTATING_TIMEOUT_S)
    validating = hook("validation.gatekeeper.sh", "/v1/admit", VALIDATING_TIMEOUT_S)
    return [
        configuration("MutatingWebhookConfiguration", MUTATING, mutating),
        configuration("ValidatingWebhookConfiguration", VALIDATING, validating),
    ]


def manager_args(port: int, health_port: int, cert_dir: Path) -> list[str]:
    return [
        "--host=127.0.0.1", f"--port={port}", f"--health-addr=127.0.0.1:{health_port}",
        f"--cert-dir={cert_dir}", "--disable-cert-rotation",
        "--enable-external-data",
        # The response cache would hide a changed answer between tests; Referee caches verdicts.
        "--external-data-provider-response-cache-ttl=0s",
        "--operation=webhook", "--operation=mutation-webhook",
        # generate creates each template's constraint CRD; status and mutation-status fill in byPod
        # on templates, constraints, providers and mutators. (Upstream runs these in its audit pod.)
        "--operation=generate", "--operation=status", "--operation=mutation-status",
        "--shutdown-delay=0",  # no load balancer to drain: stop at once
        f"--exempt-namespace={NAMESPACE}", "--disable-opa-builtin={http.send}",
        "--log-level=INFO", "--log-denies",
        # The Prometheus exporter listens on every interface; the OTLP one only pushes, here to a
        # loopback port that nobody listens on, once a day.
        "--metrics-backend=opentelemetry", f"--otlp-endpoint=127.0.0.1:{free_port()}",
        "--otlp-metric-interval=24h", "--metrics-addr=0",
    ]  # fmt: skip


def wait_for(
    what: str, probe: Callable[[], bool], timeout: float, on_timeout: Callable[[], str] = str
) -> None:
    """Poll ``probe`` until it returns True, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what}: not after {timeout:.0f}s\n{on_timeout()}")


def get_json(cluster: Kubectl, *args: str) -> dict[str, Any]:
    proc = cluster.kubectl("get", *args, "-o", "json", check=False)
    if proc.returncode != 0:
        return {}
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def by_pod(cluster: Kubectl, *args: str) -> list[dict[str, Any]]:
    """``status.byPod`` of an object (Gatekeeper's per-instance status), [] while there is none."""
    pods: list[dict[str, Any]] = get_json(cluster, *args).get("status", {}).get("byPod", [])
    return pods


def active(cluster: Kubectl, kind: str, name: str) -> bool:
    """A Provider is in Gatekeeper's cache."""
    return any(s.get("active") and not s.get("errors") for s in by_pod(cluster, kind, name))


def enforced(cluster: Kubectl, kind: str, name: str) -> bool:
    """A constraint or mutator is in force in this Gatekeeper."""
    return any(s.get("enforced") and not s.get("errors") for s in by_pod(cluster, kind, name))


def created(cluster: Kubectl, template: str) -> bool:
    """A ConstraintTemplate's constraint CRD exists, without errors."""
    status = get_json(cluster, "constrainttemplate", template).get("status", {})
    return status.get("created") is True and not any(s.get("errors") for s in status.get("byPod", []))


def apply(cluster: Kubectl, *docs: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(docs)})
    return cluster.kubectl("apply", "-f", "-", input=body)


@contextlib.contextmanager
def installed_crds(cluster: Kubectl) -> Iterator[None]:
    """Gatekeeper's CRDs, applied server-side (the ConstraintTemplate CRD is too large for the
    last-applied annotation of a client-side apply); deleted again afterwards."""
    crds = str(crd_dir())
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", crds)
    try:
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", crds)
        yield
    finally:
        cluster.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", crds, check=False)


def stand_in_pod() -> list[dict[str, Any]]:
    """Gatekeeper's namespace and a Pod named like the manager (POD_NAME): its status objects name
    that Pod as their owner, and no kubelet runs it (the manager is a local process). The namespace
    carries the opt-out label of Referee's own webhooks."""
    return [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": NAMESPACE, "labels": {"referee.dev/ignore": "true"}}},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": "default", "namespace": NAMESPACE}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": POD_NAME, "namespace": NAMESPACE},
         "spec": {"automountServiceAccountToken": False,
                  "containers": [{"name": "manager", "image": "openpolicyagent/gatekeeper:v3.23.1"}]}},
    ]  # fmt: skip


def log_tail(log: Path, lines: int = 40) -> Callable[[], str]:
    return lambda: "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def running_manager(cluster: Kubectl, workdir: Path, namespaces: list[str]) -> Iterator[Gatekeeper]:
    """Gatekeeper's manager as a local process (webhook, mutation webhook, external data, status),
    its webhooks registered by URL for ``namespaces``; stopped and unregistered afterwards."""
    cert_dir = workdir / "certs"
    ca = issue_certificates(cert_dir)
    apply(cluster, *stand_in_pod())
    port, health = free_port(), free_port()
    log = workdir / "gatekeeper.log"
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig),
           "POD_NAMESPACE": NAMESPACE, "POD_NAME": POD_NAME}  # fmt: skip
    url = f"https://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{health}/readyz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    argv = [tool("gatekeeper-manager"), *manager_args(port, health, cert_dir)]
    with running(argv, log=log, ready=ready, env=env, timeout_s=90):
        apply(cluster, *webhook_configurations(url, ca.cert_path.read_bytes(), namespaces))
        try:
            yield Gatekeeper(url, ca, cert_dir, log)
        finally:
            cluster.kubectl("delete", "--ignore-not-found", f"validatingwebhookconfiguration/{VALIDATING}",
                            f"mutatingwebhookconfiguration/{MUTATING}", check=False)  # fmt: skip

"""The chart against a real kube-apiserver (etcd + kube-apiserver started by scripts/cluster.sh):
`helm install` then `helm upgrade` keep the generated certificate, and every rendered object passes
the API server's own validation (`kubectl apply --dry-run=server`), Gatekeeper's kinds included with
Gatekeeper's CRDs installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.chart import CHART, NAMESPACE, RELEASE, Rendered, helm
from tests.helpers.cluster import Cluster

# Kinds whose CRDs are not in this cluster (checked against their schemas in test_crds instead):
# cert-manager's, the Prometheus Operator's, and the constraint kinds Gatekeeper's manager would make.
NOT_INSTALLED = ("cert-manager.io/", "monitoring.coreos.com/", "constraints.gatekeeper.sh/")


def kube_helm(cluster: Cluster, *args: str) -> str:
    return helm(*args, "--kubeconfig", str(cluster.kubeconfig), "--namespace", NAMESPACE).stdout


def tls_state(cluster: Cluster) -> tuple[dict[str, str], str, int]:
    """The generated Secret's data, the validating webhook's caBundle and its timeoutSeconds."""
    secret = cluster.get("secret", f"{RELEASE}-tls", NAMESPACE)
    [webhook] = cluster.get("validatingwebhookconfiguration", RELEASE)["webhooks"]
    return secret["data"], webhook["clientConfig"]["caBundle"], webhook["timeoutSeconds"]


def test_helm_upgrade_keeps_the_generated_certificate(cluster: Cluster, value_files: dict[str, Path]) -> None:
    values = str(value_files["selfSigned"])
    kube_helm(cluster, "install", RELEASE, str(CHART), "--create-namespace", "--values", values)
    try:
        data, bundle, timeout = tls_state(cluster)
        assert timeout == 10 and bundle == data["ca.crt"]
        kube_helm(
            cluster, "upgrade", RELEASE, str(CHART), "--values", values, "--set", "webhook.timeoutSeconds=8"
        )
        data_after, bundle_after, timeout_after = tls_state(cluster)
        assert timeout_after == 8  # the upgrade did change the release...
        assert data_after == data and bundle_after == bundle  # ...and kept the certificate
        config = yaml.safe_load(
            cluster.get("configmap", f"{RELEASE}-config", NAMESPACE)["data"]["config.yaml"]
        )
        assert config["timeouts"]["admissionSeconds"] == 8
        assert "deployed" in kube_helm(cluster, "status", RELEASE)
    finally:
        kube_helm(cluster, "uninstall", RELEASE, "--wait")


def test_every_rendered_object_passes_server_side_dry_run(
    cluster: Cluster, rendered: dict[str, Rendered], gatekeeper_kinds: None, tmp_path: Path
) -> None:
    cluster.create_namespace(NAMESPACE)
    checked: set[str] = set()
    for case, out in rendered.items():
        objects: list[dict[str, Any]] = [
            o for o in out.objects if not o["apiVersion"].startswith(NOT_INSTALLED)
        ]
        path = tmp_path / f"{case}.yaml"
        path.write_text(yaml.safe_dump_all(objects))
        proc = cluster.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", str(path), check=False)
        assert proc.returncode == 0, f"{case}:\n{proc.stdout}\n{proc.stderr}"
        assert "Warning" not in proc.stderr, f"{case}: {proc.stderr}"
        checked |= {o["kind"] for o in objects}
    assert {"Deployment", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "Provider",
            "ConstraintTemplate", "Assign", "ClusterRole", "NetworkPolicy", "Pod"} <= checked  # fmt: skip


@pytest.mark.parametrize(
    ("case", "phrases"),
    [
        ("defaults", ["NOT RUNNING", "--set-file trustPolicy.json=trustpolicy.json"]),
        ("audit", ["mode AUDIT", "failurePolicy is Ignore", "helm test referee", "--set mode=enforce"]),
        ("selfSigned", ["failurePolicy is Fail: while no Referee pod is ready, pods are REFUSED"]),
        # A first install has no constraints yet: their kinds do not exist until Gatekeeper makes them.
        ("gatekeeper", ["gatekeeper.constraints.enabled=true"]),
        # The NetworkPolicy cannot name the API server until its sources are given.
        ("selfSigned", ["from any source: set\nnetworkPolicy.apiServerCIDRs"]),
        ("pullSecretsUnauthenticated", ["WARNING: pullSecrets.trustUnauthenticatedCallers: any caller"]),
    ],
)
def test_notes_say_what_to_do_next(
    cluster: Cluster, value_files: dict[str, Path], gatekeeper_kinds: None, case: str, phrases: list[str]
) -> None:
    first = ["--set", "gatekeeper.constraints.enabled=false"]
    out = kube_helm(
        cluster, "install", RELEASE, str(CHART), "--dry-run", "--values", str(value_files[case]), *first
    )
    notes = out[out.index("NOTES:") :]
    for phrase in phrases:
        assert phrase in notes, notes


def test_notes_are_quiet_about_network_policy_sources_once_given(
    cluster: Cluster, value_files: dict[str, Path]
) -> None:
    out = kube_helm(cluster, "install", RELEASE, str(CHART), "--dry-run", "--values",
                    str(value_files["networkPolicySources"]))  # fmt: skip
    assert "networkPolicy.apiServerCIDRs" not in out[out.index("NOTES:") :]


def test_helm_install_with_a_trust_store_missing_fails_and_names_it(
    cluster: Cluster, cases: dict[str, Any], tmp_path: Path
) -> None:
    """Wedge: the release installed, with a Fail webhook and pods that could not start: pod creation
    was refused cluster-wide. `helm install` now fails, names the store, and installs nothing."""
    values = {**cases["selfSigned"], "trustStore": {"certificates": {"ca": {"acme": "PEM"}}}}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(values))
    proc = helm("install", RELEASE, str(CHART), "--create-namespace", "--values", str(path),
                "--kubeconfig", str(cluster.kubeconfig), "--namespace", NAMESPACE, check=False)  # fmt: skip
    print(f"\n$ helm install {RELEASE} charts/referee -f broken.yaml\n{proc.stderr}")
    assert proc.returncode != 0
    assert "trustPolicy names trust stores that trustStore does not provide: ca:test" in proc.stderr
    assert cluster.kubectl("get", "validatingwebhookconfiguration", RELEASE, check=False).returncode != 0
    assert helm("status", RELEASE, "--kubeconfig", str(cluster.kubeconfig), "--namespace", NAMESPACE,
                check=False).returncode != 0  # fmt: skip

"""The chart against a real kube-apiserver (etcd + kube-apiserver started by scripts/cluster.sh):
`helm install` then `helm upgrade` keep the generated certificate, and every rendered object passes
the API server's own validation (`kubectl apply --dry-run=server`), Gatekeeper's kinds included with
Gatekeeper's CRDs installed."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.chart import CHART, KUBE_VERSION, NAMESPACE, RELEASE, Rendered, helm
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
        ("scaleOut", ["bundled Redis (referee-redis:6379): one instance", "set cache.shared.url"]),
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


def test_only_the_listed_groups_may_opt_a_namespace_out(
    cluster: Cluster, cases: dict[str, Any], tmp_path: Path
) -> None:
    """Attack: anyone allowed to edit a namespace labelled it referee.dev/exempt=true, and its pods
    were no longer checked. The chart's ValidatingAdmissionPolicy refuses that label to everyone
    outside webhook.optOutLabelGuard.allowedGroups (other labels stay theirs to change)."""
    guard = {"allowedGroups": ["system:masters", "platform-admins"]}
    values = {**cases["selfSigned"], "webhook": {"optOutLabelGuard": guard}}
    path = tmp_path / "guard.yaml"
    path.write_text(yaml.safe_dump(values))
    rbac = "rbac.authorization.k8s.io"
    editor = {"apiVersion": f"{rbac}/v1", "kind": "ClusterRole", "metadata": {"name": "namespace-editor"},
              "rules": [{"apiGroups": [""], "resources": ["namespaces"],
                         "verbs": ["get", "create", "update", "patch"]}]}  # fmt: skip
    binding = {"apiVersion": f"{rbac}/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "namespace-editor"},
               "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": "namespace-editor"},
               "subjects": [{"apiGroup": rbac, "kind": "Group", "name": "system:authenticated"}]}  # fmt: skip
    cluster.apply(editor, binding)
    cluster.create_namespace("guarded")
    kube_helm(cluster, "install", RELEASE, str(CHART), "--create-namespace", "--values", str(path))
    try:
        alice = ["--as", "alice", "--as-group", "developers"]
        deadline = time.monotonic() + 30  # the API server loads a new policy within seconds

        def label(*args: str) -> Any:
            return cluster.kubectl("label", "namespace", "guarded", *args, check=False)

        while (
            proc := label("referee.dev/exempt=true", *alice)
        ).returncode == 0 and time.monotonic() < deadline:
            label("referee.dev/exempt-")  # applied before the policy was in force: undo, try again
            time.sleep(1)
        print(f"\n$ kubectl label namespace guarded referee.dev/exempt=true --as alice\n{proc.stderr}")
        assert proc.returncode != 0
        assert "only members of system:masters, platform-admins may set, change or remove the label " \
               "referee.dev/exempt" in proc.stderr  # fmt: skip
        created = cluster.apply({"apiVersion": "v1", "kind": "Namespace",
                                 "metadata": {"name": "sneaky", "labels": {"referee.dev/exempt": "true"}}},
                                *alice, check=False)  # fmt: skip
        assert created.returncode != 0 and "only members of" in created.stderr
        assert label("team=web", *alice).returncode == 0  # any other label: as before
        assert (
            label("referee.dev/exempt=true", "--as", "bob", "--as-group", "platform-admins").returncode == 0
        )
        assert label("referee.dev/exempt-", *alice).returncode != 0  # nor may alice opt it back in
        assert label("referee.dev/exempt-").returncode == 0  # the admin (system:masters) may
    finally:
        kube_helm(cluster, "uninstall", RELEASE, "--wait")
        cluster.kubectl("delete", "clusterrolebinding,clusterrole", "namespace-editor", check=False)


def test_the_api_server_metrics_the_alerts_read_exist_with_those_labels(
    cluster: Cluster, value_files: dict[str, Path], rendered: dict[str, Rendered]
) -> None:
    """RefereeWebhookUnreachable and RefereeWebhookFailedOpen read the API server's own counters,
    by Referee's webhook names. A release with no Referee behind it (nothing serves the Service):
    in enforce mode pods are refused (failurePolicy Fail) and counted as calling_webhook_error; in
    audit mode (failurePolicy Ignore) they are admitted and counted as failed open."""
    [group] = rendered["extras"].one("PrometheusRule")["spec"]["groups"]
    exprs = {r["alert"]: r["expr"] for r in group["rules"]}
    cluster.create_namespace("alerts")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": "alerts"},
           "spec": {"containers": [{"name": "c", "image": "registry.example/app:1"}]}}  # fmt: skip
    kube_helm(
        cluster,
        "install",
        RELEASE,
        str(CHART),
        "--create-namespace",
        "--values",
        str(value_files["selfSigned"]),
    )
    try:
        refused = cluster.apply(pod, "--dry-run=server", check=False)
        assert refused.returncode != 0 and "failed calling webhook" in refused.stderr
        kube_helm(cluster, "upgrade", RELEASE, str(CHART), "--reuse-values", "--set", "mode=audit")
        deadline = time.monotonic() + 30
        while cluster.apply(pod, "--dry-run=server", check=False).returncode != 0:  # the new failurePolicy
            assert time.monotonic() < deadline, "the audit release still refuses"
            time.sleep(1)
        metrics = cluster.kubectl("get", "--raw", "/metrics").stdout.splitlines()
    finally:
        kube_helm(cluster, "uninstall", RELEASE, "--wait")
    for alert, metric, labels in (
        ("RefereeWebhookUnreachable", "apiserver_admission_webhook_rejection_count",
         ('name="validate.referee.dev"', 'error_type="calling_webhook_error"')),
        ("RefereeWebhookFailedOpen", "apiserver_admission_webhook_fail_open_count",
         ('name="validate.referee.dev"',)),
    ):  # fmt: skip
        assert metric in exprs[alert]
        assert [
            line for line in metrics if line.startswith(metric + "{") and all(x in line for x in labels)
        ], metric


def shared_cache_secrets(cluster: Cluster) -> dict[str, dict[str, str]]:
    """The data of the bundled Redis's password Secret and of the signing key Secret, as stored."""
    return {name: cluster.get("secret", name, NAMESPACE)["data"]
            for name in (f"{RELEASE}-redis", f"{RELEASE}-shared-cache-key")}  # fmt: skip


def test_the_generated_redis_password_and_signing_key_survive_upgrades_and_reinstalls(
    cluster: Cluster, value_files: dict[str, Path]
) -> None:
    """Bug this guards against: a password or signing key made anew on each `helm upgrade` would
    lock Referee out of its Redis until Redis restarted, and turn every shared verdict into a miss
    (signed with another key). The chart reads the live Secrets back (lookup) and keeps them on
    uninstall (helm.sh/resource-policy: keep), so a reinstall finds them too."""
    values = str(value_files["scaleOut"])
    kube_helm(cluster, "install", RELEASE, str(CHART), "--create-namespace", "--values", values)
    try:
        first = shared_cache_secrets(cluster)
        assert len(base64.b64decode(first[f"{RELEASE}-shared-cache-key"]["signing-key"])) == 48
        kube_helm(cluster, "upgrade", RELEASE, str(CHART), "--values", values,
                  "--set", "redis.maxMemoryMebibytes=64")  # fmt: skip
        after = shared_cache_secrets(cluster)
        conf = base64.b64decode(after[f"{RELEASE}-redis"]["redis.conf"]).decode()
        assert "maxmemory 64mb" in conf  # the upgrade did change the Secret...
        assert (
            after[f"{RELEASE}-redis"]["password"] == first[f"{RELEASE}-redis"]["password"]
        )  # ...not the password
        assert after[f"{RELEASE}-shared-cache-key"] == first[f"{RELEASE}-shared-cache-key"]
        password = base64.b64decode(first[f"{RELEASE}-redis"]["password"]).decode()
        assert f"requirepass {password}\n" in conf
        # Without a cluster to read them from (helm template), the same values make new ones.
        fresh = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE,
                     "--kube-version", KUBE_VERSION, "--values", values).stdout  # fmt: skip
        assert first[f"{RELEASE}-redis"]["password"] not in fresh
        assert first[f"{RELEASE}-shared-cache-key"]["signing-key"] not in fresh
        kube_helm(cluster, "uninstall", RELEASE, "--wait")
        assert shared_cache_secrets(cluster) == after  # kept on uninstall
        kube_helm(cluster, "install", RELEASE, str(CHART), "--values", values)
        again = shared_cache_secrets(cluster)  # adopted by the reinstall, the secrets unchanged
        assert again[f"{RELEASE}-redis"]["password"] == first[f"{RELEASE}-redis"]["password"]
        assert again[f"{RELEASE}-shared-cache-key"] == first[f"{RELEASE}-shared-cache-key"]
        hpa = cluster.get("horizontalpodautoscaler", RELEASE, NAMESPACE)
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 7)
    finally:
        kube_helm(cluster, "uninstall", RELEASE, "--wait")
        cluster.kubectl("delete", "secret", f"{RELEASE}-redis", f"{RELEASE}-shared-cache-key",
                        "-n", NAMESPACE, "--ignore-not-found")  # fmt: skip

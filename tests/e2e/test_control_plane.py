"""scripts/cluster.sh itself: the control plane starts, enforces RBAC, presents a client certificate
to webhooks, and stops everything it started."""

from __future__ import annotations

import base64
from pathlib import Path

from tests.helpers import pki
from tests.helpers.cluster import Cluster, control_plane
from tests.helpers.serving import running
from tests.helpers.tools import free_port, tool


def _pids(workdir: Path) -> list[int]:
    return [int((workdir / f"{name}.pid").read_text()) for name in ("etcd", "kube-apiserver")]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_up_is_idempotent_and_down_stops_every_process(tmp_path: Path) -> None:
    with control_plane(tmp_path) as first:
        pids = _pids(tmp_path)
        assert all(_alive(pid) for pid in pids)
        with control_plane(tmp_path) as again:  # 'up' on a running cluster changes nothing ...
            assert again.server == first.server and _pids(tmp_path) == pids
            assert (
                again.kubectl("get", "namespace", "default", "-o", "name").stdout.strip()
                == "namespace/default"
            )
        # ... and the inner 'down' stopped it: etcd and kube-apiserver are gone.
        assert not any(_alive(pid) for pid in pids)
    assert not (tmp_path / "etcd.pid").exists() and not (tmp_path / "kube-apiserver.pid").exists()


def test_service_account_tokens_are_bound_by_rbac(cluster: Cluster, tmp_path: Path) -> None:
    """A token from the TokenRequest API authenticates as the service account, which may do only what
    a binding grants: the admin kubeconfig is not what the webhook tests run Referee with."""
    cluster.create_namespace("e2e-rbac")
    cluster.kubectl("create", "serviceaccount", "nobody", "-n", "e2e-rbac")
    kubeconfig = cluster.kubeconfig_for_token(
        tmp_path / "nobody.kubeconfig", cluster.token("nobody", "e2e-rbac")
    )
    nobody = Cluster(kubeconfig, cluster.server, cluster.ca_file)
    who = nobody.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").stdout
    assert who == "system:serviceaccount:e2e-rbac:nobody"
    denied = nobody.kubectl("get", "secrets", "-n", "e2e-rbac", check=False)
    assert denied.returncode == 1 and "forbidden" in denied.stderr
    cluster.kubectl(
        "create", "role", "read-secrets", "-n", "e2e-rbac", "--verb=get,list", "--resource=secrets"
    )
    cluster.kubectl("create", "rolebinding", "read-secrets", "-n", "e2e-rbac", "--role=read-secrets",
                    "--serviceaccount=e2e-rbac:nobody")  # fmt: skip
    assert nobody.kubectl("auth", "can-i", "get", "secrets", "-n", "e2e-rbac").stdout.strip() == "yes"


def test_the_api_server_presents_its_client_certificate_to_webhooks(cluster: Cluster, tmp_path: Path) -> None:
    """scripts/cluster.sh gives the API server an AdmissionConfiguration whose kubeconfig names a
    client certificate for every webhook host: a webhook that insists on a certificate from the
    suite's webhook-client CA (here `openssl s_server -Verify`) sees the API server's."""
    assert cluster.webhook_client_ca is not None
    ca = pki.make_ca(tmp_path)
    server = pki.make_server_cert(tmp_path, ca)
    port = free_port()
    log = tmp_path / "s_server.log"
    argv = [tool("openssl"), "s_server", "-accept", f"127.0.0.1:{port}", "-www",
            "-cert", str(server.cert_path), "-key", str(server.key_path),
            "-Verify", "1", "-CAfile", str(cluster.webhook_client_ca)]  # fmt: skip
    cluster.create_namespace("e2e-client-cert")
    hook = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "e2e-client-cert"},
        "webhooks": [{
            "name": "client-cert.e2e.referee.dev",
            "clientConfig": {"url": f"https://127.0.0.1:{port}/validate",
                             "caBundle": base64.b64encode(ca.cert_path.read_bytes()).decode()},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                       "resources": ["configmaps"]}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "e2e-client-cert"}},
            # s_server answers with no AdmissionReview: the call is all this test looks at.
            "failurePolicy": "Ignore", "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5,
        }],
    }  # fmt: skip
    with running(argv, log=log, ready=lambda: "ACCEPT" in log.read_text()):
        cluster.apply(hook)
        try:
            cluster.kubectl("create", "configmap", "probe", "-n", "e2e-client-cert")
        finally:
            cluster.kubectl("delete", "validatingwebhookconfiguration", "e2e-client-cert")
    text = log.read_text()
    assert "depth=0 CN = kube-apiserver-webhook-client\nverify return:1" in text, text

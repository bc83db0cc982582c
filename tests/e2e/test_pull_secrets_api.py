"""Pull secrets read through the real kube-apiserver with the least RBAC: what the server finds
for a pod, in the kubelet's order, and what it says about the Secrets it could not use."""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.cluster import Cluster
from webhook.deadline import Deadline
from webhook.errors import ConfigError
from webhook.server.pullsecrets import KubernetesReader, PullSecrets

HOST = "registry.pull.example:5000"


def docker_secret(name: str, namespace: str, user: str) -> dict[str, Any]:
    auth = base64.b64encode(f"{user}:pw-{user}".encode()).decode()
    config = json.dumps({"auths": {HOST: {"auth": auth}}})
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()},
    }


def reader_role(namespace: str, account: str, account_namespace: str) -> list[dict[str, Any]]:
    """What the chart grants: get on secrets and serviceaccounts, nothing else."""
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "pull-secret-reader", "namespace": namespace},
         "rules": [{"apiGroups": [""], "resources": ["secrets", "serviceaccounts"], "verbs": ["get"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "pull-secret-reader", "namespace": namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pull-secret-reader"},
         "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": account_namespace}]},
    ]  # fmt: skip


@pytest.fixture(scope="module")
def setup(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, Path]:
    """A namespace Referee's account may read, one it may not, and a kubeconfig for that account."""
    suffix = uuid.uuid4().hex[:6]
    readable, forbidden, home = f"pull-ok-{suffix}", f"pull-no-{suffix}", f"pull-referee-{suffix}"
    for namespace in (readable, forbidden, home):
        cluster.create_namespace(namespace)
    cluster.apply(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "referee", "namespace": home}}
    )
    cluster.apply(*reader_role(readable, "referee", home))
    cluster.apply(
        docker_secret("pod-cred", readable, "pod-user"),
        docker_secret("sa-cred", readable, "sa-user"),
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "opaque", "namespace": readable},
         "type": "Opaque", "data": {"x": "eA=="}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "builder", "namespace": readable},
         "imagePullSecrets": [{"name": "sa-cred"}, {"name": "pod-cred"}]},
        docker_secret("pod-cred", forbidden, "nope"),
    )  # fmt: skip
    kubeconfig = cluster.kubeconfig_for_token(
        tmp_path_factory.mktemp("pull") / "referee.kubeconfig", cluster.token("referee", home)
    )
    return readable, forbidden, kubeconfig


def users(found: Any) -> list[str]:
    return [c.username for c in found.keyring.lookup(HOST, "app")]


def test_pod_secrets_come_before_the_service_accounts(setup: tuple[str, str, Path]) -> None:
    readable, _, kubeconfig = setup
    secrets = PullSecrets(KubernetesReader(kubeconfig), ttl_s=30)
    found = secrets.for_pod(readable, "builder", ("pod-cred",), Deadline.after(5))
    assert found.notes == ()
    assert users(found) == ["pod-user", "sa-user"]  # the pod's own first, each credential once


def test_missing_and_unusable_secrets_are_skipped_and_named(setup: tuple[str, str, Path]) -> None:
    readable, _, kubeconfig = setup
    secrets = PullSecrets(KubernetesReader(kubeconfig), ttl_s=30)
    found = secrets.for_pod(readable, "default", ("gone", "opaque", "pod-cred"), Deadline.after(5))
    assert users(found) == ["pod-user"]
    assert any(f"{readable}/gone" in n and "not found" in n for n in found.notes), found.notes
    assert any(f"{readable}/opaque" in n and "Opaque" in n for n in found.notes), found.notes
    assert not any("pw-" in n for n in found.notes)  # never a credential in a message


def test_a_namespace_without_rbac_is_reported_not_fatal(setup: tuple[str, str, Path]) -> None:
    _, forbidden, kubeconfig = setup
    secrets = PullSecrets(KubernetesReader(kubeconfig), ttl_s=30)
    found = secrets.for_pod(forbidden, "default", ("pod-cred",), Deadline.after(5))
    assert users(found) == []
    assert any("HTTP 403" in n and "RBAC" in n for n in found.notes), found.notes


def test_secrets_are_cached_for_their_ttl_then_read_again(
    cluster: Cluster, setup: tuple[str, str, Path]
) -> None:
    readable, _, kubeconfig = setup
    cluster.apply(docker_secret("rotating", readable, "before"))
    secrets = PullSecrets(KubernetesReader(kubeconfig), ttl_s=1.5)
    assert users(secrets.for_pod(readable, "default", ("rotating",), Deadline.after(5))) == ["before"]
    cluster.apply(docker_secret("rotating", readable, "after"))
    assert users(secrets.for_pod(readable, "default", ("rotating",), Deadline.after(5))) == ["before"]
    time.sleep(1.6)
    assert users(secrets.for_pod(readable, "default", ("rotating",), Deadline.after(5))) == ["after"]


def test_an_unreachable_api_server_is_a_note_and_is_not_cached(
    setup: tuple[str, str, Path], tmp_path: Path
) -> None:
    readable, _, kubeconfig = setup
    text = kubeconfig.read_text()
    server = next(line.split("server:", 1)[1].strip() for line in text.splitlines() if "server:" in line)
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text(text.replace(server, "https://127.0.0.1:9"))  # nothing listens on the discard port
    secrets = PullSecrets(KubernetesReader(dead), ttl_s=30)
    started = time.monotonic()
    found = secrets.for_pod(readable, "default", ("pod-cred",), Deadline.after(3))
    assert time.monotonic() - started < 3
    assert users(found) == [] and any("unreachable" in n for n in found.notes), found.notes


def test_in_a_pod_the_mounted_service_account_token_is_used(
    cluster: Cluster, setup: tuple[str, str, Path], tmp_path: Path
) -> None:
    """Without a kubeconfig Referee reads the API as a pod does: the token and CA the kubelet mounts,
    and the API server from KUBERNETES_SERVICE_HOST/PORT (laid out here in a temporary folder)."""
    readable, _, kubeconfig = setup
    token = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["token"]
    mounted = tmp_path / "serviceaccount"
    mounted.mkdir()
    (mounted / "token").write_text(token)
    (mounted / "ca.crt").write_bytes(cluster.ca_file.read_bytes())
    host, port = cluster.server.removeprefix("https://").rsplit(":", 1)
    environ = {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}
    secrets = PullSecrets(KubernetesReader(None, service_account=mounted, environ=environ), ttl_s=30)
    found = secrets.for_pod(readable, "builder", ("pod-cred",), Deadline.after(5))
    assert users(found) == ["pod-user", "sa-user"] and found.notes == ()


def test_without_a_mounted_token_referee_refuses_to_start(tmp_path: Path) -> None:
    environ = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "6443"}
    with pytest.raises(ConfigError, match="in-cluster service account"):
        KubernetesReader(None, service_account=tmp_path, environ=environ)  # tmp_path holds no token

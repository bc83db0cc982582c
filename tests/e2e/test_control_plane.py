"""scripts/cluster.sh itself: the control plane starts, enforces RBAC, and stops everything it started."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.cluster import Cluster, control_plane


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

"""A real Kubernetes control plane for the end-to-end tests: etcd, kube-apiserver and
kube-controller-manager (its Deployment and ReplicaSet controllers) started by ``scripts/cluster.sh``
(no scheduler or kubelet, so pods stay Pending), and the real ``kubectl`` to talk to it. With
``REFEREE_E2E_CLUSTER=kind`` the same ``Cluster`` points at a kind cluster's kubeconfig instead (see
``scripts/e2e-kind.sh``)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.helpers.tools import ROOT, tool

CLUSTER_SH = ROOT / "scripts" / "cluster.sh"


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    server: str  # https://127.0.0.1:PORT
    ca_file: Path  # the CA that signed the API server's certificate
    # The CA that issued the client certificate the API server presents to admission webhooks
    # (its AdmissionConfiguration); None when the cluster's API server presents none.
    webhook_client_ca: Path | None = None
    # The API server's audit log (JSON lines: reads of Secrets and ServiceAccounts); None when the
    # cluster keeps none this suite can read.
    audit_log: Path | None = None

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this cluster; on failure (with ``check``) show what it printed."""
        argv = [tool("kubectl"), "--kubeconfig", str(self.kubeconfig), *args]
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl failed ({proc.returncode}): {' '.join(args)}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def apply(self, *docs: Mapping[str, Any] | str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``kubectl apply -f -`` of the given objects; string arguments are extra kubectl flags."""
        flags = [d for d in docs if isinstance(d, str)]
        text = yaml.safe_dump_all([dict(d) for d in docs if not isinstance(d, str)], sort_keys=False)
        return self.kubectl("apply", *flags, "-f", "-", input=text, check=check)

    def delete(self, *docs: Mapping[str, Any]) -> None:
        """``kubectl delete -f -`` of the given objects, without waiting; those already gone are fine."""
        text = yaml.safe_dump_all([dict(d) for d in docs], sort_keys=False)
        self.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-", input=text)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        ns = ["-n", namespace] if namespace else []
        out: dict[str, Any] = json.loads(self.kubectl("get", kind, name, *ns, "-o", "json").stdout)
        return out

    def create_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        """A namespace and its ``default`` service account (no service-account controller makes it here;
        the ServiceAccount admission plugin refuses pods in a namespace without one)."""
        meta: dict[str, Any] = {"name": name}
        if labels:
            meta["labels"] = dict(labels)
        self.apply(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": meta},
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "default", "namespace": name},
            },
        )

    def secret_reads(self, username: str) -> list[tuple[str, str]]:
        """(namespace, name) of every Secret ``username`` has read, as the audit log has it so far."""
        assert self.audit_log is not None, "this cluster keeps no audit log"
        reads = []
        for line in self.audit_log.read_text().splitlines():
            event = json.loads(line)
            ref = event.get("objectRef") or {}
            if (event.get("user") or {}).get("username") == username and ref.get("resource") == "secrets" \
                    and event.get("verb") in ("get", "list", "watch"):  # fmt: skip
                reads.append((str(ref.get("namespace", "")), str(ref.get("name", ""))))
        return reads

    def token(self, service_account: str, namespace: str, *, seconds: int = 3600) -> str:
        """A token for a service account from the TokenRequest API."""
        return self.kubectl(
            "create", "token", service_account, "-n", namespace, f"--duration={seconds}s"
        ).stdout.strip()

    def kubeconfig_for_token(self, path: Path, token: str) -> Path:
        """A kubeconfig that authenticates with ``token`` (a service account's), not as the admin."""
        ca = base64.b64encode(self.ca_file.read_bytes()).decode()
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "e2e", "cluster": {"server": self.server, "certificate-authority-data": ca}}
            ],
            "users": [{"name": "sa", "user": {"token": token}}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "sa"}}],
            "current-context": "e2e",
        }
        path.write_text(yaml.safe_dump(doc))
        path.chmod(0o600)
        return path


def _cluster_sh(*args: str) -> None:
    proc = subprocess.run([str(CLUSTER_SH), *args], capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/cluster.sh {' '.join(args)} failed:\n{proc.stderr}")


@contextlib.contextmanager
def control_plane(workdir: Path) -> Iterator[Cluster]:
    """etcd and kube-apiserver on loopback for the duration of the block (``cluster.sh up/down``)."""
    # Fail loudly when they are not built.
    tool("kube-apiserver"), tool("etcd"), tool("kubectl"), tool("kube-controller-manager")
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        _cluster_sh("up", str(workdir))
        yield Cluster(
            kubeconfig=workdir / "admin.kubeconfig",
            server=(workdir / "server").read_text().strip(),
            ca_file=workdir / "pki" / "ca.crt",
            webhook_client_ca=workdir / "pki" / "webhook-client-ca.crt",
            audit_log=workdir / "audit.log",
        )
    finally:
        _cluster_sh("down", str(workdir))


@contextlib.contextmanager
def existing_cluster(kubeconfig: Path, workdir: Path) -> Iterator[Cluster]:
    """A cluster someone else started (kind): its kubeconfig's current context, nothing to stop."""
    doc = yaml.safe_load(kubeconfig.read_text())
    context = next(c["context"] for c in doc["contexts"] if c["name"] == doc["current-context"])
    entry = next(c["cluster"] for c in doc["clusters"] if c["name"] == context["cluster"])
    ca_file = workdir / "cluster-ca.crt"
    ca_file.write_bytes(base64.b64decode(entry["certificate-authority-data"]))
    yield Cluster(kubeconfig=kubeconfig, server=entry["server"], ca_file=ca_file)


def cluster_kind() -> str:
    """``local`` (the default: scripts/cluster.sh) or ``kind`` (a cluster made by scripts/e2e-kind.sh)."""
    kind = os.environ.get("REFEREE_E2E_CLUSTER", "local")
    if kind not in ("local", "kind"):
        raise ValueError(f"REFEREE_E2E_CLUSTER must be local or kind, not {kind!r}")
    return kind

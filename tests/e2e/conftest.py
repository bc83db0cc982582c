"""The end-to-end environment, built once per session: a real control plane (etcd + kube-apiserver)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cluster import Cluster, cluster_kind, control_plane, existing_cluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The API server under test: a local control plane, or a kind cluster (REFEREE_E2E_CLUSTER=kind)."""
    workdir = tmp_path_factory.mktemp("cluster")
    if cluster_kind() == "kind":
        kubeconfig = Path(os.environ.get("KUBECONFIG") or Path.home() / ".kube" / "config")
        with existing_cluster(kubeconfig, workdir) as kind:
            yield kind
    else:
        with control_plane(workdir) as local:
            yield local

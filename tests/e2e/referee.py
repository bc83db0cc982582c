"""Referee installed from its Helm chart, the way the end-to-end tests run it: ``helm template`` with
``webhook.url`` pointing the webhook configurations at a local address, ``kubectl apply`` of every
rendered object, then ``referee serve`` started locally from what the Deployment would mount (the
ConfigMap and Secrets read back from the API server, written the way the kubelet writes volumes) and
with a token of the chart's ServiceAccount, so the RBAC under test is the chart's."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.helpers.chart import CHART, KUBE_VERSION, container_env, helm, volume_files, write_atomic
from tests.helpers.cluster import Cluster
from tests.helpers.serving import referee_serve
from tests.helpers.tools import free_port


@dataclass(frozen=True)
class RunningReferee:
    url: str  # https://HOST:PORT
    ca_file: Path  # the CA of its serving certificate: the webhook's caBundle
    log: Path

    def decisions(self) -> list[dict[str, Any]]:
        """The JSON decision lines Referee has logged so far."""
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith('{"event"')]


@contextlib.contextmanager
def serve(
    config: Path, url: str, ca_file: Path, *, env: Mapping[str, str] | None = None
) -> Iterator[RunningReferee]:
    """``python -m webhook serve --config CONFIG`` (listening at ``url``, its certificate issued by
    ``ca_file``) until the block ends; ready once ``/readyz`` says so."""
    with referee_serve(config, url, ca_file, env=env) as log:
        yield RunningReferee(url, ca_file, log)


def ca_bundle(ca_file: Path) -> str:
    return base64.b64encode(ca_file.read_bytes()).decode()


def render(release: str, namespace: str, values: Mapping[str, Any], work: Path) -> list[dict[str, Any]]:
    """``helm template`` of the chart (its test hooks left out, as ``helm install`` leaves them)."""
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"{release}-values.yaml"
    path.write_text(yaml.safe_dump(dict(values), sort_keys=False))
    text = helm("template", release, str(CHART), "--namespace", namespace, "--skip-tests",
                "--kube-version", KUBE_VERSION, "--values", str(path)).stdout  # fmt: skip
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _mounted_objects(
    cluster: Cluster, namespace: str, volumes: list[dict[str, Any]]
) -> dict[tuple[str, str], Any]:
    """The ConfigMaps and Secrets the pod's volumes name, as the API server holds them."""
    wanted: set[tuple[str, str]] = set()
    for volume in volumes:
        sources = volume["projected"]["sources"] if "projected" in volume else [volume]
        for source in sources:
            if "configMap" in source:
                wanted.add(("ConfigMap", source["configMap"]["name"]))
            elif "secret" in source:
                wanted.add(("Secret", source["secret"].get("name") or source["secret"].get("secretName")))
    return {(kind, name): cluster.get(kind.lower(), name, namespace) for kind, name in sorted(wanted)}


def _serving_ca(objects: list[dict[str, Any]]) -> bytes:
    """The CA clients verify Referee with: the validating webhook's caBundle, or (an install
    without webhooks) the CA ConfigMap the chart renders for clients."""
    for obj in objects:
        if obj["kind"] == "ValidatingWebhookConfiguration":
            return base64.b64decode(obj["webhooks"][0]["clientConfig"]["caBundle"])
    [ca] = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-ca")]
    return str(ca["data"]["ca.crt"]).encode()


@contextlib.contextmanager
def run_locally(
    cluster: Cluster,
    objects: list[dict[str, Any]],
    listen: str,
    work: Path,
    *,
    rewrite: Callable[[dict[str, Any]], None] | None = None,
) -> Iterator[RunningReferee]:
    """Run the rendered Deployment's Referee on this machine, listening on ``listen`` (HOST:PORT).
    ``rewrite`` may change the mounted config where an address of the cluster (a Service's name)
    stands for something this machine runs instead."""
    [deployment] = [  # Referee's, not the bundled Redis's
        o
        for o in objects
        if o["kind"] == "Deployment"
        and o["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == "webhook"
    ]
    namespace = deployment["metadata"]["namespace"]
    spec = deployment["spec"]["template"]["spec"]
    [container] = spec["containers"]
    live = _mounted_objects(cluster, namespace, spec["volumes"])
    by_name = {v["name"]: v for v in spec["volumes"]}
    for mount in container["volumeMounts"]:
        files = volume_files(by_name[mount["name"]], live)
        # emptyDirs (/tmp and the metrics folder) are replaced below; a second replica of the same
        # objects reads the files the first one's volumes were written to.
        if files is not None and not (Path(mount["mountPath"]) / "..data").exists():
            write_atomic(Path(mount["mountPath"]), files)
    config_path = Path(container["command"][container["command"].index("--config") + 1])
    config = yaml.safe_load(config_path.read_text())
    if spec.get("automountServiceAccountToken"):
        # In a pod the kubernetes client would read the mounted token; here a kubeconfig carries a
        # token of the same ServiceAccount from the TokenRequest API.
        account = spec["serviceAccountName"]
        kubeconfig = cluster.kubeconfig_for_token(
            work / f"{account}.kubeconfig", cluster.token(account, namespace)
        )
        config["kubernetes"]["kubeconfig"] = str(kubeconfig)
    if config.get("server", {}).get("healthPort"):
        config["server"]["healthPort"] = free_port()  # the pod's own port; here, one this machine has free
    if rewrite is not None:
        rewrite(config)
    local_config = work / "config.yaml"
    local_config.write_text(yaml.safe_dump(config))
    ca_file = work / "ca.crt"
    ca_file.write_bytes(_serving_ca(objects))
    metrics = work / "metrics"
    metrics.mkdir()
    env = container_env(container, namespace)
    env |= {"PROMETHEUS_MULTIPROC_DIR": str(metrics), "REFEREE_LISTEN": listen}
    with serve(local_config, f"https://{listen}", ca_file, env=env) as running:
        yield running

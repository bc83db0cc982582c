"""Digest pinning with the real Deployment and ReplicaSet controllers (kube-controller-manager of the
local control plane): a Deployment created before Referee saw its namespace, and one created after,
scaled and rolled, end with one ReplicaSet per change of their pod template. Pods stay Pending (no
kubelet); the ReplicaSets are what the controllers make, and what a fight with /mutate multiplies."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from tests.e2e.conftest import APPS, OPT_OUT_LABEL, Installed
from tests.helpers.cluster import Cluster

_names = itertools.count(1)
SETTLE_S = 6  # the controllers have done nothing new for this long
SETTLE_LIMIT_S = 60


def deployment(name: str, namespace: str, image: str) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"automountServiceAccountToken": False,
                                           "containers": [{"name": "app", "image": image}]}}}}  # fmt: skip


def replica_sets(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "replicasets", "-n", namespace, "-l", f"app={name}", "-o", "json")
    items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
    return items


def settled(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    """The Deployment's ReplicaSets once the controller has seen its last change and nothing has
    been created or resized for SETTLE_S seconds."""
    last: tuple[Any, ...] = ()
    quiet_since = time.monotonic()
    deadline = time.monotonic() + SETTLE_LIMIT_S
    while time.monotonic() < deadline:
        d = cluster.get("deployment", name, namespace)
        sets = replica_sets(cluster, namespace, name)
        now = (d["status"].get("observedGeneration"), d["metadata"]["generation"],
               tuple(sorted((r["metadata"]["name"], r["spec"].get("replicas")) for r in sets)))  # fmt: skip
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif now[0] == now[1] and time.monotonic() - quiet_since >= SETTLE_S:
            return sets
        time.sleep(1)
    names = [n for n, _ in last[2]] if last else []
    raise AssertionError(
        f"deployment {namespace}/{name} still changing after {SETTLE_LIMIT_S}s: "
        f"{len(names)} ReplicaSets ({', '.join(names[:5])}, ...)"
    )


def template_images(obj: dict[str, Any]) -> list[str]:
    return [c["image"] for c in obj["spec"]["template"]["spec"]["containers"]]


def scale_and_roll(cluster: Cluster, namespace: str, name: str, image: str) -> list[dict[str, Any]]:
    """Scale (no template change), restart (one) and set another image (one more)."""
    cluster.kubectl("scale", "deployment", name, "-n", namespace, "--replicas=3")
    settled(cluster, namespace, name)
    cluster.kubectl("rollout", "restart", "deployment", name, "-n", namespace)
    settled(cluster, namespace, name)
    cluster.kubectl("set", "image", f"deployment/{name}", f"app={image}", "-n", namespace)
    return settled(cluster, namespace, name)


def test_deployment_created_before_referee_is_rolled_without_extra_replicasets(referee: Installed) -> None:
    """Wedge: once Referee saw the namespace, a rollout of a Deployment written with a tag made a
    ReplicaSet whose template /mutate pinned; it no longer matched the Deployment's template, so the
    controller made another, and another."""
    cluster, images = referee.cluster, referee.images
    namespace, name = f"e2e-rollout-{next(_names)}", "before"
    cluster.create_namespace(namespace, {OPT_OUT_LABEL: "true"})  # Referee does not see it yet
    cluster.apply(deployment(name, namespace, images.signed))
    [first] = settled(cluster, namespace, name)
    assert template_images(first) == [images.signed]
    cluster.kubectl("label", "namespace", namespace, f"{OPT_OUT_LABEL}-")  # now it does
    pinned = f"{images.signed}@{images.signed_digest}"
    sets = scale_and_roll(cluster, namespace, name, pinned)
    current = cluster.get("deployment", name, namespace)
    rows = [f"{r['metadata']['name']}  replicas={r['spec']['replicas']}  {template_images(r)}" for r in sets]
    print(f"\n$ kubectl get rs -n {namespace}\n" + "\n".join(rows))
    assert len(sets) == 3, [r["metadata"]["name"] for r in sets]  # created, restarted, new image
    assert template_images(current) == [pinned]
    # Each ReplicaSet has its Deployment's template of the time: the restarted one kept the tag.
    assert sorted(template_images(r)[0] for r in sets) == sorted([images.signed, images.signed, pinned])


def test_deployment_created_with_referee_is_pinned_once_and_rolled_without_extra_replicasets(
    referee: Installed,
) -> None:
    cluster, images = referee.cluster, referee.images
    name = f"after-{next(_names)}"
    cluster.apply(deployment(name, APPS, images.signed))
    pinned = f"{images.signed}@{images.signed_digest}"
    [first] = settled(cluster, APPS, name)
    assert template_images(cluster.get("deployment", name, APPS)) == [pinned]  # pinned at CREATE
    assert template_images(first) == [pinned]
    sets = scale_and_roll(cluster, APPS, name, images.signed)  # back to the tag: pinned on UPDATE
    assert len(sets) == 2, [r["metadata"]["name"] for r in sets]  # created and restarted; same image
    assert template_images(cluster.get("deployment", name, APPS)) == [pinned]
    assert {template_images(r)[0] for r in sets} == {pinned}

"""Two Referee replicas installed from the chart with ``redis.enabled``, sharing the real redis-server
the chart's Secrets configure: a Deployment of 20 replicas is verified once. The Deployment and its
ReplicaSet are admitted by one replica, its pods by the other (the webhook split in two, each half
calling one replica), so every pod is a hit only if what the first replica learnt is shared; the
registry, behind a recording pass-through, is asked each thing once."""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.e2e import referee as ref
from tests.e2e.conftest import INSTANCE_LABEL, REFEREE_NAMESPACE, Installed
from tests.e2e.test_rollout import deployment
from tests.helpers.artifacts import push_image
from tests.helpers.counting_proxy import CountingProxy, counting_proxy
from tests.helpers.redis_server import redis_server
from tests.helpers.tools import free_port

RELEASE, INSTANCE, NAMESPACE = "referee-shared", "shared", "e2e-shared"
REPLICAS = 20
PODS_LIMIT_S = 90


def _split_by_kind(objects: list[dict[str, Any]], workloads_url: str, pods_url: str) -> None:
    """The validating webhook as two: workloads to one replica, pods to the other."""
    [config] = [o for o in objects if o["kind"] == "ValidatingWebhookConfiguration"]
    [hook] = config["webhooks"]
    pods = copy.deepcopy(hook)
    pods["name"] = "validate-pods.referee.dev"
    pods["rules"] = [r for r in hook["rules"] if r["apiGroups"] == [""]]
    pods["clientConfig"]["url"] = f"{pods_url}/validate"
    hook["rules"] = [r for r in hook["rules"] if r["apiGroups"] != [""]]
    hook["clientConfig"]["url"] = f"{workloads_url}/validate"
    config["webhooks"] = [hook, pods]


def _secret(installed: Installed, name: str, key: str) -> bytes:
    secret = installed.cluster.get("secret", name, REFEREE_NAMESPACE)
    return base64.b64decode(secret["data"][key])


@contextlib.contextmanager
def _shared_release(installed: Installed, proxy: CountingProxy) -> Iterator[tuple[ref.RunningReferee, ...]]:
    work = installed.work / RELEASE
    ports = [free_port(), free_port()]
    urls = [f"https://127.0.0.1:{port}" for port in ports]
    registries = {**installed.registries, proxy.host: {"plainHTTP": True}}
    values = installed.values(RELEASE, mode="enforce", url=urls[0], registries=registries)
    values |= {"redis": {"enabled": True}, "mutation": {"enabled": False}, "pullSecrets": {"enabled": False},
               # What is measured is what the replicas share: a lookup that misses the default 5 ms
               # budget on a loaded test machine opens that worker's circuit and it verifies for itself.
               "cache": {"shared": {"budgetMilliseconds": 250}}}  # fmt: skip
    objects = installed.render_values(RELEASE, values, instance=INSTANCE)
    _split_by_kind(objects, urls[0], urls[1])
    installed.cluster.apply(*objects)
    # The chart's Redis Deployment has no kubelet here; the real redis-server stands in for its pod,
    # with the password of the Secret the chart generated, and the Service's name points at it.
    password = _secret(installed, f"{RELEASE}-redis", "password").decode()
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(redis_server(work / "redis", password=password))
        address = f"127.0.0.1:{redis.port}"
        service = f"{RELEASE}-redis:6379"

        def local_redis(config: dict[str, Any]) -> None:
            url = config["cache"]["shared"]["url"]
            assert service in url, url  # redis.enabled made Referee use the chart's Redis
            config["cache"]["shared"]["url"] = url.replace(service, address)

        for i in range(len(ports)):
            (work / f"replica{i}").mkdir(parents=True, exist_ok=True)
        replicas = tuple(
            stack.enter_context(
                ref.run_locally(
                    installed.cluster, objects, f"127.0.0.1:{port}", work / f"replica{i}", rewrite=local_redis
                )
            )
            for i, port in enumerate(ports)
        )
        try:
            yield replicas
        finally:
            installed.cluster.delete(*objects)


def _kind(decision: dict[str, Any]) -> str:
    return str(decision.get("object", "")).split(" ")[0]


def _pods(installed: Installed, name: str) -> list[dict[str, Any]]:
    out = installed.cluster.kubectl("get", "pods", "-n", NAMESPACE, "-l", f"app={name}", "-o", "json")
    items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
    return items


def test_deployment_of_twenty_is_verified_once_across_two_replicas(
    referee: Installed, tmp_path: Path
) -> None:
    """Without the shared cache each replica and each of its workers resolves, discovers and
    verifies the image itself; with it the registry is asked each thing once."""
    images = referee.images
    olareg = images.registry
    digest = push_image(olareg, "e2e/shared", "v1", tmp_path / "img", content="shared cache e2e")
    images.notation.sign(olareg, f"{olareg.host}/e2e/shared@{digest}")
    with counting_proxy(olareg.host) as proxy, _shared_release(referee, proxy) as (first, second):
        referee.cluster.create_namespace(NAMESPACE, {INSTANCE_LABEL: INSTANCE})
        name = "fleet"
        manifest = deployment(name, NAMESPACE, f"{proxy.host}/e2e/shared:v1")
        manifest["spec"]["replicas"] = REPLICAS
        referee.cluster.apply(manifest)
        deadline = time.monotonic() + PODS_LIMIT_S
        while len(_pods(referee, name)) < REPLICAS:
            assert time.monotonic() < deadline, f"{len(_pods(referee, name))} of {REPLICAS} pods admitted"
            time.sleep(1)
        with proxy.lock:
            asked = {hit: n for hit, n in proxy.requests.items() if hit[1].startswith("/v2/e2e/shared/")}
        print(
            "\nregistry requests for e2e/shared:\n"
            + "\n".join(f"  {n}x {m} {p}" for (m, p), n in asked.items())
        )
        assert asked, "the registry was never asked: the image was not checked through the proxy"
        assert all(n == 1 for n in asked.values()), asked
        workloads = [d for d in first.decisions() if _kind(d) in ("Deployment", "ReplicaSet")]
        pods = [d for d in second.decisions() if _kind(d) == "Pod"]
        assert workloads and all(d["allowed"] for d in workloads), workloads
        assert len(pods) >= REPLICAS and all(d["allowed"] for d in pods), pods
        assert not [d for d in second.decisions() if _kind(d) != "Pod"]

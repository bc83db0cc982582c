"""Scaling Referee out with the chart: the HorizontalPodAutoscaler and the replica count, the spread
over nodes, the PodDisruptionBudget against the fewest replicas, and the bundled Redis of the
shared verdict cache (its generated secrets, its NetworkPolicy, its configuration run by the real
redis-server)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import deep_merge
from tests.helpers.chart import CHART, KUBE_VERSION, RELEASE, Rendered, render, template, values_file
from tests.helpers.tools import free_port, run, tool

REDIS = f"{RELEASE}-redis"
SIGNING_KEY = f"{RELEASE}-shared-cache-key"
REDIS_OBJECTS = {("Deployment", REDIS), ("Service", REDIS), ("Secret", REDIS), ("NetworkPolicy", REDIS)}


def names(out: Rendered) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in out.objects}


def secret_bytes(out: Rendered, name: str, key: str) -> bytes:
    return base64.b64decode(out.get("Secret", name)["data"][key])


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions) applied to a pod's labels."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        present, value = e["key"] in labels, labels.get(e["key"])
        ok = {
            "In": present and value in e.get("values", []),
            "NotIn": value not in e.get("values", []),
            "Exists": present,
            "DoesNotExist": not present,
        }[e["operator"]]
        if not ok:
            return False
    return True


def pod_labels(out: Rendered, deployment: str) -> dict[str, str]:
    labels: dict[str, str] = out.get("Deployment", deployment)["spec"]["template"]["metadata"]["labels"]
    return labels


# --- The bundled Redis ----------------------------------------------------------------------------


def test_the_bundled_redis_and_the_signing_key_render_only_when_asked_for(
    rendered: dict[str, Rendered],
) -> None:
    for case in ("defaults", "selfSigned", "extras", "hardened"):
        present = names(rendered[case])
        assert not REDIS_OBJECTS & present, case
        assert ("Secret", SIGNING_KEY) not in present, case  # no shared cache: no key either
    assert REDIS_OBJECTS | {("Secret", SIGNING_KEY)} <= names(rendered["scaleOut"])


def test_the_generated_password_and_signing_key_are_random(
    rendered: dict[str, Rendered], cases: dict[str, Any], tmp_path: Path
) -> None:
    """A fresh render (no Secret in a cluster to read back) makes new ones: nothing is a constant of
    the chart. 48 alphanumerics for the password, 48 bytes for the key."""
    first = rendered["scaleOut"]
    password = secret_bytes(first, REDIS, "password")
    key = secret_bytes(first, SIGNING_KEY, "signing-key")
    assert len(password) == 48 and password.isalnum()
    assert len(key) == 48
    second = render(values_file(tmp_path, cases["scaleOut"]))
    assert secret_bytes(second, REDIS, "password") != password
    assert secret_bytes(second, SIGNING_KEY, "signing-key") != key
    for name in (REDIS, SIGNING_KEY):
        assert first.get("Secret", name)["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}


def test_the_redis_password_is_never_on_a_command_line_or_in_the_pod_spec(
    rendered: dict[str, Rendered],
) -> None:
    """Attack: a password on Redis's command line is read by anyone who can list processes on the
    node (ps), and one in the pod spec by anyone who can read Deployments. It is only in the
    Secret's redis.conf, which Redis is started with."""
    out = rendered["scaleOut"]
    password = secret_bytes(out, REDIS, "password").decode()
    assert password not in out.text.replace(out.get("Secret", REDIS)["data"]["redis.conf"], "")
    config = secret_bytes(out, REDIS, "redis.conf").decode().splitlines()
    assert f"requirepass {password}" in config
    assert {'save ""', "appendonly no", "maxmemory 96mb", "maxmemory-policy allkeys-lru"} <= set(config)
    pod = out.get("Deployment", REDIS)["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] == ["redis-server", "/etc/redis/redis.conf"]
    assert "args" not in container and "env" not in container
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == "/etc/redis"]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == REDIS
    assert volume["secret"]["items"] == [{"key": "redis.conf", "path": "redis.conf"}]


def test_the_bundled_redis_is_locked_down_and_pinned(rendered: dict[str, Rendered]) -> None:
    out = rendered["scaleOut"]
    deployment = out.get("Deployment", REDIS)
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 999
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    repository, tag = container["image"].rsplit(":", 1)
    assert repository == "docker.io/library/redis" and tag[0].isdigit() and tag != "latest"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    [data] = [m for m in container["volumeMounts"] if m["mountPath"] == container["workingDir"]]
    assert "emptyDir" in volumes[data["name"]]
    service = out.get("Service", REDIS)
    assert service["spec"]["ports"] == [
        {"name": "redis", "port": 6379, "targetPort": "redis", "protocol": "TCP"}
    ]
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(out, REDIS))


def test_the_bundled_redis_image_by_digest(cases: dict[str, Any], tmp_path: Path) -> None:
    digest = "sha256:" + "b" * 64
    values = deep_merge(
        cases["scaleOut"], {"redis": {"image": {"repository": "mirror.example.com/valkey", "digest": digest}}}
    )
    [container] = render(values_file(tmp_path, values)).get("Deployment", REDIS)["spec"]["template"]["spec"][
        "containers"
    ]
    assert container["image"] == f"mirror.example.com/valkey@{digest}"


def test_only_referees_pods_may_reach_the_bundled_redis(rendered: dict[str, Rendered]) -> None:
    """Anyone who can write to the shared cache's Redis can evict or fill it (never grant an allow:
    every value is signed). Its NetworkPolicy admits Redis's port from this release's Referee pods
    and from nothing else (not the helm test pod, not Redis itself), and lets Redis connect nowhere."""
    out = rendered["scaleOut"]
    policy = out.get("NetworkPolicy", REDIS)["spec"]
    assert selects(policy["podSelector"], pod_labels(out, REDIS))
    assert not selects(policy["podSelector"], pod_labels(out, RELEASE))
    assert policy["policyTypes"] == ["Ingress", "Egress"] and policy["egress"] == []
    [rule] = policy["ingress"]
    assert rule["ports"] == [{"port": "redis", "protocol": "TCP"}]
    [peer] = rule["from"]
    assert set(peer) == {"podSelector"}  # this namespace only: no namespaceSelector, no ipBlock
    [test_pod] = [p for p in out.of_kind("Pod") if p["metadata"]["annotations"].get("helm.sh/hook") == "test"]
    assert selects(peer["podSelector"], pod_labels(out, RELEASE))
    assert not selects(peer["podSelector"], test_pod["metadata"]["labels"])
    assert not selects(peer["podSelector"], pod_labels(out, REDIS))
    # Another release's Referee in the same namespace is not let in either.
    other = {**pod_labels(out, RELEASE), "app.kubernetes.io/instance": "other"}
    assert not selects(peer["podSelector"], other)


def test_none_of_referees_selectors_picks_the_redis_pods(rendered: dict[str, Rendered]) -> None:
    """Bug this guards against: Redis pods labelled like Referee's would receive the webhook's
    calls through Referee's Service, count in its PodDisruptionBudget and be let through its
    NetworkPolicy."""
    out = rendered["scaleOut"]
    redis = pod_labels(out, REDIS)
    selectors = [
        {"matchLabels": out.get("Service", RELEASE)["spec"]["selector"]},
        out.get("Deployment", RELEASE)["spec"]["selector"],
        out.get("PodDisruptionBudget", RELEASE)["spec"]["selector"],
        out.get("NetworkPolicy", RELEASE)["spec"]["podSelector"],
    ]
    for selector in selectors:
        assert selects(selector, pod_labels(out, RELEASE)) and not selects(selector, redis), selector


# --- What Referee is told to use: the shared cache helpers ------------------------------------------

PROBE = """apiVersion: v1
kind: ConfigMap
metadata:
  name: shared-cache-probe
data:
  url: {{ include "referee.sharedCacheURL" . | quote }}
  enabled: {{ include "referee.sharedCacheEnabled" . | quote }}
  passwordSecret: {{ include "referee.sharedCachePasswordSecret" . | quote }}
  signingKeySecret: {{ include "referee.sharedCacheSigningKeySecret" . | quote }}
"""


@pytest.fixture(scope="module")
def probe_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the chart with one more template printing what the shared-cache helpers give the
    configuration. The copy has no values schema, so that cache.shared values can be given to it
    whatever the schema allows."""
    copy = tmp_path_factory.mktemp("probe") / "referee"
    shutil.copytree(CHART, copy)
    (copy / "values.schema.json").unlink()
    (copy / "templates" / "zz-shared-cache-probe.yaml").write_text(PROBE)
    return copy


def probe_objects(chart: Path, values: Path) -> list[dict[str, Any]]:
    """``helm template`` of the probe chart with ``values``."""
    text = run([tool("helm"), "template", RELEASE, str(chart), "--kube-version", KUBE_VERSION,
                "--values", str(values)]).stdout  # fmt: skip
    return [d for d in yaml.safe_load_all(text) if d]


def probe(chart: Path, values: Mapping[str, Any], tmp_path: Path) -> dict[str, str]:
    objects = probe_objects(chart, values_file(tmp_path, values))
    [doc] = [d for d in objects if d["metadata"]["name"] == "shared-cache-probe"]
    data: dict[str, str] = doc["data"]
    return data


BUNDLED = f"redis://{REDIS}:6379/0"
NO_SECRET = {"name": "", "key": "password"}
MINE = {"name": "mine", "key": "pw"}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, ("", NO_SECRET, "")),
        ({"redis": {"enabled": True}}, (BUNDLED, {"name": REDIS, "key": "password"}, SIGNING_KEY)),
        # A user's password Secret does not fit the bundled Redis, which has its own.
        (
            {"redis": {"enabled": True}, "cache": {"shared": {"passwordSecret": MINE}}},
            (BUNDLED, {"name": REDIS, "key": "password"}, SIGNING_KEY),
        ),
        (
            {"redis": {"enabled": True}, "cache": {"shared": {"url": "rediss://cache.example.com:6380"}}},
            ("rediss://cache.example.com:6380", NO_SECRET, SIGNING_KEY),
        ),
        (
            {"cache": {"shared": {"url": "redis://valkey.db:6379/2", "passwordSecret": MINE,
                                  "signingKeySecret": {"name": "my-key"}}}},
            ("redis://valkey.db:6379/2", MINE, "my-key"),
        ),
    ],
)  # fmt: skip
def test_referee_is_pointed_at_the_bundled_redis_unless_given_a_url(
    values: dict[str, Any],
    expected: tuple[str, dict[str, str], str],
    probe_chart: Path,
    base_values: dict[str, Any],
    tmp_path: Path,
) -> None:
    """The helpers Referee's configuration is rendered from: the URL, the password Secret
    ({name, key}, name "" for none) and the signing key Secret."""
    url, password, signing_key = expected
    data = probe(probe_chart, deep_merge(base_values, values), tmp_path)
    assert data["url"] == url and data["enabled"] == ("true" if url else "")
    assert yaml.safe_load(data["passwordSecret"]) == password
    assert data["signingKeySecret"] == signing_key


def test_a_signing_key_of_ones_own_is_not_generated(
    probe_chart: Path, base_values: dict[str, Any], tmp_path: Path
) -> None:
    values = deep_merge(
        base_values,
        {"cache": {"shared": {"url": "redis://valkey.db:6379", "signingKeySecret": {"name": "my-key"}}}},
    )
    secrets = {
        d["metadata"]["name"]
        for d in probe_objects(probe_chart, values_file(tmp_path, values))
        if d["kind"] == "Secret"
    }
    assert SIGNING_KEY not in secrets and REDIS not in secrets
    values["cache"]["shared"]["signingKeySecret"] = {"name": ""}
    generated = probe_objects(probe_chart, values_file(tmp_path, values, "generated.yaml"))
    assert SIGNING_KEY in {d["metadata"]["name"] for d in generated if d["kind"] == "Secret"}


# --- The rendered redis.conf, run by the real redis-server ---------------------------------------------


@pytest.fixture
def bundled_redis(rendered: dict[str, Rendered], tmp_path: Path) -> Iterator[tuple[int, str]]:
    """redis-server started with the Secret's redis.conf as the pod mounts it; only the port, the
    address and the working folder (the container's workingDir) are this machine's."""
    out = rendered["scaleOut"]
    conf = tmp_path / "redis.conf"
    conf.write_bytes(secret_bytes(out, REDIS, "redis.conf"))
    conf.chmod(0o400)
    port = free_port()
    proc = subprocess.Popen(
        [tool("redis-server"), str(conf), "--port", str(port), "--dir", str(tmp_path), "--bind", "127.0.0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while run([tool("redis-cli"), "-p", str(port), "ping"], check=False).returncode != 0:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)
        yield port, secret_bytes(out, REDIS, "password").decode()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def redis_cli(port: int, *args: str, password: str | None = None) -> str:
    env = dict(os.environ)
    env.pop("REDISCLI_AUTH", None)
    if password is not None:
        env["REDISCLI_AUTH"] = password  # not on redis-cli's command line either
    return run([tool("redis-cli"), "-p", str(port), *args], env=env).stdout.strip()


def test_the_rendered_redis_conf_is_one_redis_runs_with_a_password_and_no_disk(
    bundled_redis: tuple[int, str],
) -> None:
    port, password = bundled_redis
    assert redis_cli(port, "set", "referee:x", "1", password=password) == "OK"
    assert redis_cli(port, "get", "referee:x", password=password) == "1"
    assert "NOAUTH" in redis_cli(port, "get", "referee:x")
    assert "NOAUTH" in redis_cli(port, "get", "referee:x", password="not-it")  # AUTH refused

    def setting(name: str) -> str:
        reply = redis_cli(port, "--json", "config", "get", name, password=password)
        value: str = json.loads(reply)[name]
        return value

    assert setting("save") == ""  # no snapshots
    assert setting("appendonly") == "no"
    assert setting("maxmemory") == str(96 * 1024 * 1024)
    assert setting("maxmemory-policy") == "allkeys-lru"


# --- Replicas: the autoscaler, the spread, the disruption budget -------------------------------------


def test_the_autoscaler_owns_the_replica_count(rendered: dict[str, Rendered]) -> None:
    out = rendered["scaleOut"]
    hpa = out.get("HorizontalPodAutoscaler", RELEASE)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": RELEASE}
    assert hpa["spec"]["minReplicas"] == 3 and hpa["spec"]["maxReplicas"] == 7
    assert hpa["spec"]["metrics"] == [
        {
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
        }
    ]
    assert "replicas" not in out.get("Deployment", RELEASE)["spec"]
    # Without the autoscaler, replicaCount; the default is off.
    assert not rendered["selfSigned"].of_kind("HorizontalPodAutoscaler")
    assert rendered["selfSigned"].get("Deployment", RELEASE)["spec"]["replicas"] == 2


def test_no_autoscaler_scales_up_a_referee_without_a_trust_policy(tmp_path: Path) -> None:
    """Without a trust policy Referee cannot start: the Deployment stays at 0 and no autoscaler
    brings pods up that would only fail."""
    out = render(values_file(tmp_path, {"autoscaling": {"enabled": True}}))
    assert not out.of_kind("HorizontalPodAutoscaler")
    assert out.get("Deployment", RELEASE)["spec"]["replicas"] == 0


@pytest.mark.parametrize(
    ("autoscaling", "resources", "phrase"),
    [
        (
            {"minReplicas": 6, "maxReplicas": 5},
            None,
            "autoscaling.minReplicas (6) is above autoscaling.maxReplicas (5)",
        ),
        (
            {},
            {"requests": {"cpu": None, "memory": "160Mi"}},  # null removes the default
            "autoscaling.enabled needs resources.requests.cpu",
        ),
    ],
)
def test_an_autoscaler_that_cannot_work_fails_the_render(
    autoscaling: dict[str, Any],
    resources: dict[str, Any] | None,
    phrase: str,
    cases: dict[str, Any],
    tmp_path: Path,
) -> None:
    values = deep_merge(cases["selfSigned"], {"autoscaling": {"enabled": True, **autoscaling}})
    if resources is not None:
        values["resources"] = resources
    proc = template(values_file(tmp_path, values), check=False)
    assert proc.returncode != 0 and phrase in proc.stderr
    assert template(values_file(tmp_path, cases["selfSigned"], "fine.yaml")).returncode == 0


def test_the_disruption_budget_follows_the_fewest_replicas(cases: dict[str, Any], tmp_path: Path) -> None:
    """With the autoscaler the fewest replicas are minReplicas: one gets no budget (it would block
    every drain), and a minAvailable of minReplicas or more is refused for the same reason."""

    def out(values: dict[str, Any], name: str) -> Rendered:
        return render(values_file(tmp_path, deep_merge(cases["selfSigned"], values), name))

    one = out({"autoscaling": {"enabled": True, "minReplicas": 1}, "replicaCount": 3}, "one.yaml")
    assert not one.of_kind("PodDisruptionBudget")
    three = out(
        {
            "autoscaling": {"enabled": True, "minReplicas": 3},
            "replicaCount": 1,
            "podDisruptionBudget": {"minAvailable": 2},
        },
        "three.yaml",
    )
    assert three.one("PodDisruptionBudget")["spec"]["minAvailable"] == 2
    share = out({"autoscaling": {"enabled": True}, "podDisruptionBudget": {"minAvailable": "50%"}}, "pc.yaml")
    assert share.one("PodDisruptionBudget")["spec"]["minAvailable"] == "50%"
    for values in (
        {"autoscaling": {"enabled": True, "minReplicas": 3}, "podDisruptionBudget": {"minAvailable": 3}},
        {"replicaCount": 2, "podDisruptionBudget": {"minAvailable": 2}},
    ):
        proc = template(
            values_file(tmp_path, deep_merge(cases["selfSigned"], values), "bad.yaml"), check=False
        )
        assert proc.returncode != 0 and "podDisruptionBudget.minAvailable" in proc.stderr
        assert "a node drain could then never evict a Referee pod" in proc.stderr


def test_replicas_are_spread_over_nodes_by_default(
    rendered: dict[str, Rendered], cases: dict[str, Any], tmp_path: Path
) -> None:
    out = rendered["selfSigned"]
    deployment = out.get("Deployment", RELEASE)
    [spread] = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread == {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": deployment["spec"]["selector"]["matchLabels"]},
    }
    assert selects(spread["labelSelector"], pod_labels(out, RELEASE))
    # Given constraints replace it, each counting Referee's pods unless it says otherwise.
    given = rendered["scaleOut"].get("Deployment", RELEASE)["spec"]["template"]["spec"][
        "topologySpreadConstraints"
    ]
    assert [c["topologyKey"] for c in given] == ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
    assert all(c["labelSelector"] == spread["labelSelector"] for c in given)
    own = {
        "maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"tier": "admission"}},
    }
    chosen = render(values_file(tmp_path, {**cases["selfSigned"], "topologySpreadConstraints": [own]}))
    assert chosen.get("Deployment", RELEASE)["spec"]["template"]["spec"]["topologySpreadConstraints"] == [own]
    none = render(
        values_file(tmp_path, {**cases["selfSigned"], "topologySpreadConstraints": []}, "none.yaml")
    )
    assert "topologySpreadConstraints" not in none.get("Deployment", RELEASE)["spec"]["template"]["spec"]

"""``kubectl apply`` against a real kube-apiserver that calls Referee as its admission webhook: what a
user sees when a workload's images are signed, unsigned, tampered with, or out of reach."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
import requests

from tests.e2e.conftest import (
    APPS,
    AUDITED,
    AUTH_PASSWORD,
    AUTH_USER,
    EXEMPT,
    INSTANCE_LABEL,
    OPTED_OUT,
    TIMEOUT_S,
    Installed,
)
from tests.helpers.tools import free_port

_names = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_names)}"


def pod_spec(*images: str, init: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    return {
        "containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)],
        "initContainers": [{"name": f"i{i}", "image": image} for i, image in enumerate(init)],
        **extra,
    }


def pod(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def workload(kind: str, name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    labels = {"app": name}
    template = {"metadata": {"labels": labels}, "spec": spec}
    meta = {"name": name, "namespace": namespace}
    if kind == "Deployment":
        body = {"selector": {"matchLabels": labels}, "template": template}
        return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": body}
    job_template = {"metadata": {"labels": labels}, "spec": {**spec, "restartPolicy": "Never"}}
    if kind == "Job":
        return {"apiVersion": "batch/v1", "kind": kind, "metadata": meta, "spec": {"template": job_template}}
    cron = {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": job_template}}}
    return {"apiVersion": "batch/v1", "kind": kind, "metadata": meta, "spec": cron}


def refused(proc: Any) -> str:
    """kubectl's error for a request the webhook denied (exit 1, nothing created)."""
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "created" not in proc.stdout
    stderr: str = proc.stderr
    return stderr


def test_signed_pod_is_created(referee: Installed) -> None:
    name = unique("signed")
    out = referee.cluster.apply(pod(name, APPS, pod_spec(referee.images.signed)))
    print(f"\n$ kubectl apply -f {name}.yaml\n{out.stdout}{out.stderr}")
    assert out.stdout.strip() == f"pod/{name} created"
    created = referee.cluster.get("pod", name, APPS)
    assert created["status"]["phase"] == "Pending"  # no scheduler or kubelet: admission is all there is


def test_unsigned_pod_is_refused_with_referees_message(referee: Installed) -> None:
    imgs = referee.images
    name = unique("unsigned")
    proc = referee.cluster.apply(pod(name, APPS, pod_spec(imgs.signed, imgs.unsigned)), check=False)
    stderr = refused(proc)
    print(f"\n$ kubectl apply -f {name}.yaml\n{stderr}")
    assert 'admission webhook "validate.referee.dev" denied the request' in stderr
    assert f"image {imgs.unsigned} ({imgs.unsigned_digest}): no Notation signature found" in stderr
    assert imgs.signed not in stderr  # only the failing image is named
    assert referee.cluster.kubectl("get", "pod", name, "-n", APPS, check=False).returncode == 1


def test_tampered_signature_is_refused(referee: Installed) -> None:
    stderr = refused(
        referee.cluster.apply(pod(unique("tampered"), APPS, pod_spec(referee.images.tampered)), check=False)
    )
    assert referee.images.tampered in stderr and "integrity" in stderr


@pytest.mark.parametrize("kind", ["Deployment", "Job", "CronJob"])
def test_workload_with_one_unsigned_image_is_refused(referee: Installed, kind: str) -> None:
    imgs = referee.images
    name = unique(kind.lower())
    bad = workload(kind, name, APPS, pod_spec(imgs.signed, init=(imgs.unsigned,)))
    stderr = refused(referee.cluster.apply(bad, check=False))
    assert f"image {imgs.unsigned} ({imgs.unsigned_digest}): no Notation signature found" in stderr
    good = workload(kind, name, APPS, pod_spec(imgs.signed, init=(imgs.signed,)))
    assert referee.cluster.apply(good).stdout.strip() == f"{kind.lower()}.{_group(kind)}/{name} created"


def test_changing_a_deployment_to_an_unsigned_image_is_refused(referee: Installed) -> None:
    """UPDATE goes through the webhook too: ``kubectl set image`` cannot swap in an unsigned image."""
    imgs = referee.images
    name = unique("rollout")
    referee.cluster.apply(workload("Deployment", name, APPS, pod_spec(imgs.signed)))
    stderr = refused(
        referee.cluster.kubectl(
            "set", "image", f"deployment/{name}", f"c0={imgs.unsigned}", "-n", APPS, check=False
        )
    )
    assert f"image {imgs.unsigned} ({imgs.unsigned_digest}): no Notation signature found" in stderr
    live = referee.cluster.get("deployment", name, APPS)["spec"]["template"]["spec"]["containers"][0]["image"]
    assert live.startswith(imgs.signed)  # unchanged (pinned to its digest by the mutating webhook)


def test_server_side_dry_run_gives_the_same_answer(referee: Installed) -> None:
    imgs = referee.images
    name = unique("dry")
    doc = pod(name, APPS, pod_spec(imgs.unsigned))
    stderr = refused(referee.cluster.apply(doc, "--dry-run=server", check=False))
    assert f"image {imgs.unsigned} ({imgs.unsigned_digest}): no Notation signature found" in stderr
    signed = referee.cluster.apply(pod(name, APPS, pod_spec(imgs.signed)), "--dry-run=server")
    assert signed.stdout.strip() == f"pod/{name} created (server dry run)"
    assert referee.cluster.kubectl("get", "pod", name, "-n", APPS, check=False).returncode == 1


def _group(kind: str) -> str:
    return "apps" if kind == "Deployment" else "batch"


def _never_sent_to_referee(referee: Installed, namespace: str, name: str) -> None:
    logged = referee.enforcing.log.read_text() + referee.audit.log.read_text()
    assert f"{namespace}/{name}" not in logged  # the webhooks' namespaceSelector kept it away


def test_exempt_namespace_admits_an_unsigned_pod(referee: Installed) -> None:
    name = unique("exempt")
    out = referee.cluster.apply(pod(name, EXEMPT, pod_spec(referee.images.unsigned)))
    assert out.stdout.strip() == f"pod/{name} created"
    _never_sent_to_referee(referee, EXEMPT, name)


def test_opted_out_namespace_admits_an_unsigned_pod(referee: Installed) -> None:
    name = unique("optout")
    out = referee.cluster.apply(pod(name, OPTED_OUT, pod_spec(referee.images.unsigned)))
    assert out.stdout.strip() == f"pod/{name} created"
    _never_sent_to_referee(referee, OPTED_OUT, name)


def test_a_pod_in_another_namespace_is_sent_to_referee(referee: Installed) -> None:
    """The counterpart of the two above: the absence of a log line means something."""
    name = unique("logged")
    referee.cluster.apply(pod(name, APPS, pod_spec(referee.images.signed)))
    [decision] = [d for d in referee.enforcing.decisions() if d.get("object") == f"Pod {APPS}/{name}"]
    assert decision["allowed"] is True


def test_audit_mode_admits_and_kubectl_prints_the_warnings(referee: Installed) -> None:
    imgs = referee.images
    name = unique("audited")
    out = referee.cluster.apply(pod(name, AUDITED, pod_spec(imgs.unsigned)))
    print(f"\n$ kubectl apply -f {name}.yaml\n{out.stderr}{out.stdout}")
    assert out.stdout.strip() == f"pod/{name} created"
    warning = f"image {imgs.unsigned} ({imgs.unsigned_digest}): no Notation signature found"
    assert f"Warning: referee (audit): {warning}" in out.stderr


def test_mutation_pins_the_image_to_the_verified_digest(referee: Installed) -> None:
    imgs = referee.images
    name = unique("pinned")
    referee.cluster.apply(pod(name, APPS, pod_spec(imgs.signed)))
    image = referee.cluster.kubectl(
        "get", "pod", name, "-n", APPS, "-o", "jsonpath={.spec.containers[0].image}"
    ).stdout
    print(f"\n$ kubectl get pod {name} -o jsonpath='{{.spec.containers[0].image}}'\n{image}")
    assert image == f"{imgs.signed}@{imgs.signed_digest}"


def test_registry_down_is_refused_within_the_webhook_timeout(referee: Installed) -> None:
    gone = f"127.0.0.1:{free_port()}/gone/app:v1"
    start = time.monotonic()
    stderr = refused(referee.cluster.apply(pod(unique("gone"), APPS, pod_spec(gone)), check=False))
    elapsed = time.monotonic() - start
    assert f"image {gone}: could not check" in stderr
    assert elapsed < TIMEOUT_S


def test_registry_that_never_answers_is_refused_within_the_webhook_timeout_fake(referee: Installed) -> None:
    """Referee gives up before the API server does, so the refusal carries Referee's reason. With
    mutation on, the API server calls /mutate and then /validate, each within its own timeout; a
    worker that has seen the registry time out answers at once for a few seconds, so the second
    call costs nothing when it reaches the same worker, and at most the deadline otherwise."""
    name = unique("stalled")
    start = time.monotonic()
    stderr = refused(referee.cluster.apply(pod(name, APPS, pod_spec(referee.stalled_image)), check=False))
    elapsed = time.monotonic() - start
    assert f"image {referee.stalled_image}" in stderr
    # Which of Referee's three ways of saying so depends on where the deadline falls: the gate's,
    # the registry client's own read, or a worker that saw the host time out just before.
    phrases = ("not decided in time", f"out of time waiting for {referee.stalled_image.split('/')[0]}",
               "is not answering")  # fmt: skip
    assert any(p in stderr for p in phrases), stderr
    assert 'admission webhook "validate.referee.dev" denied the request' in stderr
    [decision] = [d for d in referee.enforcing.decisions() if d.get("object") == f"Pod {APPS}/{name}"]
    assert decision["durationMs"] < TIMEOUT_S * 1000
    assert elapsed < 2 * TIMEOUT_S + 1  # and kubectl's own start-up and discovery


def test_unreachable_referee_fails_closed(referee: Installed) -> None:
    """The chart's failurePolicy (Fail): when nothing answers at the webhook's URL, the API server
    refuses the pod rather than admit it unchecked."""
    cluster = referee.cluster
    instance = unique("unreachable")
    objects = referee.render(
        f"referee-{instance}", mode="enforce", instance=instance, url=f"https://127.0.0.1:{free_port()}"
    )
    webhooks = [o for o in objects if o["kind"] == "ValidatingWebhookConfiguration"]
    assert webhooks[0]["webhooks"][0]["failurePolicy"] == "Fail"
    cluster.apply(*objects)  # and no Referee serves this release
    namespace = f"e2e-{instance}"
    cluster.create_namespace(namespace, {INSTANCE_LABEL: instance})
    try:
        stderr = refused(
            cluster.apply(pod("orphan", namespace, pod_spec(referee.images.signed)), check=False)
        )
        print(f"\n$ kubectl apply -f orphan.yaml   # nothing listening at the webhook's URL\n{stderr}")
        assert 'failed calling webhook "validate.referee.dev"' in stderr
    finally:
        for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
            cluster.kubectl("delete", kind, f"referee-{instance}", "--ignore-not-found")


def test_ephemeral_container_is_checked(referee: Installed) -> None:
    """``kubectl debug`` adds an ephemeral container through the pods/ephemeralcontainers subresource;
    the webhook sees that update, and an unsigned debug image is refused."""
    imgs = referee.images
    name = unique("debugged")
    referee.cluster.apply(pod(name, APPS, pod_spec(imgs.signed)))
    debug = ("debug", name, "-n", APPS, "--attach=false")
    stderr = refused(
        referee.cluster.kubectl(*debug, f"--image={imgs.unsigned}", "--container=dbg", check=False)
    )
    assert f"image {imgs.unsigned} ({imgs.unsigned_digest}): no Notation signature found" in stderr
    referee.cluster.kubectl(*debug, f"--image={imgs.signed}", "--container=dbg2")
    debugged = referee.cluster.get("pod", name, APPS)
    assert [c["name"] for c in debugged["spec"]["ephemeralContainers"]] == ["dbg2"]


# --- Pull secrets: credentials Referee reads through the API server ---------------------------------


def _pull_secret(referee: Installed, name: str, namespace: str) -> None:
    referee.cluster.kubectl(
        "create", "secret", "docker-registry", name, "-n", namespace,
        f"--docker-server={referee.auth.registry.host}", f"--docker-username={AUTH_USER}",
        f"--docker-password={AUTH_PASSWORD}",
    )  # fmt: skip


def test_private_image_verified_with_the_pods_pull_secret(referee: Installed) -> None:
    namespace = unique("e2e-pull")
    referee.cluster.create_namespace(namespace)
    _pull_secret(referee, "regcred", namespace)
    name = unique("private")
    spec = pod_spec(referee.auth.by_pod_secret, imagePullSecrets=[{"name": "regcred"}])
    assert referee.cluster.apply(pod(name, namespace, spec)).stdout.strip() == f"pod/{name} created"


def test_private_image_verified_with_the_service_accounts_pull_secret(referee: Installed) -> None:
    namespace = unique("e2e-pull")
    cluster = referee.cluster
    cluster.create_namespace(namespace)
    _pull_secret(referee, "builder-cred", namespace)
    account = {"name": "builder", "namespace": namespace}
    cluster.apply(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": account,
         "imagePullSecrets": [{"name": "builder-cred"}]}
    )  # fmt: skip
    name = unique("private")
    spec = pod_spec(referee.auth.by_account_secret, serviceAccountName="builder")
    assert cluster.apply(pod(name, namespace, spec)).stdout.strip() == f"pod/{name} created"


def test_provider_uses_the_namespaces_default_service_account_pull_secrets(referee: Installed) -> None:
    """Gatekeeper's external data names only ``[namespace]image``: Referee reads that namespace's
    ``default`` service account's pull secrets, and where there are none cannot check the image."""
    cluster = referee.cluster
    bare, provided = unique("e2e-pull"), unique("e2e-pull")
    for namespace in (bare, provided):
        cluster.create_namespace(namespace)
    _pull_secret(referee, "ns-cred", provided)
    default = {"name": "default", "namespace": provided}
    cluster.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": default,
                   "imagePullSecrets": [{"name": "ns-cred"}]})  # fmt: skip
    image = referee.auth.by_namespace_secret

    cert = tuple(map(str, referee.callers.provider_client))  # as Gatekeeper calls: mutual TLS

    def ask(namespace: str, **tls: Any) -> requests.Response:
        body = {"apiVersion": "externaldata.gatekeeper.sh/v1beta1", "kind": "ProviderRequest",
                "request": {"keys": [f"[{namespace}]{image}"]}}  # fmt: skip
        return requests.post(f"{referee.enforcing.url}/provider", json=body, timeout=10,
                             verify=str(referee.enforcing.ca_file), **tls)  # fmt: skip

    def item(namespace: str) -> dict[str, Any]:
        [found] = ask(namespace, cert=cert).json()["response"]["items"]
        return dict(found)

    assert "could not check" in item(bare)["error"]  # asked first: a failure is never cached
    assert ask(provided).status_code == 403  # without Gatekeeper's certificate: nothing is read
    assert item(provided)["value"]["verified"] is True


def test_private_image_without_a_pull_secret_is_refused(referee: Installed) -> None:
    namespace = unique("e2e-pull")
    referee.cluster.create_namespace(namespace)
    image = referee.auth.without_secret
    stderr = refused(referee.cluster.apply(pod(unique("private"), namespace, pod_spec(image)), check=False))
    assert f"image {image}: could not check" in stderr and "credentials" in stderr

"""Who may ask Referee: only the API server on /validate and /mutate (its webhook client
certificate, which scripts/cluster.sh makes it present), and only it has pull secrets read. A pod
in the cluster that reaches Referee's port and POSTs an AdmissionReview of its own making (naming
another namespace and a private image) gets HTTP 403: no pull secret is read, no registry is asked,
no digest is reported. The same pod through kubectl and the API server is checked as always."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.conftest import AUTH_PASSWORD, AUTH_USER, REFEREE_NAMESPACE, Installed

_names = itertools.count(1)
REFEREE_ACCOUNT = f"system:serviceaccount:{REFEREE_NAMESPACE}:referee"  # the chart's ServiceAccount


def namespace_with_pull_secret(referee: Installed) -> str:
    """A fresh namespace whose Secret `regcred` holds the private registry's credentials."""
    namespace = f"e2e-callers-{next(_names)}"
    referee.cluster.create_namespace(namespace)
    referee.cluster.kubectl(
        "create", "secret", "docker-registry", "regcred", "-n", namespace,
        f"--docker-server={referee.auth.registry.host}", f"--docker-username={AUTH_USER}",
        f"--docker-password={AUTH_PASSWORD}",
    )  # fmt: skip
    return namespace


def pod(name: str, namespace: str, image: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"containers": [{"name": "app", "image": image}],
                     "imagePullSecrets": [{"name": "regcred"}]}}  # fmt: skip


def forged_review(obj: dict[str, Any]) -> dict[str, Any]:
    """An AdmissionReview as the API server would send it for creating ``obj``."""
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": f"forged-{next(_names)}", "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": obj["metadata"]["namespace"], "operation": "CREATE",
        "userInfo": {"username": "system:serviceaccount:team-b:intruder"}, "object": obj}}  # fmt: skip


def registry_requests(referee: Installed) -> float:
    """Referee's count of registry answers so far (referee_registry_requests_total, all workers)."""
    text = requests.get(
        f"{referee.enforcing.url}/metrics", verify=str(referee.enforcing.ca_file), timeout=10
    ).text
    return sum(
        float(m.group(1))
        for m in re.finditer(r"^referee_registry_requests_total\{[^}]*\} (\S+)$", text, re.M)
    )


def post(
    referee: Installed, path: str, body: dict[str, Any], cert: tuple[Path, Path] | None
) -> requests.Response:
    return requests.post(f"{referee.enforcing.url}{path}", json=body, timeout=10,
                         verify=str(referee.enforcing.ca_file),
                         cert=(str(cert[0]), str(cert[1])) if cert else None)  # fmt: skip


@pytest.fixture
def authenticated(referee: Installed) -> Installed:
    assert referee.callers.authenticated_api_server, (
        "this cluster's API server presents no client certificate"
    )
    return referee


def test_forged_admission_review_without_a_client_certificate_is_refused(authenticated: Installed) -> None:
    referee = authenticated
    namespace = namespace_with_pull_secret(referee)
    name = f"forged-{next(_names)}"
    obj = pod(name, namespace, referee.auth.asked_by_forgery)
    asked_before = registry_requests(referee)
    for path in ("/validate", "/mutate"):
        resp = post(referee, path, forged_review(obj), cert=None)
        print(f"\n$ curl -X POST {referee.enforcing.url}{path}   # no client certificate")
        print(f"HTTP {resp.status_code} {resp.text}")
        assert resp.status_code == 403, resp.text
        assert "response" not in resp.json() and "sha256:" not in resp.text  # no verdict, no digest
    assert registry_requests(referee) == asked_before  # no registry was asked
    assert not [r for r in referee.cluster.secret_reads(REFEREE_ACCOUNT) if r[0] == namespace]
    assert not [d for d in referee.enforcing.decisions() if d.get("object") == f"Pod {namespace}/{name}"]
    # The same pod through the API server, which presents its certificate: checked with the
    # namespace's pull secret, and created.
    out = referee.cluster.apply(obj)
    assert out.stdout.strip() == f"pod/{name} created"


def test_pull_secrets_are_read_only_for_the_authenticated_api_server(authenticated: Installed) -> None:
    """A client certificate Referee trusts for /provider (Gatekeeper's role) does not make its
    holder the API server: /validate refuses it and reads nothing. The API server's own call
    reads the pod's pull secret, as the audit log shows."""
    referee = authenticated
    namespace = namespace_with_pull_secret(referee)
    name = f"forged-{next(_names)}"
    obj = pod(name, namespace, referee.auth.asked_by_forgery)
    resp = post(referee, "/validate", forged_review(obj), cert=referee.callers.provider_client)
    assert resp.status_code == 403, resp.text
    assert "not issued by the CA configured for /validate and /mutate" in resp.json()["error"]
    assert not [r for r in referee.cluster.secret_reads(REFEREE_ACCOUNT) if r[0] == namespace]
    referee.cluster.apply(obj)
    assert (namespace, "regcred") in referee.cluster.secret_reads(REFEREE_ACCOUNT)
    [decision] = [d for d in referee.enforcing.decisions() if d.get("object") == f"Pod {namespace}/{name}"]
    assert decision["allowed"] is True
    print(f"\nReferee's decision for the API server's call: {json.dumps(decision)}")

"""The admission webhook end to end: `referee serve` (gunicorn, TLS) answering AdmissionReviews about
images in a real registry, signed by the real notation CLI."""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.helpers import pki
from tests.helpers.codesign import make_chain, write_trust_policy, write_trust_store
from tests.helpers.fake_registry import FakeRegistry, fake_registry
from tests.helpers.registries import RunningRegistry
from tests.helpers.samples import SampleImages, sample_images
from tests.helpers.serving import referee_serve
from tests.helpers.tools import ROOT as ROOT_DIR
from tests.helpers.tools import free_port, tool
from webhook.config import parse_config
from webhook.deadline import Deadline
from webhook.server.app import build_gate
from webhook.verify.decision import Decision as ImageDecision

NOTARY = "application/vnd.cncf.notary.signature"


@dataclass(frozen=True)
class Server:
    url: str
    ca: Path
    log: Path

    def review(
        self,
        obj: dict[str, Any],
        *,
        kind: str = "Pod",
        group: str = "",
        namespace: str = "team-a",
        operation: str = "CREATE",
    ) -> dict[str, Any]:
        body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "uid-1", "kind": {"group": group, "version": "v1", "kind": kind}, "namespace": namespace,
            "operation": operation, "userInfo": {"username": "alice"}, "object": obj}}  # fmt: skip
        resp = requests.post(f"{self.url}/validate", json=body, verify=str(self.ca), timeout=30)
        assert resp.status_code == 200, resp.text
        out: dict[str, Any] = resp.json()["response"]
        assert out["uid"] == "uid-1"
        return out


def pod(*images: str, init: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"metadata": {"name": "web"}, "spec": {
        "containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)],
        "initContainers": [{"name": f"i{i}", "image": image} for i, image in enumerate(init)]}}  # fmt: skip


@pytest.fixture(scope="module")
def images(olareg: RunningRegistry, tmp_path_factory: pytest.TempPathFactory) -> SampleImages:
    return sample_images(olareg, tmp_path_factory.mktemp("webhook-images"), "hook")


def start_server(
    workdir: Path,
    olareg: RunningRegistry,
    policy: Path,
    store: Path,
    *,
    env: dict[str, str] | None = None,
    plain_hosts: tuple[str, ...] = (),
    extra: str = "",
    admission_ca: Path | None = None,
) -> Iterator[Server]:
    ca = pki.make_ca(workdir)
    cert = pki.make_server_cert(workdir, ca)
    (workdir / "clients").mkdir(exist_ok=True)
    client_ca = pki.make_ca(workdir / "clients", "Gatekeeper Test CA")
    pki.make_client_cert(workdir / "clients", client_ca)
    port = free_port()
    config = workdir / "config.yaml"
    registries = "".join(f"  '{host}': {{plainHTTP: true}}\n" for host in (olareg.host, *plain_hosts))
    config.write_text(
        f"listen: 127.0.0.1:{port}\n"
        f"trustPolicy: {policy}\ntrustStore: {store}\n"
        "exemptNamespaces: [kube-system, sandbox]\n"
        "exemptImages: ['docker.io/library/pause:*']\n"
        f"registries:\n{registries}"
        f"tls: {{certFile: {cert.cert_path}, keyFile: {cert.key_path}, "
        f"clientCAFile: {client_ca.cert_path}"
        + (f", clientAuth: {{admission: {{caFile: {admission_ca}}}}}" if admission_ca else "")
        + "}\n"
        "timeouts: {admissionSeconds: 5, marginSeconds: 1}\n"
        "server: {workers: 2, threads: 4}\n"
        "mutate: true\n" + extra
    )
    url = f"https://127.0.0.1:{port}"
    # Referee's own namespace comes from the downward API in a pod.
    with referee_serve(
        config, url, ca.cert_path, env={"POD_NAMESPACE": "referee-system", **(env or {})}
    ) as log:
        yield Server(url, ca.cert_path, log)


@pytest.fixture(scope="module")
def slow_registry() -> Iterator[FakeRegistry]:
    """A registry that never answers in time (in-process fake: a real one cannot be made that slow)."""
    with fake_registry() as fake:
        for method in ("HEAD", "GET"):
            fake.route(method, "/v2/slow/app/manifests/v1", lambda h: time.sleep(8))
        yield fake


@pytest.fixture(scope="module")
def server(
    olareg: RunningRegistry,
    images: SampleImages,
    slow_registry: FakeRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    policy, store = images.policy, images.store
    workdir = tmp_path_factory.mktemp("server")
    yield from start_server(workdir, olareg, policy, store, plain_hosts=(slow_registry.host,))


@pytest.fixture(scope="module")
def audit_server(
    olareg: RunningRegistry, images: SampleImages, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    policy, store = images.policy, images.store
    yield from start_server(
        tmp_path_factory.mktemp("audit"), olareg, policy, store, env={"REFEREE_MODE": "audit"}
    )


def test_signed_pod_is_admitted(server: Server, images: SampleImages) -> None:
    assert server.review(pod(images.signed))["allowed"] is True


def test_unsigned_pod_is_denied_with_image_digest_and_reason(server: Server, images: SampleImages) -> None:
    out = server.review(pod(images.signed, images.unsigned))
    assert out["allowed"] is False
    message = out["status"]["message"]
    assert out["status"]["code"] == 403
    assert images.unsigned in message and images.unsigned_digest in message
    assert "no Notation signature found" in message
    assert images.signed not in message  # only the failing image is named


def test_tampered_signature_is_denied(server: Server, images: SampleImages) -> None:
    out = server.review(pod(images.tampered))
    assert out["allowed"] is False and "integrity" in out["status"]["message"]


@pytest.mark.parametrize(
    ("group", "kind", "wrap"),
    [
        ("apps", "Deployment", lambda spec: {"spec": {"template": {"spec": spec}}}),
        ("batch", "Job", lambda spec: {"spec": {"template": {"spec": spec}}}),
        ("batch", "CronJob", lambda spec: {"spec": {"jobTemplate": {"spec": {"template": {"spec": spec}}}}}),
    ],
)
def test_workloads_with_one_unsigned_init_container(
    server: Server, images: SampleImages, group: str, kind: str, wrap: Any
) -> None:
    spec = pod(images.signed, init=(images.unsigned,))["spec"]
    out = server.review(wrap(spec), kind=kind, group=group)
    assert out["allowed"] is False and images.unsigned in out["status"]["message"]
    assert server.review(wrap(pod(images.signed)["spec"]), kind=kind, group=group)["allowed"] is True


def test_exemptions(server: Server, images: SampleImages) -> None:
    assert server.review(pod(images.unsigned), namespace="sandbox")["allowed"] is True
    assert (
        server.review(pod(images.unsigned), namespace="referee-system")["allowed"] is True
    )  # its own namespace
    assert server.review(pod("pause:3.9", images.signed))["allowed"] is True  # exempt image pattern
    assert server.review(pod(images.unsigned), operation="DELETE")["allowed"] is True


def test_unreachable_registry_is_denied_within_the_deadline(server: Server) -> None:
    start = time.monotonic()
    out = server.review(pod(f"127.0.0.1:{free_port()}/nothing/here:v1"))
    assert out["allowed"] is False and "could not check" in out["status"]["message"]
    assert time.monotonic() - start < 5


def test_audit_mode_admits_with_warnings(audit_server: Server, images: SampleImages) -> None:
    out = audit_server.review(pod(images.unsigned))
    assert out["allowed"] is True
    assert any(images.unsigned in w and "no Notation signature found" in w for w in out["warnings"])


def decision_counts(server: Server) -> dict[str, float]:
    text = requests.get(f"{server.url}/metrics", verify=str(server.ca), timeout=10).text
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith('referee_admission_decisions_total{endpoint="validate"'):
            result = line.split('result="')[1].split('"')[0]
            counts[result] = float(line.split()[-1])
    return counts


def test_audit_admissions_are_counted_apart_from_allows(audit_server: Server, images: SampleImages) -> None:
    """Bug: a pod admitted in audit mode with its reasons as warnings was counted as allowed, so a
    dashboard showed no failures during the audit period."""
    before = decision_counts(audit_server)
    for _ in range(3):
        assert audit_server.review(pod(images.unsigned))["warnings"]
    assert audit_server.review(pod(images.signed)).get("warnings") is None
    after = decision_counts(audit_server)
    assert after.get("audit", 0) - before.get("audit", 0) == 3
    assert after.get("allowed", 0) - before.get("allowed", 0) == 1


REVIEW_HEAD = b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"big-1",'


@pytest.mark.parametrize(
    ("body", "uid", "phrase"),
    [
        (b"not json", "", "not JSON"),
        (b"[]", "", "not a JSON object"),
        (
            json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).encode(),
            "",
            "no request",
        ),
        (REVIEW_HEAD + b'"object":"' + b"x" * (4 << 20) + b'"}}', "big-1", "at most 3145728 bytes"),
        (REVIEW_HEAD + b'"kind": 7}}', "big-1", "request.kind must be an object"),
    ],
    ids=["not-json", "not-an-object", "no-request", "oversized", "malformed"],
)
def test_review_referee_cannot_check_is_denied_not_answered_with_an_error(
    server: Server, body: bytes, uid: str, phrase: str
) -> None:
    """Attack: under failurePolicy Ignore (the audit start the README recommends) an HTTP 400
    admits the pod unchecked. A review Referee will not check in full is denied, with its uid."""
    resp = requests.post(
        f"{server.url}/validate",
        data=body,
        verify=str(server.ca),
        timeout=30,
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code == 200, resp.text
    out = resp.json()["response"]
    assert out["allowed"] is False and out["uid"] == uid
    assert phrase in out["status"]["message"]
    assert requests.get(f"{server.url}/healthz", verify=str(server.ca), timeout=5).status_code == 200


def test_decisions_are_logged_without_the_pod_spec(server: Server, images: SampleImages) -> None:
    server.review(pod(images.signed))
    time.sleep(0.2)
    lines = [json.loads(line) for line in server.log.read_text().splitlines() if line.startswith('{"event"')]
    assert lines and lines[-1]["event"] == "admission" and lines[-1]["object"] == "Pod team-a/web"
    assert "spec" not in server.log.read_text()


def test_a_changed_trust_policy_takes_effect_without_a_restart(
    olareg: RunningRegistry, images: SampleImages, tmp_path: Path
) -> None:
    """Verdicts are keyed by the trust fingerprint: editing the policy turns an allow into a deny."""
    policy, store = images.policy, images.store
    own_policy = tmp_path / "trustpolicy.json"
    own_policy.write_text(policy.read_text())
    config = parse_config(
        {"trustPolicy": str(own_policy), "trustStore": str(store),
         "registries": {olareg.host: {"plainHTTP": True}}}, base=tmp_path, environ={})  # fmt: skip
    gate = build_gate(config)
    try:
        first = gate.decide([images.signed], Deadline.after(10))[0]
        again = gate.decide([images.signed], Deadline.after(10))[0]
        assert first.allowed and not first.cached
        assert again.allowed and again.cached
        doc = json.loads(own_policy.read_text())
        doc["trustPolicies"][0]["trustedIdentities"] = ["x509.subject: C=US, ST=WA, O=Someone Else"]
        own_policy.write_text(json.dumps(doc))
        time.sleep(2.1)  # the files are checked every two seconds
        after = gate.decide([images.signed], Deadline.after(10))[0]
        assert not after.allowed and not after.cached
        assert "not a trusted identity" in after.reason
        # A broken edit keeps the last good material in force, and says why.
        own_policy.write_text("{ not json")
        time.sleep(2.1)
        still = gate.decide([images.signed], Deadline.after(10))[0]
        assert not still.allowed and still.cached
        assert "not valid JSON" in gate.reload_errors()[0]
    finally:
        gate.close()


def test_a_hanging_registry_does_not_starve_the_other_images_fake(
    olareg: RunningRegistry, images: SampleImages, slow_registry: FakeRegistry, tmp_path: Path
) -> None:
    """Once a request to a registry has timed out, requests to it fail at once for a while instead
    of each holding a verification thread for the whole deadline (fake: a real registry cannot be
    made to hang on purpose)."""
    config = parse_config(
        {"trustPolicy": str(images.policy), "trustStore": str(images.store), "server": {"threads": 2},
         "registries": {olareg.host: {"plainHTTP": True}, slow_registry.host: {"plainHTTP": True}}},
        base=tmp_path, environ={})  # fmt: skip
    for i in range(2, 22):
        for method in ("HEAD", "GET"):
            slow_registry.route(method, f"/v2/slow/app/manifests/v{i}", lambda h: time.sleep(8))
    gate = build_gate(config)  # a pool of 4 verification threads
    try:
        [first] = gate.decide([f"{slow_registry.host}/slow/app:v1"], Deadline.after(2))
        assert first.inconclusive and not first.allowed
        time.sleep(0.3)  # the request itself gives up just after the decision was answered
        hanging = [f"{slow_registry.host}/slow/app:v{i}" for i in range(2, 22)]
        started = time.monotonic()
        *refused, signed = gate.decide([*hanging, images.signed], Deadline.after(3))
        assert time.monotonic() - started < 1.5
        assert signed.allowed, signed.reason
        assert all(r.inconclusive and "is not answering" in r.reason for r in refused), refused[0]
    finally:
        gate.close()


def test_concurrent_requests_for_one_image_share_one_verification(
    olareg: RunningRegistry, images: SampleImages, tmp_path: Path
) -> None:
    policy, store = images.policy, images.store
    settings = {
        "trustPolicy": str(policy),
        "trustStore": str(store),
        "registries": {olareg.host: {"plainHTTP": True}},
    }
    gate = build_gate(parse_config(settings, base=tmp_path, environ={}))
    answered: list[tuple[str, int]] = []
    gate.client.on_response = lambda method, status: answered.append((method, status))
    start = threading.Barrier(8)

    def admit() -> None:
        start.wait()
        results.extend(gate.decide([images.signed], Deadline.after(10)))

    try:
        results: list[ImageDecision] = []
        threads = [threading.Thread(target=admit) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == 8 and all(r.allowed for r in results)
        assert gate.verifications == 1  # the others shared it in flight or found its cached verdict
        # One lookup of the tag, the referrers, the signature manifest and its envelope: no request
        # was made twice, however many admissions asked at once.
        assert len(answered) == 4, answered
    finally:
        gate.close()


def _served_serial(url: str, ca: Path) -> int:
    host, port = url.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_rotated_certificate_is_served_without_a_restart(server: Server) -> None:
    workdir = server.ca.parent
    before = _served_serial(server.url, server.ca)
    ca = pki.KeyPair(
        key=serialization.load_pem_private_key((workdir / "ca.key").read_bytes(), None),  # type: ignore[arg-type]
        cert=x509.load_pem_x509_certificate((workdir / "ca.crt").read_bytes()),
        cert_path=workdir / "ca.crt",
        key_path=workdir / "ca.key",
    )
    (workdir / "rotated").mkdir()
    rotated = pki.make_server_cert(workdir / "rotated", ca)
    (workdir / "server.key").write_bytes(rotated.key_path.read_bytes())
    (workdir / "server.crt").write_bytes(rotated.cert_path.read_bytes())
    after = _served_serial(server.url, server.ca)
    assert after != before and after == rotated.cert.serial_number
    assert requests.get(f"{server.url}/healthz", verify=str(server.ca), timeout=5).status_code == 200


def apply_patch(obj: Any, ops: list[dict[str, Any]]) -> Any:
    """Enough of RFC 6902 (test, replace) to apply what /mutate returns, failing as a server would."""
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        target = obj
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        key: Any = int(last) if isinstance(target, list) else last
        if op["op"] == "test":
            assert target[key] == op["value"], f"test failed at {op['path']}"
        elif op["op"] == "replace":
            assert key in target if isinstance(target, dict) else key < len(target)
            target[key] = op["value"]
        else:
            raise AssertionError(f"unexpected op {op['op']}")
    return obj


def test_mutate_pins_verified_images_to_their_digests(server: Server, images: SampleImages) -> None:
    containers = [{"name": "a", "image": images.signed}, {"name": "b", "image": images.unsigned}]
    obj = {"spec": {"template": {"spec": {"containers": containers}}}}
    body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "m1", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"}, "namespace": "team-a",
        "operation": "CREATE", "object": obj}}  # fmt: skip
    resp = requests.post(f"{server.url}/mutate", json=body, verify=str(server.ca), timeout=30).json()[
        "response"
    ]
    assert resp["allowed"] is True and resp["patchType"] == "JSONPatch"
    patched = apply_patch(json.loads(json.dumps(obj)), json.loads(base64.b64decode(resp["patch"])))
    pinned = patched["spec"]["template"]["spec"]["containers"]
    assert pinned[0]["image"] == f"{images.signed}@{images.signed_digest}"
    assert pinned[1]["image"] == images.unsigned  # not verified: left for the validating webhook to deny
    assert server.review(patched, kind="Deployment", group="apps")["allowed"] is False  # b is still unsigned
    # Pinning again changes nothing (idempotent).
    repeat = {**body, "request": {**body["request"], "object": patched}}
    again = requests.post(f"{server.url}/mutate", json=repeat, verify=str(server.ca), timeout=30).json()[
        "response"
    ]
    assert "patch" not in again


def test_metrics_add_up_every_worker(server: Server, images: SampleImages) -> None:
    for _ in range(6):  # two workers: some of these land on each
        server.review(pod(images.signed))
    text = requests.get(f"{server.url}/metrics", verify=str(server.ca), timeout=5).text
    series = 'referee_admission_decisions_total{endpoint="validate",result="allowed"}'
    allowed = [line for line in text.splitlines() if line.startswith(series)]
    assert allowed and float(allowed[0].split()[-1]) >= 6
    for family in ("referee_image_verification_seconds_bucket", "referee_registry_requests_total",
                   "referee_cache_lookups_total", "referee_verifications_in_flight"):  # fmt: skip
        assert family in text
    # The serving certificate's end, for an alert before it lapses.
    [expiry] = [line for line in text.splitlines()
                if line.startswith("referee_tls_certificate_expiry_timestamp_seconds ")]  # fmt: skip
    served = x509.load_pem_x509_certificate(server.ca.parent.joinpath("server.crt").read_bytes())
    assert float(expiry.split()[-1]) == served.not_valid_after_utc.timestamp()


@pytest.mark.parametrize(
    ("config", "phrase"),
    [
        (None, "cannot read config"),
        ("trustPolicy: /nonexistent/trustpolicy.json\ntrustStore: /nonexistent\n", "does not exist"),
        ("trustPolicy: p.json\ntrustStore: s\nmode: loud\n", "mode must be enforce or audit"),
    ],
)
def test_serve_refuses_a_bad_configuration_at_once(tmp_path: Path, config: str | None, phrase: str) -> None:
    path = tmp_path / "config.yaml"
    if config is not None:
        path.write_text(config)
    proc = subprocess.run([sys.executable, "-m", "webhook", "serve", "--config", str(path)],
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert proc.returncode == 2
    assert phrase in proc.stderr


@pytest.mark.parametrize(
    ("extra", "phrases"),
    [
        ("registries: {'registry.example': {dockerConfig: missing/config.json}}\n",
         ("registry credentials", "missing/config.json")),
        ("kubernetes: {pullSecrets: true, trustUnauthenticatedCallers: true,\n"
         "  kubeconfig: missing.kubeconfig}\n",
         ("kubernetes: cannot load credentials", "missing.kubeconfig")),
        # Not in a pod: no service account token is mounted for the in-cluster client.
        ("kubernetes: {pullSecrets: true, trustUnauthenticatedCallers: true}\n",
         ("the in-cluster service account",)),
    ],
    ids=["docker-config", "kubeconfig", "in-cluster"],
)  # fmt: skip
def test_serve_refuses_credentials_it_cannot_load(
    tmp_path: Path, extra: str, phrases: tuple[str, ...]
) -> None:
    write_trust_store(tmp_path / "truststore", "ca", "test", make_chain().root)
    write_trust_policy(tmp_path / "trustpolicy.json")
    (tmp_path / "config.yaml").write_text("trustPolicy: trustpolicy.json\ntrustStore: truststore\n" + extra)
    argv = [sys.executable, "-m", "webhook", "serve", "--config", str(tmp_path / "config.yaml")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False, env=env)
    assert proc.returncode == 2, proc.stderr
    assert all(p in proc.stderr for p in phrases), proc.stderr


# --- Gatekeeper external data ---------------------------------------------------------------------

GK_API = "externaldata.gatekeeper.sh/v1beta1"


def provider_call(
    server: Server, keys: list[str], *, path: str = "/provider", client_cert: bool = True
) -> Any:
    clients = server.ca.parent / "clients"
    cert = (str(clients / "client.crt"), str(clients / "client.key")) if client_cert else None
    body = {
        "apiVersion": "externaldata.gatekeeper.sh/v1beta1",
        "kind": "ProviderRequest",
        "request": {"keys": keys},
    }
    return requests.post(f"{server.url}{path}", json=body, verify=str(server.ca), cert=cert, timeout=30)


def test_provider_items(server: Server, images: SampleImages) -> None:
    keys = [images.signed, images.unsigned, f"[team-a]{images.signed}", "Not/A/Valid:Ref"]
    resp = provider_call(server, keys)
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert doc["apiVersion"] == "externaldata.gatekeeper.sh/v1beta1" and doc["kind"] == "ProviderResponse"
    out = doc["response"]
    assert out["idempotent"] is True and out["systemError"] == ""
    items = {item["key"]: item for item in out["items"]}
    assert list(items) == keys
    signed = items[images.signed]["value"]
    assert set(signed) == {"verified", "digest", "signer", "signers", "signingTime", "signingScheme",
                           "reason", "statement", "artifacts"}  # fmt: skip
    assert signed["signers"] == [signed["signer"]] and signed["statement"] == "" and signed["artifacts"] == []
    assert signed["verified"] is True and signed["digest"] == images.signed_digest
    assert "CN=signer" in signed["signer"]["subject"] and signed["signingScheme"] == "notary.x509"
    assert "error" not in items[images.signed]
    assert (
        "no Notation signature found" in items[images.unsigned]["error"]
        and "value" not in items[images.unsigned]
    )
    assert items[f"[team-a]{images.signed}"]["value"]["verified"] is True
    assert "must be lowercase" in items["Not/A/Valid:Ref"]["error"]


def test_provider_system_error_when_a_registry_is_down(server: Server) -> None:
    start = time.monotonic()
    out = provider_call(server, [f"127.0.0.1:{free_port()}/gone/app:v1"]).json()["response"]
    assert "could not check" in out["systemError"]
    assert "could not check" in out["items"][0]["error"]
    assert time.monotonic() - start < 3.5  # inside Gatekeeper's default budget


def test_provider_answers_within_its_budget_when_a_registry_stalls_fake(
    server: Server, images: SampleImages, slow_registry: FakeRegistry
) -> None:
    stalled = f"{slow_registry.host}/slow/app:v1"
    start = time.monotonic()
    out = provider_call(server, [images.signed, stalled]).json()["response"]
    elapsed = time.monotonic() - start
    assert elapsed < 3.0  # Gatekeeper's provider timeout; the budget is timeouts.providerSeconds
    items = {item["key"]: item for item in out["items"]}
    assert items[images.signed]["value"]["verified"] is True  # the other image is still answered
    assert "not decided in time" in items[stalled]["error"] or "could not check" in items[stalled]["error"]
    assert out["systemError"]


def test_provider_requires_the_client_certificate(server: Server, images: SampleImages) -> None:
    resp = provider_call(server, [images.signed], client_cert=False)
    assert resp.status_code == 403 and "client certificate" in resp.json()["error"]
    # The API server calling /validate needs none.
    assert server.review(pod(images.signed))["allowed"] is True


def test_kept_provider_answer_is_not_sent_to_a_caller_the_endpoint_refuses(
    server: Server, images: SampleImages
) -> None:
    """The worker sends kept answers from its event loop; the client check still comes first."""
    keys = [images.signed]
    for _ in range(6):  # verified, then cached and kept by each worker
        assert provider_call(server, keys).status_code == 200
    refused = provider_call(server, keys, client_cert=False)
    assert refused.status_code == 403 and "client certificate" in refused.text


def test_provider_refuses_a_certificate_from_another_ca(server: Server, tmp_path: Path) -> None:
    other_ca = pki.make_ca(tmp_path, "Someone Else CA")
    stranger = pki.make_client_cert(tmp_path, other_ca)
    body = {
        "apiVersion": "externaldata.gatekeeper.sh/v1beta1",
        "kind": "ProviderRequest",
        "request": {"keys": []},
    }
    with pytest.raises(requests.exceptions.SSLError):
        requests.post(f"{server.url}/provider", json=body, verify=str(server.ca),
                      cert=(str(stranger.cert_path), str(stranger.key_path)), timeout=10)  # fmt: skip


def test_provider_mutation_mode_pins_digests(server: Server, images: SampleImages) -> None:
    out = provider_call(server, [images.signed, images.unsigned], path="/provider/mutate").json()["response"]
    items = {item["key"]: item for item in out["items"]}
    assert items[images.signed]["value"] == f"{images.signed}@{images.signed_digest}"
    assert "no Notation signature found" in items[images.unsigned]["error"]


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        ({"kind": "ProviderRequest", "apiVersion": "v9", "request": {"keys": []}}, "unsupported apiVersion"),
        ({"kind": "AdmissionReview"}, "expected a ProviderRequest"),
        ({"kind": "ProviderRequest", "apiVersion": GK_API, "request": {"keys": [1]}}, "keys must be a list"),
    ],
)  # fmt: skip
def test_provider_bad_requests(server: Server, body: dict[str, Any], phrase: str) -> None:
    clients = server.ca.parent / "clients"
    resp = requests.post(f"{server.url}/provider", json=body, verify=str(server.ca), timeout=10,
                         cert=(str(clients / "client.crt"), str(clients / "client.key")))  # fmt: skip
    assert resp.status_code == 400 and phrase in resp.json()["error"]


# --- Gatekeeper's own engine against this server (tests/conformance/gkharness) --------------------

VERIFIED = ROOT_DIR / "policies" / "referee-verified-images"
PINNED = ROOT_DIR / "policies" / "referee-pinned-images"


def gatekeeper(
    server: Server,
    obj: dict[str, Any],
    tmp: Path,
    *,
    template: Path = VERIFIED / "template.yaml",
    constraint: Path = VERIFIED / "samples" / "constraint.yaml",
    namespace: str = "team-a",
) -> dict[str, Any]:
    """Review ``obj`` with Gatekeeper's engine (v3.23.1), its external data calling this server over mTLS."""
    obj_file = tmp / f"object-{time.monotonic_ns()}.yaml"
    obj_file.write_text(json.dumps(obj))
    clients = server.ca.parent / "clients"
    proc = subprocess.run(
        [tool("gkharness"), "-template", str(template), "-constraint", str(constraint),
         "-object", str(obj_file), "-namespace", namespace, "-provider-name", "referee",
         "-provider-url", f"{server.url}/provider",
         "-provider-ca", str(server.ca), "-client-cert", str(clients / "client.crt"),
         "-client-key", str(clients / "client.key"), "-timeout", "3"],
        capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    assert result["errors"] == "", result
    return result


def k8s_pod(*images: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}, **pod(*images)}


def test_gatekeeper_admits_a_signed_pod(server: Server, images: SampleImages, tmp_path: Path) -> None:
    assert gatekeeper(server, k8s_pod(images.signed), tmp_path)["violations"] == []


def test_gatekeeper_denies_an_unsigned_pod_with_referees_reason(
    server: Server, images: SampleImages, tmp_path: Path
) -> None:
    [violation] = gatekeeper(server, k8s_pod(images.signed, images.unsigned), tmp_path)["violations"]
    assert violation["constraint"] == "signed-images-only" and violation["enforcementAction"] == "deny"
    assert violation["msg"].startswith(
        f"referee: image {images.unsigned} ({images.unsigned_digest}): no Notation signature found"
    )
    print(f"\nGatekeeper's denial: [{violation['constraint']}] {violation['msg']}")


def test_gatekeeper_checks_workload_templates(server: Server, images: SampleImages, tmp_path: Path) -> None:
    spec = pod(images.signed, init=(images.tampered,))["spec"]
    template = {"metadata": {"labels": {"app": "web"}}, "spec": spec}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                  "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template}}  # fmt: skip
    [violation] = gatekeeper(server, deployment, tmp_path)["violations"]
    assert images.tampered in violation["msg"] and "integrity" in violation["msg"]


def test_gatekeeper_signer_filter_and_exemptions(
    server: Server, images: SampleImages, tmp_path: Path
) -> None:
    constraint = yaml.safe_load((VERIFIED / "samples" / "constraint.yaml").read_text())
    constraint["spec"]["parameters"] = {
        "allowedSigners": ["CN=release,*"],
        "exemptImages": [f"{images.unsigned}"],
    }
    path = tmp_path / "constraint.yaml"
    path.write_text(yaml.safe_dump(constraint))
    [violation] = gatekeeper(server, k8s_pod(images.signed, images.unsigned), tmp_path, constraint=path)[
        "violations"
    ]
    assert "not by a signer this constraint allows" in violation["msg"] and images.signed in violation["msg"]


def test_gatekeeper_reports_a_registry_that_is_down(server: Server, tmp_path: Path) -> None:
    gone = f"127.0.0.1:{free_port()}/gone/app:v1"
    messages = sorted(v["msg"] for v in gatekeeper(server, k8s_pod(gone), tmp_path)["violations"])
    # Both the request-level system error and the image's own error are reported.
    assert len(messages) == 2
    assert messages[0].startswith("referee could not verify the images: ")
    assert messages[1].startswith(f"referee: image {gone}: could not check")


def test_gatekeeper_pinned_images_template(server: Server, images: SampleImages, tmp_path: Path) -> None:
    rules = {"template": PINNED / "template.yaml", "constraint": PINNED / "samples" / "constraint.yaml"}
    pinned = gatekeeper(server, k8s_pod(f"{images.signed}@{images.signed_digest}"), tmp_path, **rules)
    assert pinned["violations"] == []
    loose = gatekeeper(server, k8s_pod(images.signed), tmp_path, **rules)
    assert "not pinned by digest" in loose["violations"][0]["msg"]

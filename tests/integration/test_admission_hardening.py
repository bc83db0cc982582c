"""Ways to slip an image past Referee, each tried against `referee serve` over TLS (or, for the
caches, against the gate the server runs) with real registries, and each refused."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

import pytest
import requests

from tests.helpers import pki
from tests.helpers.artifacts import push_image
from tests.helpers.fake_registry import FakeHandler, FakeRegistry, fake_registry
from tests.helpers.registries import RunningRegistry, distribution
from tests.helpers.samples import SampleImages, sample_images
from tests.helpers.slow_clients_fake import trickling_clients_fake
from tests.helpers.tools import free_port
from tests.integration.test_webhook import Server, pod, start_server
from webhook.config import parse_config
from webhook.deadline import Deadline
from webhook.registry.credentials import Keyring
from webhook.server.app import build_gate

GK_API = "externaldata.gatekeeper.sh/v1beta1"


def review_of(*images: str) -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "uid-1", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": "team-a",
        "operation": "CREATE", "object": pod(*images)}}  # fmt: skip


@pytest.fixture(scope="module")
def images(olareg: RunningRegistry, tmp_path_factory: pytest.TempPathFactory) -> SampleImages:
    return sample_images(olareg, tmp_path_factory.mktemp("hardening-images"), "hard")


@pytest.fixture(scope="module")
def quiet_registry() -> Iterator[FakeRegistry]:
    """Records every request; answers none (fake: it only has to show it was never asked)."""
    with fake_registry() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(
    olareg: RunningRegistry,
    images: SampleImages,
    quiet_registry: FakeRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    extra = "exemptImages: ['*.example.internal/platform/*']\n"
    yield from start_server(
        tmp_path_factory.mktemp("hardening"), olareg, images.policy, images.store,
        plain_hosts=(quiet_registry.host,), extra=extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def audit_server(
    olareg: RunningRegistry, images: SampleImages, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    yield from start_server(
        tmp_path_factory.mktemp("hardening-audit"),
        olareg,
        images.policy,
        images.store,
        env={"REFEREE_MODE": "audit"},
    )


@pytest.fixture(scope="module")
def hardened(
    olareg: RunningRegistry,
    images: SampleImages,
    quiet_registry: FakeRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """The README's hardened example: the API server's certificate required, registries listed,
    digests required, and no own namespace known (none exempt)."""
    work = tmp_path_factory.mktemp("hardened")
    (work / "apiserver").mkdir()
    api_ca = pki.make_ca(work / "apiserver", "API Server Client CA")
    pki.make_client_cert(work / "apiserver", api_ca)
    yield from start_server(
        work, olareg, images.policy, images.store, plain_hosts=(quiet_registry.host,),
        extra=f"allowedRegistries: ['{olareg.host}']\nrequireDigest: true\n",
        env={"POD_NAMESPACE": ""}, admission_ca=api_ca.cert_path,
    )  # fmt: skip


def post(server: Server, path: str, body: Any, *, cert: tuple[str, str] | None = None) -> requests.Response:
    return requests.post(f"{server.url}{path}", json=body, verify=str(server.ca), cert=cert, timeout=30)


def review(obj: dict[str, Any], *, operation: str = "CREATE", old: dict[str, Any] | None = None,
           namespace: str = "team-a", kind: str = "Pod") -> dict[str, Any]:  # fmt: skip
    group = {"ReplicaSet": "apps", "Deployment": "apps"}.get(kind, "")
    request: dict[str, Any] = {"uid": "uid-h", "kind": {"group": group, "version": "v1", "kind": kind},
                               "namespace": namespace, "operation": operation, "object": obj}  # fmt: skip
    if old is not None:
        request["oldObject"] = old
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def api_server_cert(server: Server) -> tuple[str, str]:
    folder = server.ca.parent / "apiserver"
    return (str(folder / "client.crt"), str(folder / "client.key"))


# --- 1. every image is checked, or the request is denied -------------------------------------------


def test_unsigned_image_volume_behind_1024_empty_dirs_is_denied(server: Server, images: SampleImages) -> None:
    """Attack: the volume list was cut off after 1024 entries, so an unsigned image volume placed
    after 1024 emptyDir volumes was never looked at and the pod was admitted."""
    obj = pod(images.signed)
    obj["spec"]["volumes"] = [{"name": f"v{i}", "emptyDir": {}} for i in range(1024)]
    obj["spec"]["volumes"].append({"name": "evil", "image": {"reference": images.unsigned}})
    out = server.review(obj)
    assert out["allowed"] is False
    assert (
        images.unsigned in out["status"]["message"]
        and "no Notation signature found" in out["status"]["message"]
    )


def test_pod_with_more_containers_than_referee_checks_is_denied_not_errored(
    server: Server, images: SampleImages
) -> None:
    """Attack: a spec over a limit was answered HTTP 400, which failurePolicy Ignore admits."""
    out = server.review(pod(*[images.signed] * 257))
    assert out["allowed"] is False and "more than 256 entries" in out["status"]["message"]


def test_unreadable_review_in_audit_mode_is_admitted_with_a_warning(audit_server: Server) -> None:
    body = b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"a-1","kind":3}}'
    resp = requests.post(f"{audit_server.url}/validate", data=body, verify=str(audit_server.ca), timeout=10,
                         headers={"Content-Type": "application/json"})  # fmt: skip
    out = resp.json()["response"]
    assert resp.status_code == 200 and out["uid"] == "a-1" and out["allowed"] is True
    assert "not checked" in out["warnings"][0]


# --- 2. one canonical name per registry ------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningRegistry, Path]]:
    """CNCF Distribution over TLS on 127.0.0.1:443, so images can be written with and without the
    default port; its CA is trusted through SSL_CERT_FILE, as a system trust store would be."""
    work = tmp_path_factory.mktemp("tls-registry")
    ca = pki.make_ca(work)
    cert = pki.make_server_cert(work, ca)
    with distribution(
        work / "registry", tls=(cert.cert_path, cert.key_path, ca.cert_path), port=443
    ) as registry:
        push_image(registry, "apps/web", "v1", work / "image", content="unsigned web")
        yield registry, ca.cert_path


@pytest.mark.parametrize(
    "written", ["127.0.0.1:443/apps/web:v1", "LOCALHOST:443/apps/web:v1", "Localhost/apps/web:v1"]
)
def test_registry_respelled_is_judged_by_its_scoped_statement_not_the_weaker_global_one(
    tls_registry: tuple[RunningRegistry, Path], images: SampleImages, tmp_path: Path, written: str
) -> None:
    """Attack: `127.0.0.1:443/apps/web` and `LOCALHOST/apps/web` reach the registry that the strict
    statement scopes as `127.0.0.1/apps/web` and `localhost/apps/web`, but were compared as
    written, fell through to the `*` statement (level skip here) and were admitted unsigned."""
    registry, ca = tls_registry
    policy = {"version": "1.0", "trustPolicies": [
        {"name": "web", "registryScopes": ["127.0.0.1/apps/web", "localhost/apps/web"],
         "signatureVerification": {"level": "strict"}, "trustStores": ["ca:test"],
         "trustedIdentities": ["*"]},
        {"name": "rest", "registryScopes": ["*"], "signatureVerification": {"level": "skip"}}]}  # fmt: skip
    (tmp_path / "trustpolicy.json").write_text(json.dumps(policy))
    served = start_server(
        tmp_path, images.registry, tmp_path / "trustpolicy.json", images.store, env={"SSL_CERT_FILE": str(ca)}
    )
    server = next(served)
    try:
        out = server.review(pod(written))
        assert out["allowed"] is False, out
        assert "no Notation signature found" in out["status"]["message"]
        readyz = requests.get(f"{server.url}/readyz", verify=str(server.ca), timeout=5).json()
        assert "enforces less than 'web'" in readyz["trustWarnings"][0]
        assert registry.host == "127.0.0.1:443"
    finally:
        served.close()


def test_image_on_an_unlisted_registry_is_denied_without_contacting_it(
    hardened: Server, quiet_registry: FakeRegistry
) -> None:
    """A pod spec can no longer make Referee connect to a host the operator did not list."""
    before = len(quiet_registry.hits)
    image = f"{quiet_registry.host}/anything/here@sha256:{'a' * 64}"
    out = post(hardened, "/validate", review(pod(image)), cert=api_server_cert(hardened)).json()["response"]
    assert out["allowed"] is False and "not one of the allowed registries" in out["status"]["message"]
    assert len(quiet_registry.hits) == before


# --- 3. exemptions cannot reach another registry ---------------------------------------------------


def test_exemption_glob_cannot_stretch_to_another_registry(server: Server, olareg: RunningRegistry) -> None:
    """Attack: `*.example.internal/platform/*` was an fnmatch over the whole string, so its `*`
    crossed `/` and exempted an image of another registry whose path merely ends that way."""
    image = f"{olareg.host}/x.example.internal/platform/miner:1"
    out = server.review(pod(image))
    assert out["allowed"] is False and "exempt" not in out["status"]["message"]


# --- 4. Gatekeeper keys cannot be forged -----------------------------------------------------------


def provider(server: Server, keys: list[str], path: str = "/provider") -> dict[str, Any]:
    clients = server.ca.parent / "clients"
    body = {"apiVersion": GK_API, "kind": "ProviderRequest", "request": {"keys": keys}}
    resp = post(server, path, body, cert=(str(clients / "client.crt"), str(clients / "client.key")))
    assert resp.status_code == 200, resp.text
    return {item["key"]: item for item in resp.json()["response"]["items"]}


def test_gatekeeper_key_naming_an_exempt_namespace_is_still_verified(
    server: Server, images: SampleImages
) -> None:
    """Attack: a pod whose image is written `[kube-system]registry/evil:v1` reached /provider as that
    raw key, was read as namespace kube-system, and was answered exempt."""
    key = f"[sandbox]{images.unsigned}"  # sandbox is in exemptNamespaces
    items = provider(server, [key])
    assert "no Notation signature found" in items[key]["error"]


def test_assign_key_written_with_a_namespace_is_not_answered_with_the_bare_image(
    server: Server, images: SampleImages
) -> None:
    """Attack: /provider/mutate read `[kube-system]image` as exempt and answered the bare image,
    which Gatekeeper's Assign then wrote into the pod, unverified and unpinned."""
    key = f"[kube-system]{images.unsigned}"
    items = provider(server, [key], "/provider/mutate")
    assert "value" not in items[key] and "invalid image reference" in items[key]["error"]
    signed = provider(server, [images.signed], "/provider/mutate")[images.signed]
    assert signed["value"] == f"{images.signed}@{images.signed_digest}"


# --- 5. only the API server may ask ----------------------------------------------------------------


def test_forged_review_without_the_api_servers_certificate_is_refused(
    hardened: Server, images: SampleImages
) -> None:
    """Attack: anyone who reaches the Service POSTs an AdmissionReview naming another namespace (and
    with pull secrets on, has that namespace's Secrets used for them)."""
    pinned = f"{images.signed.removesuffix(':v1')}@{images.signed_digest}"
    body = review(pod(pinned), namespace="kube-system")
    bare = post(hardened, "/validate", body)
    assert bare.status_code == 403 and "client certificate" in bare.json()["error"]
    clients = hardened.ca.parent / "clients"  # Gatekeeper's certificate: another group's CA
    gatekeeper = post(
        hardened, "/validate", body, cert=(str(clients / "client.crt"), str(clients / "client.key"))
    )
    assert (
        gatekeeper.status_code == 403
        and "not issued by the CA configured for /validate" in gatekeeper.json()["error"]
    )
    assert post(hardened, "/mutate", body).status_code == 403
    ok = post(hardened, "/validate", body, cert=api_server_cert(hardened))
    assert ok.status_code == 200 and ok.json()["response"]["allowed"] is True


# --- 6. a verdict seen with one set of credentials is not served to another ------------------------


@pytest.fixture
def private_registry_fake(olareg: RunningRegistry) -> Iterator[FakeRegistry]:
    """A registry that answers 404 to callers without credentials (as registries that hide private
    repositories do) and relays to olareg for callers with them (fake: no real registry is
    configured to hide repositories like this)."""
    with fake_registry() as fake:
        realm = f"http://{fake.host}/token"

        def relay(h: FakeHandler) -> None:
            auth = h.headers.get("Authorization", "")
            if h.path.startswith("/token"):
                token = "user-token" if auth.startswith("Basic ") else "anonymous-token"
                h.reply(200, json.dumps({"token": token}).encode(), {"Content-Type": "application/json"})
            elif not auth.startswith("Bearer "):
                h.reply(401, b"", {"WWW-Authenticate": f'Bearer realm="{realm}",service="fake"'})
            elif auth != "Bearer user-token":
                h.reply(404, b'{"errors":[{"code":"NAME_UNKNOWN"}]}', {"Content-Type": "application/json"})
            else:
                upstream = Request(f"http://{olareg.host}{h.path}", method=h.command,
                                   headers={"Accept": h.headers.get("Accept", "*/*")})  # fmt: skip
                with urlopen(upstream, timeout=5) as resp:  # noqa: S310 (loopback)
                    body = resp.read()
                    headers = {
                        k: v
                        for k, v in resp.headers.items()
                        if k in ("Content-Type", "Docker-Content-Digest")
                    }
                    h.reply(resp.status, body, headers)

        fake.fallback = relay
        yield fake


def test_not_found_seen_without_credentials_is_not_served_to_a_pod_that_has_them(
    private_registry_fake: FakeRegistry, images: SampleImages, tmp_path: Path
) -> None:
    """Bug: the first pod without the pull secret got "not found", and that denial was cached for
    every pod, including the ones that have the pull secret."""
    host = private_registry_fake.host
    config = parse_config(
        {"trustPolicy": str(images.policy), "trustStore": str(images.store),
         "registries": {host: {"plainHTTP": True}}},
        base=tmp_path, environ={},
    )  # fmt: skip
    gate = build_gate(config)
    image = f"{host}/hard/signed@{images.signed_digest}"
    secret = base64.b64encode(b"user:pass").decode()
    keyring = Keyring.from_docker_config({"auths": {host: {"auth": secret}}})
    try:
        [without] = gate.decide([image], Deadline.after(10))
        assert not without.allowed and not without.inconclusive, without
        [again] = gate.decide([image], Deadline.after(10))
        assert again.cached and not again.allowed
        assert "Referee's answer from" in again.describe() and "checked again in" in again.describe()
        [with_secret] = gate.decide([image], Deadline.after(10), keyring)
        assert with_secret.allowed and not with_secret.cached, with_secret
        # An allow is a fact about the digest: it is shared (pulling stays the kubelet's business).
        assert gate.decide([image], Deadline.after(10))[0].allowed
    finally:
        gate.close()


def test_private_tag_resolved_with_a_pull_secret_is_not_served_to_a_pod_without_it(
    private_registry_fake: FakeRegistry, images: SampleImages, tmp_path: Path
) -> None:
    """Attack: a pod in a namespace without the pull secret names a private tag right after a pod
    that has the secret did. The tag's digest, learnt with the other pod's credentials, was served
    from the tag cache (shared by everyone), so the pod was admitted and /mutate would pin the
    private digest into its spec; without credentials the registry answers "not found"."""
    host = private_registry_fake.host
    config = parse_config(
        {"trustPolicy": str(images.policy), "trustStore": str(images.store),
         "registries": {host: {"plainHTTP": True}}},
        base=tmp_path, environ={},
    )  # fmt: skip
    gate = build_gate(config)
    image = f"{host}/hard/signed:v1"
    secret = base64.b64encode(b"user:pass").decode()
    keyring = Keyring.from_docker_config({"auths": {host: {"auth": secret}}})
    try:
        [with_secret] = gate.decide([image], Deadline.after(10), keyring)
        assert with_secret.allowed and with_secret.digest == images.signed_digest, with_secret
        [without] = gate.decide([image], Deadline.after(10))
        assert not without.allowed, without
        assert without.digest != images.signed_digest
    finally:
        gate.close()


def test_denial_is_checked_again_after_the_denied_ttl(
    server: Server, images: SampleImages, tmp_path: Path
) -> None:
    """A user who signs an image after a denial is admitted on the next try, not minutes later."""
    config = parse_config(
        {"trustPolicy": str(images.policy), "trustStore": str(images.store), "cache": {"deniedTTLSeconds": 1},
         "registries": {images.registry.host: {"plainHTTP": True}}}, base=tmp_path, environ={},
    )  # fmt: skip
    gate = build_gate(config)
    try:
        assert not gate.decide([images.unsigned], Deadline.after(10))[0].allowed
        assert gate.decide([images.unsigned], Deadline.after(10))[0].cached
        time.sleep(1.2)
        runs = gate.verifications
        assert not gate.decide([images.unsigned], Deadline.after(10))[0].cached
        assert gate.verifications == runs + 1
    finally:
        gate.close()


# --- 7. smaller holes ------------------------------------------------------------------------------


def test_tag_is_denied_when_digests_are_required(hardened: Server, images: SampleImages) -> None:
    """A tag checked at one moment and pulled at another may name other bytes: with requireDigest
    only pinned images are admitted (the mutating webhook pins first)."""
    cert = api_server_cert(hardened)
    tagged = post(hardened, "/validate", review(pod(images.signed)), cert=cert).json()["response"]
    assert tagged["allowed"] is False and "requireDigest" in tagged["status"]["message"]
    pinned = f"{images.signed}@{images.signed_digest}"
    assert post(hardened, "/validate", review(pod(pinned)), cert=cert).json()["response"]["allowed"] is True


def test_metadata_update_with_unchanged_images_needs_no_registry(
    server: Server, images: SampleImages
) -> None:
    """Bug: a label edit or finalizer removal on a pod whose registry is down was refused, and
    /mutate re-pinned unchanged images (restarting their containers)."""
    gone = f"127.0.0.1:{free_port()}/gone/app:v1"
    old = pod(gone, images.signed)
    new = json.loads(json.dumps(old))
    new["metadata"]["labels"] = {"edited": "yes"}
    out = post(server, "/validate", review(new, operation="UPDATE", old=old)).json()["response"]
    assert out["allowed"] is True, out
    mutated = post(server, "/mutate", review(new, operation="UPDATE", old=old)).json()["response"]
    assert "patch" not in mutated
    changed = json.loads(json.dumps(new))
    changed["spec"]["containers"][1]["image"] = images.unsigned
    denied = post(server, "/validate", review(changed, operation="UPDATE", old=old)).json()["response"]
    assert denied["allowed"] is False and images.unsigned in denied["status"]["message"]
    assert gone not in denied["status"]["message"]


def test_replicaset_of_a_deployment_is_not_pinned_so_its_controller_makes_no_other(
    server: Server, images: SampleImages
) -> None:
    """Wedge: /mutate pinned the template of a ReplicaSet the Deployment controller created from a
    tag-only template; the ReplicaSet then no longer matched its Deployment's template, and the
    controller created another one, and another. An object a controller owns (ReplicaSet, Pod) is
    left as its owner wrote it; a kind outside mutateKinds (a bare ReplicaSet) is not pinned either.
    The validating webhook still checks them."""
    owner = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "u-1", "controller": True}
    template = {"spec": {"containers": [{"name": "c0", "image": images.signed}]}}
    owned = {"metadata": {"name": "web-5d8f", "ownerReferences": [owner]}, "spec": {"template": template}}
    out = post(server, "/mutate", review(owned, kind="ReplicaSet")).json()["response"]
    assert out["allowed"] is True and "patch" not in out
    bare = {"metadata": {"name": "web-bare"}, "spec": {"template": template}}
    assert "patch" not in post(server, "/mutate", review(bare, kind="ReplicaSet")).json()["response"]
    owned_pod = {**pod(images.signed), "metadata": {"name": "web-5d8f-x", "ownerReferences": [owner]}}
    assert "patch" not in post(server, "/mutate", review(owned_pod)).json()["response"]
    # A non-controller owner does not count, and the Deployment itself is pinned.
    helper = {**owner, "controller": False}
    adopted = {**pod(images.signed), "metadata": {"name": "web-x", "ownerReferences": [helper]}}
    assert "patch" in post(server, "/mutate", review(adopted)).json()["response"]
    deployment = {"metadata": {"name": "web"}, "spec": {"template": template}}
    assert "patch" in post(server, "/mutate", review(deployment, kind="Deployment")).json()["response"]
    unsigned = {**pod(images.unsigned), "metadata": owned_pod["metadata"]}
    assert post(server, "/validate", review(unsigned)).json()["response"]["allowed"] is False


def test_own_namespace_is_not_exempt_when_referee_does_not_know_it(
    hardened: Server, images: SampleImages
) -> None:
    """Bug: `referee-system` was exempt wherever Referee ran; without POD_NAMESPACE (or the key)
    no namespace is Referee's own."""
    out = post(hardened, "/validate", review(pod(images.unsigned), namespace="referee-system"),
               cert=api_server_cert(hardened)).json()["response"]  # fmt: skip
    assert out["allowed"] is False


def test_start_up_log_names_the_exempt_namespace(server: Server, hardened: Server) -> None:
    assert "Referee's own namespace referee-system is exempt" in server.log.read_text()
    assert "none is exempt" in hardened.log.read_text()


def test_review_naming_an_image_twice_in_one_container_is_denied(
    server: Server, images: SampleImages
) -> None:
    """JSON parsers disagree on which of two equal member names wins: a review that names an unsigned
    image and then a signed one in the same container was judged by the signed one."""
    body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "dup-1", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": "team-a",
        "operation": "CREATE", "object": pod(images.signed)}})  # fmt: skip
    twice = body.replace(
        f'"image": "{images.signed}"', f'"image": "{images.unsigned}", "image": "{images.signed}"'
    )
    assert twice != body
    resp = requests.post(f"{server.url}/validate", data=twice.encode(), verify=str(server.ca), timeout=30,
                         headers={"Content-Type": "application/json"})  # fmt: skip
    out = resp.json()["response"]
    assert out["allowed"] is False and out["uid"] == "dup-1"
    assert "duplicate member 'image'" in out["status"]["message"]


def test_500_trickling_clients_do_not_delay_an_admission_fake(server: Server, images: SampleImages) -> None:
    """gthread gave each connection a thread that read the request at the client's pace: twenty such
    clients held every thread of the chart's defaults, and the API server's reviews waited."""
    session = requests.Session()

    def admit() -> float:
        started = time.monotonic()
        resp = session.post(
            f"{server.url}/validate", json=review_of(images.signed), verify=str(server.ca), timeout=5
        )
        assert resp.json()["response"]["allowed"] is True
        return time.monotonic() - started

    admit()  # the verdict is cached from here on, in the worker this connection reaches
    normal = sorted(admit() for _ in range(10))[5]
    port = int(server.url.rsplit(":", 1)[1])
    with trickling_clients_fake(port, server.ca, 500, every_s=0.5, for_s=20):
        loaded = sorted(admit() for _ in range(10))
    assert loaded[5] < normal + 0.25, (loaded, normal)
    assert loaded[-1] < 1.0, loaded


def test_a_client_that_never_finishes_its_request_is_closed_after_the_read_timeout_fake(
    server: Server,
) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    with trickling_clients_fake(port, server.ca, 1, every_s=0.5, for_s=20) as [conn]:
        conn.settimeout(10)
        started = time.monotonic()
        assert conn.recv(1) == b""  # closed by Referee, not answered
        assert time.monotonic() - started < 7

"""The end-to-end environment, built once per session: a real control plane (etcd + kube-apiserver), a
real registry holding images signed by the real notation, an auth-protected registry, and Referee
registered with the API server as a validating and mutating webhook by URL."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e import referee as ref
from tests.helpers import pki, registries
from tests.helpers.artifacts import Notation, attach, push_image
from tests.helpers.cluster import Cluster, cluster_kind, control_plane, existing_cluster
from tests.helpers.codesign import install_notation_key, make_chain, write_trust_policy, write_trust_store
from tests.helpers.registries import RunningRegistry
from tests.helpers.tools import free_port, run, tool

NOTARY = "application/vnd.cncf.notary.signature"
REFEREE_NAMESPACE = "referee-system"
TIMEOUT_S = 5  # the webhooks' timeoutSeconds (Referee answers within it minus its margin)
AUTH_USER, AUTH_PASSWORD = "puller", "pull-secret-password"

# Namespaces of the suite. Namespaces carrying INSTANCE_LABEL go to the audit-mode Referee;
# OPT_OUT_LABEL takes a namespace out of every webhook's namespaceSelector.
APPS, EXEMPT, OPTED_OUT, AUDITED = "team-a", "e2e-exempt", "e2e-opted-out", "e2e-audited"
INSTANCE_LABEL = "e2e.referee.dev/instance"
OPT_OUT_LABEL = "referee.dev/ignore"


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


@dataclass(frozen=True)
class Images:
    signed: str
    signed_digest: str
    unsigned: str
    unsigned_digest: str
    tampered: str
    policy: Path
    store: Path
    notation: Notation


@pytest.fixture(scope="session")
def images(olareg: RunningRegistry, tmp_path_factory: pytest.TempPathFactory) -> Images:
    """A signed, an unsigned and a tampered image in olareg; the trust policy and store that trust
    the signer."""
    work = tmp_path_factory.mktemp("e2e-images")
    chain = make_chain()
    notation = Notation(work / "home")
    install_notation_key(notation.home, "e2e", chain)
    signed = push_image(olareg, "e2e/signed", "v1", work / "a", content="e2e signed")
    notation.sign(olareg, f"{olareg.host}/e2e/signed@{signed}")
    unsigned = push_image(olareg, "e2e/unsigned", "v1", work / "b", content="e2e unsigned")
    tampered = push_image(olareg, "e2e/tampered", "v1", work / "c", content="e2e tampered")
    attach(olareg, f"{olareg.host}/e2e/tampered@{tampered}", NOTARY, work / "c", name="e.jws",
           content='{"payload":"e30","protected":"e30","header":{"x5c":[]},"signature":"AA"}')  # fmt: skip
    store = work / "truststore"
    write_trust_store(store, "ca", "test", chain.root)
    policy = write_trust_policy(work / "trustpolicy.json")
    return Images(
        signed=f"{olareg.host}/e2e/signed:v1",
        signed_digest=signed,
        unsigned=f"{olareg.host}/e2e/unsigned:v1",
        unsigned_digest=unsigned,
        tampered=f"{olareg.host}/e2e/tampered:v1",
        policy=policy,
        store=store,
        notation=notation,
    )


@dataclass(frozen=True)
class AuthImages:
    """Signed images in a registry that answers only with credentials; one repository per test, so
    no verdict one test caches can admit another test's pod."""

    registry: RunningRegistry
    by_pod_secret: str
    by_account_secret: str
    without_secret: str


@pytest.fixture(scope="session")
def auth_images(images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthImages]:
    work = tmp_path_factory.mktemp("e2e-auth")
    ca = pki.make_ca(work)
    server = pki.make_server_cert(work, ca)
    htpasswd = work / "htpasswd"
    htpasswd.write_text(run([tool("htpasswd"), "-Bbn", AUTH_USER, AUTH_PASSWORD]).stdout)
    with registries.distribution(
        work / "registry",
        tls=(server.cert_path, server.key_path, ca.cert_path),
        auth_yaml=f"auth:\n  htpasswd:\n    realm: e2e\n    path: {htpasswd}\n",
        username=AUTH_USER,
        password=AUTH_PASSWORD,
    ) as reg:
        refs = []
        for repo in ("private/pod-secret", "private/account-secret", "private/no-secret"):
            digest = push_image(reg, repo, "v1", work / repo, content=repo)
            images.notation.sign(
                reg, f"{reg.host}/{repo}@{digest}", "--username", AUTH_USER, "--password", AUTH_PASSWORD
            )
            refs.append(f"{reg.host}/{repo}:v1")
        yield AuthImages(reg, *refs)


def _config(
    path: Path,
    *,
    port: int,
    images: Images,
    olareg: RunningRegistry,
    auth: AuthImages,
    server_cert: pki.KeyPair,
    mode: str,
    kubeconfig: Path | None,
) -> Path:
    kubernetes = (
        f"kubernetes: {{pullSecrets: true, kubeconfig: {kubeconfig}, cacheTTLSeconds: 30}}\n"
        if kubeconfig
        else ""
    )
    path.write_text(
        f"listen: 127.0.0.1:{port}\n"
        f"mode: {mode}\n"
        f"namespace: {REFEREE_NAMESPACE}\n"
        f"trustPolicy: {images.policy}\ntrustStore: {images.store}\n"
        f"exemptNamespaces: [kube-system, {EXEMPT}]\n"
        "registries:\n"
        f"  '{olareg.host}': {{plainHTTP: true}}\n"
        f"  '{auth.registry.host}': {{caFile: {auth.registry.ca_file}}}\n"
        f"tls: {{certFile: {server_cert.cert_path}, keyFile: {server_cert.key_path}}}\n"
        f"timeouts: {{admissionSeconds: {TIMEOUT_S}, marginSeconds: 1}}\n"
        "server: {workers: 2, threads: 4}\n"
        "mutate: true\n"
        f"{kubernetes}"
    )
    return path


def _referee_account(cluster: Cluster, work: Path) -> Path:
    """Referee's service account with only what pull secrets need, and a kubeconfig with its token."""
    cluster.create_namespace(REFEREE_NAMESPACE)
    rbac = "rbac.authorization.k8s.io/v1"
    cluster.apply(
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": "referee", "namespace": REFEREE_NAMESPACE}},
        {"apiVersion": rbac, "kind": "ClusterRole", "metadata": {"name": "referee-pull-secrets"},
         "rules": [{"apiGroups": [""], "resources": ["secrets", "serviceaccounts"], "verbs": ["get"]}]},
        {"apiVersion": rbac, "kind": "ClusterRoleBinding", "metadata": {"name": "referee-pull-secrets"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "referee-pull-secrets"},
         "subjects": [{"kind": "ServiceAccount", "name": "referee", "namespace": REFEREE_NAMESPACE}]},
    )  # fmt: skip
    return cluster.kubeconfig_for_token(
        work / "referee.kubeconfig", cluster.token("referee", REFEREE_NAMESPACE)
    )


@dataclass(frozen=True)
class Deployment:
    """Referee as installed for the suite: the enforcing instance (with mutation and pull secrets)
    and an audit-mode instance for the namespaces labelled for it."""

    cluster: Cluster
    images: Images
    auth: AuthImages
    enforcing: ref.RunningReferee
    audit: ref.RunningReferee


@pytest.fixture(scope="session")
def referee(
    cluster: Cluster,
    images: Images,
    auth_images: AuthImages,
    olareg: RunningRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    work = tmp_path_factory.mktemp("e2e-referee")
    ca = pki.make_ca(work)
    cert = pki.make_server_cert(work, ca)
    kubeconfig = _referee_account(cluster, work)
    with contextlib.ExitStack() as stack:
        running = {}
        for mode, token_kubeconfig in (("enforce", kubeconfig), ("audit", None)):
            (work / mode).mkdir()
            port = free_port()
            config = _config(
                work / mode / "config.yaml", port=port, images=images, olareg=olareg, auth=auth_images,
                server_cert=cert, mode=mode, kubeconfig=token_kubeconfig,
            )  # fmt: skip
            running[mode] = stack.enter_context(ref.serve(config, f"https://127.0.0.1:{port}", ca.cert_path))
        not_opted_out = {"key": OPT_OUT_LABEL, "operator": "NotIn", "values": ["true"]}
        cluster.apply(
            *ref.webhook_configurations(
                "referee", running["enforce"].url, ca.cert_path, timeout_s=TIMEOUT_S, mutate=True,
                namespace_selector={"matchExpressions": [
                    not_opted_out, {"key": INSTANCE_LABEL, "operator": "DoesNotExist"},
                    {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                     "values": [REFEREE_NAMESPACE]}]},
            ),
            *ref.webhook_configurations(
                "referee-audit", running["audit"].url, ca.cert_path, timeout_s=TIMEOUT_S, mutate=False,
                namespace_selector={"matchExpressions": [
                    not_opted_out, {"key": INSTANCE_LABEL, "operator": "In", "values": ["audit"]}]},
            ),
        )  # fmt: skip
        for name, labels in ((APPS, {}), (EXEMPT, {}), (OPTED_OUT, {OPT_OUT_LABEL: "true"}),
                             (AUDITED, {INSTANCE_LABEL: "audit"})):  # fmt: skip
            cluster.create_namespace(name, labels)
        yield Deployment(cluster, images, auth_images, running["enforce"], running["audit"])

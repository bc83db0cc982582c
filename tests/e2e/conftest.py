"""The end-to-end environment, built once per session: a real control plane (etcd + kube-apiserver), a
real registry holding images signed by the real notation, an auth-protected registry, and Referee
installed from its Helm chart with its webhooks calling a locally served Referee by URL."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import referee as ref
from tests.helpers import pki, registries
from tests.helpers.artifacts import push_image
from tests.helpers.cluster import Cluster, cluster_kind, control_plane, existing_cluster
from tests.helpers.fake_registry import FakeRegistry, fake_registry
from tests.helpers.registries import RunningRegistry
from tests.helpers.samples import SampleImages, sample_images
from tests.helpers.tools import free_port, run, tool

NOTARY = "application/vnd.cncf.notary.signature"
REFEREE_NAMESPACE = "referee-system"
TIMEOUT_S = 5  # the webhooks' timeoutSeconds (Referee answers within it minus its margin)
AUTH_USER, AUTH_PASSWORD = "puller", "pull-secret-password"
API_SERVER_CLIENT_CN = "kube-apiserver-webhook-client"  # scripts/cluster.sh issues it

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


@pytest.fixture(scope="session")
def images(olareg: RunningRegistry, tmp_path_factory: pytest.TempPathFactory) -> SampleImages:
    """A signed, an unsigned and a tampered image in olareg; the trust policy and store that trust
    the signer."""
    return sample_images(olareg, tmp_path_factory.mktemp("e2e-images"), "e2e")


@dataclass(frozen=True)
class AuthImages:
    """Signed images in a registry that answers only with credentials; one repository per test, so
    no verdict one test caches can admit another test's pod."""

    registry: RunningRegistry
    by_pod_secret: str
    by_account_secret: str
    without_secret: str
    by_namespace_secret: str  # asked about through Gatekeeper's external data, [namespace]image
    asked_by_forgery: str  # named in forged AdmissionReviews (tests/e2e/test_callers.py)


@pytest.fixture(scope="session")
def auth_images(images: SampleImages, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthImages]:
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
        repos = ("private/pod-secret", "private/account-secret", "private/no-secret", "private/provider",
                 "private/forged")  # fmt: skip
        for repo in repos:
            digest = push_image(reg, repo, "v1", work / repo, content=repo)
            images.notation.sign(
                reg, f"{reg.host}/{repo}@{digest}", "--username", AUTH_USER, "--password", AUTH_PASSWORD
            )
            refs.append(f"{reg.host}/{repo}:v1")
        yield AuthImages(reg, *refs)


@pytest.fixture(scope="session")
def stalled_registry() -> Iterator[FakeRegistry]:
    """A registry that never answers within the webhook's timeout (an in-process fake: no real
    registry can be made that slow on purpose)."""
    with fake_registry() as fake:
        for method in ("HEAD", "GET"):
            fake.route(method, "/v2/stalled/app/manifests/v1", lambda handler: time.sleep(TIMEOUT_S + 3))
        yield fake


@dataclass(frozen=True)
class Callers:
    """Who may call the suite's Referee releases: the API server (its webhook client certificate,
    issued by the cluster's webhook-client CA) on /validate and /mutate, and the holder of a
    certificate from ``provider_ca`` (Gatekeeper's role) on /provider."""

    tls_values: Mapping[str, Any]  # the chart's tls values that say so
    provider_client: tuple[Path, Path]  # a certificate provider_ca issued, and its key
    authenticated_api_server: bool  # False on a cluster whose API server presents no certificate


def _callers(cluster: Cluster, work: Path) -> Callers:
    work.mkdir(parents=True, exist_ok=True)
    provider_ca = pki.make_ca(work, "E2E Provider Client CA")
    client = pki.make_client_cert(work, provider_ca)
    tls: dict[str, Any] = {"clientCA": provider_ca.cert_path.read_text()}
    if cluster.webhook_client_ca is not None:
        tls["admissionClientCA"] = cluster.webhook_client_ca.read_text()
        tls["admissionClientNames"] = [API_SERVER_CLIENT_CN]
    return Callers(tls, (client.cert_path, client.key_path), cluster.webhook_client_ca is not None)


def _values(
    mode: str,
    url: str,
    mount_root: Path,
    *,
    images: SampleImages,
    registries: Mapping[str, Mapping[str, Any]],
    callers: Callers,
) -> dict[str, Any]:
    """The chart's values for one Referee release, as a user would write them. Where the API server
    presents no client certificate (kind), pull secrets are read for unauthenticated callers."""
    enforcing = mode == "enforce"
    pull_secrets: dict[str, Any] = {"enabled": enforcing}
    if enforcing and not callers.authenticated_api_server:
        pull_secrets["trustUnauthenticatedCallers"] = True
    return {
        "mode": mode,
        "mountRoot": str(mount_root),
        "exemptNamespaces": [EXEMPT],
        "registries": dict(registries),
        "trustPolicy": {"document": json.loads(images.policy.read_text())},
        "trustStore": {"certificates": {"ca": {"test": images.root_pem}}},
        "pullSecrets": pull_secrets,
        "tls": dict(callers.tls_values),
        "mutation": {"enabled": enforcing},
        "server": {"workers": 2, "threads": 4},
        "webhook": {"timeoutSeconds": TIMEOUT_S, "url": url, "optOutLabel": OPT_OUT_LABEL},
    }


def _route(objects: list[dict[str, Any]], instance: str | None) -> None:
    """Several releases share the cluster: namespaces labelled INSTANCE_LABEL=<instance> go to that
    release, unlabelled ones to the main one (one more namespaceSelector expression each)."""
    expression = (
        {"key": INSTANCE_LABEL, "operator": "In", "values": [instance]}
        if instance
        else {"key": INSTANCE_LABEL, "operator": "DoesNotExist"}
    )
    for obj in objects:
        if obj["kind"] in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
            for hook in obj["webhooks"]:
                hook["namespaceSelector"]["matchExpressions"].append(expression)


@dataclass(frozen=True)
class Installed:
    """Referee as installed for the suite: the enforcing release (with mutation and pull secrets)
    and an audit-mode release for the namespaces labelled for it."""

    cluster: Cluster
    images: SampleImages
    auth: AuthImages
    stalled_image: str  # in a registry that does not answer in time
    enforcing: ref.RunningReferee
    audit: ref.RunningReferee
    registries: Mapping[str, Mapping[str, Any]]
    callers: Callers
    work: Path

    def values(
        self, release: str, *, mode: str, url: str, registries: Mapping[str, Mapping[str, Any]] | None = None
    ) -> dict[str, Any]:
        """The suite's chart values for one more release, served at ``url``."""
        return _values(
            mode, url, self.work / release / "mnt", images=self.images,
            registries=self.registries if registries is None else registries, callers=self.callers,
        )  # fmt: skip

    def render_values(
        self, release: str, values: Mapping[str, Any], *, instance: str | None
    ) -> list[dict[str, Any]]:
        """The chart's objects for ``values``, for the namespaces labelled for ``instance``."""
        objects = ref.render(release, REFEREE_NAMESPACE, values, self.work / release)
        _route(objects, instance)
        return objects

    def render(self, release: str, *, mode: str, instance: str | None, url: str) -> list[dict[str, Any]]:
        """The chart's objects for one more release, for the namespaces labelled for ``instance``."""
        return self.render_values(release, self.values(release, mode=mode, url=url), instance=instance)


@pytest.fixture(scope="session")
def referee(
    cluster: Cluster,
    images: SampleImages,
    auth_images: AuthImages,
    stalled_registry: FakeRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Installed]:
    """``helm template`` + ``kubectl apply`` of two releases of the chart, each served locally."""
    work = tmp_path_factory.mktemp("e2e-referee")
    # Where the API server reaches the locally served Referee: loopback for the local control plane;
    # for kind, an address of this host on the kind network (scripts/e2e-kind.sh sets it).
    host = os.environ.get("REFEREE_E2E_WEBHOOK_HOST", "127.0.0.1")
    assert auth_images.registry.ca_file is not None
    registries: dict[str, dict[str, Any]] = {
        images.registry.host: {"plainHTTP": True},
        stalled_registry.host: {"plainHTTP": True},
        auth_images.registry.host: {"caCert": auth_images.registry.ca_file.read_text()},
    }
    callers = _callers(cluster, work / "callers")
    cluster.create_namespace(REFEREE_NAMESPACE)
    with contextlib.ExitStack() as stack:
        running: dict[str, ref.RunningReferee] = {}
        for release, mode in (("referee", "enforce"), ("referee-audit", "audit")):
            port = free_port()
            listen = f"{host}:{port}"
            values = _values(
                mode, f"https://{listen}", work / release / "mnt", images=images, registries=registries,
                callers=callers,
            )  # fmt: skip
            objects = ref.render(release, REFEREE_NAMESPACE, values, work / release)
            _route(objects, "audit" if mode == "audit" else None)
            cluster.apply(*objects)
            running[mode] = stack.enter_context(ref.run_locally(cluster, objects, listen, work / release))
        for name, labels in ((APPS, {}), (EXEMPT, {}), (OPTED_OUT, {OPT_OUT_LABEL: "true"}),
                             (AUDITED, {INSTANCE_LABEL: "audit"})):  # fmt: skip
            cluster.create_namespace(name, labels)
        yield Installed(
            cluster=cluster,
            images=images,
            auth=auth_images,
            stalled_image=f"{stalled_registry.host}/stalled/app:v1",
            enforcing=running["enforce"],
            audit=running["audit"],
            registries=registries,
            callers=callers,
            work=work,
        )

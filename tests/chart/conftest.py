"""The chart's cases (each a values file, rendered once per session by the real `helm`), signed images
in a real registry, and a real kube-apiserver for this package's tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tests.helpers import pki
from tests.helpers.chart import Rendered, render, values_file
from tests.helpers.cluster import Cluster, control_plane
from tests.helpers.codesign import make_chain
from tests.helpers.gatekeeper import installed_crds
from tests.helpers.registries import RunningRegistry
from tests.helpers.samples import SampleImages, sample_images

TRUST_POLICY_DOC: dict[str, Any] = {
    "version": "1.0",
    "trustPolicies": [
        {
            "name": "all",
            "registryScopes": ["*"],
            "signatureVerification": {"level": "strict"},
            "trustStores": ["ca:test"],
            "trustedIdentities": ["*"],
        }
    ],
}

# Referee's own policy document, as a user writes it in values.
POLICY_DOC: dict[str, Any] = {
    "version": "1.0",
    "statements": [
        {
            "name": "release",
            "registryScopes": ["registry.example.com/team/app"],
            "minSigners": 2,
            "referrers": [{"artifactType": "application/spdx+json", "signed": True}],
        }
    ],
}


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture(scope="session")
def pem_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chart-pem")


@pytest.fixture(scope="session")
def trust_root_pem() -> str:
    return make_chain().root.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="session")
def base_values(trust_root_pem: str) -> dict[str, Any]:
    """A working install: a trust policy and its trust store, inline."""
    return {
        "trustPolicy": {"document": TRUST_POLICY_DOC},
        "trustStore": {"certificates": {"ca": {"test": trust_root_pem}}},
    }


@pytest.fixture(scope="session")
def cases(base_values: dict[str, Any], pem_dir: Path) -> dict[str, dict[str, Any]]:
    """Name -> values of every case the chart is rendered, linted and validated with."""
    user_ca = pki.make_ca(pem_dir, "Referee User CA")
    (pem_dir / "gatekeeper").mkdir(exist_ok=True)
    gatekeeper_ca = pki.make_ca(pem_dir / "gatekeeper", "Gatekeeper CA")
    user_ca_pem = user_ca.cert_path.read_text()
    (pem_dir / "apiserver").mkdir(exist_ok=True)
    apiserver_client_ca = pki.make_ca(pem_dir / "apiserver", "API Server Client CA").cert_path.read_text()
    return {
        "defaults": {},
        "selfSigned": base_values,
        "certManager": deep_merge(base_values, {"tls": {"mode": "certManager"}}),
        "certManagerIssuer": deep_merge(
            base_values,
            {
                "tls": {
                    "mode": "certManager",
                    "certManager": {"issuerRef": {"name": "corp", "kind": "ClusterIssuer"}},
                }
            },
        ),
        "secret": deep_merge(
            base_values, {"tls": {"mode": "secret", "secret": {"name": "my-tls", "caBundle": user_ca_pem}}}
        ),
        "mutation": deep_merge(base_values, {"mutation": {"enabled": True}}),
        "gatekeeper": deep_merge(
            base_values,
            {
                "tls": {"clientCA": gatekeeper_ca.cert_path.read_text()},
                "exemptNamespaces": ["sandbox", "kube-system"],
                "gatekeeper": {
                    "enabled": True,
                    "constraints": {"enabled": True},
                    "pinDigests": {"enabled": True},
                },
            },
        ),
        "networkPolicySources": deep_merge(
            base_values,
            {
                "gatekeeper": {"enabled": True},
                "networkPolicy": {
                    "apiServerCIDRs": ["10.0.0.0/28", "fd00::/64"],
                    "from": [
                        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
                    ],
                },
            },
        ),
        "url": deep_merge(
            base_values, {"webhook": {"url": "https://127.0.0.1:8443"}, "mutation": {"enabled": True}}
        ),
        "audit": deep_merge(base_values, {"mode": "audit", "webhook": {"failurePolicy": "Ignore"}}),
        "pullSecrets": deep_merge(
            base_values,
            {"pullSecrets": {"enabled": True}, "tls": {"admissionClientCA": apiserver_client_ca}},
        ),
        "pullSecretsUnauthenticated": deep_merge(
            base_values, {"pullSecrets": {"enabled": True, "trustUnauthenticatedCallers": True}}
        ),
        # The README's hardened values: every check on, every caller authenticated, sources listed.
        "hardened": deep_merge(
            base_values,
            {
                "allowedRegistries": ["registry.example.com", "*.dkr.ecr.us-east-1.amazonaws.com"],
                "requireDigest": True,
                "exemptImages": ["registry.k8s.io/pause:*"],
                "mutation": {"enabled": True},
                "cache": {"deniedTTLSeconds": 10},
                "pullSecrets": {"enabled": True},
                "tls": {
                    "clientCA": gatekeeper_ca.cert_path.read_text(),
                    "admissionClientCA": apiserver_client_ca,
                    "admissionClientNames": ["kube-apiserver-webhook-client"],
                },
                "gatekeeper": {"enabled": True},
                "networkPolicy": {"apiServerCIDRs": ["10.0.0.0/28"]},
                "policy": {"document": POLICY_DOC},
            },
        ),
        "extras": deep_merge(
            base_values,
            {
                "exemptNamespaces": ["sandbox"],
                "exemptImages": ["registry.k8s.io/pause:*"],
                "registries": {
                    "registry.example.com:5000": {
                        "caCert": user_ca_pem,
                        "dockerConfigSecret": "regcred",
                        "tokenRealms": ["auth.example.net"],
                    },
                    "localhost:5000": {"plainHTTP": True},
                },
                "networkPolicy": {"enabled": True},
                "serviceMonitor": {"enabled": True},
                "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
                "grafanaDashboard": {"enabled": True},
                "logLevel": "warning",
                "priorityClassName": "system-cluster-critical",
                "image": {"digest": "sha256:" + "a" * 64},
                "webhook": {
                    "timeoutSeconds": 7,
                    "matchConditions": [
                        {
                            "name": "not-nodes",
                            "expression": "!request.userInfo.username.startsWith('system:node:')",
                        }
                    ],
                },
            },
        ),
        "existingTrust": {
            "trustPolicy": {"existing": {"kind": "ConfigMap", "name": "corp-trust-policy"}},
            "trustStore": {
                "existing": {
                    "kind": "Secret",
                    "name": "corp-trust-store",
                    "items": [{"key": "root.pem", "path": "x509/ca/corp/root.pem"}],
                }
            },
        },
        # Scaled out: the bundled Redis, the autoscaler, and a spread over zones beside the nodes'.
        "scaleOut": deep_merge(
            base_values,
            {
                "redis": {"enabled": True},
                "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 7},
                "topologySpreadConstraints": [
                    {
                        "maxSkew": 1,
                        "topologyKey": "kubernetes.io/hostname",
                        "whenUnsatisfiable": "ScheduleAnyway",
                    },
                    {
                        "maxSkew": 2,
                        "topologyKey": "topology.kubernetes.io/zone",
                        "whenUnsatisfiable": "DoNotSchedule",
                    },
                ],
            },
        ),
        "gatekeeperCertManager": deep_merge(
            base_values,
            {"tls": {"mode": "certManager"}, "gatekeeper": {"enabled": True, "caBundle": "Zm9v"}},
        ),
    }


@pytest.fixture(scope="session")
def value_files(
    cases: dict[str, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("chart-values")
    return {name: values_file(directory, values, f"{name}.yaml") for name, values in cases.items()}


@pytest.fixture(scope="session")
def rendered(value_files: dict[str, Path]) -> dict[str, Rendered]:
    return {name: render(path) for name, path in value_files.items()}


# --- A signed and an unsigned image in a real registry, and the values that trust the signer ------


@pytest.fixture(scope="package")
def material(
    olareg: RunningRegistry, tmp_path_factory: pytest.TempPathFactory
) -> tuple[SampleImages, dict[str, Any]]:
    """Signed and unsigned images, and the values that trust the signer."""
    images = sample_images(olareg, tmp_path_factory.mktemp("chart-images"), "chart")
    policy = json.loads(images.policy.read_text())
    root_pem = images.root_pem
    values = {
        "trustPolicy": {"document": policy},
        "trustStore": {"certificates": {"ca": {"test": root_pem}}},
        "registries": {olareg.host: {"plainHTTP": True}},
        "mutation": {"enabled": True},
        "server": {"workers": 2, "threads": 4},
        "webhook": {"timeoutSeconds": 5},
    }
    return images, values


# --- A real kube-apiserver (scripts/cluster.sh), for this package's tests only -------------------


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with control_plane(tmp_path_factory.mktemp("chart-cluster")) as running:
        yield running


@pytest.fixture(scope="package")
def gatekeeper_kinds(cluster: Cluster) -> Iterator[None]:
    """Gatekeeper's CRDs in that cluster."""
    with installed_crds(cluster):
        yield

"""One declaration per configuration key: the reference table in docs/ and the chart's values follow
from it, and this test fails when either drifts."""

from __future__ import annotations

import json
from pathlib import Path

from webhook.config import SETTINGS, reference_table

ROOT = Path(__file__).resolve().parents[2]

# How the chart sets each key: the value path in values.schema.json, or None with the reason the
# chart does not expose it.
CHART: dict[str, str | None] = {
    "trustPolicy": "trustPolicy",
    "trustStore": "trustStore",
    "policy": "policy.document",  # written to the config ConfigMap as policy.yaml
    "listen": "service.port",
    "mode": "mode",
    "logLevel": "logLevel",
    "namespace": None,  # the release namespace, through the downward API (POD_NAMESPACE)
    "exemptNamespaces": "exemptNamespaces",
    "exemptImages": "exemptImages",
    "allowedRegistries": "allowedRegistries",
    "requireDigest": "requireDigest",
    "mutate": "mutation.enabled",
    "mutateKinds": "mutation.kinds",
    "registries": "registries",
    "tls.certFile": "tls.mode",
    "tls.keyFile": "tls.mode",
    "tls.clientCAFile": "tls.clientCA",
    "tls.clientAuth.admission": "tls.admissionClientCA",
    "tls.clientAuth.provider": "tls.clientCA",
    "cache.verdictTTLSeconds": "cache.verdictTTLSeconds",
    "cache.deniedTTLSeconds": "cache.deniedTTLSeconds",
    "cache.tagTTLSeconds": "cache.tagTTLSeconds",
    "cache.maxEntries": "cache.maxEntries",
    "cache.shared.url": "cache.shared.url",
    "cache.shared.passwordFile": "cache.shared.passwordSecret",  # mounted as shared-cache/password
    "cache.shared.caFile": "cache.shared.caSecret",  # mounted as shared-cache/ca.crt
    "cache.shared.signingKeyFile": "cache.shared.signingKeySecret",  # mounted as shared-cache/signing-key
    "cache.shared.keyPrefix": "cache.shared.keyPrefix",
    "cache.shared.budgetMilliseconds": "cache.shared.budgetMilliseconds",
    "timeouts.admissionSeconds": "webhook.timeoutSeconds",
    "timeouts.marginSeconds": "timeouts.marginSeconds",
    "timeouts.providerSeconds": "gatekeeper.providerTimeoutSeconds",
    "timeouts.providerMutationSeconds": "gatekeeper.mutationTimeoutSeconds",
    "limits.maxBodyBytes": "limits.maxBodyBytes",
    "limits.maxImagesPerRequest": "limits.maxImagesPerRequest",
    "limits.maxSignatures": "limits.maxSignatures",
    "revocation.offline": "revocation.offline",
    "revocation.crlFiles": None,  # files must be mounted; the chart has no place for them yet
    "server.workers": "server.workers",
    "server.threads": "server.threads",
    "server.healthPort": "server.healthPort",
    "kubernetes.pullSecrets": "pullSecrets.enabled",
    "kubernetes.trustUnauthenticatedCallers": "pullSecrets.trustUnauthenticatedCallers",
    "kubernetes.kubeconfig": None,  # in a cluster, the pod's service account
    "kubernetes.cacheTTLSeconds": "pullSecrets.cacheTTLSeconds",
}


def schema_paths() -> set[str]:
    schema = json.loads((ROOT / "charts" / "referee" / "values.schema.json").read_text())
    paths: set[str] = set()

    def walk(node: dict[str, object], prefix: str) -> None:
        properties = node.get("properties")
        if isinstance(properties, dict):
            for name, child in properties.items():
                paths.add(prefix + name)
                if isinstance(child, dict):
                    walk(child, f"{prefix}{name}.")

    walk(schema, "")
    return paths


def test_every_key_is_declared_once() -> None:
    keys = [s.key for s in SETTINGS]
    assert len(keys) == len(set(keys))


def test_the_reference_table_is_the_declarations() -> None:
    """docs/configuration.md holds the table ``python -m webhook.config`` prints."""
    assert reference_table() in (ROOT / "docs" / "configuration.md").read_text()


def test_the_chart_sets_every_key_or_says_why_not() -> None:
    assert sorted(CHART) == sorted(s.key for s in SETTINGS), "declare how the chart sets each key"
    missing = {
        key: value for key, value in CHART.items() if value is not None and value not in schema_paths()
    }
    assert missing == {}, "chart values named here are not in values.schema.json"

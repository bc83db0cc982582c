"""The chart's objects of CRD-defined kinds, against their schemas: Gatekeeper's from the CRDs of the
pinned Gatekeeper module (with unknown fields refused, as the API server's strict field validation
does), cert-manager's and the Prometheus Operator's against the small schemas stated here, which name
exactly the fields the chart uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.helpers.chart import Rendered, crd_typed, crd_version_schema, strict_schema
from tests.helpers.gatekeeper import crd_dir

GATEKEEPER_CRDS = {
    ("externaldata.gatekeeper.sh", "Provider"): "provider-customresourcedefinition.yaml",
    ("templates.gatekeeper.sh", "ConstraintTemplate"): "constrainttemplate-customresourcedefinition.yaml",
    ("mutations.gatekeeper.sh", "Assign"): "assign-customresourcedefinition.yaml",
}

_STR = {"type": "string"}
_META = {"type": "object"}


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "required": required or [],
    }


def _kind(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return _object(
        {"apiVersion": {"const": api_version}, "kind": {"const": kind}, "metadata": _META, "spec": spec},
        ["apiVersion", "kind", "metadata", "spec"],
    )


_HOURS = {"type": "string", "pattern": "^[0-9]+h$"}
_USAGES = ["server auth", "client auth", "digital signature", "key encipherment"]
_ISSUER_REF = _object({"name": _STR, "kind": {"enum": ["Issuer", "ClusterIssuer"]}, "group": _STR}, ["name"])
_PRIVATE_KEY = _object(
    {"algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]}, "size": {"type": "integer"},
     "rotationPolicy": {"enum": ["Never", "Always"]}}
)  # fmt: skip
# cert-manager.io/v1 (cert-manager's CertificateSpec and IssuerSpec), the fields the chart sets.
CERT_MANAGER = {
    "Certificate": _kind("cert-manager.io/v1", "Certificate", _object({
        "secretName": _STR, "commonName": _STR, "isCA": {"type": "boolean"},
        "dnsNames": {"type": "array", "items": _STR, "minItems": 1},
        "ipAddresses": {"type": "array", "items": _STR},
        "duration": _HOURS, "renewBefore": _HOURS,
        "usages": {"type": "array", "items": {"enum": _USAGES}},
        "privateKey": _PRIVATE_KEY, "issuerRef": _ISSUER_REF,
    }, ["secretName", "issuerRef"])),
    "Issuer": _kind("cert-manager.io/v1", "Issuer", {
        "oneOf": [_object({"selfSigned": _object({})}, ["selfSigned"]),
                  _object({"ca": _object({"secretName": _STR}, ["secretName"])}, ["ca"])]}),
}  # fmt: skip
# monitoring.coreos.com/v1 ServiceMonitor (the Prometheus Operator's ServiceMonitorSpec), likewise.
_SAFE_TLS_CA = _object(
    {"configMap": _object({"name": _STR, "key": _STR}, ["name", "key"]),
     "secret": _object({"name": _STR, "key": _STR}, ["name", "key"])}
)  # fmt: skip
SERVICE_MONITOR = _kind("monitoring.coreos.com/v1", "ServiceMonitor", _object({
    "selector": _object({"matchLabels": {"type": "object", "additionalProperties": _STR}}),
    "endpoints": {"type": "array", "items": _object({
        "port": _STR, "path": _STR, "scheme": {"enum": ["http", "https"]},
        "interval": {"type": "string", "pattern": "^[0-9]+[smh]$"},
        "tlsConfig": _object({"serverName": _STR, "ca": _SAFE_TLS_CA}),
    })},
}, ["selector", "endpoints"]))  # fmt: skip


# monitoring.coreos.com/v1 PrometheusRule (the Prometheus Operator's PrometheusRuleSpec), likewise.
PROMETHEUS_RULE = _kind("monitoring.coreos.com/v1", "PrometheusRule", _object({
    "groups": {"type": "array", "minItems": 1, "items": _object({
        "name": _STR,
        "rules": {"type": "array", "minItems": 1, "items": _object({
            "alert": _STR, "expr": {"type": "string", "minLength": 1},
            "for": {"type": "string", "pattern": "^[0-9]+[smh]$"},
            "labels": {"type": "object", "additionalProperties": _STR},
            "annotations": {"type": "object", "additionalProperties": _STR},
        }, ["alert", "expr"])},
    }, ["name", "rules"])},
}, ["groups"]))  # fmt: skip


@pytest.fixture(scope="module")
def gatekeeper_crds() -> Path:
    return crd_dir()


def constraint_schema(template: dict[str, Any], crds: Path) -> dict[str, Any]:
    """The schema Gatekeeper gives a constraint kind: its generic match and enforcementAction, and the
    template's parameters schema."""
    match_crd = crds.parents[2] / "config" / "crd" / "bases" / "match.gatekeeper.sh_matchcrd.yaml"
    match = crd_version_schema(match_crd, "match")["properties"]["embeddedMatch"]
    parameters = strict_schema(template["spec"]["crd"]["spec"]["validation"]["openAPIV3Schema"])
    spec = _object({"match": match, "enforcementAction": _STR, "parameters": parameters})
    kind = template["spec"]["crd"]["spec"]["names"]["kind"]
    return _kind("constraints.gatekeeper.sh/v1beta1", kind, spec)


def schema_for(obj: dict[str, Any], rendered: Rendered, crds: Path) -> dict[str, Any]:
    group, version = obj["apiVersion"].split("/")
    if (group, obj["kind"]) in GATEKEEPER_CRDS:
        return crd_version_schema(crds / GATEKEEPER_CRDS[(group, obj["kind"])], version)
    if group == "constraints.gatekeeper.sh":
        [template] = [
            t for t in rendered.of_kind("ConstraintTemplate")
            if t["spec"]["crd"]["spec"]["names"]["kind"] == obj["kind"]
        ]  # fmt: skip
        return constraint_schema(template, crds)
    if group == "cert-manager.io":
        return CERT_MANAGER[obj["kind"]]
    if group == "monitoring.coreos.com":
        return PROMETHEUS_RULE if obj["kind"] == "PrometheusRule" else SERVICE_MONITOR
    raise AssertionError(f"no schema for {obj['apiVersion']} {obj['kind']}")


def test_every_crd_typed_object_matches_its_schema(
    rendered: dict[str, Rendered], gatekeeper_crds: Path
) -> None:
    seen: set[str] = set()
    for case, out in rendered.items():
        for obj in out.objects:
            if not crd_typed(obj):
                continue
            try:
                jsonschema.validate(obj, schema_for(obj, out, gatekeeper_crds))
            except jsonschema.ValidationError as exc:
                raise AssertionError(
                    f"{case}: {obj['kind']} {obj['metadata']['name']}: {exc.message}"
                ) from None
            seen.add(obj["kind"])
    gatekeeper = {"Provider", "ConstraintTemplate", "Assign", "RefereeVerifiedImages", "RefereePinnedImages"}
    assert seen == gatekeeper | {"Certificate", "Issuer", "ServiceMonitor", "PrometheusRule"}


def test_the_strict_crd_schemas_refuse_a_misspelled_field(
    rendered: dict[str, Rendered], gatekeeper_crds: Path
) -> None:
    """The check above can fail: a Provider with `caBundel` and a constraint with an unknown parameter."""
    out = rendered["gatekeeper"]
    provider = out.get("Provider", "referee")
    bad = {**provider, "spec": {**provider["spec"], "caBundel": provider["spec"]["caBundle"]}}
    with pytest.raises(jsonschema.ValidationError, match="caBundel"):
        jsonschema.validate(bad, schema_for(bad, out, gatekeeper_crds))
    constraint = out.one("RefereeVerifiedImages")
    wrong = {**constraint, "spec": {**constraint["spec"], "parameters": {"allowedSigner": ["x"]}}}
    with pytest.raises(jsonschema.ValidationError, match="allowedSigner"):
        jsonschema.validate(wrong, schema_for(wrong, out, gatekeeper_crds))

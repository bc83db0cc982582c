"""The Helm chart `charts/referee` rendered by the real `helm`, and its objects as the kubelet and the
API server would see them: volumes written to disk the way the kubelet writes them, CRD schemas made
as strict as the API server's field validation."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.helpers.tools import ROOT, run, tool

CHART = ROOT / "charts" / "referee"
RELEASE = "referee"
NAMESPACE = "referee-system"
KUBE_VERSION = "1.37.0"  # what `helm template` is told the cluster runs (scripts/versions.env: KUBERNETES)


CRD_GROUPS = ("cert-manager.io", "monitoring.coreos.com", "gatekeeper.sh")  # kinds not built into Kubernetes


def crd_typed(obj: Mapping[str, Any]) -> bool:
    return any(str(obj["apiVersion"]).split("/")[0].endswith(group) for group in CRD_GROUPS)


@dataclass(frozen=True)
class Rendered:
    """The objects `helm template` printed, in order."""

    objects: tuple[dict[str, Any], ...]
    text: str

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
        return found[0]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.of_kind(kind)
        assert len(found) == 1, f"expected one {kind}, found {[o['metadata']['name'] for o in found]}"
        return found[0]

    def config(self) -> dict[str, Any]:
        """Referee's configuration file, as the server reads it."""
        data = self.get("ConfigMap", f"{RELEASE}-config")["data"]
        doc: dict[str, Any] = yaml.safe_load(data["config.yaml"])
        return doc


def values_file(directory: Path, values: Mapping[str, Any], name: str = "values.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(yaml.safe_dump(dict(values)))
    return path


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([tool("helm"), *args], check=check, timeout=120)


def template(values: Path | None = None, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    # helm assumes Kubernetes 1.20 without a cluster; the chart's kubeVersion wants 1.30 or later.
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION]
    if values is not None:
        args += ["--values", str(values)]
    return helm(*args, *extra, check=check)


def render(values: Path | None = None, *extra: str) -> Rendered:
    text = template(values, *extra).stdout
    objects = tuple(d for d in yaml.safe_load_all(text) if d)
    return Rendered(objects, text)


def container_env(container: Mapping[str, Any], namespace: str) -> dict[str, str]:
    """A container's environment as the kubelet sets it: plain values, and the downward API's
    ``metadata.namespace`` (the only reference the chart uses) resolved to ``namespace``."""
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
            continue
        field = entry["valueFrom"]["fieldRef"]["fieldPath"]
        assert field == "metadata.namespace", f"env {entry['name']}: reference not handled: {entry}"
        env[entry["name"]] = namespace
    return env


# --- Volumes as the kubelet writes them -----------------------------------------------------------


def object_files(obj: Mapping[str, Any]) -> dict[str, bytes]:
    """A ConfigMap's or Secret's keys and their bytes (Secret data decoded, stringData as is)."""
    files: dict[str, bytes] = {}
    for key, value in (obj.get("data") or {}).items():
        files[key] = base64.b64decode(value) if obj["kind"] == "Secret" else str(value).encode()
    for key, value in (obj.get("binaryData") or {}).items():
        files[key] = base64.b64decode(value)
    for key, value in (obj.get("stringData") or {}).items():
        files[key] = str(value).encode()
    return files


def _source_files(
    source: Mapping[str, Any], objects: Mapping[tuple[str, str], Mapping[str, Any]]
) -> dict[str, bytes]:
    """The files of one configMap or secret volume (or projected source): its items, else every key."""
    kind = "ConfigMap" if "configMap" in source else "Secret"
    spec = source.get("configMap") or source.get("secret") or {}
    name = str(spec.get("name") or spec.get("secretName") or "")
    assert (kind, name) in objects, f"the pod mounts {kind} {name}, which neither the chart nor the test made"
    keys = object_files(objects[(kind, name)])
    items = spec.get("items")
    if not items:
        return keys
    out: dict[str, bytes] = {}
    for item in items:
        assert item["key"] in keys, f"{kind} {name} has no key {item['key']!r}"
        out[item["path"]] = keys[item["key"]]
    return out


def volume_files(
    volume: Mapping[str, Any], objects: Mapping[tuple[str, str], Mapping[str, Any]]
) -> dict[str, bytes] | None:
    """Path -> bytes of a configMap, secret or projected volume; None for an emptyDir."""
    if "emptyDir" in volume:
        return None
    if "projected" in volume:
        files: dict[str, bytes] = {}
        for source in volume["projected"]["sources"]:
            for path, data in _source_files(source, objects).items():
                assert path not in files, f"volume {volume['name']}: two sources write {path}"
                files[path] = data
        return files
    assert "configMap" in volume or "secret" in volume, f"volume kind not handled: {volume}"
    return _source_files(volume, objects)


def write_atomic(directory: Path, files: Mapping[str, bytes]) -> None:
    """Write a volume the way the kubelet's atomic writer does: the files in a timestamped folder,
    `..data` a symbolic link to it, and each top-level entry a symbolic link into `..data`."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = directory / "..2026_12_01_00_00_00.000000001"
    for path, data in files.items():
        target = stamp / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(0o644)
    (directory / "..data").symlink_to(stamp.name)
    for top in sorted({Path(p).parts[0] for p in files}):
        (directory / top).symlink_to(f"..data/{top}")


def crd_version_schema(crd_file: Path, version: str) -> dict[str, Any]:
    """The openAPIV3Schema of one version of a CustomResourceDefinition, made strict: every object
    with properties and without x-kubernetes-preserve-unknown-fields refuses unknown fields, as the
    API server does with field validation Strict."""
    [crd] = [d for d in yaml.safe_load_all(crd_file.read_text()) if d]
    [entry] = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema: dict[str, Any] = strict_schema(entry["schema"]["openAPIV3Schema"])
    # metadata is ObjectMeta, checked by the API server itself; a CRD may only constrain its name.
    schema.get("properties", {}).get("metadata", {}).pop("additionalProperties", None)
    return schema


def strict_schema(schema: Any) -> Any:
    if isinstance(schema, list):
        return [strict_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict_schema(v) if k not in ("enum", "default", "example") else v for k, v in schema.items()}
    open_ended = "additionalProperties" in out or out.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in out and not open_ended:
        out["additionalProperties"] = False
    return out

"""Referee's own settings: one YAML file, validated at start-up, with ``REFEREE_*`` overrides.

Every error names the key that is wrong. Unknown keys are errors too (a typo must not silently
turn a check off). Pure: ``parse_config`` takes the parsed document and the environment.

    listen: "0.0.0.0:8443"            # HOST:PORT
    mode: enforce                      # enforce | audit (audit admits and returns warnings)
    namespace: referee-system          # Referee's own namespace, always exempt; default $POD_NAMESPACE
    trustPolicy: /etc/referee/trustpolicy.json
    trustStore: /etc/referee/truststore        # holds x509/<type>/<name>/
    exemptNamespaces: [kube-system]
    exemptImages: ["registry.k8s.io/pause:*"]  # structured patterns (webhook.imagepattern)
    allowedRegistries: []              # registry host patterns; others are denied unread
    requireDigest: false               # deny images not pinned by digest
    registries:
      "localhost:5000": {plainHTTP: true}
      "registry.example.com": {caFile: /etc/referee/ca.pem, dockerConfig: /etc/referee/auth.json}
    tls:
      certFile: /etc/referee/tls/tls.crt
      keyFile: /etc/referee/tls/tls.key
      clientCAFile: /etc/referee/gatekeeper-ca.crt   # shorthand of clientAuth.provider.caFile
      clientAuth:                      # mutual TLS per endpoint group
        admission: {caFile: /etc/referee/apiserver-ca.crt, names: [kube-apiserver]}
        provider: {caFile: /etc/referee/gatekeeper-ca.crt, names: []}
    cache: {verdictTTLSeconds: 300, deniedTTLSeconds: 15, tagTTLSeconds: 30, maxEntries: 10000}
    timeouts: {admissionSeconds: 10, marginSeconds: 1, providerSeconds: 3}
    limits: {maxBodyBytes: 3145728, maxImagesPerRequest: 64, maxSignatures: 10}
    revocation: {offline: false, crlFiles: []}
    mutate: false                      # serve /mutate: pin verified images to their digests
    kubernetes:                        # read pods' pull secrets through the Kubernetes API
      pullSecrets: false               # needs get on secrets and serviceaccounts
      trustUnauthenticatedCallers: false   # read them for callers without a client certificate
      kubeconfig: /path/to/kubeconfig  # optional; the in-cluster service account when absent
      cacheTTLSeconds: 30
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from webhook.errors import ConfigError
from webhook.imagepattern import HostPattern, ImagePattern, parse_hosts, parse_patterns
from webhook.reference import canonical_domain

MODES = ("enforce", "audit")
SERVICE_ACCOUNT_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True)
class ClientAuth:
    """Mutual TLS for one group of endpoints: the client's certificate must be issued by a
    certificate in ``ca_file`` and, when ``names`` is set, carry one of them as CN or DNS name."""

    ca_file: Path
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class RegistryConfig:
    plain_http: bool = False
    ca_file: str | None = None
    docker_config: str | None = None


@dataclass(frozen=True)
class Config:
    trust_policy: Path
    trust_store: Path
    listen: str = "0.0.0.0:8443"
    mode: str = "enforce"
    namespace: str = ""  # Referee's own (always exempt); "" when it cannot be known
    exempt_namespaces: tuple[str, ...] = ("kube-system",)
    exempt_images: tuple[ImagePattern, ...] = ()
    allowed_registries: tuple[HostPattern, ...] = ()  # empty: any registry
    require_digest: bool = False
    registries: Mapping[str, RegistryConfig] = field(default_factory=dict, hash=False)
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    admission_client: ClientAuth | None = None  # mutual TLS for /validate and /mutate
    provider_client: ClientAuth | None = None  # mutual TLS for /provider and /provider/mutate
    verdict_ttl_s: float = 300.0
    denied_ttl_s: float = 15.0  # a denial is re-checked this soon (a user may sign the image)
    tag_ttl_s: float = 30.0
    cache_max_entries: int = 10_000
    admission_timeout_s: float = 10.0  # the webhook's timeoutSeconds
    provider_timeout_s: float = 3.0  # Gatekeeper's budget for an external-data call
    timeout_margin_s: float = 1.0  # answered this long before the API server gives up
    max_body_bytes: int = 3 << 20
    max_images_per_request: int = 64
    max_signatures: int = 10
    revocation_offline: bool = False
    crl_files: tuple[Path, ...] = ()
    workers: int = 2
    threads: int = 8
    mutate: bool = False  # serve /mutate (digest pinning)
    pull_secrets: bool = False  # read pods' imagePullSecrets (and their service accounts') from the API
    kubeconfig: Path | None = None  # for the Kubernetes API; None: the in-cluster service account
    pull_secret_ttl_s: float = 30.0
    trust_unauthenticated_callers: bool = False  # read pull secrets for callers without a certificate

    @property
    def tls_client_ca_file(self) -> Path | None:
        return self.provider_client.ca_file if self.provider_client else None

    @property
    def deadline_s(self) -> float:
        return max(0.5, self.admission_timeout_s - self.timeout_margin_s)

    @property
    def provider_deadline_s(self) -> float:
        return max(0.5, self.provider_timeout_s - min(self.timeout_margin_s, self.provider_timeout_s / 4))

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


_TOP = {
    "listen", "mode", "namespace", "trustPolicy", "trustStore", "exemptNamespaces", "exemptImages",
    "allowedRegistries", "requireDigest", "registries", "tls", "cache", "timeouts", "limits",
    "revocation", "server", "mutate", "kubernetes",
}  # fmt: skip


def _section(doc: Mapping[str, Any], key: str, allowed: set[str]) -> Mapping[str, Any]:
    value = doc.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"config: {key} must be a mapping")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ConfigError(f"config: unknown key(s) {', '.join(f'{key}.{k}' for k in unknown)}")
    return value


def _number(section: Mapping[str, Any], key: str, where: str, default: float, *, minimum: float = 0) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= minimum:
        raise ConfigError(f"config: {where}.{key} must be a number greater than {minimum:g}, not {value!r}")
    return float(value)


def _bool(section: Mapping[str, Any], key: str, where: str) -> bool:
    value = section.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"config: {where} must be true or false")
    return value


def _strings(doc: Mapping[str, Any], key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = doc.get(key, list(default))
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"config: {key} must be a list of non-empty strings")
    return tuple(value)


def _path(value: Any, key: str, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"config: {key} must be a path")
    path = Path(value)
    return path if path.is_absolute() else base / path


def parse_config(doc: Any, *, base: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Validate a parsed config document; relative paths are taken from ``base`` (the file's folder)."""
    env = os.environ if environ is None else environ
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError("config: the document must be a mapping of keys")
    doc = dict(doc)
    for key, name in (
        ("mode", "REFEREE_MODE"),
        ("listen", "REFEREE_LISTEN"),
        ("namespace", "REFEREE_NAMESPACE"),
    ):
        if env.get(name):
            doc[key] = env[name]
    unknown = sorted(set(doc) - _TOP)
    if unknown:
        raise ConfigError(f"config: unknown key(s) {', '.join(unknown)}")
    for required in ("trustPolicy", "trustStore"):
        if required not in doc:
            raise ConfigError(f"config: {required} is required")
    mode = doc.get("mode", "enforce")
    if mode not in MODES:
        raise ConfigError(f"config: mode must be enforce or audit, not {mode!r}")
    listen = doc.get("listen", "0.0.0.0:8443")
    host, _, port = str(listen).rpartition(":")
    if not isinstance(listen, str) or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"config: listen must be HOST:PORT, not {listen!r}")
    registries = _registries(doc, base)
    tls = _section(doc, "tls", {"certFile", "keyFile", "clientCAFile", "clientAuth"})
    admission_client, provider_client = _client_auth(tls, base)
    cache = _section(doc, "cache", {"verdictTTLSeconds", "deniedTTLSeconds", "tagTTLSeconds", "maxEntries"})
    timeouts = _section(doc, "timeouts", {"admissionSeconds", "marginSeconds", "providerSeconds"})
    limits = _section(doc, "limits", {"maxBodyBytes", "maxImagesPerRequest", "maxSignatures"})
    revocation = _section(doc, "revocation", {"offline", "crlFiles"})
    server = _section(doc, "server", {"workers", "threads"})
    admission = _number(timeouts, "admissionSeconds", "timeouts", 10)
    if admission > 30:
        raise ConfigError("config: timeouts.admissionSeconds is at most 30 (the API server's limit)")
    mutate = _bool(doc, "mutate", "mutate")
    kube = _section(
        doc, "kubernetes", {"pullSecrets", "kubeconfig", "cacheTTLSeconds", "trustUnauthenticatedCallers"}
    )
    offline = _bool(revocation, "offline", "revocation.offline")
    pull_secrets, trust_unauthenticated = _pull_secrets(kube, admission_client)
    namespace = doc.get("namespace", env.get("POD_NAMESPACE", ""))
    if not isinstance(namespace, str):
        raise ConfigError("config: namespace must be a string")
    return Config(
        trust_policy=_path(doc["trustPolicy"], "trustPolicy", base),
        trust_store=_path(doc["trustStore"], "trustStore", base),
        listen=listen,
        mode=mode,
        namespace=namespace,
        exempt_namespaces=_strings(doc, "exemptNamespaces", ("kube-system",)),
        exempt_images=parse_patterns(_strings(doc, "exemptImages", ()), "config: exemptImages"),
        allowed_registries=parse_hosts(_strings(doc, "allowedRegistries", ()), "config: allowedRegistries"),
        require_digest=_bool(doc, "requireDigest", "requireDigest"),
        registries=registries,
        tls_cert_file=_path(tls["certFile"], "tls.certFile", base) if tls.get("certFile") else None,
        tls_key_file=_path(tls["keyFile"], "tls.keyFile", base) if tls.get("keyFile") else None,
        admission_client=admission_client,
        provider_client=provider_client,
        verdict_ttl_s=_number(cache, "verdictTTLSeconds", "cache", 300),
        denied_ttl_s=_number(cache, "deniedTTLSeconds", "cache", 15),
        tag_ttl_s=_number(cache, "tagTTLSeconds", "cache", 30),
        cache_max_entries=int(_number(cache, "maxEntries", "cache", 10_000)),
        admission_timeout_s=admission,
        provider_timeout_s=_number(timeouts, "providerSeconds", "timeouts", 3),
        timeout_margin_s=_number(timeouts, "marginSeconds", "timeouts", 1, minimum=-1e-9),
        max_body_bytes=int(_number(limits, "maxBodyBytes", "limits", 3 << 20)),
        max_images_per_request=int(_number(limits, "maxImagesPerRequest", "limits", 64)),
        max_signatures=int(_number(limits, "maxSignatures", "limits", 10)),
        revocation_offline=offline,
        crl_files=tuple(_path(p, "revocation.crlFiles", base) for p in revocation.get("crlFiles") or []),
        workers=int(_number(server, "workers", "server", 2)),
        threads=int(_number(server, "threads", "server", 8)),
        mutate=mutate,
        pull_secrets=pull_secrets,
        trust_unauthenticated_callers=trust_unauthenticated,
        kubeconfig=_path(kube["kubeconfig"], "kubernetes.kubeconfig", base)
        if kube.get("kubeconfig")
        else None,
        pull_secret_ttl_s=_number(kube, "cacheTTLSeconds", "kubernetes", 30),
    )


def _pull_secrets(kube: Mapping[str, Any], admission_client: ClientAuth | None) -> tuple[bool, bool]:
    pull_secrets = _bool(kube, "pullSecrets", "kubernetes.pullSecrets")
    trust_all = _bool(kube, "trustUnauthenticatedCallers", "kubernetes.trustUnauthenticatedCallers")
    if pull_secrets and admission_client is None and not trust_all:
        raise ConfigError(
            "config: kubernetes.pullSecrets reads Secrets for whoever calls /validate; require the API "
            "server's client certificate (tls.clientAuth.admission) or accept the risk explicitly with "
            "kubernetes.trustUnauthenticatedCallers: true"
        )
    return pull_secrets, trust_all


def _client_auth(tls: Mapping[str, Any], base: Path) -> tuple[ClientAuth | None, ClientAuth | None]:
    """(admission, provider) client authentication from ``tls.clientAuth`` (and the older
    ``tls.clientCAFile``, the provider's CA)."""
    if bool(tls.get("certFile")) != bool(tls.get("keyFile")):
        raise ConfigError("config: tls.certFile and tls.keyFile go together")
    groups = _section(tls, "clientAuth", {"admission", "provider"})
    out: dict[str, ClientAuth | None] = {}
    for group in ("admission", "provider"):
        where = f"tls.clientAuth.{group}"
        section = _section(groups, group, {"caFile", "names"})
        if group not in groups:
            out[group] = None
            continue
        if not section.get("caFile"):
            raise ConfigError(f"config: {where}.caFile is required")
        names = _strings(section, "names", ())
        out[group] = ClientAuth(_path(section["caFile"], f"{where}.caFile", base), names)
    if tls.get("clientCAFile"):
        if out["provider"] is not None:
            raise ConfigError("config: give tls.clientCAFile or tls.clientAuth.provider, not both")
        out["provider"] = ClientAuth(_path(tls["clientCAFile"], "tls.clientCAFile", base))
    if (out["admission"] or out["provider"]) and not tls.get("certFile"):
        raise ConfigError("config: client authentication needs TLS (tls.certFile and tls.keyFile)")
    return out["admission"], out["provider"]


def _registries(doc: Mapping[str, Any], base: Path) -> dict[str, RegistryConfig]:
    registries: dict[str, RegistryConfig] = {}
    raw_registries = doc.get("registries") or {}
    if not isinstance(raw_registries, dict):
        raise ConfigError("config: registries must be a mapping of host -> settings")
    for host_name, settings in raw_registries.items():
        where = f"registries.{host_name}"
        section = _section({where: settings}, where, {"plainHTTP", "caFile", "dockerConfig"})
        plain = _bool(section, "plainHTTP", f"{where}.plainHTTP")
        host = _registry_key(str(host_name), plain, where)
        if host in registries:
            raise ConfigError(f"config: {where} names the same registry as another entry ({host})")
        registries[host] = RegistryConfig(
            plain_http=plain,
            ca_file=str(_path(section["caFile"], f"{where}.caFile", base)) if "caFile" in section else None,
            docker_config=str(_path(section["dockerConfig"], f"{where}.dockerConfig", base))
            if "dockerConfig" in section
            else None,
        )
    return registries


def _registry_key(host: str, plain_http: bool, where: str) -> str:
    """Registry settings are looked up by the canonical host images are parsed into."""
    canonical = canonical_domain(host)
    if plain_http and host.endswith(":443"):
        raise ConfigError(f"config: {where}: plain HTTP on port 443 is not supported")
    if "/" in canonical or not canonical:
        raise ConfigError(f"config: {where}: a registry is named by host[:port]")
    return canonical


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML ({exc})") from None
    env = dict(os.environ if environ is None else environ)
    if "POD_NAMESPACE" not in env:
        # Running in a pod without the downward API: the service account's namespace.
        with contextlib.suppress(OSError):
            env["POD_NAMESPACE"] = SERVICE_ACCOUNT_NAMESPACE_FILE.read_text().strip()
    try:
        return parse_config(doc, base=path.parent, environ=env)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None

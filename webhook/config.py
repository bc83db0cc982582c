"""Referee's own settings: one YAML file, validated at start-up, with ``REFEREE_*`` overrides.

Every error names the key that is wrong. Unknown keys are errors too (a typo must not silently
turn a check off). Pure: ``parse_config`` takes the parsed document and the environment.

    listen: "0.0.0.0:8443"            # HOST:PORT
    mode: enforce                      # enforce | audit (audit admits and returns warnings)
    logLevel: info                     # debug | info | warning | error
    namespace: referee-system          # Referee's own namespace, always exempt; default $POD_NAMESPACE
    trustPolicy: /etc/referee/trustpolicy.json
    trustStore: /etc/referee/truststore        # holds x509/<type>/<name>/
    policy: /etc/referee/policy.yaml   # optional: Referee's policy document (docs/policy.md)
    exemptNamespaces: [kube-system]
    exemptImages: ["registry.k8s.io/pause:*"]  # structured patterns (webhook.oci.patterns)
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
    cache:
      shared:                          # verdicts, tag digests and registry outages shared through Redis
        url: redis://redis.referee-system:6379/0   # or rediss://; no password here
        passwordFile: /etc/referee/shared-cache/password
        caFile: /etc/referee/shared-cache/ca.crt   # for rediss://
        signingKeyFile: /etc/referee/shared-cache/signing-key   # >= 32 bytes, the same on every replica
        keyPrefix: "referee:"
        budgetMilliseconds: 5
    timeouts: {admissionSeconds: 10, marginSeconds: 1, providerSeconds: 3, providerMutationSeconds: 1}
    limits: {maxBodyBytes: 3145728, maxImagesPerRequest: 64, maxSignatures: 10}
    revocation: {offline: false, crlFiles: []}
    mutate: false                      # serve /mutate: pin verified images to their digests
    mutateKinds: [Pod, Deployment, StatefulSet, DaemonSet, Job, CronJob, ReplicationController]
    kubernetes:                        # read pods' pull secrets through the Kubernetes API
      pullSecrets: false               # needs get on secrets and serviceaccounts
      trustUnauthenticatedCallers: false   # read them for callers without a client certificate
      kubeconfig: /path/to/kubeconfig  # optional; the in-cluster service account when absent
      cacheTTLSeconds: 30
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from webhook.errors import ConfigError
from webhook.oci.patterns import HostPattern, ImagePattern, parse_hosts, parse_patterns
from webhook.oci.reference import canonical_domain

MODES = ("enforce", "audit")
LOG_LEVELS = ("debug", "info", "warning", "error")
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
    token_realms: tuple[str, ...] = ()  # token-server hosts its credentials may go to


@dataclass(frozen=True)
class Config:
    """Every setting, validated; filled from ``SETTINGS`` (defaults live there, once)."""

    trust_policy: Path
    trust_store: Path
    policy: Path | None  # Referee's policy document; None: the trust policy alone decides
    listen: str
    mode: str
    log_level: str  # debug | info | warning | error
    namespace: str  # Referee's own (always exempt); "" when it cannot be known
    exempt_namespaces: tuple[str, ...]
    exempt_images: tuple[ImagePattern, ...]
    allowed_registries: tuple[HostPattern, ...]  # empty: any registry
    require_digest: bool
    registries: Mapping[str, RegistryConfig] = field(hash=False)
    tls_cert_file: Path | None
    tls_key_file: Path | None
    admission_client: ClientAuth | None  # mutual TLS for /validate and /mutate
    provider_client: ClientAuth | None  # mutual TLS for /provider and /provider/mutate
    verdict_ttl_s: float
    denied_ttl_s: float  # a denial is re-checked this soon (a user may sign the image)
    tag_ttl_s: float
    cache_max_entries: int
    admission_timeout_s: float  # the webhook's timeoutSeconds
    provider_timeout_s: float  # Gatekeeper's budget for an external-data call
    provider_mutation_timeout_s: float  # the same for /provider/mutate (Gatekeeper's Assign)
    timeout_margin_s: float  # answered this long before the API server gives up
    max_body_bytes: int
    max_images_per_request: int
    max_signatures: int
    revocation_offline: bool
    crl_files: tuple[Path, ...]
    workers: int
    threads: int
    health_port: int  # /healthz and /readyz on a port and thread of their own; 0: none
    mutate: bool  # serve /mutate (digest pinning)
    mutate_kinds: tuple[str, ...]  # the kinds /mutate pins
    pull_secrets: bool  # read pods' imagePullSecrets (and their service accounts') from the API
    kubeconfig: Path | None  # for the Kubernetes API; None: the in-cluster service account
    pull_secret_ttl_s: float
    trust_unauthenticated_callers: bool  # read pull secrets for callers without a certificate
    shared_cache_url: str  # redis:// or rediss://; "" for none
    shared_cache_password_file: Path | None
    shared_cache_ca_file: Path | None
    shared_cache_signing_key_file: Path | None  # required with a url
    shared_cache_key_prefix: str
    shared_cache_budget_ms: float  # the most a request waits on the shared cache per call

    @property
    def tls_client_ca_file(self) -> Path | None:
        return self.provider_client.ca_file if self.provider_client else None

    @property
    def deadline_s(self) -> float:
        return max(0.5, self.admission_timeout_s - self.timeout_margin_s)

    @property
    def provider_deadline_s(self) -> float:
        return _within(self.provider_timeout_s, self.timeout_margin_s)

    @property
    def provider_mutation_deadline_s(self) -> float:
        return _within(self.provider_mutation_timeout_s, self.timeout_margin_s)

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


def _within(budget_s: float, margin_s: float) -> float:
    """Referee's deadline inside a caller's budget: the margin, at most a quarter of the budget."""
    return max(0.5, budget_s - min(margin_s, budget_s / 4))


# --- one declaration per key ----------------------------------------------------------------------
#
# Each key of the file is declared once: where it lives, the Config field it fills, how it is read,
# its default, its unit and what it is for. Parsing, the unknown-key check, error messages and the
# reference table (docs/configuration.md, ``python -m webhook.config``) all follow from this list.

Reader = Callable[[Any, str, Path], Any]


@dataclass(frozen=True)
class Setting:
    key: str  # dotted path in the file
    field: str  # the Config attribute it fills
    read: Reader  # value as written -> value in Config; raises ConfigError naming the key
    default: Any  # what an absent key means (REQUIRED: it must be given)
    doc: str
    unit: str = ""
    env: str = ""  # an environment variable that overrides the file
    shown: str = ""  # the default as the reference table shows it, when not the value itself


REQUIRED = object()


def _as_path(value: Any, key: str, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"config: {key} must be a path")
    path = Path(value)
    return path if path.is_absolute() else base / path


def _as_optional_path(value: Any, key: str, base: Path) -> Path | None:
    return None if value in (None, "") else _as_path(value, key, base)


def _as_paths(value: Any, key: str, base: Path) -> tuple[Path, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"config: {key} must be a list of paths")
    return tuple(_as_path(v, key, base) for v in value)


def _as_bool(value: Any, key: str, base: Path) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"config: {key} must be true or false")
    return value


def _as_string(value: Any, key: str, base: Path) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"config: {key} must be a string")
    return value


def _as_strings(value: Any, key: str, base: Path) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"config: {key} must be a list of non-empty strings")
    return tuple(value)


def _number(minimum: float, *, integer: bool = False, maximum: float | None = None) -> Reader:
    def read(value: Any, key: str, base: Path) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= minimum:
            raise ConfigError(f"config: {key} must be a number greater than {minimum:g}, not {value!r}")
        if maximum is not None and value > maximum:
            raise ConfigError(f"config: {key} is at most {maximum:g}")
        return int(value) if integer else float(value)

    return read


def _as_redis_url(value: Any, key: str, base: Path) -> str:
    """A Redis URL without credentials: the password comes from a file, never from a config dump."""
    if not isinstance(value, str):
        raise ConfigError(f"config: {key} must be a string")
    if not value:
        return ""
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in ("redis", "rediss"):
        raise ConfigError(f"config: {key} must be redis://HOST:PORT[/DB] or rediss://HOST:PORT[/DB]")
    where, _, db = rest.partition("/")
    if "@" in where:
        raise ConfigError(
            f"config: {key} must not carry a user or password; give cache.shared.passwordFile instead"
        )
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "?" in rest or "#" in rest:
        raise ConfigError(f"config: {key} must be {scheme}://HOST:PORT[/DB], not {value!r}")
    if db and not db.isdigit():
        raise ConfigError(f"config: {key}: the database is a number, not {db!r}")
    return value


def _as_key_prefix(value: Any, key: str, base: Path) -> str:
    if not isinstance(value, str) or not value or len(value) > 64 or not value.isprintable() or " " in value:
        raise ConfigError(f"config: {key} must be 1 to 64 printable characters without spaces")
    return value


def _one_of(*choices: str) -> Reader:
    def read(value: Any, key: str, base: Path) -> str:
        if value not in choices:
            raise ConfigError(f"config: {key} must be {' or '.join(choices)}, not {value!r}")
        return str(value)

    return read


def _as_listen(value: Any, key: str, base: Path) -> str:
    host, _, port = str(value).rpartition(":")
    if not isinstance(value, str) or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"config: {key} must be HOST:PORT, not {value!r}")
    return value


def _as_image_patterns(value: Any, key: str, base: Path) -> tuple[ImagePattern, ...]:
    return parse_patterns(_as_strings(value, key, base), f"config: {key}")


def _as_host_patterns(value: Any, key: str, base: Path) -> tuple[HostPattern, ...]:
    return parse_hosts(_as_strings(value, key, base), f"config: {key}")


# The kinds whose objects name images (webhook.server.admission), and the default of mutateKinds:
# Pods and the workloads people write; not ReplicaSets or PodTemplates, which controllers make.
POD_KINDS = ("Pod", "PodTemplate", "ReplicationController", "ReplicaSet", "Deployment", "StatefulSet",
             "DaemonSet", "Job", "CronJob")  # fmt: skip
DEFAULT_MUTATE_KINDS = (
    "Pod",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "ReplicationController",
)


def _as_kinds(value: Any, key: str, base: Path) -> tuple[str, ...]:
    kinds = _as_strings(value, key, base)
    unknown = [k for k in kinds if k not in POD_KINDS]
    if unknown:
        raise ConfigError(f"config: {key}: {', '.join(unknown)} is not one of {', '.join(POD_KINDS)}")
    return kinds


def _as_client_auth(value: Any, key: str, base: Path) -> ClientAuth | None:
    if value is None:
        return None
    section = _mapping(value, key, {"caFile", "names"})
    if not section.get("caFile"):
        raise ConfigError(f"config: {key}.caFile is required")
    return ClientAuth(
        _as_path(section["caFile"], f"{key}.caFile", base),
        _as_strings(section.get("names", []), f"{key}.names", base),
    )


def _as_registries(value: Any, key: str, base: Path) -> dict[str, RegistryConfig]:
    if not isinstance(value, dict):
        raise ConfigError(f"config: {key} must be a mapping of host -> settings")
    registries: dict[str, RegistryConfig] = {}
    for host_name, settings in value.items():
        where = f"{key}.{host_name}"
        section = _mapping(settings or {}, where, {"plainHTTP", "caFile", "dockerConfig", "tokenRealms"})
        plain = _as_bool(section.get("plainHTTP", False), f"{where}.plainHTTP", base)
        host = _registry_key(str(host_name), plain, where)
        if host in registries:
            raise ConfigError(f"config: {where} names the same registry as another entry ({host})")
        ca_file = _as_optional_path(section.get("caFile"), f"{where}.caFile", base)
        docker_config = _as_optional_path(section.get("dockerConfig"), f"{where}.dockerConfig", base)
        registries[host] = RegistryConfig(
            plain_http=plain,
            ca_file=str(ca_file) if ca_file else None,
            docker_config=str(docker_config) if docker_config else None,
            token_realms=_as_strings(section.get("tokenRealms", []), f"{where}.tokenRealms", base),
        )
    return registries


def _mapping(value: Any, key: str, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"config: {key} must be a mapping")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ConfigError(f"config: unknown key(s) {', '.join(f'{key}.{k}' for k in unknown)}")
    return value


SETTINGS: tuple[Setting, ...] = (
    Setting("trustPolicy", "trust_policy", _as_path, REQUIRED, "notation's trustpolicy.json (version 1.0)"),
    Setting("trustStore", "trust_store", _as_path, REQUIRED, "the folder that holds x509/<type>/<name>/"),
    Setting("policy", "policy", _as_optional_path, None,
            "Referee's policy document (YAML): what must hold beyond a valid signature (docs/policy.md)"),
    Setting("listen", "listen", _as_listen, "0.0.0.0:8443", "HOST:PORT to serve on", env="REFEREE_LISTEN"),
    Setting("mode", "mode", _one_of(*MODES), "enforce", "enforce denies; audit admits and returns warnings",
            env="REFEREE_MODE"),
    Setting("logLevel", "log_level", _one_of(*LOG_LEVELS), "info",
            "debug, info (one line per admission decision), warning or error", env="REFEREE_LOG_LEVEL"),
    Setting("namespace", "namespace", _as_string, "", "Referee's own namespace, never checked",
            env="REFEREE_NAMESPACE", shown="$POD_NAMESPACE"),
    Setting("exemptNamespaces", "exempt_namespaces", _as_strings, ("kube-system",),
            "namespaces never checked"),
    Setting("exemptImages", "exempt_images", _as_image_patterns, (),
            "images admitted unread: HOST/REPOSITORY[:TAG or @DIGEST] patterns, a glob per part"),
    Setting("allowedRegistries", "allowed_registries", _as_host_patterns, (),
            "registry host patterns; an image elsewhere is denied unread (empty: any registry)"),
    Setting("requireDigest", "require_digest", _as_bool, False, "deny images not pinned by digest"),
    Setting("mutate", "mutate", _as_bool, False, "serve /mutate: pin verified images to their digests"),
    Setting("mutateKinds", "mutate_kinds", _as_kinds, DEFAULT_MUTATE_KINDS,
            "the kinds /mutate pins (never an object a controller owns)"),
    Setting("registries", "registries", _as_registries, {},
            "per registry host: plainHTTP, caFile (PEM), dockerConfig (config.json credentials)"),
    Setting("tls.certFile", "tls_cert_file", _as_optional_path, None, "the serving certificate (PEM)"),
    Setting("tls.keyFile", "tls_key_file", _as_optional_path, None, "its key (PEM)"),
    Setting("tls.clientCAFile", "provider_client", lambda v, k, b: ClientAuth(_as_path(v, k, b)), None,
            "shorthand of tls.clientAuth.provider.caFile"),
    Setting("tls.clientAuth.admission", "admission_client", _as_client_auth, None,
            "{caFile, names}: /validate and /mutate require a client certificate that CA issued"),
    Setting("tls.clientAuth.provider", "provider_client", _as_client_auth, None,
            "{caFile, names}: the same for /provider and /provider/mutate (Gatekeeper)"),
    Setting("cache.verdictTTLSeconds", "verdict_ttl_s", _number(0), 300.0, "how long an allow is kept", "s"),
    Setting("cache.deniedTTLSeconds", "denied_ttl_s", _number(0), 15.0, "how long a denial is kept", "s"),
    Setting("cache.tagTTLSeconds", "tag_ttl_s", _number(0), 30.0, "how long a tag's digest is kept", "s"),
    Setting("cache.maxEntries", "cache_max_entries", _number(0, integer=True), 10_000, "entries per cache"),
    Setting("cache.shared.url", "shared_cache_url", _as_redis_url, "",
            "redis://HOST:PORT[/DB] or rediss://…: verdicts, tag digests and registry outages shared "
            "by every replica (docs/shared-cache.md); empty: none", shown="—"),
    Setting("cache.shared.passwordFile", "shared_cache_password_file", _as_optional_path, None,
            "a file holding the Redis password (AUTH)"),
    Setting("cache.shared.caFile", "shared_cache_ca_file", _as_optional_path, None,
            "the CA (PEM) a rediss:// server's certificate is verified with; its name is checked"),
    Setting("cache.shared.signingKeyFile", "shared_cache_signing_key_file", _as_optional_path, None,
            "required with a url: the HMAC-SHA256 key (at least 32 bytes) every shared entry is signed "
            "and checked with; only Referee's replicas may hold it"),
    Setting("cache.shared.keyPrefix", "shared_cache_key_prefix", _as_key_prefix, "referee:",
            "every Redis key Referee writes starts with it"),
    Setting("cache.shared.budgetMilliseconds", "shared_cache_budget_ms", _number(0, maximum=1000), 5.0,
            "the most a request waits on Redis per call; slower is a miss", "ms"),
    Setting("timeouts.admissionSeconds", "admission_timeout_s", _number(0, maximum=30), 10.0,
            "the webhook's timeoutSeconds (at most 30)", "s"),
    Setting("timeouts.marginSeconds", "timeout_margin_s", _number(-1e-9), 1.0,
            "answered this long before the API server gives up", "s"),
    Setting("timeouts.providerSeconds", "provider_timeout_s", _number(0), 3.0,
            "Gatekeeper's budget for an external-data call", "s"),
    Setting("timeouts.providerMutationSeconds", "provider_mutation_timeout_s", _number(0), 1.0,
            "the same for /provider/mutate (Gatekeeper's Assign)", "s"),
    Setting("limits.maxBodyBytes", "max_body_bytes", _number(0, integer=True), 3 << 20,
            "the largest request read", "bytes"),
    Setting("limits.maxImagesPerRequest", "max_images_per_request", _number(0, integer=True), 64,
            "distinct images of one object"),
    Setting("limits.maxSignatures", "max_signatures", _number(0, integer=True), 10,
            "signatures tried per image"),
    Setting("revocation.offline", "revocation_offline", _as_bool, False,
            "never download OCSP answers or CRLs"),
    Setting("revocation.crlFiles", "crl_files", _as_paths, (),
            "CRL files (DER or PEM) used before downloads"),
    Setting("server.workers", "workers", _number(0, integer=True), 2, "gunicorn worker processes"),
    Setting("server.threads", "threads", _number(0, integer=True), 8, "threads per worker"),
    Setting("server.healthPort", "health_port", _number(-1, integer=True, maximum=65535), 0,
            "plain-HTTP port for /healthz and /readyz, on their own thread (0: none); also makes a "
            "Referee whose trust material cannot load wait, unready, instead of exiting"),
    Setting("kubernetes.pullSecrets", "pull_secrets", _as_bool, False,
            "read pods' imagePullSecrets and their service accounts' through the API"),
    Setting("kubernetes.trustUnauthenticatedCallers", "trust_unauthenticated_callers", _as_bool, False,
            "read pull secrets for callers without a client certificate"),
    Setting("kubernetes.kubeconfig", "kubeconfig", _as_optional_path, None,
            "the API's kubeconfig (absent: the in-cluster service account)"),
    Setting("kubernetes.cacheTTLSeconds", "pull_secret_ttl_s", _number(0), 30.0,
            "how long pull secrets read are kept", "s"),
)  # fmt: skip

_SECTIONS = {s.key.rsplit(".", 1)[0] for s in SETTINGS if "." in s.key} | {"tls.clientAuth"}


def _check_unknown(doc: Mapping[str, Any], prefix: str = "") -> None:
    """Every key of the document is declared, or a section of declared keys."""
    leaves = {s.key for s in SETTINGS}
    unknown = []
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if path in leaves:
            continue
        if path in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"config: {path} must be a mapping")
            _check_unknown(value, f"{path}.")
            continue
        unknown.append(path)
    if unknown:
        raise ConfigError(f"config: unknown key(s) {', '.join(sorted(unknown))}")


def _lookup(doc: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    node: Any = doc
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node or node[part] is None:
            return False, None
        node = node[part]
    return True, node


def parse_config(doc: Any, *, base: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Validate a parsed config document; relative paths are taken from ``base`` (the file's folder)."""
    env = os.environ if environ is None else environ
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError("config: the document must be a mapping of keys")
    _check_unknown(doc)
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        present, raw = _lookup(doc, setting.key)
        if setting.env and env.get(setting.env):
            present, raw = True, env[setting.env]
        if not present:
            if setting.default is REQUIRED:
                raise ConfigError(f"config: {setting.key} is required")
            if setting.field not in values:
                values[setting.field] = setting.default
            continue
        if setting.field in values and values[setting.field] is not None and setting.default is None:
            raise ConfigError(f"config: give {setting.key} or the key it abbreviates, not both")
        values[setting.field] = setting.read(raw, setting.key, base)
    if not _lookup(doc, "namespace")[0] and not env.get("REFEREE_NAMESPACE"):
        values["namespace"] = env.get("POD_NAMESPACE", "")  # the downward API, in a pod
    config = Config(**values)
    _check_together(config)
    return config


def _check_together(config: Config) -> None:
    """Rules between keys."""
    if config.health_port and config.health_port == config.host_port[1]:
        raise ConfigError("config: server.healthPort must differ from the port of listen")
    if bool(config.tls_cert_file) != bool(config.tls_key_file):
        raise ConfigError("config: tls.certFile and tls.keyFile go together")
    if (config.admission_client or config.provider_client) and not config.tls_cert_file:
        raise ConfigError("config: client authentication needs TLS (tls.certFile and tls.keyFile)")
    if config.shared_cache_url and config.shared_cache_signing_key_file is None:
        raise ConfigError(
            "config: cache.shared.signingKeyFile is required with cache.shared.url: without a key only "
            "Referee holds, anyone who can write to that Redis could grant an allow"
        )
    if config.shared_cache_ca_file and not config.shared_cache_url.startswith("rediss://"):
        raise ConfigError("config: cache.shared.caFile is for a rediss:// url")
    if config.pull_secrets and config.admission_client is None and not config.trust_unauthenticated_callers:
        raise ConfigError(
            "config: kubernetes.pullSecrets reads Secrets for whoever calls /validate; require the API "
            "server's client certificate (tls.clientAuth.admission) or accept the risk explicitly with "
            "kubernetes.trustUnauthenticatedCallers: true"
        )


def reference_table() -> str:
    """The Markdown table of every key (docs/configuration.md holds it; a test keeps it in step)."""
    rows = ["| key | default | unit | what it is for |", "|---|---|---|---|"]
    for s in SETTINGS:
        if s.shown:
            default = s.shown
        elif s.default is REQUIRED:
            default = "required"
        elif isinstance(s.default, tuple | list):
            default = "[" + ", ".join(s.default) + "]"
        elif isinstance(s.default, bool):
            default = str(s.default).lower()
        elif s.default is None or s.default == {}:
            default = "—"
        else:
            default = f"{s.default:g}" if isinstance(s.default, float) else str(s.default)
        env = f" (env `{s.env}`)" if s.env else ""
        rows.append(f"| `{s.key}`{env} | `{default}` | {s.unit} | {s.doc} |")
    return "\n".join(rows) + "\n"


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


if __name__ == "__main__":  # python -m webhook.config: the reference table
    print(reference_table(), end="")

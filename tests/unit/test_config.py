"""Referee's configuration file, and the caches the webhook keeps."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from webhook.config import load_config, parse_config
from webhook.errors import ConfigError
from webhook.verify.cache import SingleFlight, TTLCache

FULL = """
listen: "0.0.0.0:8443"
mode: enforce
namespace: referee-system
trustPolicy: trustpolicy.json
trustStore: /etc/referee/truststore
exemptNamespaces: [kube-system]
exemptImages: ["registry.k8s.io/pause:*"]
allowedRegistries: ["registry.example.com", "*.dkr.ecr.us-east-1.amazonaws.com", "localhost:5000"]
requireDigest: true
registries:
  "localhost:5000": {plainHTTP: true}
  "registry.example.com": {caFile: ca.pem, dockerConfig: /etc/referee/config.json}
tls:
  certFile: tls.crt
  keyFile: tls.key
  clientAuth:
    admission: {caFile: apiserver-ca.crt, names: [kube-apiserver]}
    provider: {caFile: gatekeeper-ca.crt}
cache: {verdictTTLSeconds: 300, deniedTTLSeconds: 15, tagTTLSeconds: 30, maxEntries: 10000}
timeouts: {admissionSeconds: 10, marginSeconds: 1}
limits: {maxBodyBytes: 3145728, maxImagesPerRequest: 64, maxSignatures: 10}
revocation: {offline: false, crlFiles: []}
server: {workers: 2, threads: 8}
kubernetes: {pullSecrets: true, kubeconfig: kubeconfig, cacheTTLSeconds: 15}
"""


def test_the_documented_example(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(FULL)
    c = load_config(tmp_path / "config.yaml", environ={})
    assert c.trust_policy == tmp_path / "trustpolicy.json"  # relative to the file
    assert c.trust_store == Path("/etc/referee/truststore")
    assert c.registries["localhost:5000"].plain_http is True
    assert c.registries["registry.example.com"].ca_file == str(tmp_path / "ca.pem")
    assert c.host_port == ("0.0.0.0", 8443)  # noqa: S104 (the value read back, not a bind)
    assert c.deadline_s == 9
    assert [p.text for p in c.exempt_images] == ["registry.k8s.io/pause:*"]
    assert next(h.text for h in c.allowed_registries) == "registry.example.com"
    assert c.require_digest is True and c.denied_ttl_s == 15
    assert c.admission_client is not None and c.admission_client.names == ("kube-apiserver",)
    assert c.admission_client.ca_file == tmp_path / "apiserver-ca.crt"
    assert c.tls_client_ca_file == tmp_path / "gatekeeper-ca.crt"
    assert (c.pull_secrets, c.kubeconfig, c.pull_secret_ttl_s) == (True, tmp_path / "kubeconfig", 15)


def test_pull_secrets_without_caller_authentication_refuse_to_start(tmp_path: Path) -> None:
    """Attack: anyone who reaches the Service POSTs a forged review naming another namespace, and
    Referee reads that namespace's pull secrets for them. Without the API server's client
    certificate required, pull secrets are refused unless the risk is accepted by name."""
    doc = yaml.safe_load(FULL)
    doc["tls"].pop("clientAuth")
    with pytest.raises(ConfigError, match=r"kubernetes\.trustUnauthenticatedCallers"):
        parse_config(doc, base=tmp_path, environ={})
    doc["kubernetes"]["trustUnauthenticatedCallers"] = True
    assert parse_config(doc, base=tmp_path, environ={}).trust_unauthenticated_callers is True


def test_own_namespace_defaults_to_the_pods_namespace(tmp_path: Path) -> None:
    """Bug: Referee running in another namespace still exempted referee-system, a namespace anyone
    could create; now the pod's own namespace (downward API) is the default."""
    base = {"trustPolicy": "p.json", "trustStore": "s"}
    assert parse_config(base, base=tmp_path, environ={"POD_NAMESPACE": "security"}).namespace == "security"
    assert parse_config(base, base=tmp_path, environ={}).namespace == ""
    explicit = {**base, "namespace": "referee"}
    assert parse_config(explicit, base=tmp_path, environ={"POD_NAMESPACE": "x"}).namespace == "referee"


def test_registry_settings_are_keyed_by_the_canonical_host(tmp_path: Path) -> None:
    doc = {"trustPolicy": "p", "trustStore": "s", "registries": {"Registry.Example.com:443": {}}}
    assert list(parse_config(doc, base=tmp_path, environ={}).registries) == ["registry.example.com"]
    doc["registries"]["registry.example.com"] = {}
    with pytest.raises(ConfigError, match="names the same registry"):
        parse_config(doc, base=tmp_path, environ={})


def test_pull_secrets_are_off_unless_asked_for(tmp_path: Path) -> None:
    c = parse_config({"trustPolicy": "p.json", "trustStore": "s"}, base=tmp_path, environ={})
    assert (c.pull_secrets, c.kubeconfig) == (False, None)


def test_environment_overrides(tmp_path: Path) -> None:
    doc = yaml.safe_load(FULL)
    c = parse_config(
        doc, base=tmp_path, environ={"REFEREE_MODE": "audit", "REFEREE_LISTEN": "127.0.0.1:9443"}
    )
    assert (c.mode, c.listen) == ("audit", "127.0.0.1:9443")


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        ({"trustPolicy": None}, "trustPolicy is required"),
        ({"mode": "warn"}, "mode must be enforce or audit"),
        ({"listen": "8443"}, "listen must be HOST:PORT"),
        ({"listen": "0.0.0.0:99999"}, "listen must be HOST:PORT"),
        ({"trustpolicy": "x"}, "unknown key(s) trustpolicy"),
        ({"cache": {"verdictTTL": 5}}, "cache.verdictTTL"),
        ({"cache": {"verdictTTLSeconds": -1}}, "cache.verdictTTLSeconds must be a number"),
        ({"timeouts": {"admissionSeconds": 31}}, "at most 30"),
        ({"tls": {"certFile": "a.crt"}}, "go together"),
        ({"registries": {"r.example": {"plainHttp": True}}}, "registries.r.example.plainHttp"),
        ({"registries": {"r.example": {"plainHTTP": "yes"}}}, "plainHTTP must be true or false"),
        ({"exemptNamespaces": "kube-system"}, "exemptNamespaces must be a list"),
        ({"revocation": {"offline": 1}}, "revocation.offline"),
        ({"kubernetes": {"pullSecret": True}}, "kubernetes.pullSecret"),
        ({"kubernetes": {"pullSecrets": "yes"}}, "kubernetes.pullSecrets must be true or false"),
        ({"kubernetes": {"cacheTTLSeconds": 0}}, "kubernetes.cacheTTLSeconds must be a number"),
        ({"exemptImages": ["busybox:*"]}, "Docker Hub images are written in full"),
        ({"exemptImages": ["ghcr.io/a**/b"]}, "'**' must be a whole path segment"),
        ({"exemptImages": ["ghcr.io/App"]}, "each repository segment"),
        ({"allowedRegistries": ["ghcr.io/acme"]}, "is a registry host"),
        ({"allowedRegistries": ["registry.example.com:*"]}, "must be digits"),
        ({"tls": {"certFile": "a", "keyFile": "b", "clientAuth": {"admission": {}}}}, "caFile is required"),
        ({"tls": {"clientCAFile": "ca.crt"}}, "client authentication needs TLS"),
        ({"cache": {"deniedTTLSeconds": 0}}, "cache.deniedTTLSeconds must be a number"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, change: dict[str, Any], phrase: str) -> None:
    doc = yaml.safe_load(FULL)
    for key, value in change.items():
        if value is None:
            doc.pop(key)
        else:
            doc[key] = value
    with pytest.raises(ConfigError) as info:
        parse_config(doc, base=tmp_path, environ={})
    assert phrase in str(info.value)


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("listen: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_ttl_cache_expiry_and_size() -> None:
    now = [0.0]
    cache: TTLCache[str, int] = TTLCache(2, clock=lambda: now[0])
    cache.put("a", 1, 10)
    cache.put("b", 2, 10)
    assert cache.get("a") == 1
    cache.put("c", 3, 10)  # "b" is the least recently used
    assert cache.get("b") is None and cache.get("c") == 3
    now[0] = 11
    assert cache.get("a") is None
    cache.put("d", 4, 0)  # a zero TTL is not kept
    assert cache.get("d") is None


def test_single_flight_runs_identical_work_once() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    calls = []
    started = threading.Event()

    def work() -> int:
        calls.append(1)
        started.set()
        time.sleep(0.2)
        return 42

    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(flight.do("k", work, 5))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [42] * 8
    assert len(calls) == 1


def test_single_flight_shares_errors_and_forgets_them() -> None:
    flight: SingleFlight[str, int] = SingleFlight()

    def boom() -> int:
        raise RuntimeError("registry down")

    with pytest.raises(RuntimeError):
        flight.do("k", boom, 1)
    assert flight.do("k", lambda: 7, 1) == 7


# --- cache.shared ---------------------------------------------------------------------------------

BASE = {"trustPolicy": "/p.json", "trustStore": "/s"}


def shared(**keys: Any) -> dict[str, Any]:
    return {**BASE, "cache": {"shared": keys}}


def test_no_shared_cache_unless_a_url_is_given() -> None:
    config = parse_config(BASE, base=Path("/"), environ={})
    assert config.shared_cache_url == "" and config.shared_cache_budget_ms == 5.0
    assert config.shared_cache_key_prefix == "referee:"


def test_a_shared_cache_with_every_key(tmp_path: Path) -> None:
    config = parse_config(
        shared(url="rediss://redis.example:6380/3", passwordFile="pw", caFile="/ca.pem",
               signingKeyFile="key", keyPrefix="prod:", budgetMilliseconds=2.5),
        base=tmp_path, environ={},
    )  # fmt: skip
    assert config.shared_cache_url == "rediss://redis.example:6380/3"
    assert config.shared_cache_password_file == tmp_path / "pw"
    assert config.shared_cache_signing_key_file == tmp_path / "key"
    assert config.shared_cache_ca_file == Path("/ca.pem")
    assert (config.shared_cache_key_prefix, config.shared_cache_budget_ms) == ("prod:", 2.5)


@pytest.mark.parametrize(
    ("keys", "phrase"),
    [
        ({"url": "http://redis:6379", "signingKeyFile": "/k"}, "cache.shared.url must be redis://"),
        ({"url": "redis://:secret@redis:6379", "signingKeyFile": "/k"}, "passwordFile instead"),
        ({"url": "redis://default:secret@redis:6379", "signingKeyFile": "/k"}, "passwordFile instead"),
        ({"url": "redis://redis", "signingKeyFile": "/k"}, "HOST:PORT"),
        ({"url": "redis://redis:6379/x", "signingKeyFile": "/k"}, "database is a number"),
        ({"url": "redis://redis:6379?password=x", "signingKeyFile": "/k"}, "HOST:PORT"),
        ({"url": "redis://redis:6379"}, "cache.shared.signingKeyFile is required"),
        ({"url": "redis://redis:6379", "signingKeyFile": "/k", "caFile": "/ca"}, "caFile is for a rediss://"),
        ({"budgetMilliseconds": 0}, "cache.shared.budgetMilliseconds must be a number greater than 0"),
        ({"budgetMilliseconds": 5000}, "cache.shared.budgetMilliseconds is at most 1000"),
        ({"keyPrefix": ""}, "cache.shared.keyPrefix"),
        ({"keyPrefix": "a b"}, "cache.shared.keyPrefix"),
        ({"passwrdFile": "/pw"}, "unknown key(s) cache.shared.passwrdFile"),
    ],
)
def test_shared_cache_mistakes_are_refused_naming_the_key(keys: dict[str, Any], phrase: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(shared(**keys), base=Path("/"), environ={})
    assert phrase in str(caught.value)
    assert "secret" not in str(caught.value)  # a password in the url is never repeated


@pytest.mark.parametrize(("content", "phrase"), [(None, "cannot read"), (b"k" * 31, "holds 31 bytes")])
def test_a_missing_or_short_signing_key_refuses_to_start(
    tmp_path: Path, content: bytes | None, phrase: str
) -> None:
    from webhook.server.app import shared_settings  # noqa: PLC0415

    key = tmp_path / "signing-key"
    if content is not None:
        key.write_bytes(content)
    config = parse_config(shared(url="redis://127.0.0.1:6379", signingKeyFile=str(key)), base=tmp_path,
                          environ={})  # fmt: skip
    with pytest.raises(ConfigError, match=r"cache\.shared\.signingKeyFile") as caught:
        shared_settings(config)
    assert phrase in str(caught.value)


def test_the_password_comes_from_its_file_stripped_and_is_never_shown(tmp_path: Path) -> None:
    from webhook.server.app import shared_settings  # noqa: PLC0415

    (tmp_path / "key").write_bytes(b"k" * 48)
    (tmp_path / "pw").write_text("s3cret-pw\n")
    config = parse_config(shared(url="redis://127.0.0.1:6379", signingKeyFile="key", passwordFile="pw"),
                          base=tmp_path, environ={})  # fmt: skip
    settings = shared_settings(config)
    assert settings.password == "s3cret-pw" and settings.signing_key == b"k" * 48
    assert "s3cret" not in repr(settings) and "kkkk" not in repr(settings)

"""Authentication against the real CNCF Distribution: htpasswd (basic) and its token configuration.

The token server is a test fixture (no real one runs here); the registry that verifies its tokens is
real. Credentials reach Referee the ways users give them: docker config.json and Kubernetes pull secrets.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers import pki, registries
from tests.helpers.artifacts import Notation, attach, push_image
from tests.helpers.codesign import install_notation_key, make_chain, write_trust_policy, write_trust_store
from tests.helpers.registries import RunningRegistry
from tests.helpers.serving import referee_serve
from tests.helpers.token_server import TokenServer, serve_tokens
from tests.helpers.tools import free_port, referee, run, tool
from webhook.deadline import Deadline
from webhook.errors import AuthenticationFailed
from webhook.oci.reference import parse
from webhook.registry.client import ClientSettings, HostSettings, RegistryClient
from webhook.registry.credentials import Credential, Keyring

USER, PASSWORD = "alice", "wonderland"
SBOM = "application/spdx+json"


@dataclass(frozen=True)
class AuthRegistry:
    registry: RunningRegistry
    digest: str
    sbom: str
    tokens: TokenServer | None = None

    @property
    def reference(self) -> str:
        return f"{self.registry.host}/demo/app:v1"

    def client(self, *creds: Credential) -> RegistryClient:
        host = HostSettings(ca_file=str(self.registry.ca_file))
        return RegistryClient(
            ClientSettings(default=host), Keyring(tuple((self.registry.host, c) for c in creds))
        )


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pki.KeyPair, pki.KeyPair]:
    d = tmp_path_factory.mktemp("pki")
    ca = pki.make_ca(d)
    return d, ca, pki.make_server_cert(d, ca)


def populate(reg: RunningRegistry, work: Path) -> tuple[str, str]:
    digest = push_image(reg, "demo/app", "v1", work)
    sbom = attach(reg, f"{reg.host}/demo/app@{digest}", SBOM, work, name="sbom.json")
    return digest, sbom


@pytest.fixture(scope="module")
def basic_registry(
    pki_dir: tuple[Path, pki.KeyPair, pki.KeyPair], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AuthRegistry]:
    d, ca, server = pki_dir
    htpasswd = d / "htpasswd"
    htpasswd.write_text(run([tool("htpasswd"), "-Bbn", USER, PASSWORD]).stdout)
    auth = f"auth:\n  htpasswd:\n    realm: referee-test\n    path: {htpasswd}\n"
    with registries.distribution(
        tmp_path_factory.mktemp("basic"),
        tls=(server.cert_path, server.key_path, ca.cert_path),
        auth_yaml=auth,
        username=USER,
        password=PASSWORD,
    ) as reg:
        digest, sbom = populate(reg, tmp_path_factory.mktemp("basic-work"))
        yield AuthRegistry(reg, digest, sbom)


@pytest.fixture(scope="module")
def token_registry(
    pki_dir: tuple[Path, pki.KeyPair, pki.KeyPair], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AuthRegistry]:
    d, ca, server = pki_dir
    signer = pki.make_self_signed_signer(d)
    tokens = TokenServer(
        signer,
        service="referee-test-registry",
        issuer="referee-test-issuer",
        users={USER: PASSWORD},
        refresh_tokens={"refresh-abc": USER},
    )
    token_httpd, realm = serve_tokens(tokens, server, free_port())
    auth = (
        f"auth:\n  token:\n    realm: {realm}\n    service: {tokens.service}\n"
        f"    issuer: {tokens.issuer}\n    rootcertbundle: {signer.cert_path}\n"
    )
    try:
        with registries.distribution(
            tmp_path_factory.mktemp("token"),
            tls=(server.cert_path, server.key_path, ca.cert_path),
            auth_yaml=auth,
            username=USER,
            password=PASSWORD,
        ) as reg:
            digest, sbom = populate(reg, tmp_path_factory.mktemp("token-work"))
            yield AuthRegistry(reg, digest, sbom, tokens)
    finally:
        token_httpd.shutdown()


def docker_config(path: Path, key: str, user: str, password: str) -> Path:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {key: {"auth": auth}}}))
    return path


def discover_cli(reg: AuthRegistry, *extra: str) -> subprocess.CompletedProcess[str]:
    return referee(
        "discover",
        "--ca-file",
        str(reg.registry.ca_file),
        "--output",
        "json",
        "--docker-config",
        "/dev/null/none" if not extra else extra[0],
        *extra[1:],
        reg.reference,
    )


# --- basic auth (htpasswd) -----------------------------------------------------------------------


def test_basic_auth_with_docker_config(basic_registry: AuthRegistry, tmp_path: Path) -> None:
    cfg = docker_config(tmp_path / "config.json", f"https://{basic_registry.registry.host}", USER, PASSWORD)
    proc = discover_cli(basic_registry, str(cfg))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["digest"] == basic_registry.digest
    assert [r["digest"] for r in doc["referrers"]] == [basic_registry.sbom]


def test_basic_auth_wrong_password_is_an_auth_error_not_no_signatures(
    basic_registry: AuthRegistry, tmp_path: Path
) -> None:
    cfg = docker_config(tmp_path / "config.json", basic_registry.registry.host, USER, "Xy7-not-it")
    proc = discover_cli(basic_registry, str(cfg))
    assert proc.returncode == 3, proc.stdout
    assert "refused credentials from" in proc.stderr and "401" in proc.stderr
    assert "Xy7-not-it" not in proc.stderr  # never print a password


def test_basic_auth_without_credentials(basic_registry: AuthRegistry, tmp_path: Path) -> None:
    cfg = tmp_path / "empty.json"
    cfg.write_text('{"auths": {}}')
    proc = discover_cli(basic_registry, str(cfg))
    assert proc.returncode == 3
    assert "requires credentials" in proc.stderr


def test_pull_secret_with_kubelet_glob_key(basic_registry: AuthRegistry, tmp_path: Path) -> None:
    """A dockerconfigjson Secret whose key is a kubelet-style glob (127.0.0.* with the port)."""
    port = basic_registry.registry.host.rsplit(":", 1)[1]
    config = {
        "auths": {f"127.0.0.*:{port}": {"auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}}
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "regcred", "namespace": "team-a"},
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
    }
    (tmp_path / "secret.json").write_text(json.dumps(secret))
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    proc = discover_cli(basic_registry, str(empty), "--pull-secret", str(tmp_path / "secret.json"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["referrers"][0]["digest"] == basic_registry.sbom


def test_second_matching_credential_is_tried_after_the_first_is_refused(basic_registry: AuthRegistry) -> None:
    client = basic_registry.client(
        Credential("alice", "stale-password", source="old"), Credential(USER, PASSWORD, source="new")
    )
    repo = client.repository(parse(basic_registry.reference))
    assert repo.resolve("v1", Deadline.after(10)).descriptor.digest == basic_registry.digest


# --- bearer tokens -------------------------------------------------------------------------------


def test_token_flow_with_basic_credentials(token_registry: AuthRegistry) -> None:
    assert token_registry.tokens is not None
    token_registry.tokens.requests.clear()
    repo = token_registry.client(Credential(USER, PASSWORD, source="test")).repository(
        parse(token_registry.reference)
    )
    deadline = Deadline.after(10)
    subject = repo.resolve("v1", deadline)
    found = repo.referrers(subject.descriptor.digest, deadline)
    repo.fetch_manifest(found.descriptors[0].digest, deadline, expected=found.descriptors[0])
    assert subject.descriptor.digest == token_registry.digest
    assert [d.digest for d in found.descriptors] == [token_registry.sbom]
    # One token for the whole conversation: it is cached per (registry, scope, credential).
    assert token_registry.tokens.requests == [
        {"method": "GET", "scope": ["repository:demo/app:pull"], "user": USER}
    ]


def test_token_is_fetched_again_after_it_expires(token_registry: AuthRegistry) -> None:
    tokens = token_registry.tokens
    assert tokens is not None
    tokens.requests.clear()
    tokens.expires_in = 6  # lifetime 1 s after the 5 s safety margin
    try:
        repo = token_registry.client(Credential(USER, PASSWORD)).repository(parse(token_registry.reference))
        repo.resolve("v1", Deadline.after(10))
        repo.resolve("v1", Deadline.after(10))
        assert len(tokens.requests) == 1
        time.sleep(1.2)
        repo.resolve("v1", Deadline.after(10))
        assert len(tokens.requests) == 2
    finally:
        tokens.expires_in = 300


def test_identity_token_uses_the_oauth2_refresh_grant(token_registry: AuthRegistry) -> None:
    assert token_registry.tokens is not None
    token_registry.tokens.requests.clear()
    repo = token_registry.client(Credential(identity_token="refresh-abc")).repository(
        parse(token_registry.reference)
    )
    assert repo.resolve("v1", Deadline.after(10)).descriptor.digest == token_registry.digest
    assert token_registry.tokens.requests[0]["method"] == "POST"
    assert token_registry.tokens.requests[0]["grant"] == "refresh_token"


def test_token_server_refuses_wrong_password(token_registry: AuthRegistry) -> None:
    repo = token_registry.client(Credential(USER, "nope", source="secret team/pull")).repository(
        parse(token_registry.reference)
    )
    with pytest.raises(AuthenticationFailed) as info:
        repo.resolve("v1", Deadline.after(10))
    assert "refused credentials from secret team/pull" in str(info.value)
    assert "nope" not in str(info.value)


def test_anonymous_token_for_a_public_repository(token_registry: AuthRegistry) -> None:
    """No credentials at all: an anonymous token still grants pull where the token server allows it."""
    tokens = token_registry.tokens
    assert tokens is not None
    tokens.anonymous_repos = ("demo/app",)
    tokens.requests.clear()
    try:
        repo = token_registry.client().repository(parse(token_registry.reference))
        assert repo.resolve("v1", Deadline.after(10)).descriptor.digest == token_registry.digest
        assert tokens.requests[0]["user"] == ""  # asked without Authorization
    finally:
        tokens.anonymous_repos = ()


def test_anonymous_token_without_access_is_an_auth_error(token_registry: AuthRegistry) -> None:
    repo = token_registry.client().repository(parse(token_registry.reference))
    with pytest.raises(AuthenticationFailed) as info:
        repo.resolve("v1", Deadline.after(10))
    assert "anonymous" in str(info.value)


def test_token_cli_end_to_end(token_registry: AuthRegistry, tmp_path: Path) -> None:
    cfg = docker_config(tmp_path / "config.json", token_registry.registry.host, USER, PASSWORD)
    proc = discover_cli(token_registry, str(cfg))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["referrers"][0]["artifactType"] == SBOM


def test_untrusted_tls_certificate_is_unreachable(basic_registry: AuthRegistry) -> None:
    proc = referee("discover", "--timeout", "5", basic_registry.reference)
    assert proc.returncode == 3
    assert "TLS" in proc.stderr and "certificate verify failed" in proc.stderr


def test_rotated_registry_credentials_are_used_without_a_restart(
    basic_registry: AuthRegistry, pki_dir: tuple[Path, pki.KeyPair, pki.KeyPair], tmp_path: Path
) -> None:
    """``registries.<host>.dockerConfig`` is read again when the file changes (as a pull Secret
    mounted by the kubelet changes): wrong credentials first, then the right ones, then a broken
    file, which keeps the last good credentials and shows on /readyz."""
    reg = basic_registry.registry
    chain = make_chain()
    notation = Notation(tmp_path / "home")
    install_notation_key(notation.home, "test", chain)
    digest = push_image(reg, "rotate/app", "v1", tmp_path / "image", content="rotated credentials")
    notation.sign(reg, f"{reg.host}/rotate/app@{digest}", "--username", USER, "--password", PASSWORD)
    write_trust_store(tmp_path / "truststore", "ca", "test", chain.root)
    write_trust_policy(tmp_path / "trustpolicy.json")
    _, ca, server = pki_dir
    creds = tmp_path / "mounted" / "config.json"
    creds.parent.mkdir()

    def mount(text: str) -> None:  # replaced in one step, as the kubelet swaps a volume's files
        staged = creds.with_suffix(".new")
        staged.write_text(text)
        os.replace(staged, creds)

    mount(docker_config(tmp_path / "wrong.json", reg.host, USER, "not-the-password").read_text())
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{port}\ntrustPolicy: trustpolicy.json\ntrustStore: truststore\n"
        f"registries: {{'{reg.host}': {{caFile: {reg.ca_file}, dockerConfig: {creds}}}}}\n"
        f"tls: {{certFile: {server.cert_path}, keyFile: {server.key_path}}}\n"
        "server: {workers: 1, threads: 2}\n"
    )
    url = f"https://127.0.0.1:{port}"
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": "team-a",
        "operation": "CREATE", "object": {"spec": {"containers": [
            {"name": "app", "image": f"{reg.host}/rotate/app:v1"}]}}}}  # fmt: skip

    def answer() -> dict[str, Any]:
        resp = requests.post(f"{url}/validate", json=review, verify=str(ca.cert_path), timeout=10)
        out: dict[str, Any] = resp.json()["response"]
        return out

    def eventually(check: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 15
        while not check():
            assert time.monotonic() < deadline, what
            time.sleep(0.3)

    with referee_serve(config, url, ca.cert_path):
        denied = answer()
        assert denied["allowed"] is False
        assert "could not check" in denied["status"]["message"] and "not-the-password" not in str(denied)
        mount(docker_config(tmp_path / "right.json", reg.host, USER, PASSWORD).read_text())
        eventually(lambda: answer()["allowed"] is True, "the rotated credentials were never used")
        mount("{not json")
        ready = lambda: requests.get(f"{url}/readyz", verify=str(ca.cert_path), timeout=5)  # noqa: E731
        eventually(lambda: "credentialsReloadError" in ready().json(), "a broken file was not reported")
        assert ready().status_code == 200 and str(creds) in ready().json()["credentialsReloadError"]

"""Credentials: docker config.json, Kubernetes pull secrets, and the kubelet's matching rules."""

from __future__ import annotations

import base64
import json

import pytest

from webhook.errors import ConfigError
from webhook.registry.credentials import Credential, Keyring


def auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def ring(entries: dict[str, dict[str, str]]) -> Keyring:
    return Keyring.from_docker_config(json.dumps({"auths": entries}))


def users(creds: list[Credential]) -> list[str]:
    return [c.username or c.identity_token or c.registry_token for c in creds]


def test_auth_field_splits_on_first_colon() -> None:
    kr = ring({"registry.example.com": {"auth": auth("alice", "pa:ss:word")}})
    [cred] = kr.lookup("registry.example.com", "team/app")
    assert (cred.username, cred.password) == ("alice", "pa:ss:word")


def test_username_password_and_tokens() -> None:
    kr = ring(
        {
            "a.example": {"username": "u", "password": "p"},
            "b.example": {"identitytoken": "refresh-me"},
            "c.example": {"registrytoken": "bearer-me"},
        }
    )
    assert kr.lookup("a.example", "x")[0].password == "p"
    assert kr.lookup("b.example", "x")[0].identity_token == "refresh-me"
    assert kr.lookup("c.example", "x")[0].registry_token == "bearer-me"


@pytest.mark.parametrize(
    "key",
    [
        "https://registry.example.com",
        "http://registry.example.com",
        "registry.example.com/v2/",
        "https://registry.example.com/v1/",
        "Registry.Example.com:443",
        "https://registry.example.com:443/v2/",
    ],
)
def test_key_normalisation(key: str) -> None:
    kr = ring({key: {"auth": auth("u", "p")}})
    assert users(kr.lookup("registry.example.com", "any/repo")) == ["u"]


def test_port_must_match() -> None:
    kr = ring({"registry.example.com:5000": {"auth": auth("u", "p")}})
    assert users(kr.lookup("registry.example.com:5000", "app")) == ["u"]
    assert kr.lookup("registry.example.com", "app") == []
    assert kr.lookup("registry.example.com:5001", "app") == []


def test_glob_matches_one_label_only() -> None:
    kr = ring({"*.example.com": {"auth": auth("wild", "p")}})
    assert users(kr.lookup("a.example.com", "app")) == ["wild"]
    assert kr.lookup("example.com", "app") == []
    assert kr.lookup("a.b.example.com", "app") == []


def test_path_prefix_and_specific_first() -> None:
    kr = ring(
        {
            "registry.example.com": {"auth": auth("host", "p")},
            "registry.example.com/team": {"auth": auth("team", "p")},
            "registry.example.com/other": {"auth": auth("other", "p")},
        }
    )
    assert users(kr.lookup("registry.example.com", "team/app")) == ["team", "host"]
    assert users(kr.lookup("registry.example.com", "misc/app")) == ["host"]


def test_docker_hub_aliases() -> None:
    kr = ring({"https://index.docker.io/v1/": {"auth": auth("hub", "p")}})
    assert users(kr.lookup("docker.io", "library/nginx")) == ["hub"]
    other = ring({"ghcr.io": {"auth": auth("gh", "p")}})
    assert other.lookup("docker.io", "library/nginx") == []


def test_no_match_is_empty() -> None:
    assert ring({"a.example": {"auth": auth("u", "p")}}).lookup("b.example", "x") == []


def test_secrets_never_in_repr() -> None:
    [cred] = ring({"a.example": {"auth": auth("alice", "s3cret-pw")}}).lookup("a.example", "x")
    assert "s3cret-pw" not in repr(cred) and "alice" not in repr(cred)


def secret(kind: str, key: str, payload: object, encode: bool = True) -> dict[str, object]:
    raw = json.dumps(payload)
    data = {key: base64.b64encode(raw.encode()).decode()} if encode else {}
    out: dict[str, object] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": kind,
        "metadata": {"name": "pull", "namespace": "team"},
        "data": data,
    }
    if not encode:
        out["stringData"] = {key: raw}
    return out


def test_dockerconfigjson_secret() -> None:
    s = secret(
        "kubernetes.io/dockerconfigjson",
        ".dockerconfigjson",
        {"auths": {"registry.example.com": {"auth": auth("u", "p")}}},
    )
    [cred] = Keyring.from_secret(s).lookup("registry.example.com", "app")
    assert cred.username == "u" and cred.source == "secret team/pull"


def test_dockercfg_secret_is_a_bare_map() -> None:
    s = secret(
        "kubernetes.io/dockercfg", ".dockercfg", {"registry.example.com": {"auth": auth("legacy", "p")}}
    )
    assert users(Keyring.from_secret(s).lookup("registry.example.com", "app")) == ["legacy"]


def test_string_data_secret() -> None:
    s = secret(
        "kubernetes.io/dockerconfigjson",
        ".dockerconfigjson",
        {"auths": {"r.example": {"username": "u", "password": "p"}}},
        encode=False,
    )
    assert users(Keyring.from_secret(s).lookup("r.example", "app")) == ["u"]


@pytest.mark.parametrize(
    ("doc", "phrase"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "expected a JSON object"),
        (b'{"auths": []}', "'auths' must be an object"),
        (b'{"auths": {"r": {"auth": "%%%"}}}', "not base64"),
        (b'{"auths": {"r": {"auth": "' + base64.b64encode(b"nocolon") + b'"}}}', "USER:PASSWORD"),
        (b'{"auths": {"r": "x"}}', "not an object"),
    ],
)
def test_malformed_config_is_a_config_error(doc: bytes, phrase: str) -> None:
    with pytest.raises(ConfigError) as info:
        Keyring.from_docker_config(doc)
    assert phrase in str(info.value)


def test_wrong_secret_type_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        Keyring.from_secret({"type": "Opaque", "metadata": {"name": "x", "namespace": "y"}, "data": {}})
    assert "secret y/x" in str(info.value)


def test_merged_keyrings_keep_all_and_dedupe() -> None:
    a = ring({"r.example": {"auth": auth("u", "p")}})
    b = ring({"r.example": {"auth": auth("u", "p")}, "r.example/team": {"auth": auth("t", "p")}})
    assert users(Keyring.merged([a, b]).lookup("r.example", "team/app")) == ["t", "u"]

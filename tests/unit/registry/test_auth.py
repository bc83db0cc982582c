"""WWW-Authenticate parsing, token responses and the token cache."""

from __future__ import annotations

import subprocess
import sys

import pytest

from webhook.deadline import Deadline
from webhook.errors import AuthenticationFailed
from webhook.registry.auth import AuthCache, fetch_token, parse_challenges, parse_token_response, same_site
from webhook.registry.credentials import Credential
from webhook.transport import Transport


def test_bearer_challenge() -> None:
    [c] = parse_challenges(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/nginx:pull"'
    )
    assert c.scheme == "bearer"
    assert c.params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/nginx:pull",
    }


def test_basic_challenge_and_case() -> None:
    [c] = parse_challenges('BASIC Realm="Registry Realm"')
    assert c.scheme == "basic" and c.params == {"realm": "Registry Realm"}


def test_several_challenges_and_odd_spacing() -> None:
    cs = parse_challenges(
        'Basic realm="a" , Bearer realm = "https://t/token", service=svc ,error="invalid_token"'
    )
    assert [c.scheme for c in cs] == ["basic", "bearer"]
    assert cs[1].params == {"realm": "https://t/token", "service": "svc", "error": "invalid_token"}


def test_quoted_commas_and_escapes() -> None:
    [c] = parse_challenges(r'Bearer realm="https://t/token",scope="repository:a:pull,push",x="q\"uote"')
    assert c.params["scope"] == "repository:a:pull,push"
    assert c.params["x"] == 'q"uote'


def test_empty_header() -> None:
    assert parse_challenges("") == []


def test_token_response_prefers_access_token_and_defaults_lifetime() -> None:
    t = parse_token_response(b'{"token": "old", "access_token": "new"}', "realm")
    assert t.value == "new"
    assert 50 <= t.lifetime_s <= 60  # 60 s default, refreshed a little early


def test_token_response_honours_expires_in() -> None:
    assert parse_token_response(b'{"token": "t", "expires_in": 300}', "realm").lifetime_s == pytest.approx(
        295
    )


@pytest.mark.parametrize("body", [b"nope", b"[]", b"{}", b'{"token": ""}', b'{"token": 5}'])
def test_bad_token_response(body: bytes) -> None:
    with pytest.raises(AuthenticationFailed):
        parse_token_response(body, "realm")


def test_cache_honours_lifetime() -> None:
    now = [100.0]
    cache = AuthCache(clock=lambda: now[0])
    key = ("r.example", "repository:a:pull", "fp")
    cache.put(key, "Bearer t", 30)
    assert cache.get(key) == "Bearer t"
    now[0] += 29
    assert cache.get(key) == "Bearer t"
    now[0] += 2
    assert cache.get(key) is None


def test_cache_is_per_scope_and_basic_never_expires() -> None:
    now = [0.0]
    cache = AuthCache(clock=lambda: now[0])
    cache.put(("r", "repository:a:pull", "fp"), "Basic x", None)
    assert cache.get(("r", "repository:b:pull", "fp")) is None
    now[0] = 1e9
    assert cache.get(("r", "repository:a:pull", "fp")) == "Basic x"


def test_plain_http_realm_is_refused_for_a_tls_registry_before_any_request() -> None:
    """A token realm over HTTP would carry credentials in clear text: refused unless configured."""
    transport = Transport(user_agent="test", max_redirects=0)
    challenge = parse_challenges('Bearer realm="http://127.0.0.1:9/token",service="s"')[0]
    with pytest.raises(AuthenticationFailed) as info:
        fetch_token(
            transport,
            challenge,
            "repository:a:pull",
            Credential("u", "p"),
            registry="registry.example",
            allow_plain_http=False,
            verify=True,
            deadline=Deadline.after(5),
            request_timeout_s=5,
        )
    assert "plain HTTP" in str(info.value)


def test_registry_token_is_used_as_is_without_a_token_request() -> None:
    transport = Transport(user_agent="test", max_redirects=0)
    challenge = parse_challenges('Bearer realm="https://127.0.0.1:9/token"')[0]
    token = fetch_token(
        transport,
        challenge,
        "repository:a:pull",
        Credential(registry_token="static-bearer"),
        registry="registry.example",
        allow_plain_http=False,
        verify=True,
        deadline=Deadline.after(5),
        request_timeout_s=5,
    )
    assert token.value == "static-bearer"


@pytest.mark.parametrize(
    "body",
    [
        b'{"token": "a", "token": "b"}',
        '{"token": "a"}'.encode("utf-16"),
        b'{"token": "a", "expires_in": NaN}',
    ],
)
def test_token_answer_that_is_not_strict_json_is_refused(body: bytes) -> None:
    with pytest.raises(AuthenticationFailed, match="invalid JSON"):
        parse_token_response(body, "realm")


# --- a budget for what registries hand out ---------------------------------------------------------


def test_token_cache_is_bounded_in_entries_and_bytes() -> None:
    """A hostile registry used to get one cached token of up to 1 MiB per repository: about 64 MiB
    for one pod of 64 images."""
    cache = AuthCache(max_entries=100, max_bytes=1 << 20)
    for n in range(1000):
        cache.put(("evil.example", f"repository:r{n}:pull", "anon"), "Bearer " + "t" * 15_000, 3600)
    assert len(cache) <= 100 and cache.bytes <= 1 << 20
    assert cache.get(("evil.example", "repository:r999:pull", "anon")) is not None  # the newest stay


def test_a_token_over_16_kib_is_refused() -> None:
    body = b'{"token": "' + b"t" * (17 << 10) + b'"}'
    with pytest.raises(AuthenticationFailed) as info:
        parse_token_response(body, "https://auth.example/token")
    assert "at most 16384" in str(info.value)


def test_a_token_lifetime_is_capped_at_an_hour() -> None:
    token = parse_token_response(b'{"token": "t", "expires_in": 315360000}', "https://auth.example/token")
    assert token.lifetime_s <= 3600


@pytest.mark.parametrize(
    ("realm_host", "registry", "configured", "allowed"),
    [
        ("auth.docker.io", "registry-1.docker.io", (), True),  # Docker Hub, out of the box
        ("gitlab.com", "registry.gitlab.com", (), True),
        ("127.0.0.1", "127.0.0.1:5000", (), True),  # the registry's own host, another port
        ("evil.example", "registry-1.docker.io", (), False),
        ("evil.github.io", "mine.github.io", (), False),  # a public suffix is no shared domain
        ("127.0.0.2", "127.0.0.1:5000", (), False),
        ("tokens.example.net", "registry.example.com", ("tokens.example.net",), True),
    ],
)
def test_credentials_go_only_to_a_realm_of_the_registrys_own_site(
    realm_host: str, registry: str, configured: tuple[str, ...], allowed: bool
) -> None:
    assert same_site(realm_host, registry, configured) is allowed


def test_a_challenge_of_one_quote_does_not_hang_the_parser() -> None:
    """``WWW-Authenticate: "`` made parse_challenges loop for ever, adding empty challenges until the
    worker ran out of memory (found by tests/fuzz). Run in a child with a memory cap and a timeout."""
    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from webhook.registry.auth import parse_challenges\n"
        "assert parse_challenges('\"') == []\n"
        "assert parse_challenges('\"=\", Basic realm=x')[-1].scheme == 'basic'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stderr[-500:]

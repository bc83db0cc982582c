"""Image references: a table of the forms pod specs hold, checked against our expectations and, in the
same run, against the distribution reference library itself (built from Go by install-tools.sh)."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.helpers.tools import tool
from webhook.errors import InvalidReference
from webhook.oci.reference import Reference, canonical_domain, canonical_repository, parse, validate_digest

H64 = "a" * 64
D256 = f"sha256:{'0123456789abcdef' * 4}"
D512 = f"sha512:{'0123456789abcdef' * 8}"
HUB = "docker.io"

# (input, (domain, path, tag, digest)) for valid references.
VALID: list[tuple[str, tuple[str, str, str | None, str | None]]] = [
    ("nginx", (HUB, "library/nginx", "latest", None)),
    ("nginx:1.27", (HUB, "library/nginx", "1.27", None)),
    ("nginx:latest", (HUB, "library/nginx", "latest", None)),
    ("library/nginx", (HUB, "library/nginx", "latest", None)),
    ("docker.io/nginx", (HUB, "library/nginx", "latest", None)),
    ("docker.io/library/nginx", (HUB, "library/nginx", "latest", None)),
    ("index.docker.io/nginx", (HUB, "library/nginx", "latest", None)),
    ("index.docker.io/library/nginx:1", (HUB, "library/nginx", "1", None)),
    ("bitnami/redis:7", (HUB, "bitnami/redis", "7", None)),
    ("a/b/c/d:e", (HUB, "a/b/c/d", "e", None)),
    ("ghcr.io/org/app:v1.2.3", ("ghcr.io", "org/app", "v1.2.3", None)),
    ("ghcr.io/org/team/app", ("ghcr.io", "org/team/app", "latest", None)),
    ("registry.k8s.io/pause:3.9", ("registry.k8s.io", "pause", "3.9", None)),
    ("gcr.io/distroless/static-debian12:nonroot", ("gcr.io", "distroless/static-debian12", "nonroot", None)),
    ("quay.io/prometheus/node-exporter:v1.8.2", ("quay.io", "prometheus/node-exporter", "v1.8.2", None)),
    ("localhost/app", ("localhost", "app", "latest", None)),
    ("localhost:5000/app:dev", ("localhost:5000", "app", "dev", None)),
    (f"localhost:5000/team/app@{D256}", ("localhost:5000", "team/app", None, D256)),
    ("127.0.0.1:5000/app", ("127.0.0.1:5000", "app", "latest", None)),
    ("127.0.0.1/app", ("127.0.0.1", "app", "latest", None)),
    ("[::1]:5000/app:v1", ("[::1]:5000", "app", "v1", None)),
    ("[fe80::1]/app", ("[fe80::1]", "app", "latest", None)),
    (f"[2001:db8::1]:443/ns/app@{D256}", ("[2001:db8::1]", "ns/app", None, D256)),
    ("Example.COM/app", ("example.com", "app", "latest", None)),
    ("myregistry:5000/app", ("myregistry:5000", "app", "latest", None)),
    ("myregistry/app", (HUB, "myregistry/app", "latest", None)),
    ("MyRegistry/app", ("myregistry", "app", "latest", None)),
    (f"nginx@{D256}", (HUB, "library/nginx", None, D256)),
    (f"nginx:1.27@{D256}", (HUB, "library/nginx", "1.27", D256)),
    (f"ghcr.io/org/app:v1@{D256}", ("ghcr.io", "org/app", "v1", D256)),
    ("app:TAG_With.Mixed-Case", (HUB, "library/app", "TAG_With.Mixed-Case", None)),
    ("app:_underscore", (HUB, "library/app", "_underscore", None)),
    ("app:" + "t" * 128, (HUB, "library/app", "t" * 128, None)),
    ("a.b/c", ("a.b", "c", "latest", None)),
    ("my-registry.example.com:8443/x/y", ("my-registry.example.com:8443", "x/y", "latest", None)),
    ("foo_bar/baz", (HUB, "foo_bar/baz", "latest", None)),
    ("foo__bar", (HUB, "library/foo__bar", "latest", None)),
    ("foo---bar", (HUB, "library/foo---bar", "latest", None)),
    ("foo.bar/baz", ("foo.bar", "baz", "latest", None)),
    ("docker.io/foo.bar", (HUB, "library/foo.bar", "latest", None)),
    ("localhost", (HUB, "library/localhost", "latest", None)),
    ("localhost:5000", (HUB, "library/localhost", "5000", None)),
    (f"nginx@{D512}", (HUB, "library/nginx", None, D512)),
    ("xn--bcher-kva.example/app", ("xn--bcher-kva.example", "app", "latest", None)),
    ("registry-1.docker.io/library/nginx", ("registry-1.docker.io", "library/nginx", "latest", None)),
    ("a", (HUB, "library/a", "latest", None)),
    ("0/1", (HUB, "0/1", "latest", None)),
    ("a" * 247, (HUB, "library/" + "a" * 247, "latest", None)),
    ("example.com/" + "b" * 255, ("example.com", "b" * 255, "latest", None)),
]

# (input, a phrase the error must contain) for invalid references.
INVALID: list[tuple[str, str]] = [
    ("", "empty"),
    ("Nginx", "must be lowercase"),
    ("docker.io/Library/nginx", "must be lowercase"),
    ("ghcr.io/Org/app:v1", "must be lowercase"),
    ("nginx:", "tag"),
    ("nginx:-tag", "tag '-tag'"),
    ("nginx:.tag", "tag '.tag'"),
    ("nginx:" + "t" * 129, "tag"),
    ("nginx@sha256:abc", "digest"),
    (f"nginx@sha256:{'A' * 64}", "lowercase hex"),
    (f"nginx@md5:{'a' * 32}", "unsupported algorithm 'md5'"),
    (f"nginx@sha256:{'a' * 63}", "needs 64"),
    (H64, "image ID"),
    ("a" * 248, "255"),
    ("example.com/" + "b" * 256, "255"),
    ("localhost:abc/app", "registry 'localhost:abc'"),
    ("-foo/bar", "component '-foo'"),
    ("foo//bar", "empty component"),
    ("foo/bar/", "empty component"),
    ("foo..bar", "component 'foo..bar'"),
    ("foo_-bar", "component 'foo_-bar'"),
    (" nginx", "white space"),
    ("nginx ", "white space"),
    ("nginx:tag@", "invalid image reference"),
    ("http://registry/app", "invalid image reference"),
    ("[::1/app", "registry '[::1'"),
    ("registry.example.com:/app", "registry 'registry.example.com:'"),
    ("ghcr.io/org/app:v1:v2", "tag 'v1:v2'"),
    ("café/app", "invalid image reference"),
    ("app:tàg", "tag 'tàg'"),
    ("[fe80::1%eth0]:5000/app", "invalid image reference"),
]


@pytest.mark.parametrize(("text", "want"), VALID, ids=[v[0][:60] for v in VALID])
def test_valid_reference(text: str, want: tuple[str, str, str | None, str | None]) -> None:
    ref = parse(text)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == want


@pytest.mark.parametrize(("text", "phrase"), INVALID, ids=[v[0][:60] or "<empty>" for v in INVALID])
def test_invalid_reference_names_the_problem(text: str, phrase: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse(text)
    assert phrase in str(info.value)


def test_table_is_large_enough() -> None:
    assert len(VALID) + len(INVALID) >= 60


def test_same_results_as_the_distribution_reference_library() -> None:
    """Every form in the table parses (or fails) exactly as the Go library the kubelet uses, the
    registry host then put in canonical form."""
    inputs = [text for text, _ in VALID] + [text for text, _ in INVALID]
    proc = subprocess.run(
        [tool("refparse")],
        input="\n".join(json.dumps(t) for t in inputs) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    theirs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(theirs) == len(inputs)
    disagreements = []
    for text, go in zip(inputs, theirs, strict=True):
        try:
            ref = parse(text)
            ours = {
                "ok": True,
                "domain": ref.domain,
                "path": ref.path,
                "tag": ref.tag or "",
                "digest": ref.digest or "",
            }
        except InvalidReference:
            ours = {"ok": False}
        expected = (
            {"ok": go["ok"]}
            if not go["ok"]
            else {
                "ok": True,
                "domain": canonical_domain(go["domain"]),
                "path": go["path"],
                "tag": go.get("tag", ""),
                "digest": go.get("digest", ""),
            }
        )
        if ours != expected:
            disagreements.append((text, ours, go))
    assert disagreements == []


def test_digest_wins_over_tag_for_what_is_fetched() -> None:
    ref = parse(f"ghcr.io/org/app:v1@{D256}")
    assert ref.target == D256
    assert str(ref) == f"ghcr.io/org/app:v1@{D256}"
    assert parse("ghcr.io/org/app:v1").target == "v1"


def test_string_forms() -> None:
    assert str(parse("nginx")) == "docker.io/library/nginx:latest"
    assert parse("nginx").familiar() == "nginx:latest"
    assert parse("bitnami/redis:7").familiar() == "bitnami/redis:7"
    assert parse("ghcr.io/org/app:v1").familiar() == "ghcr.io/org/app:v1"
    assert parse("nginx").name == "docker.io/library/nginx"


def test_docker_hub_api_host() -> None:
    assert parse("nginx").api_host == "registry-1.docker.io"
    assert parse("localhost:5000/app").api_host == "localhost:5000"


def test_no_default_tag_when_asked() -> None:
    assert parse("nginx", default_tag=False).tag is None


def test_with_digest_validates() -> None:
    ref = parse("ghcr.io/org/app:v1")
    assert ref.with_digest(D256) == Reference("ghcr.io", "org/app", "v1", D256)
    with pytest.raises(InvalidReference):
        ref.with_digest("sha256:nothex")


@pytest.mark.parametrize("digest", [D256, D512, "sha384:" + "ab" * 48])
def test_validate_digest_accepts_registered_algorithms(digest: str) -> None:
    assert validate_digest(digest) == digest


@pytest.mark.parametrize(
    "digest", ["sha256", "sha256:", "SHA256:" + H64, "sha256:" + H64 + "0", "blake3:" + H64]
)
def test_validate_digest_rejects(digest: str) -> None:
    with pytest.raises(InvalidReference):
        validate_digest(digest)


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("LOCALHOST:5000/apps/web:v1", "localhost:5000/apps/web:v1"),
        ("Localhost:5000/apps/web:v1", "localhost:5000/apps/web:v1"),
        ("registry.example.com:443/apps/web:v1", "registry.example.com/apps/web:v1"),
        ("REGISTRY.Example.com:443/apps/web:v1", "registry.example.com/apps/web:v1"),
        ("INDEX.DOCKER.IO/nginx:1", "docker.io/library/nginx:1"),
        ("docker.io:443/library/nginx:1", "docker.io/library/nginx:1"),
        ("[FE80::1]:443/app:v1", "[fe80::1]/app:v1"),
        # Attack: a port with leading zeros is the same port to every dialer.
        ("registry.example.com:0443/apps/web:v1", "registry.example.com/apps/web:v1"),
        ("localhost:05000/apps/web:v1", "localhost:5000/apps/web:v1"),
        ("[0:0:0:0:0:0:0:1]:5000/app:v1", "[::1]:5000/app:v1"),
    ],
)
def test_second_spelling_of_a_registry_is_the_same_repository(written: str, canonical: str) -> None:
    """Attack: write the registry host in another case or with its default port so that the image
    falls through to a weaker trust-policy statement, exemption or credential. Every decision uses
    this one name."""
    assert str(parse(written)) == canonical


@pytest.mark.parametrize(
    "text", ["[kube-system]registry.example.com", "[::1", "[::1]x", "host:", "host:12a", "a:b:c"]
)
def test_a_host_that_is_not_host_port_is_left_for_the_grammar_to_refuse(text: str) -> None:
    """Bug: canonicalising ``[kube-system]registry.example.com`` raised ValueError out of parse."""
    assert canonical_domain(text) == text.lower()


def test_plain_http_default_port_is_not_dropped() -> None:
    """``host:80`` over HTTPS is another endpoint than ``host``; only configuration can say a host
    speaks plain HTTP, so the reference keeps the port."""
    assert parse("registry.example.com:80/app").domain == "registry.example.com:80"
    assert canonical_domain("Registry.Example.com:8443") == "registry.example.com:8443"
    assert canonical_repository("LOCALHOST:5000/apps/web") == "localhost:5000/apps/web"

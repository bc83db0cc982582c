"""exemptImages and allowedRegistries: patterns matched by structure, never across a boundary."""

from __future__ import annotations

import pytest

from webhook.errors import ConfigError
from webhook.oci.patterns import HostPattern, ImagePattern
from webhook.oci.reference import parse
from webhook.verify.policy import Policy

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("pattern", "image"),
    [
        ("registry.k8s.io/pause:*", "registry.k8s.io/pause:3.9"),
        ("registry.k8s.io/pause:*", "REGISTRY.K8S.IO:443/pause:3.9"),
        (
            "*.dkr.ecr.us-east-1.amazonaws.com/platform/*",
            "123.dkr.ecr.us-east-1.amazonaws.com/platform/agent:1",
        ),
        ("docker.io/library/busybox:*", "busybox:1.36"),
        ("docker.io/library/busybox", f"busybox@{D}"),
        ("ghcr.io/acme/**", "ghcr.io/acme/a/b/c:v1"),
        ("ghcr.io/acme/**/tools", "ghcr.io/acme/tools:v1"),
        ("ghcr.io", "ghcr.io/anything/at/all:v1"),
        (f"ghcr.io/acme/app@{D}", f"ghcr.io/acme/app:v1@{D}"),
        ("localhost:5000/app", "localhost:5000/app:dev"),
        ("[::1]:5000/app", "[::1]:5000/app:dev"),
    ],
)
def test_pattern_matches(pattern: str, image: str) -> None:
    assert ImagePattern.parse(pattern).matches(parse(image))


@pytest.mark.parametrize(
    ("pattern", "image"),
    [
        # Attack: a '*' stretched across '/' into another registry's path.
        (
            "*.dkr.ecr.us-east-1.amazonaws.com/platform/*",
            "evil.example/x.dkr.ecr.us-east-1.amazonaws.com/platform/miner:1",
        ),
        # Attack: a '*' in the tag stretched across ':' and '/' (busybox:443/miner is another registry).
        ("docker.io/library/busybox:*", "busybox:443/miner:1"),
        # A host glob never crosses a '.'-separated label.
        ("*.example.com/app", "a.b.example.com/app:1"),
        ("registry.k8s.io/pause:*", "registry.k8s.io/pause/evil:1"),
        ("registry.k8s.io/pause:*", f"registry.k8s.io/pause@{D}"),
        ("ghcr.io/acme/*", "ghcr.io/acme/a/b:v1"),
        ("localhost:5000/app", "localhost:5001/app:1"),
        ("localhost/app", "localhost:5000/app:1"),
        (f"ghcr.io/acme/app@{D}", "ghcr.io/acme/app:v1"),
    ],
)
def test_pattern_does_not_reach_another_image(pattern: str, image: str) -> None:
    assert not ImagePattern.parse(pattern).matches(parse(image))


@pytest.mark.parametrize(
    "bad",
    ["busybox:*", "ghcr.io/App", "ghcr.io/a**/b", "ghcr.io/a@sha256:zz", "reg istry/app", "", " ghcr.io/a"],
)
def test_patterns_outside_the_grammar_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError):
        ImagePattern.parse(bad)


def test_host_patterns() -> None:
    assert HostPattern.parse("*.Example.com:443", "x").matches("registry.example.com")
    assert not HostPattern.parse("*.example.com", "x").matches("evil.com")
    assert not HostPattern.parse("registry.example.com", "x").matches("registry.example.com:5000")


def test_policy_prechecks_in_order() -> None:
    policy = Policy(
        exempt_images=(ImagePattern.parse("registry.k8s.io/pause:*"),),
        allowed_registries=(HostPattern.parse("registry.example.com", "x"),),
        require_digest=True,
    )
    exempt = policy.precheck(parse("registry.k8s.io/pause:3.9"))
    assert exempt is not None and exempt.allowed
    elsewhere = policy.precheck(parse("evil.example/app@" + D))
    assert elsewhere is not None and not elsewhere.allowed and "evil.example" in elsewhere.reason
    tag_only = policy.precheck(parse("registry.example.com/app:v1"))
    assert tag_only is not None and not tag_only.allowed and "requireDigest" in tag_only.reason
    assert policy.precheck(parse(f"registry.example.com/app@{D}")) is None


@pytest.mark.parametrize(
    ("pattern", "image"),
    [
        # Attack: a tag exemption stretched to every digest of the repository. The kubelet pulls
        # the digest and ignores the tag, so ``app:v1@<any digest>`` runs whatever that digest is.
        ("ghcr.io/acme/app:v1", f"ghcr.io/acme/app:v1@{D}"),
        # The same with a tag glob: ``pause@D`` is not exempt, so neither is ``pause:3.9@D``.
        ("registry.k8s.io/pause:*", f"registry.k8s.io/pause:3.9@{D}"),
    ],
)
def test_tag_exemption_does_not_exempt_another_digest_written_behind_the_tag(
    pattern: str, image: str
) -> None:
    assert not ImagePattern.parse(pattern).matches(parse(image))

"""The chart's cache.shared values: rendered into Referee's configuration as keys it accepts, with
the password, the CA and the signing key mounted as files at the paths the configuration names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.chart.conftest import deep_merge
from tests.helpers.chart import RELEASE, Rendered, render, template, values_file
from webhook.config import parse_config

SHARED = "/etc/referee/shared-cache"


def shared_render(tmp_path: Path, base_values: dict[str, Any], shared: dict[str, Any]) -> Rendered:
    return render(values_file(tmp_path, deep_merge(base_values, {"cache": {"shared": shared}})))


def volumes(out: Rendered) -> dict[str, Any]:
    spec = out.one("Deployment")["spec"]["template"]["spec"]
    return {v["name"]: v for v in spec["volumes"]}


def test_no_shared_cache_by_default(tmp_path: Path, base_values: dict[str, Any]) -> None:
    out = render(values_file(tmp_path, base_values))
    assert "shared" not in out.config()["cache"]
    assert "shared-cache" not in volumes(out)


def test_the_shared_cache_reaches_referee_with_its_files_mounted(
    tmp_path: Path, base_values: dict[str, Any]
) -> None:
    out = shared_render(tmp_path, base_values, {
        "url": "rediss://redis.cache:6380/2", "keyPrefix": "prod:", "budgetMilliseconds": 8,
        "passwordSecret": {"name": "redis-auth", "key": "pw"},
        "caSecret": {"name": "redis-ca", "key": "ca.pem"},
    })  # fmt: skip
    shared = out.config()["cache"]["shared"]
    assert shared == {
        "url": "rediss://redis.cache:6380/2", "keyPrefix": "prod:", "budgetMilliseconds": 8,
        "passwordFile": f"{SHARED}/password", "caFile": f"{SHARED}/ca.crt",
        "signingKeyFile": f"{SHARED}/signing-key",
    }  # fmt: skip
    assert out.config()["cache"]["verdictTTLSeconds"] == 300  # the other cache keys stay
    config = parse_config(out.config(), base=Path("/"), environ={})
    assert config.shared_cache_url == "rediss://redis.cache:6380/2"
    assert config.shared_cache_signing_key_file == Path(f"{SHARED}/signing-key")
    sources = volumes(out)["shared-cache"]["projected"]["sources"]
    assert sources == [
        {"secret": {"name": f"{RELEASE}-shared-cache-key",
                    "items": [{"key": "signing-key", "path": "signing-key"}]}},
        {"secret": {"name": "redis-auth", "items": [{"key": "pw", "path": "password"}]}},
        {"secret": {"name": "redis-ca", "items": [{"key": "ca.pem", "path": "ca.crt"}]}},
    ]  # fmt: skip
    [container] = out.one("Deployment")["spec"]["template"]["spec"]["containers"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["shared-cache"] == {"name": "shared-cache", "mountPath": SHARED, "readOnly": True}


def test_a_signing_key_secret_of_ones_own(tmp_path: Path, base_values: dict[str, Any]) -> None:
    out = shared_render(tmp_path, base_values,
                        {"url": "redis://redis:6379", "signingKeySecret": {"name": "my-key"}})  # fmt: skip
    [source] = volumes(out)["shared-cache"]["projected"]["sources"]
    assert source["secret"]["name"] == "my-key"
    assert "passwordFile" not in out.config()["cache"]["shared"]


@pytest.mark.parametrize(
    ("shared", "phrase"),
    [
        ({"url": "redis://user:pw@redis:6379"}, "url"),
        ({"url": "http://redis:6379"}, "url"),
        ({"budgetMilliseconds": 0}, "budgetMilliseconds"),
        ({"keyPrefix": ""}, "keyPrefix"),
        ({"url": "redis://redis:6379", "caSecret": {"name": "ca"}}, "rediss://"),
    ],
)
def test_wrong_shared_cache_values_fail_the_render(
    tmp_path: Path, base_values: dict[str, Any], shared: dict[str, Any], phrase: str
) -> None:
    proc = template(
        values_file(tmp_path, deep_merge(base_values, {"cache": {"shared": shared}})), check=False
    )
    assert proc.returncode != 0 and phrase in proc.stderr

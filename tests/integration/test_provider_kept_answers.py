"""Answers kept for identical ProviderRequests (``webhook/server/memo.py``): only all-allowed answers
from cached facts, never longer than those facts live, never past a change of trust material."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.registries import RunningRegistry
from tests.helpers.samples import SampleImages, sample_images
from webhook.config import parse_config
from webhook.server.app import create_app

GK_API = "externaldata.gatekeeper.sh/v1beta1"
Kept = Callable[[str, bytes, bytes | None], bytes | None]


@pytest.fixture(scope="module")
def images(olareg: RunningRegistry, tmp_path_factory: pytest.TempPathFactory) -> SampleImages:
    return sample_images(olareg, tmp_path_factory.mktemp("kept-images"), "kept")


def app_for(images: SampleImages, tmp_path: Path, **cache: float) -> tuple[object, Kept, Path]:
    policy = tmp_path / "trustpolicy.json"
    policy.write_text(images.policy.read_text())
    config = parse_config(
        {"trustPolicy": str(policy), "trustStore": str(images.store), "cache": cache,
         "registries": {images.registry.host: {"plainHTTP": True}}}, base=tmp_path, environ={})  # fmt: skip
    app = create_app(config)
    return app.test_client(), app.extensions["referee.kept_answer"], policy


def body(*keys: str) -> bytes:
    return json.dumps(
        {"apiVersion": GK_API, "kind": "ProviderRequest", "request": {"keys": list(keys)}}
    ).encode()


def ask(client: object, data: bytes, path: str = "/provider") -> dict[str, object]:
    resp = client.post(path, data=data, content_type="application/json")  # type: ignore[attr-defined]
    assert resp.status_code == 200, resp.data
    return json.loads(resp.data)  # type: ignore[no-any-return]


def test_a_warm_answer_is_kept_byte_for_byte(images: SampleImages, tmp_path: Path) -> None:
    client, kept, _ = app_for(images, tmp_path)
    data = body(images.signed)
    ask(client, data)  # verified now: nothing is kept from a fresh verification
    assert kept("/provider", data, None) is None
    second = ask(client, data)  # from the cache: kept
    answer = kept("/provider", data, None)
    assert answer is not None and json.loads(answer) == second
    assert kept("/provider/mutate", data, None) is None and kept("/provider", data + b" ", None) is None


def test_a_denied_image_makes_an_answer_that_is_never_kept(images: SampleImages, tmp_path: Path) -> None:
    client, kept, _ = app_for(images, tmp_path)
    data = body(images.signed, images.unsigned)
    for _ in range(3):
        ask(client, data)
    assert kept("/provider", data, None) is None


def test_a_kept_answer_ends_with_the_tag_it_rests_on(images: SampleImages, tmp_path: Path) -> None:
    client, kept, _ = app_for(images, tmp_path, tagTTLSeconds=1.5)
    data = body(images.signed)
    ask(client, data)
    ask(client, data)
    assert kept("/provider", data, None) is not None
    time.sleep(1.6)  # the tag may name another digest now
    assert kept("/provider", data, None) is None


def test_a_kept_answer_ends_when_the_trust_policy_changes(images: SampleImages, tmp_path: Path) -> None:
    client, kept, policy = app_for(images, tmp_path)
    data = body(images.signed)
    ask(client, data)
    ask(client, data)
    assert kept("/provider", data, None) is not None
    doc = json.loads(policy.read_text())
    doc["trustPolicies"][0]["trustedIdentities"] = ["x509.subject: C=US, ST=WA, O=Someone Else"]
    policy.write_text(json.dumps(doc))
    time.sleep(2.1)  # the files are checked every two seconds
    assert kept("/provider", data, None) is None
    [item] = ask(client, data)["response"]["items"]  # type: ignore[index]
    assert "not a trusted identity" in item["error"]

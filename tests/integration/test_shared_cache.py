"""Two `referee serve` processes (two workers each) sharing one real redis-server and one real
olareg (behind a proxy that counts what reaches it): what one verified the other answers without a
registry read; what an adversary plants in Redis is never an allow; a Redis stopped mid-run and
started again fails no admission, changes no decision, and /readyz says so."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.helpers import pki
from tests.helpers.artifacts import push_image
from tests.helpers.counting_proxy import CountingProxy, counting_proxy
from tests.helpers.redis_server import RedisServer, redis_server
from tests.helpers.registries import RunningRegistry
from tests.helpers.samples import SampleImages, sample_images
from tests.helpers.serving import referee_serve
from tests.helpers.tools import free_port
from tests.integration.test_webhook import Server, pod
from webhook.oci.reference import parse
from webhook.shared import codec
from webhook.trust.files import TrustFiles
from webhook.trust.revocation import HttpRevocationSource
from webhook.verify import records

SIGNING_KEY = b"referee-replicas-only-" + b"k" * 26
PREFIX = "it:"


@dataclass(frozen=True)
class Cluster:
    one: Server
    other: Server
    redis: RedisServer
    proxy: CountingProxy
    images: SampleImages

    def via_proxy(self, image: str) -> str:
        return image.replace(self.images.registry.host, self.proxy.host, 1)


@pytest.fixture(scope="module")
def cluster(olareg: RunningRegistry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("shared-cache")
    images = sample_images(olareg, work / "images", "shared")
    with ExitStack() as stack:
        redis = stack.enter_context(redis_server(work / "redis"))
        proxy = stack.enter_context(counting_proxy(olareg.host))
        key = work / "signing-key"
        key.write_bytes(SIGNING_KEY)
        servers = []
        for name in ("one", "other"):
            servers.append(stack.enter_context(start(work / name, images, proxy, redis, key)))
        yield Cluster(servers[0], servers[1], redis, proxy, images)


@contextlib.contextmanager
def start(
    workdir: Path, images: SampleImages, proxy: CountingProxy, redis: RedisServer, key: Path
) -> Iterator[Server]:
    """``referee serve`` reading the registry through ``proxy``, sharing ``redis`` with ``key``."""
    workdir.mkdir(parents=True)
    ca = pki.make_ca(workdir)
    cert = pki.make_server_cert(workdir, ca)
    port = free_port()
    config = workdir / "config.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{port}\ntrustPolicy: {images.policy}\ntrustStore: {images.store}\n"
        f"registries: {{'{proxy.host}': {{plainHTTP: true}}}}\n"
        f"tls: {{certFile: {cert.cert_path}, keyFile: {cert.key_path}}}\n"
        "timeouts: {admissionSeconds: 5, marginSeconds: 1}\n"
        "server: {workers: 2, threads: 4}\n"
        f"cache: {{shared: {{url: '{redis.url}', passwordFile: {redis.password_file()}, "
        f"signingKeyFile: {key}, keyPrefix: '{PREFIX}', budgetMilliseconds: 50}}}}\n"
    )
    url = f"https://127.0.0.1:{port}"
    with referee_serve(config, url, ca.cert_path, env={"POD_NAMESPACE": "referee-system"}) as log:
        yield Server(url, ca.cert_path, log)


def readyz(server: Server) -> dict[str, object]:
    resp = requests.get(f"{server.url}/readyz", verify=str(server.ca), timeout=5)
    assert resp.status_code == 200, resp.text
    body: dict[str, object] = resp.json()
    return body


def shared_count(server: Server, kind: str, result: str) -> float:
    text = requests.get(f"{server.url}/metrics", verify=str(server.ca), timeout=5).text
    line = f'referee_shared_cache_total{{kind="{kind}",result="{result}"}} '
    return sum(float(row.split()[-1]) for row in text.splitlines() if row.startswith(line))


def redis_key(kind: str, name: tuple[str, ...]) -> str:
    return f"{PREFIX}v1:{kind}:{codec.key_name(codec.naming_key(SIGNING_KEY), records.name_of(name))}"


def keys_of(cluster: Cluster, image: str, digest: str) -> tuple[str, str]:
    """The Redis keys a replica reads for ``image`` (by tag, no credentials): its tag and its allow."""
    ref = parse(image)
    trust = TrustFiles(cluster.images.policy, cluster.images.store).current().fingerprint
    settings = f"maxSignatures=10|revocation={HttpRevocationSource().fingerprint}"
    return (redis_key("tag", (str(ref), "")),
            redis_key("verdict", (ref.name, digest, f"{trust}|{settings}")))  # fmt: skip


def test_a_verdict_one_replica_verified_is_a_hit_on_the_other_with_no_registry_read(cluster: Cluster) -> None:
    signed = cluster.via_proxy(cluster.images.signed)
    assert cluster.one.review(pod(signed))["allowed"] is True
    read = cluster.proxy.total()
    assert read > 0
    hits = shared_count(cluster.other, "verdict", "hit")
    for _ in range(4):  # whichever worker of the other replica answers
        assert cluster.other.review(pod(signed))["allowed"] is True
    assert cluster.proxy.total() == read, "the other replica read the registry"
    assert shared_count(cluster.other, "verdict", "hit") > hits
    assert readyz(cluster.other)["sharedCache"] == "available"


def test_a_deployment_admitted_on_one_replica_prewarms_its_pods_on_the_other(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The ReplicaSet's pods, arriving at another replica a moment after their Deployment was
    admitted, resolve the tag and find the verdict in the shared cache: no registry read."""
    registry = cluster.images.registry
    digest = push_image(registry, "shared/prewarm", "v1", tmp_path, content="prewarm")
    cluster.images.notation.sign(registry, f"{registry.host}/shared/prewarm@{digest}")
    image = f"{cluster.proxy.host}/shared/prewarm:v1"
    template = {"spec": {"template": {"spec": pod(image)["spec"]}}}
    read = cluster.proxy.total()
    assert cluster.one.review(template, kind="Deployment", group="apps")["allowed"] is True
    assert cluster.proxy.total() > read
    read = cluster.proxy.total()
    for _ in range(4):
        assert cluster.other.review(pod(image))["allowed"] is True
    assert cluster.proxy.total() == read


def test_forged_allow_planted_in_redis_for_an_unsigned_image_is_denied(cluster: Cluster) -> None:
    """An adversary who can write to Redis but holds no signing key plants an allow (and a tag)
    for the unsigned image under the very keys a replica reads."""
    images = cluster.images
    unsigned = cluster.via_proxy(images.unsigned)
    tag_key, verdict_key = keys_of(cluster, unsigned, images.unsigned_digest)
    now = time.time()
    forged = {"allowed": True, "reason": "", "digest": images.unsigned_digest, "signer_subject": "CN=x",
              "signer_issuer": "CN=x", "signing_time": "", "signing_scheme": "notary.x509", "statement": "",
              "requirements": [], "artifacts": [], "signers": []}  # fmt: skip
    wrong_key = b"an-attackers-own-key-of-32-bytes!!"
    client = cluster.redis.client()
    for key, kind, data in (
        (verdict_key, "verdict", forged),
        (tag_key, "tag", {"digest": images.unsigned_digest}),
    ):
        value = codec.seal(wrong_key, key, kind, data, stored_at=now, expires_at=now + 300)
        assert value is not None
        client.set(key, value, px=300_000)
    rejected = shared_count(cluster.other, "verdict", "rejected")
    out = cluster.other.review(pod(unsigned))
    assert out["allowed"] is False and "no Notation signature found" in out["status"]["message"]
    assert images.unsigned_digest in out["status"]["message"]
    assert shared_count(cluster.other, "verdict", "rejected") > rejected  # it was read, and refused


def test_signed_images_allow_replayed_or_corrupted_under_the_tampered_images_key_is_denied(
    cluster: Cluster,
) -> None:
    """An adversary copies a genuine allow (of the signed image) under the tampered image's keys,
    then corrupts it in place: neither is an allow."""
    images = cluster.images
    signed = cluster.via_proxy(images.signed)
    assert cluster.one.review(pod(signed))["allowed"] is True
    _, signed_verdict = keys_of(cluster, signed, images.signed_digest)
    client = cluster.redis.client()
    genuine = client.get(signed_verdict)
    assert isinstance(genuine, bytes) and genuine.startswith(codec.MAGIC)
    tampered = cluster.via_proxy(images.tampered)
    _, verdict_key = keys_of(cluster, tampered, images.tampered_digest)
    corrupted = bytearray(genuine)
    corrupted[-5] ^= 0x20
    for planted in (genuine, bytes(corrupted)):
        client.set(verdict_key, planted, px=300_000)
        rejected = shared_count(cluster.other, "verdict", "rejected")
        out = cluster.other.review(pod(f"{tampered.rsplit(':', 1)[0]}@{images.tampered_digest}"))
        assert out["allowed"] is False and "integrity" in out["status"]["message"], out
        assert shared_count(cluster.other, "verdict", "rejected") > rejected
        client.delete(verdict_key)  # the replica's own denial is under the per-credential key


def test_redis_stopped_mid_run_and_restarted_fails_no_admission_and_changes_no_decision(
    cluster: Cluster,
) -> None:
    images = cluster.images
    signed, unsigned = cluster.via_proxy(images.signed), cluster.via_proxy(images.unsigned)
    expected = {signed: True, unsigned: False}
    cluster.redis.stop()
    try:
        for server in (cluster.one, cluster.other):
            for _ in range(3):
                for image, allowed in expected.items():
                    assert server.review(pod(image))["allowed"] is allowed
        for server in (cluster.one, cluster.other):
            state = readyz(server)  # still ready: 200
            assert state["status"] == "ready"
            assert str(state["sharedCache"]).startswith("unavailable ("), state
    finally:
        cluster.redis.start()
    deadline = time.monotonic() + 40
    while any(readyz(s).get("sharedCache") != "available" for s in (cluster.one, cluster.other)):
        assert time.monotonic() < deadline, "the replicas did not find Redis again"
        time.sleep(0.5)
    for server in (cluster.one, cluster.other):
        for image, allowed in expected.items():
            assert server.review(pod(image))["allowed"] is allowed

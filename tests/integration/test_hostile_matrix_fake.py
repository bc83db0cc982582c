"""The hostile matrix: registries that lie, loop, stall, throttle, steer Referee elsewhere or cost it
memory, each case ending in the right typed error (or denial) within the deadline; the last section
sends one pod per hostile registry to `referee serve` and wants each denied, with its reason, before
the webhook's timeout. (In-process fakes: no real registry can be made to misbehave like this; the
healthy registry beside them is a real olareg.) Slow clients and hostile AdmissionReviews are in
test_admission_hardening.py, parsers under fuzzing in tests/fuzz, revocation in
tests/unit/notary/test_revocation.py."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.costly_registry_fake import CostlyRegistryFake
from tests.helpers.fake_registry import FakeHandler, FakeRegistry, Route, fake_registry, trickle_headers
from tests.helpers.registries import RunningRegistry
from tests.helpers.samples import SampleImages, sample_images
from tests.helpers.tools import free_port
from tests.integration.test_webhook import Server, pod, start_server
from webhook.config import parse_config
from webhook.deadline import Deadline
from webhook.errors import (
    AuthenticationFailed,
    ContentMismatch,
    ContentTooLarge,
    DeadlineExceeded,
    NotFound,
    RateLimited,
    RegistryProtocolError,
    RegistryUnavailable,
)
from webhook.notary.envelope import MAX_ENVELOPE_BYTES
from webhook.oci.model import NOTARY_SIGNATURE, OCI_INDEX, OCI_MANIFEST, Descriptor, compute_digest
from webhook.oci.reference import parse
from webhook.registry import Limits
from webhook.registry.client import ClientSettings, HostSettings, HttpRepository, RegistryClient
from webhook.registry.credentials import Credential, Keyring
from webhook.server.app import build_gate
from webhook.transport import Reach, Transport, TransportError
from webhook.verify.decision import Decision
from webhook.verify.gate import Gate

MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:" + "c" * 64,
            "size": 2,
        },
        "layers": [],
    }
).encode()
DIGEST = compute_digest(MANIFEST)
BASE = "/v2/demo/app"


def entry(n: int, artifact_type: str = NOTARY_SIGNATURE) -> dict[str, object]:
    return {
        "mediaType": OCI_MANIFEST,
        "digest": f"sha256:{n:064x}",
        "size": 100 + n,
        "artifactType": artifact_type,
    }


def index(*entries: dict[str, object]) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list(entries)}).encode()


@pytest.fixture()
def fake() -> Iterator[FakeRegistry]:
    with fake_registry() as f:
        yield f


def repo(fake: FakeRegistry, **limits: float) -> HttpRepository:
    settings = ClientSettings(default=HostSettings(plain_http=True), limits=Limits(**limits))  # type: ignore[arg-type]
    return RegistryClient(settings).repository(parse(f"{fake.host}/demo/app:v1"))


def serve_manifest(body: bytes = MANIFEST, digest_header: str | None = DIGEST) -> object:
    def handler(h: FakeHandler) -> None:
        headers = {"Content-Type": OCI_MANIFEST}
        if digest_header:
            headers["Docker-Content-Digest"] = digest_header
        h.reply(200, body, headers)

    return handler


# --- content that is not what the digest promises -----------------------------------------------


def test_wrong_bytes_for_a_digest_fake(fake: FakeRegistry) -> None:
    other = MANIFEST.replace(b'"layers": []', b'"layers": [] ')
    fake.route("GET", f"{BASE}/manifests/{DIGEST}", serve_manifest(other, digest_header=None))  # type: ignore[arg-type]
    with pytest.raises(ContentMismatch) as info:
        repo(fake).fetch_manifest(DIGEST, Deadline.after(5))
    assert DIGEST in str(info.value) and fake.host in str(info.value)


def test_digest_header_that_disagrees_with_bytes_fake(fake: FakeRegistry) -> None:
    lie = "sha256:" + "d" * 64
    fake.route("GET", f"{BASE}/manifests/v1", serve_manifest(digest_header=lie))  # type: ignore[arg-type]
    with pytest.raises(ContentMismatch) as info:
        repo(fake).resolve("v1", Deadline.after(5))
    assert lie in str(info.value)


def test_head_without_digest_header_falls_back_to_hashing_fake(fake: FakeRegistry) -> None:
    fake.route("HEAD", f"{BASE}/manifests/v1", lambda h: h.reply(200, b"", {"Content-Type": OCI_MANIFEST}))
    fake.route("GET", f"{BASE}/manifests/v1", serve_manifest(digest_header=None))  # type: ignore[arg-type]
    handle = repo(fake)
    for _ in range(2):  # first sight: GET by tag; then a HEAD that names no digest, so GET by tag again
        m = handle.resolve("v1", Deadline.after(5))
        assert m.descriptor.digest == DIGEST and m.descriptor.size == len(MANIFEST)
    assert fake.hits.count(("HEAD", f"{BASE}/manifests/v1")) == 1
    assert fake.hits.count(("GET", f"{BASE}/manifests/v1")) == 2


def test_tag_seen_before_is_resolved_by_head_then_fetched_by_digest_and_checked_fake(
    fake: FakeRegistry,
) -> None:
    fake.route("GET", f"{BASE}/manifests/v1", serve_manifest())  # type: ignore[arg-type]
    handle = repo(fake)
    assert handle.resolve("v1", Deadline.after(5)).descriptor.digest == DIGEST  # first sight: GET by tag
    moved = "sha256:" + "e" * 64  # the tag now names another digest, whose bytes the registry forges
    fake.route(
        "HEAD",
        f"{BASE}/manifests/v1",
        lambda h: h.reply(200, b"", {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": moved}),
    )
    fake.route("GET", f"{BASE}/manifests/{moved}", serve_manifest(b"{}", digest_header=moved))  # type: ignore[arg-type]
    with pytest.raises(ContentMismatch):
        handle.resolve("v1", Deadline.after(5))
    assert ("HEAD", f"{BASE}/manifests/v1") in fake.hits, "a tag seen before is resolved with HEAD"


def test_content_type_that_is_not_a_manifest_fake(fake: FakeRegistry) -> None:
    fake.route(
        "GET", f"{BASE}/manifests/{DIGEST}", lambda h: h.reply(200, MANIFEST, {"Content-Type": "text/html"})
    )
    with pytest.raises(ContentMismatch):
        repo(fake).fetch_manifest(DIGEST, Deadline.after(5))


def test_blob_with_wrong_bytes_fake(fake: FakeRegistry) -> None:
    blob = b"envelope"
    descriptor = Descriptor("application/jose+json", compute_digest(b"other!!!"), len(blob))
    fake.route("GET", f"{BASE}/blobs/{descriptor.digest}", lambda h: h.reply(200, blob))
    with pytest.raises(ContentMismatch):
        repo(fake).fetch_blob(descriptor, Deadline.after(5))


def test_blob_longer_than_its_descriptor_fake(fake: FakeRegistry) -> None:
    blob = b"envelope-and-more"
    descriptor = Descriptor("application/jose+json", compute_digest(blob[:8]), 8)
    fake.route("GET", f"{BASE}/blobs/{descriptor.digest}", lambda h: h.reply(200, blob))
    with pytest.raises((ContentTooLarge, ContentMismatch)):
        repo(fake).fetch_blob(descriptor, Deadline.after(5))


# --- size caps ------------------------------------------------------------------------------------


def test_manifest_over_the_cap_refused_before_reading_fake(fake: FakeRegistry) -> None:
    big = b" " * 5000 + MANIFEST
    fake.route("GET", f"{BASE}/manifests/{DIGEST}", serve_manifest(big))  # type: ignore[arg-type]
    with pytest.raises(ContentTooLarge) as info:
        repo(fake, max_manifest_bytes=4096).fetch_manifest(DIGEST, Deadline.after(5))
    assert "4096" in str(info.value)


def test_manifest_over_the_cap_without_content_length_fake(fake: FakeRegistry) -> None:
    def chunked(h: FakeHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", OCI_MANIFEST)
        h.send_header("Connection", "close")
        h.end_headers()
        for _ in range(100):
            h.wfile.write(b" " * 1000)
        h.close_connection = True

    fake.route("GET", f"{BASE}/manifests/{DIGEST}", chunked)
    with pytest.raises(ContentTooLarge):
        repo(fake, max_manifest_bytes=4096).fetch_manifest(DIGEST, Deadline.after(5))


def test_too_many_referrers_fake(fake: FakeRegistry) -> None:
    body = index(*[entry(i) for i in range(20)])
    fake.route("GET", f"{BASE}/referrers/{DIGEST}", lambda h: h.reply(200, body, {"Content-Type": OCI_INDEX}))
    with pytest.raises((ContentTooLarge, RegistryProtocolError)):
        repo(fake, max_referrers=10).referrers(DIGEST, Deadline.after(5))


# --- pagination -----------------------------------------------------------------------------------


def test_link_pages_are_followed_and_filtered_client_side_fake(fake: FakeRegistry) -> None:
    page1 = index(entry(1), entry(2, "application/spdx+json"))
    page2 = index(entry(3))
    fake.route(
        "GET",
        f"{BASE}/referrers/{DIGEST}",
        lambda h: h.reply(
            200, page1, {"Content-Type": OCI_INDEX, "Link": f'<{BASE}/referrers/{DIGEST}?page=2>; rel="next"'}
        ),
    )
    fake.route(
        "GET", f"{BASE}/referrers/{DIGEST}?page=2", lambda h: h.reply(200, page2, {"Content-Type": OCI_INDEX})
    )
    found = repo(fake).referrers(DIGEST, Deadline.after(5), NOTARY_SIGNATURE)
    assert [d.digest for d in found.descriptors] == [f"sha256:{1:064x}", f"sha256:{3:064x}"]
    assert found.source == "referrers-api"


def test_server_side_filter_is_trusted_only_when_announced_fake(fake: FakeRegistry) -> None:
    body = index(entry(1), entry(2, "application/spdx+json"))
    fake.route(
        "GET",
        f"{BASE}/referrers/{DIGEST}",
        lambda h: h.reply(200, body, {"Content-Type": OCI_INDEX, "OCI-Filters-Applied": "artifactType"}),
    )
    found = repo(fake).referrers(DIGEST, Deadline.after(5), NOTARY_SIGNATURE)
    # The registry said it filtered, so its answer is taken as is (even the odd entry).
    assert len(found.descriptors) == 2


def test_legacy_filters_applied_annotation_is_honoured_fake(fake: FakeRegistry) -> None:
    """Registries built on distribution-spec 1.1.0-rc1 announced filtering with an index annotation."""
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [entry(1)],
            "annotations": {"org.opencontainers.referrers.filtersApplied": "artifactType"},
        }
    ).encode()
    fake.route("GET", f"{BASE}/referrers/{DIGEST}", lambda h: h.reply(200, body, {"Content-Type": OCI_INDEX}))
    found = repo(fake).referrers(DIGEST, Deadline.after(5), "application/vnd.example.other")
    assert len(found.descriptors) == 1  # taken as filtered by the registry


def test_link_loop_fake(fake: FakeRegistry) -> None:
    first, second = f"{BASE}/referrers/{DIGEST}", f"{BASE}/referrers/{DIGEST}?page=2"
    fake.route(
        "GET",
        first,
        lambda h: h.reply(
            200, index(entry(1)), {"Content-Type": OCI_INDEX, "Link": f'<{second}>; rel="next"'}
        ),
    )
    fake.route(
        "GET",
        second,
        lambda h: h.reply(
            200, index(entry(2)), {"Content-Type": OCI_INDEX, "Link": f'<{first}>; rel="next"'}
        ),
    )
    with pytest.raises(RegistryProtocolError) as info:
        repo(fake).referrers(DIGEST, Deadline.after(5))
    assert "loop" in str(info.value)


def test_endless_pages_are_capped_fake(fake: FakeRegistry) -> None:
    def page(h: FakeHandler) -> None:
        n = int(h.path.rsplit("=", 1)[1]) if "=" in h.path else 0
        h.reply(
            200,
            index(entry(n)),
            {"Content-Type": OCI_INDEX, "Link": f'<{BASE}/referrers/{DIGEST}?page={n + 1}>; rel="next"'},
        )

    fake.route("GET", f"{BASE}/referrers/{DIGEST}", page)
    with pytest.raises(RegistryProtocolError) as info:
        repo(fake, max_referrer_pages=5).referrers(DIGEST, Deadline.after(5))
    assert "more than 5 pages" in str(info.value)
    assert len(fake.hits) == 5


def test_cross_origin_link_is_not_followed_fake(fake: FakeRegistry) -> None:
    fake.route(
        "GET",
        f"{BASE}/referrers/{DIGEST}",
        lambda h: h.reply(
            200,
            index(entry(1)),
            {"Content-Type": OCI_INDEX, "Link": '<http://169.254.169.254/latest/meta-data>; rel="next"'},
        ),
    )
    with pytest.raises(RegistryProtocolError) as info:
        repo(fake).referrers(DIGEST, Deadline.after(5))
    assert "another origin" in str(info.value)


# --- API detection --------------------------------------------------------------------------------


def test_plain_404_means_no_api_and_tag_schema_is_read_fake(fake: FakeRegistry) -> None:
    fake.route("GET", f"{BASE}/referrers/{DIGEST}", lambda h: h.reply(404, b"404 page not found"))
    tag = DIGEST.replace(":", "-")
    fake.route(
        "GET", f"{BASE}/manifests/{tag}", lambda h: h.reply(200, index(entry(7)), {"Content-Type": OCI_INDEX})
    )
    r = repo(fake)
    found = r.referrers(DIGEST, Deadline.after(5))
    assert found.source == "tag-schema" and len(found.descriptors) == 1
    # Capability is remembered: the second call goes straight to the tag.
    r.referrers(DIGEST, Deadline.after(5))
    assert fake.count("GET", f"{BASE}/referrers/{DIGEST}") == 1


def test_name_unknown_is_a_missing_repository_not_a_missing_api_fake(fake: FakeRegistry) -> None:
    fake.route(
        "GET",
        f"{BASE}/referrers/{DIGEST}",
        lambda h: h.reply(
            404,
            b'{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known"}]}',
            {"Content-Type": "application/json"},
        ),
    )
    with pytest.raises(NotFound) as info:
        repo(fake).referrers(DIGEST, Deadline.after(5))
    assert "does not exist" in str(info.value)


def test_tag_schema_entries_without_artifact_type_are_read_to_classify_fake(fake: FakeRegistry) -> None:
    sig = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": NOTARY_SIGNATURE, "digest": "sha256:" + "e" * 64, "size": 2},
            "layers": [],
            "subject": {"mediaType": OCI_MANIFEST, "digest": DIGEST, "size": len(MANIFEST)},
        }
    ).encode()
    sig_digest = compute_digest(sig)
    fake.route("GET", f"{BASE}/referrers/{DIGEST}", lambda h: h.reply(404, b""))
    fake.route(
        "GET",
        f"{BASE}/manifests/{DIGEST.replace(':', '-')}",
        lambda h: h.reply(
            200,
            index({"mediaType": OCI_MANIFEST, "digest": sig_digest, "size": len(sig)}),
            {"Content-Type": OCI_INDEX},
        ),
    )
    fake.route("GET", f"{BASE}/manifests/{sig_digest}", serve_manifest(sig, sig_digest))  # type: ignore[arg-type]
    found = repo(fake).referrers(DIGEST, Deadline.after(5), NOTARY_SIGNATURE)
    assert [d.digest for d in found.descriptors] == [sig_digest]


# --- throttling, failures and time ----------------------------------------------------------------


def test_endless_429_gives_up_after_bounded_retries_fake(fake: FakeRegistry) -> None:
    fake.route("GET", f"{BASE}/manifests/{DIGEST}", lambda h: h.reply(429, b"", {"Retry-After": "0"}))
    with pytest.raises(RateLimited) as info:
        repo(fake, max_retries=3).fetch_manifest(DIGEST, Deadline.after(5))
    assert fake.count("GET", f"{BASE}/manifests/{DIGEST}") == 4
    assert "429" in str(info.value)


def test_retry_after_beyond_the_deadline_fails_at_once_fake(fake: FakeRegistry) -> None:
    fake.route("GET", f"{BASE}/manifests/{DIGEST}", lambda h: h.reply(429, b"", {"Retry-After": "3600"}))
    start = time.monotonic()
    with pytest.raises(RateLimited):
        repo(fake).fetch_manifest(DIGEST, Deadline.after(5))
    assert time.monotonic() - start < 1
    assert fake.count("GET", f"{BASE}/manifests/{DIGEST}") == 1


def test_503_then_success_is_retried_fake(fake: FakeRegistry) -> None:
    calls = []

    def flaky(h: FakeHandler) -> None:
        calls.append(1)
        if len(calls) < 3:
            h.reply(503, b"", {"Retry-After": "0"})
        else:
            serve_manifest()(h)  # type: ignore[operator]

    fake.route("GET", f"{BASE}/manifests/{DIGEST}", flaky)
    assert repo(fake).fetch_manifest(DIGEST, Deadline.after(5)).descriptor.digest == DIGEST


def test_persistent_500_is_unavailable_not_missing_fake(fake: FakeRegistry) -> None:
    fake.route("GET", f"{BASE}/manifests/{DIGEST}", lambda h: h.reply(500, b"boom"))
    with pytest.raises(RegistryUnavailable):
        repo(fake).fetch_manifest(DIGEST, Deadline.after(5))


def test_slow_body_ends_at_the_deadline_fake(fake: FakeRegistry) -> None:
    def trickle(h: FakeHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", OCI_MANIFEST)
        h.send_header("Content-Length", str(len(MANIFEST)))
        h.end_headers()
        for byte in MANIFEST:
            h.wfile.write(bytes([byte]))
            h.wfile.flush()
            time.sleep(0.4)

    fake.route("GET", f"{BASE}/manifests/{DIGEST}", trickle)
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        repo(fake).fetch_manifest(DIGEST, Deadline.after(1.5))
    assert time.monotonic() - start < 2.5


def test_no_answer_at_all_ends_at_the_deadline_fake(fake: FakeRegistry) -> None:
    fake.route("GET", f"{BASE}/manifests/{DIGEST}", lambda h: time.sleep(10))
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        repo(fake).fetch_manifest(DIGEST, Deadline.after(1.0))
    assert time.monotonic() - start < 2.0


def test_expired_deadline_sends_nothing_fake(fake: FakeRegistry) -> None:
    with pytest.raises(DeadlineExceeded):
        repo(fake).fetch_manifest(DIGEST, Deadline.after(-1))
    assert fake.hits == []


# --- redirects ------------------------------------------------------------------------------------


def test_blob_redirect_to_storage_drops_credentials_and_is_digest_checked_fake(fake: FakeRegistry) -> None:
    """Registries redirect blob downloads to storage hosts: follow, but never send our credentials there."""
    blob = b"signature envelope bytes"
    descriptor = Descriptor("application/jose+json", compute_digest(blob), len(blob))
    with fake_registry() as storage:
        storage.route("GET", "/bucket/blob", lambda h: h.reply(200, blob))

        def needs_auth_then_redirects(h: FakeHandler) -> None:
            if h.headers.get("Authorization") is None:
                h.reply(401, b"", {"WWW-Authenticate": 'Basic realm="test"'})
            else:
                h.reply(307, b"", {"Location": f"http://{storage.host}/bucket/blob"})

        fake.route("GET", f"{BASE}/blobs/{descriptor.digest}", needs_auth_then_redirects)
        # The registry is configured and is itself on loopback: its redirects may stay there.
        client = RegistryClient(
            ClientSettings(hosts={fake.host: HostSettings(plain_http=True)}),
            Keyring(((fake.host, Credential("alice", "secret", source="test")),)),
        )
        data = client.repository(parse(f"{fake.host}/demo/app:v1")).fetch_blob(descriptor, Deadline.after(5))
        assert data == blob
        assert fake.authorizations[-1] is not None  # the registry got our credentials
        assert storage.authorizations == [None]  # the storage host did not


def test_redirect_loop_is_bounded_fake(fake: FakeRegistry) -> None:
    path = f"{BASE}/manifests/{DIGEST}"
    fake.route("GET", path, lambda h: h.reply(302, b"", {"Location": path}))
    with pytest.raises(RegistryProtocolError) as info:
        repo(fake).fetch_manifest(DIGEST, Deadline.after(5))
    assert "redirects" in str(info.value)
    assert fake.count("GET", path) == 6  # the first request and 5 redirects


def test_upload_location_on_another_origin_is_refused_fake(fake: FakeRegistry) -> None:
    """A registry that points an upload (and so our credentials) at another host is not followed."""
    fake.route("HEAD", f"{BASE}/blobs/{compute_digest(b'{}')}", lambda h: h.reply(404))
    fake.route(
        "POST",
        f"{BASE}/blobs/uploads/",
        lambda h: h.reply(202, b"", {"Location": "http://169.254.169.254/x"}),
    )
    client = RegistryClient(ClientSettings(default=HostSettings(plain_http=True)))
    repo_handle = client.pusher(parse(f"{fake.host}/demo/app:v1"))
    with pytest.raises(RegistryProtocolError) as info:
        repo_handle.push_blob(b"{}", "application/vnd.oci.empty.v1+json", Deadline.after(5))
    assert "another origin" in str(info.value)


# --- 1. no registry holds a thread past the deadline ---------------------------------------------


def test_headers_trickled_a_line_at_a_time_end_at_the_deadline_fake(fake: FakeRegistry) -> None:
    """urllib3's read timeout restarts on every byte: the exchange as a whole must be bounded."""
    fake.route("GET", f"{BASE}/manifests/{DIGEST}", trickle_headers)
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        repo(fake).fetch_manifest(DIGEST, Deadline.after(1.2))
    assert time.monotonic() - start < 2.0


def test_headers_trickled_past_the_request_timeout_trip_the_host_circuit_fake(fake: FakeRegistry) -> None:
    fake.route("GET", f"{BASE}/manifests/{DIGEST}", trickle_headers)
    handle = repo(fake, request_timeout_s=1.0)
    start = time.monotonic()
    with pytest.raises(RegistryUnavailable) as first:
        handle.fetch_manifest(DIGEST, Deadline.after(5))
    assert "did not answer within 1.0s" in str(first.value)
    assert time.monotonic() - start < 2.0
    with pytest.raises(RegistryUnavailable) as second:  # refused at once: nothing sent
        handle.fetch_manifest(DIGEST, Deadline.after(5))
    assert "is not answering" in str(second.value)
    assert fake.count("GET", f"{BASE}/manifests/{DIGEST}") == 1


# --- 5. network reach only where the operator pointed it -----------------------------------------


def test_redirect_to_an_internal_address_is_not_followed_fake(fake: FakeRegistry) -> None:
    """A registry that is not configured cannot steer Referee to another internal address (here an
    'admin endpoint' on another loopback port, standing in for cloud metadata)."""
    with fake_registry() as admin:
        admin.route(
            "GET", "/admin/secrets", lambda h: h.reply(200, b"secret", {"Content-Type": OCI_MANIFEST})
        )
        fake.route(
            "GET",
            f"{BASE}/manifests/{DIGEST}",
            lambda h: h.reply(302, b"", {"Location": f"http://{admin.host}/admin/secrets"}),
        )
        with pytest.raises(RegistryProtocolError) as info:
            repo(fake).fetch_manifest(DIGEST, Deadline.after(5))
        assert admin.hits == []
        assert "internal address" in str(info.value) and "200" not in str(info.value)


def test_redirect_from_https_to_plain_http_is_not_followed_fake(fake: FakeRegistry) -> None:
    """Reach(plain_http=False): the rule a registry served over TLS is held to."""
    with fake_registry() as other:
        other.route("GET", "/x", lambda h: h.reply(200, b"x"))
        fake.route("GET", "/start", lambda h: h.reply(307, b"", {"Location": f"http://{other.host}/x"}))
        transport = Transport(max_redirects=5)
        with pytest.raises(TransportError) as info:
            transport.open(
                "GET",
                f"http://{fake.host}/start",
                headers={},
                timeout_s=5,
                verify=True,
                redirects=True,
                reach=Reach(plain_http=False, internal=True),
            )
        assert info.value.kind == "refused" and "http URL" in info.value.reason
        assert other.hits == []


def test_link_header_with_an_overlong_url_is_not_followed_fake(fake: FakeRegistry) -> None:
    long_link = f"{BASE}/referrers/{DIGEST}?page=" + "a" * 5000
    fake.route(
        "GET",
        f"{BASE}/referrers/{DIGEST}",
        lambda h: h.reply(
            200, index(entry(1)), {"Content-Type": OCI_INDEX, "Link": f'<{long_link}>; rel="next"'}
        ),
    )
    with pytest.raises(RegistryProtocolError) as info:
        repo(fake).referrers(DIGEST, Deadline.after(5))
    assert "characters" in str(info.value)
    assert len(fake.hits) == 1


def test_401_after_a_redirect_sends_no_credentials_to_the_other_host_fake(fake: FakeRegistry) -> None:
    """The storage host a blob redirects to answers 401 with its own realm: the registry's Basic
    credentials must not go to it."""
    blob = b"signature envelope bytes"
    descriptor = Descriptor("application/jose+json", compute_digest(blob), len(blob))
    with fake_registry() as storage:
        storage.route(
            "GET",
            "/bucket/blob",
            lambda h: h.reply(401, b"", {"WWW-Authenticate": f'Bearer realm="http://{storage.host}/token"'}),
        )
        storage.route("GET", "/token", lambda h: h.reply(200, b'{"token":"t"}'))

        def needs_auth_then_redirects(h: FakeHandler) -> None:
            if h.headers.get("Authorization") is None:
                h.reply(401, b"", {"WWW-Authenticate": 'Basic realm="test"'})
            else:
                h.reply(307, b"", {"Location": f"http://{storage.host}/bucket/blob"})

        fake.route("GET", f"{BASE}/blobs/{descriptor.digest}", needs_auth_then_redirects)
        client = RegistryClient(
            ClientSettings(hosts={fake.host: HostSettings(plain_http=True)}),
            Keyring(((fake.host, Credential("alice", "secret", source="test")),)),
        )
        with pytest.raises(AuthenticationFailed) as info:
            client.repository(parse(f"{fake.host}/demo/app:v1")).fetch_blob(descriptor, Deadline.after(5))
        assert "none are sent there" in str(info.value)
        assert ("GET", "/token") not in [(m, p.split("?")[0]) for m, p in storage.hits]
        assert all(a is None for a in storage.authorizations)


def token_challenge(realm: str) -> object:
    def handler(h: FakeHandler) -> None:
        if h.headers.get("Authorization", "").startswith("Bearer "):
            serve_manifest()(h)  # type: ignore[operator]
        else:
            h.reply(401, b"", {"WWW-Authenticate": f'Bearer realm="{realm}",service="s"'})

    return handler


def test_credentials_are_not_sent_to_a_token_realm_on_another_domain_fake(fake: FakeRegistry) -> None:
    """The registry is 127.0.0.1:P; its challenge names a realm on another host ('localhost')."""
    with fake_registry() as tokens:
        tokens.route("GET", "/token", lambda h: h.reply(200, b'{"token":"t"}'))
        realm = f"http://localhost:{tokens.host.rsplit(':', 1)[1]}/token"
        fake.route("GET", f"{BASE}/manifests/{DIGEST}", token_challenge(realm))  # type: ignore[arg-type]
        client = RegistryClient(
            ClientSettings(hosts={fake.host: HostSettings(plain_http=True)}),
            Keyring(((fake.host, Credential("alice", "secret", source="test")),)),
        )
        with pytest.raises(AuthenticationFailed) as info:
            client.repository(parse(f"{fake.host}/demo/app:v1")).fetch_manifest(DIGEST, Deadline.after(5))
        assert "not on its own domain" in str(info.value) and "tokenRealms" in str(info.value)
        assert tokens.hits == []


def test_a_token_realm_configured_for_the_registry_receives_its_credentials_fake(fake: FakeRegistry) -> None:
    with fake_registry() as tokens:
        tokens.route("GET", "/token", lambda h: h.reply(200, b'{"token":"t"}'))
        realm = f"http://localhost:{tokens.host.rsplit(':', 1)[1]}/token"
        fake.route("GET", f"{BASE}/manifests/{DIGEST}", token_challenge(realm))  # type: ignore[arg-type]
        settings = HostSettings(plain_http=True, token_realms=("localhost",))
        client = RegistryClient(
            ClientSettings(hosts={fake.host: settings}),
            Keyring(((fake.host, Credential("alice", "secret", source="test")),)),
        )
        manifest = client.repository(parse(f"{fake.host}/demo/app:v1")).fetch_manifest(
            DIGEST, Deadline.after(5)
        )
        assert manifest.descriptor.digest == DIGEST
        assert [a for a in tokens.authorizations if a and a.startswith("Basic ")]


def test_registry_warning_is_clipped_and_escaped_in_the_log_fake(
    fake: FakeRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    warning = '299 - "' + "\x1b[2J" + "x" * 6000 + '"'
    fake.route(
        "GET",
        f"{BASE}/manifests/{DIGEST}",
        lambda h: h.reply(
            200, MANIFEST, {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": DIGEST, "Warning": warning}
        ),
    )
    with caplog.at_level("WARNING", logger="webhook.registry.session"):
        repo(fake).fetch_manifest(DIGEST, Deadline.after(5))
    [line] = [r.getMessage() for r in caplog.records if "warns" in r.getMessage()]
    assert "\x1b" not in line and "\\x1b" in line
    assert len(line) < 1500


def test_unreachable_registry_is_named_in_a_persons_words() -> None:
    port = free_port()
    client = RegistryClient(ClientSettings(default=HostSettings(plain_http=True)))
    with pytest.raises(RegistryUnavailable) as info:
        client.repository(parse(f"127.0.0.1:{port}/demo/app:v1")).fetch_manifest(DIGEST, Deadline.after(5))
    text = str(info.value)
    assert f"127.0.0.1:{port} could not be reached" in text and "Errno" not in text and "refused" not in text


# --- 1. (the gate) a stalled registry holds only its own share of the pool ------------------------


@pytest.fixture(scope="module")
def images(olareg: RunningRegistry, tmp_path_factory: pytest.TempPathFactory) -> SampleImages:
    return sample_images(olareg, tmp_path_factory.mktemp("hostile-images"), "hostile")


@pytest.fixture()
def trickling() -> Iterator[FakeRegistry]:
    """Every request is answered by a status line and then a header line every 0.2 s."""
    with fake_registry() as f:
        f.fallback = trickle_headers
        yield f


def hostile_gate(images: SampleImages, tmp_path: Path, *hosts: str) -> Gate:
    registries = {h: {"plainHTTP": True} for h in (images.registry.host, *hosts)}
    config = parse_config(
        {"trustPolicy": str(images.policy), "trustStore": str(images.store), "registries": registries},
        base=tmp_path,
        environ={},
    )
    return build_gate(config)  # the chart's defaults: 8 threads, so 40 verification workers


def test_64_images_on_a_trickling_registry_hold_neither_cached_nor_healthy_images_fake(
    images: SampleImages, trickling: FakeRegistry, tmp_path: Path
) -> None:
    """Before: 16 such images took every worker, and even cached images were "not decided in time"."""
    gate = hostile_gate(images, tmp_path, trickling.host)
    try:
        assert gate.decide([images.signed], Deadline.after(10))[0].allowed  # now cached
        started = time.monotonic()
        assert not gate.decide([images.tampered], Deadline.after(10))[0].allowed
        normal_s = time.monotonic() - started  # an uncached image on a healthy registry, no load
        stalled: list[list[Decision]] = []
        hostile = [f"{trickling.host}/team/app{i}:v1" for i in range(64)]
        worker = threading.Thread(target=lambda: stalled.append(gate.decide(hostile, Deadline.after(3))))
        worker.start()
        time.sleep(0.5)  # every trickling exchange is in flight
        started = time.monotonic()
        [cached] = gate.decide([images.signed], Deadline.after(3))
        cached_s = time.monotonic() - started
        started = time.monotonic()
        [uncached] = gate.decide([images.unsigned], Deadline.after(3))
        uncached_s = time.monotonic() - started
        worker.join(timeout=10)
        assert cached.allowed and cached.cached and cached_s < 0.25, (cached, cached_s)
        assert not uncached.inconclusive and "no Notation signature" in uncached.reason, uncached
        assert uncached_s < normal_s + 1.0, (uncached_s, normal_s)
        [decisions] = stalled
        assert all(not d.allowed and d.inconclusive for d in decisions)
    finally:
        gate.close()


def test_one_registry_host_takes_at_most_half_the_workers_fake(
    images: SampleImages, trickling: FakeRegistry, tmp_path: Path
) -> None:
    gate = hostile_gate(images, tmp_path, trickling.host)
    try:
        hostile = [f"{trickling.host}/team/app{i}:v1" for i in range(80)]
        worker = threading.Thread(target=lambda: gate.decide(hostile, Deadline.after(3)))
        worker.start()
        waited = time.monotonic() + 2
        while len(trickling.hits) < 20 and time.monotonic() < waited:
            time.sleep(0.05)
        time.sleep(0.3)  # room for any more to start, were there a free slot
        assert len(trickling.hits) == 20  # 40 workers, 20 per host: a pod's 20 images in one wave
        worker.join(timeout=10)
    finally:
        gate.close()


# --- 3. memory has a budget ----------------------------------------------------------------------


def test_envelope_over_256_kib_is_refused_unread_fake(fake: FakeRegistry) -> None:
    """Sixteen 32 MiB envelopes (notation's cap) in flight went past the chart's 512 Mi limit."""
    blob = b"x" * (1 << 20)
    descriptor = Descriptor("application/jose+json", compute_digest(blob), len(blob))
    fake.route("GET", f"{BASE}/blobs/{descriptor.digest}", lambda h: h.reply(200, blob))
    with pytest.raises(ContentTooLarge) as info:
        repo(fake).fetch_blob(descriptor, Deadline.after(5), max_bytes=MAX_ENVELOPE_BYTES)
    assert "262144" in str(info.value) and fake.hits == []


def test_downloads_of_one_worker_share_one_byte_budget_fake(fake: FakeRegistry) -> None:
    blob = bytes(range(256)) * 800  # 200 KiB
    descriptor = Descriptor("application/octet-stream", compute_digest(blob), len(blob))

    def slowly(h: FakeHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(blob)))
        h.end_headers()
        h.wfile.write(blob[:150_000])
        h.wfile.flush()
        time.sleep(0.3)
        h.wfile.write(blob[150_000:])

    fake.route("GET", f"{BASE}/blobs/{descriptor.digest}", slowly)
    settings = ClientSettings(
        default=HostSettings(plain_http=True), limits=Limits(max_in_flight_bytes=256 << 10)
    )
    client = RegistryClient(settings)
    handle = client.repository(parse(f"{fake.host}/demo/app:v1"))
    results: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: results.append(handle.fetch_blob(descriptor, Deadline.after(10))))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=15)
    assert results == [blob] * 4
    assert client.in_flight.peak_bytes <= 256 << 10 and client.in_flight.used_bytes == 0


def test_referrers_capability_is_remembered_for_a_bounded_number_of_repositories() -> None:
    client = RegistryClient(ClientSettings(limits=Limits(max_remembered_repositories=100)))
    for n in range(1000):
        client.remember_referrers_api("r.example", f"team/app{n}", False)
    assert client.referrers_api_known("r.example", "team/app0") is None
    assert client.referrers_api_known("r.example", "team/app999") is False


# --- every hostile registry, end to end ---------------------------------------------------------


def _lone_quote_challenge(h: FakeHandler) -> None:
    h.reply(401, b"", {"WWW-Authenticate": '"'})


def _redirect_to(target: str) -> Route:
    return lambda h: h.reply(302, b"", {"Location": target})


def _foreign_realm(port: int) -> Route:
    return lambda h: h.reply(401, b"", {"WWW-Authenticate": f'Bearer realm="http://localhost:{port}/token"'})


def _huge_envelope(h: FakeHandler) -> None:
    """A tag, one referrer, a signature manifest naming a 1 MiB envelope (never served)."""
    path = h.path.split("?")[0]
    big = {"mediaType": "application/jose+json", "digest": "sha256:" + "f" * 64, "size": 1 << 20}
    empty = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": compute_digest(b"{}"), "size": 2}
    sig = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": NOTARY_SIGNATURE,
                      "config": empty, "layers": [big]}).encode()  # fmt: skip
    if "/referrers/" in path:
        body = index({"mediaType": OCI_MANIFEST, "digest": compute_digest(sig), "size": len(sig),
                      "artifactType": NOTARY_SIGNATURE})  # fmt: skip
        h.reply(200, body, {"Content-Type": OCI_INDEX})
    elif path.endswith(compute_digest(sig)):
        h.reply(200, sig, {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": compute_digest(sig)})
    elif "/manifests/" in path:
        h.reply(200, MANIFEST, {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": DIGEST})
    else:
        h.reply(404, b"{}", {"Content-Type": "application/json"})


HOSTILE = (
    "trickles-headers",
    "redirects-to-a-file",
    "foreign-realm",
    "lone-quote-challenge",
    "costly",
    "huge-envelope",
)


@pytest.fixture(scope="module")
def matrix(
    olareg: RunningRegistry, images: SampleImages, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, dict[str, str]]]:
    costly = CostlyRegistryFake()
    with contextlib.ExitStack() as stack:
        fakes = {name: stack.enter_context(fake_registry()) for name in (*HOSTILE, "admin")}
        admin = fakes.pop("admin")
        admin.fallback = lambda h: h.reply(200, MANIFEST, {"Content-Type": OCI_MANIFEST})
        fakes["trickles-headers"].fallback = trickle_headers
        fakes["redirects-to-a-file"].fallback = _redirect_to("file:///etc/passwd")
        fakes["foreign-realm"].fallback = _foreign_realm(int(admin.host.rsplit(":", 1)[1]))
        fakes["lone-quote-challenge"].fallback = _lone_quote_challenge
        fakes["costly"].fallback = costly.handle
        fakes["huge-envelope"].fallback = _huge_envelope
        server = stack.enter_context(contextlib.contextmanager(start_server)(
            tmp_path_factory.mktemp("matrix"), olareg, images.policy, images.store,
            plain_hosts=tuple(f.host for f in fakes.values())))  # fmt: skip
        yield server, {name: fake.host for name, fake in fakes.items()} | {"admin": admin.host}


@pytest.mark.parametrize("hostile", HOSTILE)
def test_each_hostile_registry_is_denied_within_the_deadline_fake(
    matrix: tuple[Server, dict[str, str]], images: SampleImages, hostile: str
) -> None:
    server, hosts = matrix
    image = f"{hosts[hostile]}/demo/app:v1"
    started = time.monotonic()
    out = server.review(pod(image, images.signed))
    elapsed = time.monotonic() - started
    assert out["allowed"] is False and image in out["status"]["message"], out
    assert elapsed < 5.0, elapsed  # the webhook's timeout in start_server's config
    assert server.review(pod(images.signed))["allowed"] is True  # and the server still answers

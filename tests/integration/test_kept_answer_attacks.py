"""Attacks on the kept ProviderResponses that the worker's event loop sends again
(``webhook/server/worker.py``, ``webhook/server/memo.py``), over real sockets to a real
`referee serve`: callers the provider endpoints refuse, requests gunicorn's parser would read
otherwise, answers for another endpoint or namespace, a request that holds the event loop, and the
metrics an operator reads."""

from __future__ import annotations

import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import pki
from tests.helpers.registries import RunningRegistry
from tests.helpers.samples import SampleImages, sample_images
from tests.helpers.serving import referee_serve
from tests.helpers.tools import free_port

GK_API = "externaldata.gatekeeper.sh/v1beta1"


@dataclass(frozen=True)
class Served:
    port: int
    ca: Path  # the serving certificate's CA
    certs: dict[str, pki.KeyPair]  # client certificates by role


@dataclass(frozen=True)
class Answer:
    status: int
    head: bytes
    body: bytes

    @property
    def from_event_loop(self) -> bool:
        """The event loop writes its kept answer's headers in an order of its own (Date last);
        gunicorn writes Date second."""
        return self.status == 200 and self.head.index(b"\r\nContent-Type:") < self.head.index(b"\r\nDate:")

    def json(self) -> dict[str, object]:
        return json.loads(self.body)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def images(olareg: RunningRegistry, tmp_path_factory: pytest.TempPathFactory) -> SampleImages:
    return sample_images(olareg, tmp_path_factory.mktemp("kept-attack-images"), "keptatk")


@pytest.fixture(scope="module")
def served(
    olareg: RunningRegistry, images: SampleImages, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """One worker (one memo), the provider endpoints for Gatekeeper's certificate named
    ``gatekeeper`` only, /validate and /mutate for the API server's CA."""
    work = tmp_path_factory.mktemp("kept-attack-server")
    ca = pki.make_ca(work)
    cert = pki.make_server_cert(work, ca)
    (work / "gk").mkdir()
    (work / "api").mkdir()
    gk_ca = pki.make_ca(work / "gk", "Gatekeeper CA")
    api_ca = pki.make_ca(work / "api", "API server client CA")
    certs = {
        "gatekeeper": pki.make_client_cert(work / "gk", gk_ca),
        "other name": pki.make_client_cert(work / "gk", gk_ca, stem="other", cn="not-gatekeeper"),
        "api server": pki.make_client_cert(work / "api", api_ca, stem="apiserver", cn="gatekeeper"),
    }
    port = free_port()
    config = work / "config.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{port}\n"
        f"trustPolicy: {images.policy}\ntrustStore: {images.store}\n"
        f"registries: {{'{olareg.host}': {{plainHTTP: true}}}}\n"
        f"tls: {{certFile: {cert.cert_path}, keyFile: {cert.key_path}, clientAuth: {{"
        f"provider: {{caFile: {gk_ca.cert_path}, names: [gatekeeper]}}, "
        f"admission: {{caFile: {api_ca.cert_path}}}}}}}\n"
        "server: {workers: 1, threads: 4}\n"
    )
    with referee_serve(config, f"https://127.0.0.1:{port}", ca.cert_path, env={"POD_NAMESPACE": "referee"}):
        yield Served(port, ca.cert_path, certs)


class Client:
    """One TLS connection, bytes in, answers out (status, head and a Content-Length body)."""

    def __init__(self, served: Served, cert: str | None = "gatekeeper", rcvbuf: int = 0) -> None:
        context = ssl.create_default_context(cafile=str(served.ca))
        if cert is not None:
            pair = served.certs[cert]
            context.load_cert_chain(str(pair.cert_path), str(pair.key_path))
        raw = socket.socket()
        if rcvbuf:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(20)
        raw.connect(("127.0.0.1", served.port))
        self.sock = context.wrap_socket(raw, server_hostname="localhost")
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer(self) -> Answer:
        while b"\r\n\r\n" not in self.buffer:
            self._more()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        found = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.IGNORECASE)
        length = int(found.group(1)) if found else 0
        while len(self.buffer) < length:
            self._more()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Answer(status, head, body)

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def provider_body(*keys: str) -> bytes:
    doc = {"apiVersion": GK_API, "kind": "ProviderRequest", "request": {"keys": list(keys)}}
    return json.dumps(doc).encode()


def post(body: bytes, path: str = "/provider", head: bytes = b"") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: referee\r\nContent-Length: {len(body)}\r\n".encode()
        + head
        + b"\r\n"
        + body
    )


def kept(served: Served, body: bytes, path: str = "/provider") -> Answer:
    """Ask until the event loop answers from its kept answers (verified, then cached, then kept)."""
    client = Client(served)
    try:
        for _ in range(4):
            client.send(post(body, path))
            answer = client.answer()
            assert answer.status == 200, answer.body
            if answer.from_event_loop:
                return answer
    finally:
        client.close()
    raise AssertionError("no kept answer was sent from the event loop")


def test_an_identical_request_is_answered_from_the_event_loop(served: Served, images: SampleImages) -> None:
    """The premise of every attack below: a warm ProviderRequest is answered without a thread."""
    answer = kept(served, provider_body(images.signed))
    [item] = answer.json()["response"]["items"]  # type: ignore[index]
    assert item["value"]["digest"] == images.signed_digest


@pytest.mark.parametrize(
    ("cert", "phrase"),
    [
        (None, "need a client certificate"),
        ("other name", "names are not among those allowed"),
        ("api server", "not issued by the CA configured for /provider"),
    ],
)
def test_kept_answer_is_not_sent_to_a_caller_the_provider_endpoints_refuse(
    served: Served, images: SampleImages, cert: str | None, phrase: str
) -> None:
    """No certificate, Gatekeeper's CA with another name, the admission group's certificate (which
    the TLS layer accepts): each is refused on every request of its connection, kept answer or not."""
    body = provider_body(images.signed)
    kept(served, body)
    client = Client(served, cert)
    try:
        for _ in range(3):
            client.send(post(body))
            answer = client.answer()
            assert answer.status == 403 and phrase in answer.json()["error"], answer
    finally:
        client.close()


@pytest.mark.parametrize(
    "head",
    [
        b"Content-Length : %d\r\n",  # a space before the colon: no header name gunicorn accepts
        b"Content-Length: %d\r\nX-Note: a\r\n folded\r\n",  # obs-fold
        b"Content-Length: %d\r\nX-Note: a\r\n Transfer-Encoding: chunked\r\n",  # TE in a fold
        b"Content-Length: %d\r\nX Note: a\r\n",  # a space inside a name
        b"Content-Length: %d\r\nX-Note: a\x00b\r\n",  # a control character in a value
        b"Content-Length: %d\r\n: empty\r\n",  # no name
        b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n",  # both framings
        b"Content-Length: %d\r\nTRANSFER-encoding: identity\r\n",
        b"Content-Length: +%d\r\n",
        b"Content-Length: %d\r\ncontent-length: 1\r\n",
    ],
    ids=[
        "space-before-colon",
        "obs-fold",
        "te-in-fold",
        "space-in-name",
        "nul-in-value",
        "no-name",
        "cl-and-te",
        "te-identity",
        "plus-sign",
        "two-lengths",
    ],
)
def test_a_request_gunicorn_refuses_is_not_answered_from_the_kept_answers(
    served: Served, images: SampleImages, head: bytes
) -> None:
    """The event loop answers only what gunicorn's parser would read the same way: a head gunicorn
    refuses is refused (400, or closed unanswered) even when the same request, well formed, has a
    kept answer."""
    body = provider_body(images.signed)
    kept(served, body)
    client = Client(served)
    try:
        client.send(b"POST /provider HTTP/1.1\r\nHost: referee\r\n" + head % len(body) + b"\r\n" + body)
        try:
            answer = client.answer()
        except ConnectionError:  # both framings: read as chunked, never ended, closed unanswered
            return
        assert answer.status == 400, answer
    finally:
        client.close()


@pytest.mark.parametrize(
    "request_text",
    [
        b"POST /provider?x=1 HTTP/1.1\r\nHost: referee\r\nContent-Length: %d\r\n\r\n",
        b"POST /provid%%65r HTTP/1.1\r\nHost: referee\r\nContent-Length: %d\r\n\r\n",
        b"POST https://referee/provider HTTP/1.1\r\nHost: referee\r\nContent-Length: %d\r\n\r\n",
        b"POST /provider HTTP/1.0\r\nHost: referee\r\nContent-Length: %d\r\n\r\n",
        b"POST /provider HTTP/1.1\r\nHost: referee\r\nContent-Length: 0%d\r\n\r\n",
        b"POST /provider HTTP/1.1\r\nContent-Length: %d\r\n\r\n",
    ],
    ids=["query", "percent-encoded", "absolute-form", "http-1.0", "leading-zero", "no-host"],
)
def test_other_spellings_of_a_kept_request_get_the_same_answer(
    served: Served, images: SampleImages, request_text: bytes
) -> None:
    """A request Flask routes to /provider but spelt otherwise is answered as /provider is."""
    body = provider_body(images.signed)
    expected = kept(served, body).json()
    client = Client(served)
    try:
        client.send(request_text % len(body) + body)
        answer = client.answer()
        assert answer.status == 200 and answer.json() == expected, answer
    finally:
        client.close()


def test_pipelined_requests_are_answered_in_order_each_with_its_own_answer(
    served: Served, images: SampleImages
) -> None:
    """Two requests in one write, the first with a kept answer and the second another's: the
    event loop answers neither out of turn, and neither body is read as part of the other."""
    first, second = provider_body(images.signed), provider_body(images.unsigned)
    kept(served, first)
    client = Client(served)
    try:
        client.send(post(first) + post(second) + post(first))
        answers = [client.answer() for _ in range(3)]
    finally:
        client.close()
    keys = [a.json()["response"]["items"][0]["key"] for a in answers]  # type: ignore[index]
    assert keys == [images.signed, images.unsigned, images.signed]


def test_kept_answer_is_never_sent_for_another_endpoint_or_namespace(
    served: Served, images: SampleImages
) -> None:
    """/provider/mutate's pinned string is never /provider's answer (nor the other way round), and
    one namespace's key never gets the answer kept for another's."""
    body = provider_body(images.signed)
    pinned = kept(served, body, "/provider/mutate").json()
    verified = kept(served, body).json()
    assert pinned["response"]["items"][0]["value"] == f"{images.signed}@{images.signed_digest}"  # type: ignore[index]
    assert verified["response"]["items"][0]["value"]["verified"] is True  # type: ignore[index]
    team_a = kept(served, provider_body(f"[team-a]{images.signed}")).json()
    client = Client(served)
    try:
        client.send(post(provider_body(f"[team-b]{images.signed}")))
        team_b = client.answer().json()
    finally:
        client.close()
    assert team_a["response"]["items"][0]["key"] == f"[team-a]{images.signed}"  # type: ignore[index]
    assert team_b["response"]["items"][0]["key"] == f"[team-b]{images.signed}"  # type: ignore[index]


def histogram_count(served: Served) -> float:
    client = Client(served)
    try:
        client.send(b"GET /metrics HTTP/1.1\r\nHost: referee\r\n\r\n")
        text = client.answer().body.decode()
    finally:
        client.close()
    series = 'referee_image_verification_seconds_count{outcome="allowed"} '
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(series))


def test_kept_answers_are_counted_in_the_verification_histogram(served: Served, images: SampleImages) -> None:
    """referee_image_verification_seconds counts every image decided, cache hits included (what a
    dashboard of decisions per second reads): an image answered from a kept answer too."""
    body = provider_body(images.signed, f"[team-c]{images.signed}")
    kept(served, body)
    before = histogram_count(served)
    client = Client(served)
    try:
        for _ in range(3):
            client.send(post(body))
            assert client.answer().from_event_loop
    finally:
        client.close()
    assert histogram_count(served) - before == 6


def test_a_chunked_body_read_at_line_rate_does_not_hold_the_event_loop(
    served: Served, images: SampleImages
) -> None:
    """The event loop reads every request before a thread serves it. A chunked body as large as it
    reads (limits.maxBodyBytes times 8), sent as fast as the socket takes it, must not keep it from the
    other connections: a kept answer on another connection still comes at once."""
    body = provider_body(images.signed)
    kept(served, body)
    attacker = Client(served, cert=None)
    size = 24 << 20  # the default limits.maxBodyBytes (3 MiB) times 8
    chunk = b"%x\r\n%s\r\n" % (65536, b"a" * 65536)
    attacker.send(b"POST /validate HTTP/1.1\r\nHost: referee\r\nTransfer-Encoding: chunked\r\n\r\n")
    started = threading.Event()

    def flood() -> None:
        sent = 0
        try:
            while sent < size:
                attacker.send(chunk)
                sent += len(chunk)
                if sent > 1 << 20:
                    started.set()
        except OSError:
            pass
        started.set()

    sender = threading.Thread(target=flood, daemon=True)
    sender.start()
    try:
        assert started.wait(10)
        client = Client(served)
        try:
            asked = time.monotonic()
            client.send(post(body))
            assert client.answer().status == 200
            waited = time.monotonic() - asked
        finally:
            client.close()
    finally:
        sender.join(30)
        attacker.close()
    assert waited < 1.0, f"the kept answer waited {waited:.2f} s behind one chunked upload"

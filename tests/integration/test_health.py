"""Probes on their own port (server.healthPort): answered while every verification thread is busy,
and, while the trust material cannot be loaded, a Referee that is live and unready, saying why, and
starts once the files are there, instead of a process that exits and restarts in a loop."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.helpers import pki
from tests.helpers.codesign import make_chain, write_trust_policy, write_trust_store
from tests.helpers.fake_registry import FakeRegistry, fake_registry
from tests.helpers.serving import readyz, running
from tests.helpers.tools import free_port

STALL_S = 8


@pytest.fixture(scope="module")
def stalled_registry() -> Iterator[FakeRegistry]:
    """A registry that answers nothing for STALL_S (in-process fake: no real one stalls on purpose)."""
    with fake_registry() as fake:
        for method in ("HEAD", "GET"):
            fake.route(method, "/v2/stall/app/manifests/v1", lambda handler: time.sleep(STALL_S))
        yield fake


def write_config(
    work: Path, *, health_port: int, registry: str = "", threads: int = 2
) -> tuple[Path, str, Path]:
    ca = pki.make_ca(work)
    cert = pki.make_server_cert(work, ca)
    port = free_port()
    config = work / "config.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{port}\ntrustPolicy: trustpolicy.json\ntrustStore: truststore\n"
        f"tls: {{certFile: {cert.cert_path}, keyFile: {cert.key_path}}}\n"
        f"registries: {{'{registry or 'registry.example'}': {{plainHTTP: true}}}}\n"
        f"timeouts: {{admissionSeconds: 9, marginSeconds: 1}}\n"
        f"server: {{workers: 1, threads: {threads}, healthPort: {health_port}}}\n"
    )
    return config, f"https://127.0.0.1:{port}", ca.cert_path


def review(image: str) -> dict[str, object]:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": image}]}}
    request = {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": "team-a",
               "operation": "CREATE", "object": pod}  # fmt: skip
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def test_probes_answer_while_every_verification_thread_is_busy_fake(
    stalled_registry: FakeRegistry, tmp_path: Path
) -> None:
    """Wedge: the probes shared the verification threads; with each of them waiting on a registry
    for up to the 9 s deadline, a 1 s probe failed, the pod was taken out of the Service and the
    other replicas got its load. On the health port they are answered at once."""
    write_trust_store(tmp_path / "truststore", "ca", "test", make_chain().root)
    write_trust_policy(tmp_path / "trustpolicy.json")
    health = free_port()
    config, url, ca = write_config(tmp_path, health_port=health, registry=stalled_registry.host)
    argv = [sys.executable, "-m", "webhook", "serve", "--config", str(config)]
    with running(argv, log=tmp_path / "referee.log", ready=readyz(url, ca)):
        image = f"{stalled_registry.host}/stall/app:v1"

        def ask() -> None:
            requests.post(f"{url}/validate", json=review(image), verify=str(ca), timeout=20)

        busy = [threading.Thread(target=ask) for _ in range(3)]
        for t in busy:
            t.start()
        time.sleep(1.5)  # both threads of the one worker are now waiting on the registry
        with pytest.raises(requests.Timeout):  # the main port's /readyz waits behind them
            requests.get(f"{url}/readyz", verify=str(ca), timeout=1)
        started = time.monotonic()
        for path in ("/readyz", "/healthz"):
            answer = requests.get(f"http://127.0.0.1:{health}{path}", timeout=1)
            assert answer.status_code == 200, answer.text
        assert answer.json() == {"status": "ok"}
        assert time.monotonic() - started < 1
        for t in busy:
            t.join()


def test_trust_material_that_cannot_load_makes_referee_unready_not_restarting(tmp_path: Path) -> None:
    """Wedge: a trust store missing from the mounted Secret made `referee serve` exit 2 in a loop
    (CrashLoopBackOff, the reason only in the last container's log). Now it stays up, live and
    unready with the reason at /readyz, and starts serving once the files appear."""
    write_trust_policy(tmp_path / "trustpolicy.json")
    health = free_port()
    config, url, ca = write_config(tmp_path, health_port=health)
    log = tmp_path / "referee.log"
    argv = [sys.executable, "-m", "webhook", "serve", "--config", str(config)]

    def unready() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{health}/readyz", timeout=1).status_code == 503
        except requests.RequestException:
            return False

    with running(argv, log=log, ready=unready) as proc:
        answer = requests.get(f"http://127.0.0.1:{health}/readyz", timeout=1).json()
        print(f"\n$ curl http://127.0.0.1:{health}/readyz\n{answer}")
        assert answer["status"] == "not ready" and "truststore" in answer["reason"]
        assert requests.get(f"http://127.0.0.1:{health}/healthz", timeout=1).status_code == 200
        time.sleep(2.5)
        assert proc.poll() is None, log.read_text()  # still running: no restart loop
        write_trust_store(tmp_path / "truststore", "ca", "test", make_chain().root)
        deadline = time.monotonic() + 30
        while not readyz(url, ca)() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert readyz(url, ca)(), log.read_text()
        for _ in range(20):  # the worker's health thread binds the port again
            try:
                if requests.get(f"http://127.0.0.1:{health}/readyz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        assert requests.get(f"http://127.0.0.1:{health}/readyz", timeout=1).json()["status"] == "ready"
    assert "not ready: " in log.read_text()


def test_without_a_health_port_a_missing_trust_store_still_stops_serve_at_once(tmp_path: Path) -> None:
    write_trust_policy(tmp_path / "trustpolicy.json")
    config, _, _ = write_config(tmp_path, health_port=0)
    shutil.rmtree(tmp_path / "truststore", ignore_errors=True)
    proc = subprocess.run([sys.executable, "-m", "webhook", "serve", "--config", str(config)],
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert proc.returncode == 2 and "truststore" in proc.stderr

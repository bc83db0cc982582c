"""Benchmark: the admission webhook under gunicorn (2 workers, gthread) on this machine.

Reports, in one run, beside the targets:
- warm latency (verdicts cached) p50/p99 for pods of 1, 5 and 20 images, and the same requests to a
  bare Flask app that only echoes the uid (bench/echo_app.py, served the same way): the overhead;
- cold latency (nothing cached) for 1 and 20 images, beside the floor: the registry round trips that
  verifying one image needs (HEAD by tag, manifest by digest, referrers, signature manifest,
  envelope), timed with plain HTTP requests in the same run;
- sustained throughput with wrk, 200 connections for 30 s, on the 1-image pod: requests/s, errors,
  p99; and the resident memory of each worker afterwards.

Run:  .venv/bin/python -m bench.bench_webhook [--seconds 30]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
import urllib3

from tests.helpers import pki, registries
from tests.helpers.artifacts import push_image
from tests.helpers.codesign import Chain, make_chain, write_trust_policy, write_trust_store
from tests.helpers.registries import RunningRegistry
from tests.helpers.tools import ROOT, free_port
from webhook.deadline import Deadline
from webhook.notary.envelope import JWS
from webhook.notary.signer import SignRequest, sign, signature_manifest
from webhook.oci.model import OCI_EMPTY
from webhook.oci.reference import parse
from webhook.registry.client import ClientSettings, HostSettings, RegistryClient

TARGETS = {
    "warm_p99_ms": 5.0,
    "cold_1_vs_floor": 1.5,
    "cold_20_vs_cold_1": 3.0,
    "throughput_rps": 800.0,
    "rss_mib": 150.0,
}


def sign_and_push(client: RegistryClient, image: str, chain: Chain) -> None:
    ref = parse(image)
    pusher = client.pusher(ref)
    deadline = Deadline.after(30)
    subject = client.repository(ref).resolve(ref.target, deadline).descriptor
    request = SignRequest(subject, chain.leaf_key, chain.certs, dt.datetime.now(dt.UTC))
    envelope = sign(request)
    pusher.push_blob(b"{}", OCI_EMPTY, deadline)
    pusher.push_blob(envelope, JWS, deadline)
    pusher.push_referrer(signature_manifest(envelope, JWS, request), subject.digest, deadline)


def signed_images(
    reg: RunningRegistry, client: RegistryClient, chain: Chain, work: Path, *, prefix: str, count: int
) -> list[str]:
    """``count`` small images ``PREFIX/appN:v1`` pushed to ``reg``, each signed with ``chain``."""
    images = []
    for i in range(count):
        push_image(reg, f"{prefix}/app{i}", "v1", work / f"img{i}", content=f"{prefix} image {i}")
        images.append(f"{reg.host}/{prefix}/app{i}:v1")
        sign_and_push(client, images[-1], chain)
    return images


def review(images: list[str], uid: str) -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": "bench",
        "operation": "CREATE", "object": {"metadata": {"name": "bench"}, "spec": {
            "containers": [{"name": f"c{i}", "image": im} for i, im in enumerate(images)]}}}}  # fmt: skip


@contextmanager
def process(
    args: list[str], url: str, ca: Path, log: Path, env: dict[str, str] | None = None
) -> Iterator[int]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                cwd=ROOT)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(log.read_text())
            try:
                requests.get(url, verify=str(ca), timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.1)
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def latencies(session: requests.Session, url: str, ca: Path, body: dict[str, Any], n: int) -> list[float]:
    out = []
    data = json.dumps(body).encode()
    for _ in range(n):
        start = time.perf_counter()
        resp = session.post(
            url, data=data, headers={"Content-Type": "application/json"}, verify=str(ca), timeout=30
        )
        out.append((time.perf_counter() - start) * 1000)
        assert resp.status_code == 200, resp.text
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _raw_round_trips(http: urllib3.PoolManager, host: str, image: str) -> None:
    """The requests verifying one image needs, with a plain HTTP client and no checks."""
    ref = parse(image)
    base = f"http://{host}/v2/{ref.path}"
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"}
    head = http.request("HEAD", f"{base}/manifests/{ref.tag}", headers=accept)
    digest = head.headers["Docker-Content-Digest"]
    http.request("GET", f"{base}/manifests/{digest}", headers=accept)
    index = json.loads(http.request("GET", f"{base}/referrers/{digest}").data)
    signature = index["manifests"][0]["digest"]
    manifest = json.loads(http.request("GET", f"{base}/manifests/{signature}", headers=accept).data)
    http.request("GET", f"{base}/blobs/{manifest['layers'][0]['digest']}")


def registry_floor(reg: RunningRegistry, image: str, runs: int = 20) -> float:
    """Median time of the raw round trips one verification needs, with a plain HTTP client."""
    http = urllib3.PoolManager()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        _raw_round_trips(http, reg.host, image)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def registry_floor_many(reg: RunningRegistry, images: list[str], runs: int = 5) -> float:
    """Median time of the raw round trips of ``images`` all at once (16 threads, as the webhook):
    what the registry and this machine's two cores allow before any verification work."""
    http = urllib3.PoolManager(maxsize=16)
    samples = []
    with ThreadPoolExecutor(16) as pool:
        for _ in range(runs):
            start = time.perf_counter()
            list(pool.map(lambda image: _raw_round_trips(http, reg.host, image), images))
            samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def worker_rss_mib(master: int) -> list[float]:
    children = subprocess.run(
        ["pgrep", "-P", str(master)], capture_output=True, text=True, check=False
    ).stdout.split()
    out = []
    for pid in children:
        status = Path(f"/proc/{pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        if match:
            out.append(int(match.group(1)) / 1024)
    return out


def run_wrk(
    url: str, body: dict[str, Any], seconds: int, work: Path, *, connections: int = 200
) -> dict[str, float]:
    script = work / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [[{json.dumps(body)}]]\n"
    )
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    out = subprocess.run(argv,
                         capture_output=True, text=True, timeout=seconds + 60, check=True).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99_match = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert p99_match is not None, out
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99_match.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    return {"rps": rps, "p99_ms": float(p99_match.group(1)) * scale, "errors": errors}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=30, help="length of the throughput run")
    parser.add_argument("--warm-requests", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, registries.olareg(Path(tmp) / "olareg") as reg:
        work = Path(tmp)
        chain = make_chain()
        client = RegistryClient(ClientSettings(default=HostSettings(plain_http=True)))
        print("preparing signed images ...", file=sys.stderr)
        images = signed_images(reg, client, chain, work, prefix="bench", count=20 + 8 + 3 * 20)
        warm, cold_single, cold_twenty = images[:20], images[20:28], images[28:]
        write_trust_store(work / "truststore", "ca", "bench", chain.root)
        write_trust_policy(work / "trustpolicy.json", stores=["ca:bench"])
        ca = pki.make_ca(work)
        cert = pki.make_server_cert(work, ca)
        hook_port, echo_port = free_port(), free_port()
        (work / "config.yaml").write_text(
            f"listen: 127.0.0.1:{hook_port}\ntrustPolicy: {work / 'trustpolicy.json'}\n"
            f"trustStore: {work / 'truststore'}\nregistries: {{'{reg.host}': {{plainHTTP: true}}}}\n"
            f"tls: {{certFile: {cert.cert_path}, keyFile: {cert.key_path}}}\n"
            "server: {workers: 2, threads: 8}\n"
        )
        hook = f"https://127.0.0.1:{hook_port}"
        echo = f"https://127.0.0.1:{echo_port}"
        gunicorn = [str(ROOT / ".venv" / "bin" / "gunicorn"), "-w", "2", "-k", "gthread", "--threads", "8",
                    "--certfile", str(cert.cert_path), "--keyfile", str(cert.key_path), "--no-control-socket",
                    "-b", f"127.0.0.1:{echo_port}", "bench.echo_app:app"]  # fmt: skip
        with process([sys.executable, "-m", "webhook", "serve", "--config", str(work / "config.yaml")],
                     f"{hook}/healthz", ca.cert_path, work / "hook.log") as hook_pid, \
             process(gunicorn, f"{echo}/validate", ca.cert_path, work / "echo.log"):  # fmt: skip
            session = requests.Session()
            results: dict[str, Any] = {}
            # Warm: first request fills the caches, then measure.
            print(f"{'pod':<12} {'referee p50':>12} {'p99':>8} {'echo p50':>10} {'p99':>8}  overhead p50")
            for size in (1, 5, 20):
                body = review(warm[:size], f"warm-{size}")
                latencies(session, f"{hook}/validate", ca.cert_path, body, 3)
                ours = latencies(session, f"{hook}/validate", ca.cert_path, body, args.warm_requests)
                floor = latencies(session, f"{echo}/validate", ca.cert_path, body, args.warm_requests)
                results[f"warm_{size}"] = (pct(ours, 0.5), pct(ours, 0.99))
                print(f"{size:>3} images   {pct(ours, .5):10.2f}ms {pct(ours, .99):6.2f}ms "
                      f"{pct(floor, .5):8.2f}ms "
                      f"{pct(floor, .99):6.2f}ms  {pct(ours, .5) / pct(floor, .5):.2f}x")  # fmt: skip
            # Cold: every request names images never seen before.
            cold1 = []
            for image in cold_single:
                cold1.extend(latencies(session, f"{hook}/validate", ca.cert_path, review([image], "cold"), 1))
            cold20 = []
            for k in range(3):
                batch = cold_twenty[k * 20 : (k + 1) * 20]
                cold20.extend(
                    latencies(session, f"{hook}/validate", ca.cert_path, review(batch, "cold20"), 1)
                )
            floor_ms = registry_floor(reg, warm[0])
            floor20_ms = registry_floor_many(reg, warm)
            c1, c20 = statistics.median(cold1), statistics.median(cold20)
            print(f"cold 1 image: {c1:.2f} ms (median of {len(cold1)}); registry floor {floor_ms:.2f} ms; "
                  f"ratio {c1 / floor_ms:.2f} (target <= {TARGETS['cold_1_vs_floor']})")  # fmt: skip
            print(f"cold 20 images: {c20:.2f} ms (median of {len(cold20)}); ratio to 1 image {c20 / c1:.2f} "
                  f"(target <= {TARGETS['cold_20_vs_cold_1']}); the raw round trips of 20 images at once "
                  f"take {floor20_ms:.2f} ms here: {c20 / floor20_ms:.2f}x that floor")  # fmt: skip
            wrk = run_wrk(f"{hook}/validate", review(warm[:1], "load"), args.seconds, work)
            rss = worker_rss_mib(hook_pid)
            warm_p99 = max(p99 for _, p99 in results.values())
            print(f"throughput (wrk, 200 connections, {args.seconds}s): {wrk['rps']:.0f} req/s, "
                  f"{wrk['errors']:.0f} errors, p99 {wrk['p99_ms']:.1f} ms "
                  f"(target >= {TARGETS['throughput_rps']:.0f} req/s, 0 errors)")  # fmt: skip
            print(
                f"worker RSS: {', '.join(f'{r:.0f} MiB' for r in rss)} "
                f"(target <= {TARGETS['rss_mib']:.0f} MiB)"
            )
            print(f"warm p99 (worst pod size): {warm_p99:.2f} ms (target <= {TARGETS['warm_p99_ms']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

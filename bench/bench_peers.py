"""Benchmark: Referee beside Ratify (the Notary Project's Gatekeeper provider) on the same work.

Both serve Gatekeeper's ProviderRequest over plain HTTP on this machine, read the same olareg, and
verify the same notation-signed images against the same trust policy (Ratify with its in-memory
ristretto cache on). Every request goes to both, alternating which goes first; the cold rows use
images neither has seen. Two network conditions in one run: loopback, and a delay proxy in front
of the registry that adds a fixed round-trip time (a fake: it forwards each chunk after a sleep,
with TCP_NODELAY, and does nothing else).

Rows: cold 1 image, cold 20 images in one request (medians), warm 1 and 20 images (p50/p99),
throughput with wrk at 50 and 200 connections (requests/s and errors), and resident memory. The
ratio Referee/Ratify is printed beside each row with its target. Then Referee's ``/validate`` over
TLS on loopback, with ``bench_webhook.py``'s measures and targets (Ratify has no such endpoint).

Run:  scripts/build-ratify.sh && .venv/bin/python -m bench.bench_peers [--rtt-ms 10] [--seconds 10]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from bench.bench_webhook import TARGETS as WEBHOOK_TARGETS
from bench.bench_webhook import latencies, pct, review, run_wrk
from tests.helpers import pki, registries
from tests.helpers.artifacts import make_notation, push_image
from tests.helpers.tools import ROOT, free_port
from webhook.oci.model import NOTARY_SIGNATURE

RATIFY = ROOT / ".tools" / "bin" / "ratify"
GK_API = "externaldata.gatekeeper.sh/v1beta1"

# Referee/Ratify ratios (lower is better) and absolute targets.
TARGETS = {"ratio": 1.0, "cold_1_slow_ratio": 0.85, "cold_20_vs_cold_1_slow": 1.5, "warm_20_p99_ms": 2.0,
           "throughput_ratio_min": 1.5}  # fmt: skip


# --- the delay proxy (a fake) ----------------------------------------------------------------------


@contextlib.contextmanager
def delay_proxy_fake(upstream: str, rtt_ms: float) -> Iterator[str]:
    """A TCP forwarder to ``upstream`` that sleeps half the round-trip time before passing each chunk
    on, in each direction; yields its ``127.0.0.1:PORT``."""
    host, port = upstream.rsplit(":", 1)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    half_s = rtt_ms / 2000

    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while not stop.is_set():
                data = src.recv(65536)
                if not data:
                    break
                time.sleep(half_s)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            remote = socket.create_connection((host, int(port)))
            for s in (client, remote):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=pump, args=(client, remote), daemon=True).start()
            threading.Thread(target=pump, args=(remote, client), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=2)


# --- the two providers --------------------------------------------------------------------------


@dataclass(frozen=True)
class Provider:
    name: str
    url: str
    pid: int

    def ask(self, session: requests.Session, keys: list[str]) -> float:
        """One ProviderRequest; its latency in ms. Every key must come back verified."""
        body = {"apiVersion": GK_API, "kind": "ProviderRequest", "request": {"keys": keys}}
        start = time.perf_counter()
        resp = session.post(self.url, json=body, timeout=60)
        elapsed = (time.perf_counter() - start) * 1000
        assert resp.status_code == 200, f"{self.name}: HTTP {resp.status_code} {resp.text[:300]}"
        items = resp.json()["response"]["items"]
        assert len(items) == len(keys), f"{self.name}: {len(items)} items for {len(keys)} keys"
        for item in items:
            value = item.get("value") or {}
            ok = value.get("verified") is True or value.get("isSuccess") is True
            assert ok and not item.get("error"), f"{self.name}: not verified: {json.dumps(item)[:400]}"
        return elapsed


def rss_mib(pid: int, field: str = "VmRSS", file: str = "status") -> float:
    """The process and its children (gunicorn's workers), resident memory in MiB. RSS counts the
    pages forked workers share with their master once per process; PSS (``Pss`` of
    ``smaps_rollup``) shares them out, so that the sum is the memory the processes take together."""
    pids = [str(pid), *subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True,
                                      check=False).stdout.split()]  # fmt: skip
    total = 0.0
    for p in pids:
        match = re.search(rf"{field}:\s+(\d+) kB", Path(f"/proc/{p}/{file}").read_text())
        total += int(match.group(1)) / 1024 if match else 0
    return total


@contextlib.contextmanager
def started(
    name: str,
    argv: list[str],
    url: str,
    log: Path,
    env: dict[str, str] | None = None,
    *,
    verify: str | bool = True,
) -> Iterator[int]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited:\n{log.read_text()[-3000:]}")
            try:
                requests.post(url, json={"apiVersion": GK_API, "kind": "ProviderRequest",
                                         "request": {"keys": []}}, timeout=1, verify=verify)  # fmt: skip
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name} not ready:\n{log.read_text()[-3000:]}") from None
                time.sleep(0.2)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def referee_config(
    work: Path, hosts: list[str], policy: Path, store: Path, port: int, *, tls: pki.KeyPair | None = None
) -> Path:
    config = work / ("referee-tls.yaml" if tls else "referee.yaml")
    registries_yaml = "".join(f"  '{h}': {{plainHTTP: true}}\n" for h in hosts)
    config.write_text(
        f"listen: 127.0.0.1:{port}\ntrustPolicy: {policy}\ntrustStore: {store}\n"
        f"registries:\n{registries_yaml}"
        "timeouts: {providerSeconds: 30}\nlimits: {maxSignatures: 10}\n"
        "cache: {maxEntries: 10000}\nserver: {workers: 2, threads: 8}\n"
        + (f"tls: {{certFile: {tls.cert_path}, keyFile: {tls.key_path}}}\n" if tls else "")
    )
    return config


def ratify_config(work: Path, root_cert: Path) -> Path:
    config = work / "ratify.json"
    config.write_text(json.dumps({
        "store": {"version": "1.0.0", "plugins": [{"name": "oras", "useHttp": True}]},
        "policy": {"version": "1.0.0", "plugin": {"name": "configPolicy"}},
        "verifier": {"version": "1.0.0", "plugins": [{
            "name": "notation", "artifactTypes": NOTARY_SIGNATURE, "verificationCerts": [str(root_cert)],
            "trustPolicyDoc": {"version": "1.0", "trustPolicies": [{
                "name": "default", "registryScopes": ["*"], "signatureVerification": {"level": "strict"},
                "trustStores": ["ca:certs"], "trustedIdentities": ["*"]}]}}]},
    }))  # fmt: skip
    return config


# --- the run ---------------------------------------------------------------------------------------


def measure(
    providers: list[Provider], images: Iterator[str], args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    """One network condition: every row for every provider."""
    session = requests.Session()
    out: dict[str, dict[str, float]] = {p.name: {} for p in providers}

    def alternate(rows: dict[str, list[float]], keys: list[str], i: int) -> None:
        order = providers if i % 2 == 0 else providers[::-1]
        for p in order:
            rows[p.name].append(p.ask(session, keys))

    cold1: dict[str, list[float]] = {p.name: [] for p in providers}
    for i in range(args.cold_runs):
        alternate(cold1, [next(images)], i)
    cold20: dict[str, list[float]] = {p.name: [] for p in providers}
    warm20_keys: list[str] = []
    for i in range(args.cold_runs_20):
        warm20_keys = [next(images) for _ in range(20)]
        alternate(cold20, warm20_keys, i)
    warm1_key = [next(images)]
    for p in providers:
        p.ask(session, warm1_key)
    warm1: dict[str, list[float]] = {p.name: [] for p in providers}
    warm20: dict[str, list[float]] = {p.name: [] for p in providers}
    for i in range(args.warm_requests):
        alternate(warm1, warm1_key, i)
        alternate(warm20, warm20_keys, i)
    for p in providers:
        row = out[p.name]
        row["cold_1_ms"] = statistics.median(cold1[p.name])
        row["cold_20_ms"] = statistics.median(cold20[p.name])
        row["warm_1_p50_ms"], row["warm_1_p99_ms"] = pct(warm1[p.name], 0.5), pct(warm1[p.name], 0.99)
        row["warm_20_p50_ms"], row["warm_20_p99_ms"] = pct(warm20[p.name], 0.5), pct(warm20[p.name], 0.99)
    body = {"apiVersion": GK_API, "kind": "ProviderRequest", "request": {"keys": warm1_key}}
    for p in providers:
        for connections in (50, 200):
            result = run_wrk(p.url, body, args.seconds, args.work, connections=connections)
            out[p.name][f"rps_{connections}"] = result["rps"]
            out[p.name][f"errors_{connections}"] = result["errors"]
        out[p.name]["rss_mib"] = rss_mib(p.pid)
        out[p.name]["pss_mib"] = rss_mib(p.pid, "Pss", "smaps_rollup")
    return out


def measure_validate(url: str, ca: Path, images: Iterator[str], args: argparse.Namespace) -> dict[str, float]:
    """``/validate`` over TLS on loopback, as ``bench_webhook.py`` measures it (AdmissionReviews of
    1 and 20 images, warm and cold; wrk at 200 connections on the warm 1-image pod)."""
    session = requests.Session()
    endpoint = f"{url}/validate"
    out: dict[str, float] = {}
    cold1 = [latencies(session, endpoint, ca, review([next(images)], "cold"), 1)[0]
             for _ in range(args.cold_runs)]  # fmt: skip
    cold20, batch = [], []
    for _ in range(args.cold_runs_20):
        batch = [next(images) for _ in range(20)]
        cold20 += latencies(session, endpoint, ca, review(batch, "cold20"), 1)
    out["cold_1_ms"], out["cold_20_ms"] = statistics.median(cold1), statistics.median(cold20)
    for size, keys in ((1, batch[:1]), (20, batch)):
        warm = latencies(session, endpoint, ca, review(keys, f"warm-{size}"), args.warm_requests)
        out[f"warm_{size}_p50_ms"], out[f"warm_{size}_p99_ms"] = pct(warm, 0.5), pct(warm, 0.99)
    wrk = run_wrk(endpoint, review(batch[:1], "load"), args.seconds, args.work)
    out["rps_200"], out["errors_200"] = wrk["rps"], wrk["errors"]
    return out


def report_validate(v: dict[str, float]) -> list[str]:
    """Beside bench_webhook.py's measures and targets (bench/README.md has its last run)."""
    t = WEBHOOK_TARGETS
    return [
        "\n/validate over TLS, loopback (Referee only: bench_webhook.py's measures and targets)",
        f"{'measure':<28}{'Referee':>12}  target",
        f"{'warm_1_p50 / p99 ms':<28}{v['warm_1_p50_ms']:>6.2f} /{v['warm_1_p99_ms']:>5.2f}"
        f"  p99 <= {t['warm_p99_ms']:g}",
        f"{'warm_20_p50 / p99 ms':<28}{v['warm_20_p50_ms']:>6.2f} /{v['warm_20_p99_ms']:>5.2f}"
        f"  p99 <= {t['warm_p99_ms']:g}",
        f"{'cold_1_ms':<28}{v['cold_1_ms']:>12.2f}",
        f"{'cold_20_ms':<28}{v['cold_20_ms']:>12.2f}  <= {t['cold_20_vs_cold_1']:g}x cold 1 "
        f"({v['cold_20_ms'] / v['cold_1_ms']:.2f}x)",
        f"{'rps_200 (errors)':<28}{v['rps_200']:>12.0f}  >= {t['throughput_rps']:g}, 0 errors"
        f" ({v['errors_200']:.0f})",
    ]


def report(condition: str, figures: dict[str, dict[str, float]]) -> list[str]:
    referee, ratify = figures["referee"], figures["ratify"]
    lines = [f"\n{condition}", f"{'measure':<28}{'Referee':>12}{'Ratify':>12}{'ratio':>9}  target"]
    for key in ("cold_1_ms", "cold_20_ms", "warm_1_p50_ms", "warm_1_p99_ms", "warm_20_p50_ms",
                "warm_20_p99_ms", "rps_50", "rps_200", "rss_mib", "pss_mib"):  # fmt: skip
        a, b = referee[key], ratify[key]
        higher_better = key.startswith("rps")
        ratio = (b / a if higher_better else a / b) if a and b else float("nan")
        target = f"<= {TARGETS['ratio']:.2f}" + (" (Ratify/Referee)" if higher_better else "")
        lines.append(f"{key:<28}{a:>12.2f}{b:>12.2f}{ratio:>9.2f}  {target}")
    lines.append(f"{'errors (50 / 200 conns)':<28}{referee['errors_50']:>6.0f}/{referee['errors_200']:<5.0f}"
                 f"{ratify['errors_50']:>6.0f}/{ratify['errors_200']:<5.0f}          0")  # fmt: skip
    return lines


def summary(slow: dict[str, dict[str, float]], rtt_ms: float) -> list[str]:
    """The four targets of the slow condition, beside their figures."""
    r, q = slow["referee"], slow["ratify"]
    return [
        f"\ncold 1 image at {rtt_ms:g} ms, Referee/Ratify: {r['cold_1_ms'] / q['cold_1_ms']:.2f}"
        f" (target <= {TARGETS['cold_1_slow_ratio']})",
        f"cold 20 / cold 1 image at {rtt_ms:g} ms, Referee: {r['cold_20_ms'] / r['cold_1_ms']:.2f}"
        f" (target <= {TARGETS['cold_20_vs_cold_1_slow']})",
        f"warm 20 images p99, Referee: {r['warm_20_p99_ms']:.2f} ms"
        f" (target <= {TARGETS['warm_20_p99_ms']} ms)",
        f"throughput at 200 connections, Referee/Ratify: {r['rps_200'] / q['rps_200']:.2f}"
        f" (target >= {TARGETS['throughput_ratio_min']})",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rtt-ms", type=float, default=10.0, help="round trip added by the delay proxy")
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--cold-runs-20", type=int, default=2)
    parser.add_argument("--warm-requests", type=int, default=200)
    args = parser.parse_args()
    if not RATIFY.is_file():
        raise SystemExit("ratify is not built: run scripts/build-ratify.sh")
    per_condition = args.cold_runs + 20 * args.cold_runs_20 + 1
    with tempfile.TemporaryDirectory() as tmp, registries.olareg(Path(tmp) / "olareg") as reg:
        work = Path(tmp)
        args.work = work
        notation = make_notation(work / "notation")
        print(f"pushing and signing {3 * per_condition} images with oras and notation ...", file=sys.stderr)
        names = [f"bench/app{i}" for i in range(3 * per_condition)]
        for i, name in enumerate(names):
            digest = push_image(reg, name, "v1", work / "images" / str(i), content=f"peer image {i}")
            notation.sign(reg, f"{reg.host}/{name}@{digest}")
        store_cert = next((notation.home / "notation" / "truststore" / "x509" / "ca").rglob("*.crt"))
        store = work / "store"
        (store / "x509" / "ca" / "test").mkdir(parents=True)
        (store / "x509" / "ca" / "test" / "root.crt").write_bytes(store_cert.read_bytes())
        policy = work / "trustpolicy.json"
        policy.write_text(json.dumps({"version": "1.0", "trustPolicies": [{
            "name": "default", "registryScopes": ["*"], "signatureVerification": {"level": "strict"},
            "trustStores": ["ca:test"], "trustedIdentities": ["*"]}]}))  # fmt: skip
        with delay_proxy_fake(reg.host, args.rtt_ms) as slow_host:
            hosts = [reg.host, slow_host]
            referee_port, ratify_port = free_port(), free_port()
            env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(work / "metrics")}
            referee_url = f"http://127.0.0.1:{referee_port}/provider"
            ratify_url = f"http://127.0.0.1:{ratify_port}/ratify/gatekeeper/v1/verify"
            config = referee_config(work, hosts, policy, store, referee_port)
            ratify_cfg = ratify_config(work, store_cert)
            ca = pki.make_ca(work)
            tls_port = free_port()
            tls_config = referee_config(work, hosts, policy, store, tls_port,
                                        tls=pki.make_server_cert(work, ca))  # fmt: skip
            tls_url = f"https://127.0.0.1:{tls_port}"
            with (
                started("referee", [sys.executable, "-m", "webhook", "serve", "--config", str(config)],
                        referee_url, work / "referee.log", env) as referee_pid,
                started("ratify", [str(RATIFY), "serve", "--http", f"127.0.0.1:{ratify_port}", "-c",
                                   str(ratify_cfg), "--cache-enabled", "--cache-type", "ristretto"],
                        ratify_url, work / "ratify.log") as ratify_pid,
            ):  # fmt: skip
                providers = [
                    Provider("referee", referee_url, referee_pid),
                    Provider("ratify", ratify_url, ratify_pid),
                ]
                lines = []
                for condition, host, block in (("loopback", reg.host, names[:per_condition]),
                                               (f"{args.rtt_ms:g} ms RTT (delay proxy)", slow_host,
                                                names[per_condition : 2 * per_condition])):  # fmt: skip
                    images = iter(f"{host}/{name}:v1" for name in block)
                    figures = measure(providers, images, args)
                    lines += report(condition, figures)
                    if condition != "loopback":
                        slow = figures
                print("\n".join(lines))
                print("\n".join(summary(slow, args.rtt_ms)))
            # /validate over TLS: its own server, once the two above have stopped.
            serve_tls = [sys.executable, "-m", "webhook", "serve", "--config", str(tls_config)]
            with started("referee (TLS)", serve_tls, f"{tls_url}/provider", work / "referee-tls.log", env,
                         verify=str(ca.cert_path)):  # fmt: skip
                third = iter(f"{reg.host}/{name}:v1" for name in names[2 * per_condition :])
                print("\n".join(report_validate(measure_validate(tls_url, ca.cert_path, third, args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

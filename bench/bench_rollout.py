"""Benchmark: a rollout across three replicas, with each worker's own caches and with the shared cache.

Three `referee serve` processes (2 workers, 8 threads, TLS) read one olareg through a proxy that
counts the requests reaching it. Five Deployments (one signed image each, by tag) are admitted
first, on the first replica, as the API server sends them; then their 200 pods (40 each) arrive
from 20 clients at once, spread over the three replicas, as a ReplicaSet controller makes them.
Printed for both runs (fresh processes, cold caches): registry requests, admission latency (p50,
p99) of the pods, and denials (there must be none), with the ratio shared / local.

Run:  .venv/bin/python -m bench.bench_rollout [--pods 200] [--images 5] [--replicas 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from bench.bench_webhook import pct, process, review, signed_images
from tests.helpers import pki, registries
from tests.helpers.codesign import make_chain, write_trust_policy, write_trust_store
from tests.helpers.counting_proxy import CountingProxy, counting_proxy
from tests.helpers.redis_server import RedisServer, redis_server
from tests.helpers.tools import free_port
from webhook.registry.client import ClientSettings, HostSettings, RegistryClient


def deployment(image: str, uid: str) -> dict[str, Any]:
    pod = review([image], uid)
    spec = pod["request"]["object"]["spec"]
    pod["request"]["kind"] = {"group": "apps", "version": "v1", "kind": "Deployment"}
    pod["request"]["object"] = {"metadata": {"name": "web"}, "spec": {"template": {"spec": spec}}}
    return pod


@contextlib.contextmanager
def replicas(work: Path, count: int, proxy: CountingProxy, *, trust: tuple[Path, Path],
             redis: RedisServer | None, budget_ms: float) -> Iterator[list[tuple[str, Path]]]:  # fmt: skip
    """``count`` referee serve processes; their (url, CA file)."""
    policy, store = trust
    work.mkdir(parents=True)
    key = work / "signing-key"
    key.write_bytes(b"bench-signing-key-" + b"k" * 30)
    with contextlib.ExitStack() as stack:
        out = []
        for i in range(count):
            home = work / f"replica{i}"
            home.mkdir(parents=True)
            ca = pki.make_ca(home)
            cert = pki.make_server_cert(home, ca)
            port = free_port()
            shared = (
                f"cache: {{shared: {{url: '{redis.url}', passwordFile: {redis.password_file()}, "
                f"signingKeyFile: {key}, keyPrefix: 'rollout:', budgetMilliseconds: {budget_ms:g}}}}}\n"
                if redis
                else ""
            )
            config = home / "config.yaml"
            config.write_text(
                f"listen: 127.0.0.1:{port}\ntrustPolicy: {policy}\ntrustStore: {store}\n"
                f"registries: {{'{proxy.host}': {{plainHTTP: true}}}}\n"
                f"tls: {{certFile: {cert.cert_path}, keyFile: {cert.key_path}}}\n"
                "server: {workers: 2, threads: 8}\nlogLevel: warning\n" + shared
            )
            url = f"https://127.0.0.1:{port}"
            argv = [sys.executable, "-m", "webhook", "serve", "--config", str(config)]
            stack.enter_context(process(argv, f"{url}/readyz", ca.cert_path, home / "referee.log"))
            out.append((url, ca.cert_path))
        yield out


def rollout(servers: list[tuple[str, Path]], images: list[str], pods: int) -> dict[str, Any]:
    sessions = [requests.Session() for _ in servers]

    def post(i: int, body: dict[str, Any]) -> tuple[float, bool]:
        url, ca = servers[i % len(servers)]
        resp = sessions[i % len(servers)].post(f"{url}/validate", data=json.dumps(body),
                                               headers={"Content-Type": "application/json"},
                                               verify=str(ca), timeout=30)  # fmt: skip
        assert resp.status_code == 200, resp.text
        return resp.elapsed.total_seconds() * 1000, bool(resp.json()["response"]["allowed"])

    templates = [post(0, deployment(image, f"d{n}")) for n, image in enumerate(images)]
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda n: post(n, review([images[n % len(images)]], f"p{n}")), range(pods)))
    latencies = [ms for ms, _ in answers]
    return {"denied": sum(1 for _, ok in [*templates, *answers] if not ok),
            "p50": pct(latencies, 0.5), "p99": pct(latencies, 0.99)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=200)
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--budget-ms", type=float, default=5.0, help="cache.shared.budgetMilliseconds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        chain = make_chain()
        with registries.olareg(work / "olareg") as reg, counting_proxy(reg.host) as proxy, \
                redis_server(work / "redis") as redis:  # fmt: skip
            client = RegistryClient(ClientSettings(hosts={reg.host: HostSettings(plain_http=True)}))
            pushed = signed_images(reg, client, chain, work / "images", prefix="rollout", count=args.images)
            images = [i.replace(reg.host, proxy.host, 1) for i in pushed]
            write_trust_store(work / "store", "ca", "test", chain.root)
            policy = write_trust_policy(work / "trustpolicy.json", stores=["ca:test"])
            results = {}
            for name, shared in (("local caches only", None), ("shared cache", redis)):
                before = proxy.total()
                home, trust = work / name.replace(" ", "-"), (policy, work / "store")
                with replicas(home, args.replicas, proxy, trust=trust, redis=shared,
                              budget_ms=args.budget_ms) as servers:  # fmt: skip
                    figures = rollout(servers, images, args.pods)
                figures["registry"] = proxy.total() - before
                results[name] = figures
                print(f"{name:<18} registry requests {figures['registry']:5d}   "
                      f"pods p50 {figures['p50']:7.1f} ms   p99 {figures['p99']:7.1f} ms   "
                      f"denied {figures['denied']}")  # fmt: skip
    local, shared_run = results["local caches only"], results["shared cache"]
    print(f"{args.pods} pods of {args.images} images over {args.replicas} replicas x 2 workers; "
          f"shared / local: registry requests {shared_run['registry'] / local['registry']:.2f}, "
          f"p99 {shared_run['p99'] / local['p99']:.2f}")  # fmt: skip
    assert local["denied"] == shared_run["denied"] == 0, "a signed image was denied"


if __name__ == "__main__":
    main()

"""Benchmark: `referee serve` (2 workers, 8 threads, TLS) while hostile registries hold it.

Prints each figure beside its target and their ratio (figure / target; at most 1 meets it):

- pool: 64 images on a registry that trickles a header line every 0.2 s are in flight (four pods
  of 16 images, sent at once); meanwhile a pod whose image verdict is cached is answered in under
  20 ms, and a pod with an uncached image on a healthy registry (olareg) within its normal time
  (measured first, without the hostile load) plus 100 ms.
- clients: 500 clients hold TLS connections open, each sending one byte of its request every
  0.5 s (tests/helpers/slow_clients_fake.py); meanwhile an AdmissionReview (cached image) is
  answered within its normal time (p50 without them) plus 50 ms (p50 with them).
- memory: rounds of four pods of 16 new images each on a registry built to cost memory (manifests
  just under the 4 MiB cap, a 16 KiB token with a lifetime of years per repository, 1000 referrers
  per image whose envelopes are just under the 256 KiB cap) and on the trickling one; the peak
  resident memory (VmHWM) of each worker afterwards stays under 256 MiB.

The trickling registry is the in-process fake of tests/helpers/fake_registry.py (no real registry
can be made to stall like this); the healthy one is a real olareg with images signed by Referee's
signer.

Run:  .venv/bin/python -m bench.bench_hostile
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench.bench_webhook import process, review, signed_images
from tests.helpers import pki, registries
from tests.helpers.codesign import make_chain, write_trust_policy, write_trust_store
from tests.helpers.costly_registry_fake import CostlyRegistryFake
from tests.helpers.fake_registry import FakeRegistry, fake_registry, trickle_headers
from tests.helpers.registries import RunningRegistry
from tests.helpers.slow_clients_fake import trickling_clients_fake
from tests.helpers.tools import free_port
from webhook.registry.client import ClientSettings, HostSettings, RegistryClient

TARGETS = {"cached_ms": 20.0, "uncached_extra_ms": 100.0, "trickled_extra_ms": 50.0, "peak_rss_mib": 256.0}


def worker_peak_rss_mib(master: int) -> list[float]:
    children = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True, check=False)
    out = []
    for pid in children.stdout.split():
        match = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
        if match:
            out.append(int(match.group(1)) / 1024)
    return out


def post(session: requests.Session, url: str, ca: Path, images: list[str], uid: str) -> tuple[float, Any]:
    started = time.perf_counter()
    resp = session.post(f"{url}/validate", json=review(images, uid), verify=str(ca), timeout=30)
    elapsed_ms = (time.perf_counter() - started) * 1000
    resp.raise_for_status()
    return elapsed_ms, resp.json()["response"]


def line(name: str, figure: float, target: float, unit: str = "ms") -> None:
    print(f"{name:<58} {figure:9.2f} {unit}   target {target:7.2f} {unit}   ratio {figure / target:5.2f}")


@dataclass(frozen=True)
class Ground:
    """What the hostile benchmarks run on: signed images in olareg, with the trust policy and store
    for them in ``work``, beside a registry that stalls and one that costs memory (fakes)."""

    work: Path
    registry: RunningRegistry
    stall: FakeRegistry
    greedy: FakeRegistry
    images: list[str]


@contextlib.contextmanager
def hostile_ground(prefix: str, count: int) -> Iterator[Ground]:
    """``count`` images ``PREFIX/appN:v1`` signed by a fresh chain that the store ``ca:PREFIX`` trusts."""
    costly = CostlyRegistryFake()
    with (
        tempfile.TemporaryDirectory() as tmp,
        registries.olareg(Path(tmp) / "olareg") as reg,
        fake_registry() as stall,
        fake_registry() as greedy,
    ):
        stall.fallback = trickle_headers
        greedy.fallback = costly.handle
        work = Path(tmp)
        chain = make_chain()
        client = RegistryClient(ClientSettings(default=HostSettings(plain_http=True)))
        print("preparing signed images ...", file=sys.stderr)
        images = signed_images(reg, client, chain, work, prefix=prefix, count=count)
        write_trust_store(work / "truststore", "ca", prefix, chain.root)
        write_trust_policy(work / "trustpolicy.json", stores=[f"ca:{prefix}"])
        yield Ground(work, reg, stall, greedy, images)


def main() -> int:  # noqa: PLR0915 (one scenario after another, in order)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cold-images", type=int, default=6, help="uncached images timed, each phase")
    parser.add_argument("--memory-rounds", type=int, default=8, help="rounds of 64 costly images")
    args = parser.parse_args()
    with hostile_ground("bench", 1 + 2 * args.cold_images) as ground:
        work, reg, stall, greedy, images = (
            ground.work,
            ground.registry,
            ground.stall,
            ground.greedy,
            ground.images,
        )
        warm, cold_before, cold_during = (
            images[0],
            images[1 : 1 + args.cold_images],
            images[1 + args.cold_images :],
        )
        ca = pki.make_ca(work)
        cert = pki.make_server_cert(work, ca)
        port = free_port()
        (work / "config.yaml").write_text(
            f"listen: 127.0.0.1:{port}\ntrustPolicy: {work / 'trustpolicy.json'}\n"
            f"trustStore: {work / 'truststore'}\n"
            f"registries: {{'{reg.host}': {{plainHTTP: true}}, '{stall.host}': {{plainHTTP: true}}, "
            f"'{greedy.host}': {{plainHTTP: true}}}}\n"
            f"tls: {{certFile: {cert.cert_path}, keyFile: {cert.key_path}}}\n"
            "server: {workers: 2, threads: 8}\ntimeouts: {admissionSeconds: 10, marginSeconds: 1}\n"
        )
        url = f"https://127.0.0.1:{port}"
        with process([sys.executable, "-m", "webhook", "serve", "--config", str(work / "config.yaml")],
                     f"{url}/healthz", ca.cert_path, work / "hook.log") as master:  # fmt: skip
            session = requests.Session()
            for n in range(20):  # every worker verifies the warm image once, then has it cached
                post(requests.Session(), url, ca.cert_path, [warm], f"warm-{n}")
            normal = [post(session, url, ca.cert_path, [im], f"cold-{im}")[0] for im in cold_before]
            normal_ms = statistics.median(normal)

            hostile_done: list[float] = []

            def hostile(n: int) -> None:
                pod = [f"{stall.host}/team/app{n}-{i}:v1" for i in range(16)]
                hostile_done.append(post(requests.Session(), url, ca.cert_path, pod, f"hostile-{n}")[0])

            threads = [threading.Thread(target=hostile, args=(n,)) for n in range(4)]
            for t in threads:
                t.start()
            time.sleep(1.0)  # the 64 trickling exchanges are in flight
            cached = []
            for n in range(20):
                elapsed_ms, answer = post(requests.Session(), url, ca.cert_path, [warm], f"cached-{n}")
                assert answer["allowed"], answer
                cached.append(elapsed_ms)
            during = []
            for im in cold_during:
                elapsed_ms, answer = post(session, url, ca.cert_path, [im], f"during-{im}")
                assert answer["allowed"], answer
                during.append(elapsed_ms)
            in_flight_at_end = len(hostile_done) < len(threads)
            for t in threads:
                t.join(timeout=30)
            keep = requests.Session()
            quiet = [post(keep, url, ca.cert_path, [warm], f"quiet-{n}")[0] for n in range(50)]
            with trickling_clients_fake(port, ca.cert_path, 500, every_s=0.5, for_s=30):
                loud = [post(keep, url, ca.cert_path, [warm], f"loud-{n}")[0] for n in range(50)]
            started_rss = worker_peak_rss_mib(master)
            denied = 0
            for r in range(args.memory_rounds):

                def costly_pod(n: int, r: int = r) -> None:
                    nonlocal denied
                    pod = [f"{greedy.host}/r{r}/p{n}/app{i}:v1" for i in range(14)]
                    pod += [f"{stall.host}/r{r}/p{n}/app{i}:v1" for i in range(2)]
                    answer = post(requests.Session(), url, ca.cert_path, pod, f"costly-{r}-{n}")[1]
                    denied += not answer["allowed"]

                pods = [threading.Thread(target=costly_pod, args=(n,)) for n in range(4)]
                for t in pods:
                    t.start()
                for t in pods:
                    t.join(timeout=60)
            peak = worker_peak_rss_mib(master)
        cached_ms = max(cached)
        during_ms = statistics.median(during)
        print(f"hostile pods still in flight when the last measurement ended: {in_flight_at_end}")
        print(f"uncached image on olareg without load: median {normal_ms:.2f} ms of {len(normal)}")
        line("cached image, 64 trickling images in flight (worst of 20)", cached_ms, TARGETS["cached_ms"])
        line(
            f"uncached healthy image under load, minus normal {normal_ms:.1f} ms",
            max(0.0, during_ms - normal_ms),
            TARGETS["uncached_extra_ms"],
        )
        quiet_ms, loud_ms = statistics.median(quiet), statistics.median(loud)
        print(f"AdmissionReview p50 without slow clients {quiet_ms:.2f} ms, with 500: {loud_ms:.2f} ms "
              f"(p99 {sorted(loud)[-1]:.2f} ms)")  # fmt: skip
        line("AdmissionReview with 500 trickling clients, beyond normal", max(0.0, loud_ms - quiet_ms),
             TARGETS["trickled_extra_ms"])  # fmt: skip
        before = ", ".join(f"{m:.0f}" for m in started_rss)
        print(f"workers' peak RSS before the costly rounds: {before} MiB; "
              f"{args.memory_rounds} rounds of 64 costly images, {denied} pods denied")  # fmt: skip
        line("peak RSS of a worker under the hostile matrix", max(peak), TARGETS["peak_rss_mib"], "MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Soak: `referee serve` (2 workers, 8 threads, TLS) under a steady mix of admissions for minutes.

Sends AdmissionReviews at a fixed rate (default 500/s for 600 s) from one asyncio client over
keep-alive TLS connections, mixed as SOAK_MIX says (default warm=0.85,cold=0.14,hostile=0.01):
warm pods (a signed image whose verdict is cached), cold pods (signed
images whose verdicts expire every few seconds: cache.verdictTTLSeconds is 3 here, so they are
verified again), and hostile pods (an image on a registry that trickles its headers, or on one
built to cost memory). Prints the requests sent, the errors on honest pods (any answer but
"allowed", any HTTP error or timeout: the target is 0), the latencies, and each worker's resident
memory at the start and the end (the target: flat).

Run:  nice .venv/bin/python -m bench.soak [--seconds 600] [--rate 500]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import ssl
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.bench_hostile import hostile_ground, worker_peak_rss_mib
from bench.bench_webhook import process, review, worker_rss_mib
from tests.helpers import pki
from tests.helpers.tools import free_port

MIX = tuple(
    (k, float(w))
    for k, w in (
        p.split("=") for p in os.environ.get("SOAK_MIX", "warm=0.85,cold=0.14,hostile=0.01").split(",")
    )
)


async def drive(
    url: str, ca: Path, pods: dict[str, list[list[str]]], rate: float, seconds: float
) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False
    connector = aiohttp.TCPConnector(ssl=context, limit=256)
    timeout = aiohttp.ClientTimeout(total=15)
    stats: dict[str, Any] = {
        "sent": 0,
        "honest_errors": 0,
        "latency": {k: [] for k, _ in MIX},
        "examples": [],
    }
    rng = random.Random(7)  # noqa: S311 (a reproducible mix, not a secret)
    kinds, weights = [k for k, _ in MIX], [w for _, w in MIX]
    tasks: set[asyncio.Task[None]] = set()

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(kind: str, images: list[str], uid: str) -> None:
            started = time.perf_counter()
            try:
                async with session.post(f"{url}/validate", json=review(images, uid)) as resp:
                    body = await resp.json()
                allowed = resp.status == 200 and body["response"]["allowed"] is True
                if kind != "hostile" and not allowed:
                    stats["honest_errors"] += 1
                    stats["examples"].append(str(body)[:300])
            except (aiohttp.ClientError, TimeoutError, KeyError, ValueError) as exc:
                if kind != "hostile":
                    stats["honest_errors"] += 1
                    stats["examples"].append(repr(exc)[:300])
            stats["latency"][kind].append((time.perf_counter() - started) * 1000)

        begin = time.monotonic()
        n = 0
        while (now := time.monotonic()) - begin < seconds:
            due = begin + n / rate
            if due > now:
                await asyncio.sleep(due - now)
            kind = rng.choices(kinds, weights)[0]
            task = asyncio.create_task(one(kind, rng.choice(pods[kind]), f"soak-{n}"))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        stats["sent"] = n
        stats["elapsed_s"] = time.monotonic() - begin
        await asyncio.gather(*tasks)
    return stats


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--rate", type=float, default=500, help="admissions per second")
    parser.add_argument("--hostile", default="stall,costly", help="which hostile registries the mix names")
    args = parser.parse_args()
    with hostile_ground("soak", 12) as ground:
        work, reg, stall, greedy, signed = (
            ground.work,
            ground.registry,
            ground.stall,
            ground.greedy,
            ground.images,
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
            "cache: {verdictTTLSeconds: 3, tagTTLSeconds: 3}\n"
        )
        pods = {
            "warm": [[signed[0]], [signed[1]], [signed[0], signed[1]]],
            "cold": [[im] for im in signed[2:]],
            "hostile": [[f"{stall.host}/soak/slow{i}:v1"] for i in range(50) if "stall" in args.hostile]
            + [[f"{greedy.host}/soak/costly{i}:v1"] for i in range(50) if "costly" in args.hostile],
        }
        url = f"https://127.0.0.1:{port}"
        with process([sys.executable, "-m", "webhook", "serve", "--config", str(work / "config.yaml")],
                     f"{url}/healthz", ca.cert_path, work / "hook.log") as master:  # fmt: skip
            asyncio.run(drive(url, ca.cert_path, pods, args.rate, 10))  # warm-up
            start_rss = worker_rss_mib(master)
            stats = asyncio.run(drive(url, ca.cert_path, pods, args.rate, args.seconds))
            end_rss, peak = worker_rss_mib(master), worker_peak_rss_mib(master)
    sent, elapsed = stats["sent"], stats["elapsed_s"]
    print(f"sent {sent} admissions in {elapsed:.0f} s: {sent / elapsed:.0f}/s (target {args.rate:.0f}/s)")
    for kind, values in stats["latency"].items():
        p50, p99 = pct(values, 0.5), pct(values, 0.99)
        print(f"  {kind:<8} {len(values):>7} answered, p50 {p50:8.2f} ms, p99 {p99:8.2f} ms")
    print(f"errors on honest pods: {stats['honest_errors']} (target 0)")
    for example in stats["examples"][:5]:
        print(f"  e.g. {example}")
    print("worker RSS at start: " + ", ".join(f"{m:.0f}" for m in start_rss) + " MiB; at the end: "
          + ", ".join(f"{m:.0f}" for m in end_rss) + " MiB; peak: " + ", ".join(f"{m:.0f}" for m in peak)
          + " MiB (target: flat)")  # fmt: skip
    drift = max(e - s for s, e in zip(start_rss, end_rss, strict=False)) if start_rss and end_rss else 0.0
    print(f"largest growth of a worker over the run: {drift:.0f} MiB; mean honest p50 "
          f"{statistics.median(stats['latency']['warm'] + stats['latency']['cold']):.2f} ms")  # fmt: skip
    return 0 if stats["honest_errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: the Python CPU one cold image costs, in-process, through the real gate.

Pushes N small images to a real olareg, each signed by one notation-style chain (leaf,
intermediate, root), and asks one long-lived ``Gate`` (as a worker holds it: plain-HTTP registry
client, the trust files on disk, the HTTP revocation source) for each image once. Every image is
new to the gate, so each decision resolves the tag, reads the referrers, the signature manifest
and the envelope, and verifies the signature; the signer is the same, as in a cluster where one
pipeline signs every image. The clock is the process's CPU time (``time.process_time``: every
thread of this process, not olareg), so the machine's load moves it far less than wall time.

One request's images run in one worker under one interpreter lock: 20 times this figure is the
floor of the "cold 20 images" row of ``bench_peers.py``. The target is that floor at or under the
32 ms Ratify took for those 20 images in the peer benchmark.

Run:  .venv/bin/python -m bench.bench_cold_cpu [--images 60] [--warmup 5] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from bench.bench_webhook import signed_images
from tests.helpers import registries
from tests.helpers.codesign import make_chain, write_trust_policy, write_trust_store
from webhook.deadline import Deadline
from webhook.registry.client import ClientSettings, HostSettings, RegistryClient
from webhook.trust.files import TrustFiles
from webhook.trust.revocation import HttpRevocationSource
from webhook.verify.gate import Gate

RATIFY_COLD_20_MS = 32.0  # Ratify's cold 20-image request in the peer benchmark (loopback)
TARGET_RATIO = 1.0  # 20 x CPU per cold image / Ratify's cold 20 images


class _Inline:
    """Runs the gate's work in the calling thread, so a profiler there sees all of it."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=60, help="cold images measured")
    parser.add_argument("--warmup", type=int, default=5, help="images verified first, not measured")
    parser.add_argument(
        "--profile", action="store_true", help="print a CPU-time cProfile of the measured images"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, registries.olareg(Path(tmp) / "olareg") as reg:
        work = Path(tmp)
        chain = make_chain()
        pusher = RegistryClient(ClientSettings(default=HostSettings(plain_http=True)))
        print(f"pushing {args.warmup + args.images} signed images ...", file=sys.stderr)
        images = signed_images(reg, pusher, chain, work, prefix="cpu", count=args.warmup + args.images)
        write_trust_store(work / "truststore", "ca", "bench", chain.root)
        write_trust_policy(work / "trustpolicy.json", stores=["ca:bench"])
        client = RegistryClient(ClientSettings(hosts={reg.host: HostSettings(plain_http=True)}))
        gate = Gate(
            client,
            TrustFiles(work / "trustpolicy.json", work / "truststore"),
            verdict_ttl_s=300,
            tag_ttl_s=30,
            max_entries=10_000,
            max_signatures=100,
            revocation=HttpRevocationSource(),
        )
        profiler = cProfile.Profile(time.process_time) if args.profile else None
        if profiler is not None:
            gate._pool = _Inline()  # type: ignore[assignment]
        try:
            for image in images[: args.warmup]:
                assert gate.decide([image], Deadline.after(30))[0].allowed
            per_image: list[float] = []
            for image in images[args.warmup :]:
                start = time.process_time()
                if profiler is not None:
                    profiler.enable()
                decision = gate.decide([image], Deadline.after(30))[0]
                if profiler is not None:
                    profiler.disable()
                per_image.append((time.process_time() - start) * 1000)
                assert decision.allowed and not decision.cached, decision
        finally:
            gate.close()
    median = statistics.median(per_image)
    mean = statistics.fmean(per_image)
    ratio = 20 * median / RATIFY_COLD_20_MS
    print(f"CPU per cold image, {len(per_image)} images: median {median:.2f} ms, mean {mean:.2f} ms, "
          f"p10 {sorted(per_image)[len(per_image) // 10]:.2f} ms")  # fmt: skip
    print(f"20 images: {20 * median:.1f} ms of CPU; Ratify's cold 20 images {RATIFY_COLD_20_MS:.0f} ms: "
          f"ratio {ratio:.2f} (target <= {TARGET_RATIO:.1f})")  # fmt: skip
    if profiler is not None:
        profiler.dump_stats(str(Path(tempfile.gettempdir()) / "cold_cpu.prof"))
        pstats.Stats(profiler).sort_stats("tottime").print_stats(35)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
    return 0


if __name__ == "__main__":
    sys.exit(main())

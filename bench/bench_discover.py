"""Benchmark: resolve a tag and list its Notation signatures, Referee's client against oras-go.

oras-go is the registry library Ratify and notation run, so it is the bar for this step. Both sides do
the same work on the same local registries, over one warm client each (connections and the referrers
capability reused), N times:

    resolve IMAGE:TAG  ->  list referrers of the digest with artifactType = Notary signature

Referee does one request more per resolve than oras-go: after HEAD it fetches the manifest by digest
and hashes it, so the media type and size it reports come from checked bytes.

Also measured, for people who run the command line: one cold ``referee discover`` against one cold
``oras discover`` (process start included).

Run:  .venv/bin/python -m bench.bench_discover [-n 200]
Judged on: ratio = Referee mean latency / oras-go mean latency, per registry (lower is better).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.helpers import registries
from tests.helpers.artifacts import attach, make_notation, push_image
from tests.helpers.registries import RunningRegistry
from tests.helpers.tools import ROOT, TOOLS_BIN, run, tool
from webhook.deadline import Deadline
from webhook.oci.model import NOTARY_SIGNATURE
from webhook.oci.reference import parse
from webhook.registry.client import ClientSettings, HostSettings, RegistryClient


def build_orasgo() -> str:
    out = TOOLS_BIN / "orasgo"
    src = ROOT / "bench" / "orasgo"
    newest = max(p.stat().st_mtime for p in src.iterdir())
    if not out.exists() or out.stat().st_mtime < newest:
        run(["go", "build", "-trimpath", "-o", str(out), "."], cwd=src, timeout=600)
    return str(out)


def referee_in_process(reg: RunningRegistry, image: str, n: int) -> dict[str, float]:
    client = RegistryClient(ClientSettings(default=HostSettings(plain_http=True)))
    ref = parse(image)
    repo = client.repository(ref)
    samples = []
    found = 0
    for _ in range(n):
        start = time.perf_counter()
        deadline = Deadline.after(10)
        subject = repo.resolve(ref.target, deadline)
        found = len(repo.referrers(subject.descriptor.digest, deadline, NOTARY_SIGNATURE).descriptors)
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {
        "ops": n,
        "referrers": found,
        "mean_ms": statistics.fmean(samples),
        "p50_ms": samples[len(samples) // 2],
        "p95_ms": samples[len(samples) * 95 // 100],
    }


def orasgo_in_process(orasgo: str, image: str, n: int) -> dict[str, float]:
    args = [orasgo, "-ref", image, "-n", str(n), "-plain-http", "-artifact-type", NOTARY_SIGNATURE]
    return dict(json.loads(run(args).stdout))


def cold_cli(args: list[str], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(args, capture_output=True, check=True, timeout=60)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=200, help="operations per side and registry")
    args = parser.parse_args()
    orasgo = build_orasgo()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        notation = make_notation(work / "notation")
        with registries.distribution(work / "d") as dist, registries.olareg(work / "o") as ola:
            print(f"{'registry':<28} {'side':<10} {'mean ms':>8} {'p50 ms':>8} {'p95 ms':>8}  referrers")
            for reg in (dist, ola):
                digest = push_image(reg, "bench/app", "v1", work / reg.kind)
                subject = f"{reg.host}/bench/app@{digest}"
                notation.sign(reg, subject)
                attach(reg, subject, "application/spdx+json", work / reg.kind, name="sbom.json")
                image = f"{reg.host}/bench/app:v1"
                label = f"{reg.kind} ({'API' if reg.has_referrers_api else 'tag schema'})"
                ours = referee_in_process(reg, image, args.n)
                theirs = orasgo_in_process(orasgo, image, args.n)
                for side, r in (("referee", ours), ("oras-go", theirs)):
                    print(
                        f"{label:<28} {side:<10} {r['mean_ms']:8.2f} {r['p50_ms']:8.2f} {r['p95_ms']:8.2f}"
                        f"  {int(r['referrers'])}"
                    )
                print(f"{label:<28} ratio referee/oras-go (mean): {ours['mean_ms'] / theirs['mean_ms']:.2f}")
            cli_ref = cold_cli(
                [sys.executable, "-m", "webhook", "discover", "--plain-http", f"{ola.host}/bench/app:v1"]
            )
            cli_oras = cold_cli([tool("oras"), "discover", "--plain-http", f"{ola.host}/bench/app:v1"])
            print(
                f"cold CLI, olareg: referee discover {cli_ref:.0f} ms, oras discover {cli_oras:.0f} ms, "
                f"ratio {cli_ref / cli_oras:.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The long fuzz run: ``nice -n 10 .venv/bin/python -m tests.fuzz --count 1000000``.

Mutants of every target's seeds, round-robin across targets; an input whose outcome (the typed error
and the start of its message) was not seen before for its target joins that target's corpus and
is mutated further. Prints the count, the time, the corpus size and every finding (an exception
other than Referee's typed errors), and exits 1 when there is one.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time

from tests.fuzz.mutate import mutate
from tests.fuzz.targets import TARGETS

MAX_CORPUS_PER_TARGET = 500


def outcome(
    target_run: object, data: bytes, typed: tuple[type[Exception], ...]
) -> tuple[str, BaseException | None]:
    try:
        result = target_run(data)  # type: ignore[operator]
    except typed as exc:
        return f"{type(exc).__name__}:{str(exc)[:40]}", None
    except (RecursionError, MemoryError) as exc:
        return type(exc).__name__, exc
    except Exception as exc:  # noqa: BLE001 (a finding)
        return f"!{type(exc).__name__}", exc
    return f"ok:{_summary(result)[-80:]}", None


def _summary(result: object) -> str:
    """What an answer says, to tell inputs that reached different places apart."""
    if isinstance(result, list):
        return ";".join(_summary(r)[-30:] for r in result)
    reason = getattr(result, "reason", None) or getattr(result, "detail", None)
    return str(reason) if reason is not None else type(result).__name__


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=0, help="stop after this long (0: no limit)")
    parser.add_argument("--seed", default="referee")
    parser.add_argument("--target", action="append", help="run only these targets (repeatable)")
    parser.add_argument(
        "--memory-mib", type=int, default=2048, help="address-space cap: a runaway is a finding"
    )
    args = parser.parse_args()
    cap = args.memory_mib << 20
    resource.setrlimit(resource.RLIMIT_AS, (cap, max(cap, resource.getrlimit(resource.RLIMIT_AS)[1])))
    rng = random.Random(args.seed)  # noqa: S311 (reproducible inputs, not secrets)
    targets = [t for t in TARGETS if not args.target or t.name in args.target]
    corpus = {t.name: t.seeds() for t in targets}
    seen: dict[str, set[str]] = {t.name: set() for t in targets}
    counts = dict.fromkeys(corpus, 0)
    findings: list[tuple[str, str, bytes]] = []
    started = time.monotonic()
    n = 0
    while n < args.count and not (args.seconds and time.monotonic() - started > args.seconds):
        target = targets[n % len(targets)]
        pool = corpus[target.name]
        data = mutate(rng, rng.choice(pool), pool)
        kind, exc = outcome(target.run, data, target.typed)
        counts[target.name] += 1
        n += 1
        if exc is not None:
            findings.append((target.name, f"{type(exc).__name__}: {str(exc)[:200]}", data[:300]))
        if kind not in seen[target.name]:
            seen[target.name].add(kind)
            if len(pool) < MAX_CORPUS_PER_TARGET:
                pool.append(data)
    elapsed = time.monotonic() - started
    print(f"{n} inputs in {elapsed:.0f} s ({n / max(elapsed, 1e-9):.0f}/s); corpus "
          f"{sum(len(p) for p in corpus.values())} inputs; {len(findings)} findings")  # fmt: skip
    for name in counts:
        print(f"  {name:<20} {counts[name]:>8} inputs, {len(corpus[name]):>4} in corpus, "
              f"{len(seen[name]):>4} outcomes")  # fmt: skip
    for name, what, data in findings[:50]:
        print(f"FINDING {name}: {what}\n    input: {data!r}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())

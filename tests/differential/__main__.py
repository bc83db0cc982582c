"""The long run: ``python -m tests.differential --count 10000``.

Builds the workbench (a PKI, an OCI layout signed by the real notation), verifies ``--count``
mutants with ``notation verify --oci-layout`` and with Referee, prints the counts per family and
every kind of disagreement, and exits 1 when a disagreement is not in
docs/verification-differences.md or Referee raised an uncaught exception.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from tests.differential.kit import Workbench
from tests.differential.mutants import GENERATORS
from tests.differential.run import documented, run, summary, undocumented


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.differential", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--count", type=int, default=10_000, help="how many mutants (default 10000)")
    parser.add_argument("--seed", default="referee", help="any text; the same seed makes the same mutants")
    parser.add_argument(
        "--family",
        action="append",
        default=[],
        metavar="NAME",
        help=f"only these generators (repeatable), of: {', '.join(sorted(GENERATORS))}",
    )
    parser.add_argument("--report", metavar="FILE", help="also write every outcome to FILE as JSON lines")
    parser.add_argument(
        "--work", metavar="DIR", help="build the workbench here (default: a temporary folder)"
    )
    args = parser.parse_args(argv)
    unknown = set(args.family) - set(GENERATORS)
    if unknown:
        parser.error(f"unknown generators {sorted(unknown)}")
    with tempfile.TemporaryDirectory(prefix="referee-differential-") as tmp:
        bench = Workbench(Path(args.work) if args.work else Path(tmp))
        started = time.monotonic()

        def progress(i: int, _outcome: object) -> None:
            if (i + 1) % 500 == 0:
                print(f"  {i + 1} mutants, {time.monotonic() - started:.0f} s", file=sys.stderr)

        outcomes = run(bench, args.count, args.seed, families=args.family or None, progress=progress)
    doc = documented()
    print(summary(outcomes, doc))
    if args.report:
        with Path(args.report).open("w") as fh:
            for o in outcomes:
                fh.write(json.dumps(o.__dict__) + "\n")
    bad = undocumented(outcomes, doc)
    print(f"\n{len(outcomes)} mutants in {time.monotonic() - started:.0f} s; "
          f"{len(bad)} undocumented disagreements or crashes")  # fmt: skip
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

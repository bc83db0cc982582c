"""Running mutants through both verifiers, counting by family, and checking the documented differences."""

from __future__ import annotations

import fnmatch
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tests.differential.kit import Outcome, Workbench
from tests.differential.mutants import GENERATORS, generate

DIFFERENCES_DOC = Path(__file__).resolve().parents[2] / "docs" / "verification-differences.md"
DIRECTIONS = {"accepts": "referee-accepts", "refuses": "referee-refuses"}


def run(
    bench: Workbench,
    count: int,
    seed: str,
    *,
    families: Iterable[str] | None = None,
    progress: Callable[[int, Outcome], None] | None = None,
) -> list[Outcome]:
    """``count`` mutants, the generators taken in turn (in an order fixed by ``seed``)."""
    names = sorted(families if families is not None else GENERATORS)
    random.Random(seed).shuffle(names)  # noqa: S311 (reproducible mutants, not cryptography)
    outcomes = []
    for i in range(count):
        rng = random.Random(f"{seed}:{i}")  # noqa: S311 (reproducible mutants, not cryptography)
        mutant, source = generate(rng, bench, names[i % len(names)])
        outcome = bench.judge(mutant, source, bench.root / "mutant")
        outcomes.append(outcome)
        if progress is not None:
            progress(i, outcome)
    return outcomes


@dataclass(frozen=True)
class Documented:
    """The rows of docs/verification-differences.md: which families differ, and which way."""

    rows: tuple[tuple[str, str], ...]  # (family pattern, "referee-accepts" | "referee-refuses")

    def covers(self, outcome: Outcome) -> bool:
        return any(
            direction == outcome.direction and fnmatch.fnmatchcase(outcome.family, pattern)
            for pattern, direction in self.rows
        )


def documented(path: Path = DIFFERENCES_DOC) -> Documented:
    """Read the table: its ``Referee`` column says accepts or refuses, its last column the families."""
    rows: list[tuple[str, str]] = []
    header: list[str] | None = None
    for line in path.read_text().splitlines():
        if not line.startswith("|"):
            header = None if not line.strip() else header
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = [c.lower() for c in cells]
            continue
        if set(line) <= set("|-: "):
            continue
        if "referee" not in header or "harness families" not in header:
            continue
        verdict = cells[header.index("referee")].lower()
        direction = next((d for word, d in DIRECTIONS.items() if verdict.startswith(word)), None)
        if direction is None:
            raise ValueError(f"{path}: the Referee column must start with accepts or refuses: {line}")
        for pattern in re.findall(r"`([^`]+)`", cells[header.index("harness families")]):
            rows.append((pattern, direction))
    if not rows:
        raise ValueError(f"{path}: no table with Referee and Harness families columns")
    return Documented(tuple(rows))


def undocumented(outcomes: Iterable[Outcome], doc: Documented) -> list[Outcome]:
    """Disagreements the table does not explain, and every crash."""
    return [o for o in outcomes if o.direction == "crash" or (not o.agree and not doc.covers(o))]


def summary(outcomes: list[Outcome], doc: Documented | None = None, examples: int = 2) -> str:
    """One line per family: how many, and how the two verifiers decided."""
    by_family: dict[str, Counter[str]] = defaultdict(Counter)
    shown: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        key = "both-accept" if o.agree and o.referee else "both-refuse" if o.agree else o.direction
        by_family[o.family][key] += 1
        if not o.agree and len(shown[o.family]) < examples:
            shown[o.family].append(o)
    columns = ("both-accept", "both-refuse", "referee-accepts", "referee-refuses", "crash")
    width = max(len(f) for f in by_family) if by_family else 10
    lines = [f"{'family':<{width}}  {'n':>5}  " + "  ".join(f"{c:>15}" for c in columns)]
    totals: Counter[str] = Counter()
    for family in sorted(by_family):
        counts = by_family[family]
        totals.update(counts)
        mark = ""
        if doc is not None and any(not o.agree and not doc.covers(o) for o in shown[family]):
            mark = "  <- not documented"
        lines.append(
            f"{family:<{width}}  {sum(counts.values()):>5}  "
            + "  ".join(f"{counts[c]:>15}" for c in columns)
            + mark
        )
    lines.append(f"{'total':<{width}}  {len(outcomes):>5}  " + "  ".join(f"{totals[c]:>15}" for c in columns))
    for family in sorted(shown):
        for o in shown[family]:
            lines.append(
                f"  {o.direction:<15} {family} [{o.note}]\n      notation: {o.notation_says or 'ok'}\n"
                f"      referee:  {o.crash or o.referee_says or 'ok'}"
            )
    return "\n".join(lines)

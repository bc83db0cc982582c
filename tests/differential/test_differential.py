"""The bounded slice of the differential run: a few hundred mutants of real notation signatures,
verified by ``notation verify --oci-layout`` and by Referee. Any disagreement that
docs/verification-differences.md does not list fails the test, and so does any uncaught exception in
Referee. The long run is ``python -m tests.differential --count 10000`` (CONTRIBUTING.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.differential.kit import Workbench
from tests.differential.mutants import GENERATORS
from tests.differential.run import documented, run, summary, undocumented

SLICE_MUTANTS = 400  # every generator about nine times; well under a minute here
SLICE_SEED = "slice"


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Workbench:
    return Workbench(tmp_path_factory.mktemp("differential"))


def test_referee_and_notation_disagree_only_where_documented(bench: Workbench) -> None:
    outcomes = run(bench, SLICE_MUTANTS, SLICE_SEED)
    doc = documented()
    bad = undocumented(outcomes, doc)
    assert not bad, "undocumented disagreements or crashes:\n" + summary(bad, doc, examples=5)
    # The harness itself works: unchanged re-signed envelopes verify under both, every generator ran,
    # and both refuse most mutants.
    controls = [o for o in outcomes if o.family in ("jws.resign", "cose.resign")]
    assert controls and all(o.notation and o.referee for o in controls), summary(controls)
    assert {o.family.split(".")[0] for o in outcomes} >= {"jws", "cose", "manifest", "layout", "random"}
    assert sum(not o.notation and not o.referee for o in outcomes) > len(outcomes) // 3


def test_every_generator_makes_mutants(bench: Workbench) -> None:
    assert len(GENERATORS) * 5 < SLICE_MUTANTS  # the slice covers each several times


def test_the_table_lists_families_with_a_direction() -> None:
    doc = documented()
    assert {direction for _, direction in doc.rows} == {"referee-accepts", "referee-refuses"}
    assert ("manifest.form.v1.1", "referee-accepts") in doc.rows


def test_a_family_missing_from_the_table_fails(tmp_path: Path) -> None:
    """The check the slice relies on: a disagreement whose family the table does not list is reported."""
    from tests.differential.kit import Outcome  # noqa: PLC0415

    table = tmp_path / "differences.md"
    table.write_text(
        "| Where | Referee | notation | Why | Harness families |\n|---|---|---|---|---|\n"
        "| x | accepts | refuses | y | `a.*` |\n"
    )
    doc = documented(table)
    lenient = Outcome("a.b", "", notation=False, referee=True, crash=None, notation_says="", referee_says="")
    stricter = Outcome("a.b", "", notation=True, referee=False, crash=None, notation_says="", referee_says="")
    crashed = Outcome("a.b", "", notation=True, referee=False, crash="E", notation_says="", referee_says="")
    assert undocumented([lenient], doc) == []
    assert undocumented([stricter, crashed], doc) == [stricter, crashed]

"""A bounded slice of the fuzz run (``python -m tests.fuzz`` is the long one): every parser of
untrusted input gets mutants of its seeds, drawn by hypothesis, and must answer or raise one of
Referee's typed errors."""

from __future__ import annotations

import random
import resource
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.mutate import mutate
from tests.fuzz.targets import TARGETS, Target, check

pytestmark = pytest.mark.timeout(180)  # a parser that loops for ever fails the test, not the run


@pytest.fixture(autouse=True)
def memory_cap() -> Iterator[None]:
    """A parser that allocates for ever raises MemoryError (a finding) instead of taking the machine."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as statm:
        in_use = int(statm.read().split()[0]) * resource.getpagesize()
    cap = in_use + (2 << 30)
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_parser_answers_or_raises_a_typed_error(target: Target) -> None:
    seeds = target.seeds()
    for seed in seeds:
        assert check(target, seed) is None, f"{target.name}: a seed is a finding"

    @settings(max_examples=150, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
    @given(st.integers(min_value=0, max_value=2**32), st.sampled_from(seeds))
    def mutants(salt: int, seed: bytes) -> None:
        data = mutate(random.Random(salt), seed, seeds)  # noqa: S311 (reproducible inputs)
        found = check(target, data)
        assert found is None, f"{target.name}: {type(found).__name__}: {found} on {data[:200]!r}"

    mutants()


@given(st.binary(max_size=2048))
@settings(max_examples=300, deadline=None, derandomize=True, database=None)
def test_random_bytes_are_answered_by_every_parser(data: bytes) -> None:
    for target in TARGETS:
        found = check(target, data)
        assert found is None, f"{target.name}: {type(found).__name__}: {found} on {data[:200]!r}"

"""The circuit for registries that stop answering: when requests fail at once, and when one probes."""

from __future__ import annotations

from webhook.registry.health import HostHealth


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_slow_timeout_opens_the_circuit_for_the_cooldown_then_one_request_probes() -> None:
    clock = Clock()
    health = HostHealth(5.0, clock=clock)
    assert health.refusal("r.example") == ""
    health.timed_out("r.example", waited_s=4.0)
    clock.now += 1.0
    reason = health.refusal("r.example")
    assert "r.example is not answering" in reason and "1.0s ago" in reason and "4.0s" in reason
    assert health.refusal("other.example") == ""  # per host
    clock.now += 4.5
    assert health.refusal("r.example") == ""  # the probe
    assert health.refusal("r.example") != ""  # the others wait for it
    health.answered("r.example")
    assert health.refusal("r.example") == ""


def test_a_probe_that_times_out_again_reopens_it() -> None:
    clock = Clock()
    health = HostHealth(5.0, clock=clock)
    health.timed_out("r.example", waited_s=4.0)
    clock.now += 6
    assert health.refusal("r.example") == ""
    health.timed_out("r.example", waited_s=4.0)
    clock.now += 1
    assert "asked again in 4.0s" in health.refusal("r.example")


def test_a_short_budget_says_nothing_about_the_registry() -> None:
    health = HostHealth(5.0, clock=Clock())
    health.timed_out("r.example", waited_s=0.2)  # the caller had almost no time left
    assert health.refusal("r.example") == ""


def test_a_zero_cooldown_turns_it_off() -> None:
    health = HostHealth(0.0, clock=Clock())
    health.timed_out("r.example", waited_s=10)
    assert health.refusal("r.example") == ""


def test_outages_remembered_are_bounded_in_hosts() -> None:
    """Hosts come from pod specs: a thousand made-up registries must not grow the map for ever."""
    health = HostHealth(5.0, max_hosts=100)
    for n in range(1000):
        health.timed_out(f"r{n}.example", 10.0)
    assert len(health) == 100
    assert health.refusal("r999.example") and not health.refusal("r0.example")

"""The kept answers of identical ProviderRequests: bounded in entries and bytes, gone when their time
is up or when the gate's generation changes."""

from __future__ import annotations

from webhook.server.memo import MAX_MEMO_ENTRY_BYTES, AnswerMemo

KEYRING = object()
GEN = ("trust-a", "", KEYRING)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_kept_answer_lasts_its_time_and_no_longer() -> None:
    clock = Clock()
    memo = AnswerMemo(clock=clock)
    memo.put(("/provider", False, b"{}"), b"answer", 3, GEN, 5.0)
    assert memo.get(("/provider", False, b"{}"), GEN) == (b"answer", 3)
    clock.now += 5.0
    assert memo.get(("/provider", False, b"{}"), GEN) is None
    assert len(memo) == 0 and memo.bytes == 0


def test_a_kept_answer_is_keyed_by_endpoint_caller_and_exact_body() -> None:
    memo = AnswerMemo()
    memo.put(("/provider", True, b'{"a":1}'), b"answer", 1, GEN, 5.0)
    for other in (("/provider/mutate", True, b'{"a":1}'), ("/provider", False, b'{"a":1}'),
                  ("/provider", True, b'{"a": 1}')):  # fmt: skip
        assert memo.get(other, GEN) is None


def test_changed_trust_policy_or_credentials_end_a_kept_answer() -> None:
    memo = AnswerMemo()
    key = ("/provider", False, b"{}")
    for changed in (("trust-b", "", KEYRING), ("trust-a", "policy", KEYRING), ("trust-a", "", object())):
        memo.put(key, b"answer", 1, GEN, 5.0)
        assert memo.get(key, changed) is None
        assert memo.get(key, GEN) is None  # dropped, not kept for the old generation


def test_nothing_is_kept_without_a_lifetime_or_over_the_size_of_one_entry() -> None:
    memo = AnswerMemo()
    memo.put(("/provider", False, b"a"), b"answer", 1, GEN, 0.0)
    memo.put(("/provider", False, b"b"), b"x" * MAX_MEMO_ENTRY_BYTES, 1, GEN, 5.0)
    assert len(memo) == 0 and memo.bytes == 0


def test_the_memo_is_bounded_in_entries_and_bytes_least_recently_used_first() -> None:
    memo = AnswerMemo(max_entries=3, max_bytes=1000)
    for i in range(3):
        memo.put(("/p", False, bytes([i])), b"x" * 10, 1, GEN, 5.0)
    memo.get(("/p", False, bytes([0])), GEN)  # used: the oldest is now 1
    memo.put(("/p", False, b"\x03"), b"x" * 10, 1, GEN, 5.0)
    assert len(memo) == 3 and memo.get(("/p", False, b"\x01"), GEN) is None
    memo.put(("/p", False, b"big"), b"x" * 900, 1, GEN, 5.0)
    assert memo.bytes <= 1000 and memo.get(("/p", False, b"big"), GEN) is not None

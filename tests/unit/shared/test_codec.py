"""The shared cache's codec: a value counts only when our key signed it for that very key name and
it is within its time. Each attack an adversary who can write to Redis has is a refusal."""

from __future__ import annotations

import json

import pytest

from webhook.shared import codec

KEY = b"k" * 32
NAME = "referee:v1:verdict:" + "a" * 64
NOW = 1_800_000_000.0
ALLOW = {"allowed": True, "digest": "sha256:" + "1" * 64}


def sealed(data: dict[str, object] = ALLOW, *, name: str = NAME, kind: str = "verdict", key: bytes = KEY,
           at: float = NOW, until: float = NOW + 300) -> bytes:  # fmt: skip
    value = codec.seal(key, name, kind, data, stored_at=at, expires_at=until)
    assert value is not None
    return value


def test_a_sealed_value_reads_back_with_its_times() -> None:
    out = codec.unseal(KEY, NAME, "verdict", sealed(), NOW + 10)
    assert isinstance(out, codec.Unsealed)
    assert out.data == ALLOW and (out.stored_at, out.expires_at) == (NOW, NOW + 300)


def test_forged_value_without_the_key_is_refused() -> None:
    """An attacker who can write to Redis but holds no signing key writes an "allow"."""
    body = json.dumps({"v": 1, "kind": "verdict", "at": NOW, "until": NOW + 300, "data": ALLOW}).encode()
    assert codec.unseal(KEY, NAME, "verdict", body, NOW) == "not a Referee value"
    for forged in (codec.MAGIC + b"\0" * 32 + body, sealed(key=b"x" * 32)):
        assert "signature does not verify" in str(codec.unseal(KEY, NAME, "verdict", forged, NOW))


def test_value_signed_with_another_key_is_refused() -> None:
    assert "signature does not verify" in str(codec.unseal(KEY, NAME, "verdict", sealed(key=b"o" * 32), NOW))


@pytest.mark.parametrize("where", [0, 5, 40, -3])
def test_corrupted_value_is_refused(where: int) -> None:
    value = bytearray(sealed())
    value[where] ^= 0x01
    assert not isinstance(codec.unseal(KEY, NAME, "verdict", bytes(value), NOW), codec.Unsealed)


def test_truncated_and_empty_values_are_refused() -> None:
    value = sealed()
    for cut in (b"", value[:3], value[:35], value[:-1]):
        assert not isinstance(codec.unseal(KEY, NAME, "verdict", cut, NOW), codec.Unsealed)


def test_value_replayed_under_another_key_is_refused() -> None:
    """The signed allow of a signed image copied under the key of an unsigned one."""
    other = "referee:v1:verdict:" + "b" * 64
    assert "signature does not verify" in str(codec.unseal(KEY, other, "verdict", sealed(), NOW))


def test_value_replayed_as_another_kind_is_refused() -> None:
    assert codec.unseal(KEY, NAME, "tag", sealed(), NOW) == "another version or kind"


def test_value_replayed_after_it_expired_is_refused() -> None:
    """An attacker copies a valid value back after its time (a signature revoked meanwhile)."""
    assert codec.unseal(KEY, NAME, "verdict", sealed(), NOW + 301) == "expired"


def test_value_stored_in_the_future_is_refused() -> None:
    value = sealed(at=NOW + 3600, until=NOW + 3900)
    assert "future" in str(codec.unseal(KEY, NAME, "verdict", value, NOW))


def test_oversized_value_is_refused_before_it_is_parsed_and_never_written() -> None:
    big = {"reason": "x" * codec.MAX_VALUE_BYTES}
    assert codec.seal(KEY, NAME, "verdict", big, stored_at=NOW, expires_at=NOW + 1) is None
    planted = codec.MAGIC + b"\0" * 32 + b"{" * codec.MAX_VALUE_BYTES
    assert "larger than" in str(codec.unseal(KEY, NAME, "verdict", planted, NOW))


def test_a_signed_value_that_is_not_an_entry_is_refused() -> None:
    """Even signed bytes must have the entry's shape (a bug elsewhere must not become an allow)."""
    for body in (b"[]", b'{"v":1}', b"not json", b'{"v":2,"kind":"verdict","at":1,"until":2,"data":{}}'):
        value = codec.MAGIC + codec.mac(KEY, NAME, body) + body
        assert not isinstance(codec.unseal(KEY, NAME, "verdict", value, NOW), codec.Unsealed)


def test_a_time_to_live_beyond_the_lifetime_cap_is_shortened() -> None:
    out = codec.unseal(KEY, NAME, "verdict", sealed(until=NOW + 10 * codec.MAX_LIFETIME_S), NOW)
    assert isinstance(out, codec.Unsealed) and out.expires_at == NOW + codec.MAX_LIFETIME_S

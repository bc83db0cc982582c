"""Mutations of a seed: byte-level changes, plus a few shapes parsers of JSON, DER and CBOR trip on
(deep nesting, huge lengths and numbers, truncation). One ``random.Random`` decides everything, so
a seed and a count give the same inputs again."""

from __future__ import annotations

import random

_SHAPES = (
    b"[" * 5000,
    b'{"a":' * 3000,
    b"\x81" * 5000,  # CBOR arrays of one, nested
    b"\xd8\x18" * 2000,  # CBOR tag 24, nested
    b"\x30\x84\xff\xff\xff\xff",  # DER SEQUENCE claiming 4 GiB
    b"\x30\x80",  # DER indefinite length
    b"1e999999",
    b"9" * 5000,
    b'"\\ud800"',
    b"\x00",
    b"\xef\xbb\xbf",
    b"\xff\xfe",
)


def mutate(rng: random.Random, seed: bytes, others: list[bytes]) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randint(1, 6)):
        op = rng.random()
        pos = rng.randrange(len(data) + 1)
        if op < 0.3 and data:
            data[min(pos, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif op < 0.45 and data:
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        elif op < 0.55:
            del data[pos : pos + rng.randint(1, 64)]
        elif op < 0.65:
            data[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif op < 0.75 and data:
            start = rng.randrange(len(data))
            data[pos:pos] = data[start : start + rng.randint(1, 256)] * rng.randint(1, 8)
        elif op < 0.82:
            data[pos:pos] = rng.choice(_SHAPES)
        elif op < 0.9 and others:
            other = rng.choice(others)
            cut = rng.randrange(len(other) + 1)
            data = data[:pos] + bytearray(other[cut:])
        else:
            data = data[: rng.randrange(len(data) + 1)]
    return bytes(data)

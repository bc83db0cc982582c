"""Raw CBOR (RFC 8949) for crafting COSE envelopes byte by byte.

``cbor2`` encodes Python values canonically; mutants need what it will not write: a map key that is
a float, a boolean or a bignum, the same key twice, a non-minimal length. Every function returns
the encoded bytes of one data item; maps take their entries as already-encoded (key, value) pairs.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

import cbor2


def head(major: int, n: int, *, width: int | None = None) -> bytes:
    """The initial byte and argument of a data item; ``width`` (1, 2, 4, 8) forces a longer form."""
    if width is None:
        if n < 24:
            return bytes([major << 5 | n])
        width = 1 if n < 1 << 8 else 2 if n < 1 << 16 else 4 if n < 1 << 32 else 8
    info = {1: 24, 2: 25, 4: 26, 8: 27}[width]
    return bytes([major << 5 | info]) + n.to_bytes(width, "big")


def uint(n: int, *, width: int | None = None) -> bytes:
    return head(0, n, width=width)


def integer(n: int, *, width: int | None = None) -> bytes:
    return head(0, n, width=width) if n >= 0 else head(1, -1 - n, width=width)


def bstr(data: bytes) -> bytes:
    return head(2, len(data)) + data


def tstr(text: str) -> bytes:
    raw = text.encode()
    return head(3, len(raw)) + raw


def array(items: Iterable[bytes]) -> bytes:
    parts = list(items)
    return head(4, len(parts)) + b"".join(parts)


def cmap(entries: Iterable[tuple[bytes, bytes]]) -> bytes:
    pairs = list(entries)
    return head(5, len(pairs)) + b"".join(k + v for k, v in pairs)


def tag(number: int, item: bytes) -> bytes:
    return head(6, number) + item


def float16(value: float) -> bytes:
    return b"\xf9" + struct.pack(">e", value)


def float32(value: float) -> bytes:
    return b"\xfa" + struct.pack(">f", value)


def float64(value: float) -> bytes:
    return b"\xfb" + struct.pack(">d", value)


TRUE, FALSE, NULL = b"\xf5", b"\xf4", b"\xf6"


def bignum(n: int) -> bytes:
    """Tag 2 (or 3 for negatives) around the big-endian magnitude: the same number as ``integer(n)``."""
    if n >= 0:
        return tag(2, bstr(n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")))
    m = -1 - n
    return tag(3, bstr(m.to_bytes(max(1, (m.bit_length() + 7) // 8), "big")))


def value(obj: object) -> bytes:
    """An ordinary value, canonically (through cbor2)."""
    return cbor2.dumps(obj)


def entries_of(encoded_map: bytes) -> list[tuple[bytes, bytes]]:
    """Split a definite-length map into its raw (key, value) encodings."""
    decoder_input = memoryview(encoded_map)
    first = decoder_input[0]
    if first >> 5 != 5:
        raise ValueError("not a CBOR map")
    count, offset = _argument(decoder_input, 0)
    out = []
    for _ in range(count):
        key_end = _skip(decoder_input, offset)
        value_end = _skip(decoder_input, key_end)
        out.append((bytes(decoder_input[offset:key_end]), bytes(decoder_input[key_end:value_end])))
        offset = value_end
    return out


def _argument(data: memoryview, offset: int) -> tuple[int, int]:
    info = data[offset] & 0x1F
    if info < 24:
        return info, offset + 1
    width = {24: 1, 25: 2, 26: 4, 27: 8}[info]
    return int.from_bytes(data[offset + 1 : offset + 1 + width], "big"), offset + 1 + width


def _skip(data: memoryview, offset: int) -> int:
    """The offset just past the (definite-length) data item at ``offset``."""
    major = data[offset] >> 5
    if major == 7:
        info = data[offset] & 0x1F
        return offset + 1 + {25: 2, 26: 4, 27: 8, 24: 1}.get(info, 0)
    n, offset = _argument(data, offset)
    if major in (0, 1):
        return offset
    if major in (2, 3):
        return offset + n
    if major == 4:
        for _ in range(n):
            offset = _skip(data, offset)
        return offset
    if major == 5:
        for _ in range(2 * n):
            offset = _skip(data, offset)
        return offset
    return _skip(data, offset)  # a tag: its one item

"""JSON from untrusted sources, read one way only: RFC 8259, strictly.

Python's ``json`` module accepts more than RFC 8259 allows, and Go's ``encoding/json`` (the parser
of notation, oras and most registries) reads some documents differently from it. ``loads`` refuses
what is not JSON or what two parsers could read two ways:

* any encoding but UTF-8, and a byte-order mark (RFC 8259 section 8.1);
* invalid UTF-8, and escapes of unpaired surrogates (section 8.2), which Go turns into U+FFFD;
* ``NaN``, ``Infinity`` and ``-Infinity``, which are not JSON numbers (section 6);
* duplicate member names (section 4: names SHOULD be unique; parsers disagree on which one wins);
* nesting deeper than ``MAX_DEPTH_LEVELS``.

``check_names`` is for objects whose members a specification defines. Go matches member names to
the fields it knows without regard to letter case (ASCII, plus the folds U+017F to ``s`` and
U+212A to ``k``), so ``"Digest"`` is ``digest`` to Go and an unknown member to a reader that
compares exactly. A member whose name folds to a defined name without being it, or two members
whose names fold alike, are refused.

Numbers keep their value: integers of any length stay exact (very long ones become floats), and
a number beyond the range of a double reads as infinity rather than failing (section 6 leaves
range and precision to implementations). Pure.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection, Mapping
from typing import Any

MAX_DEPTH_LEVELS = 100  # nesting of arrays and objects; real manifests and envelopes use under 10
_MAX_EXACT_INT_DIGITS = 4000  # Python refuses to convert longer digit strings to int

# Non-ASCII characters that Go's case folding maps onto ASCII letters (found by enumerating
# unicode.SimpleFold orbits): every other fold keeps a name outside ASCII.
_ASCII_FOLDS = {"\u017f": "S", "\u212a": "K"}


class JSONError(ValueError):
    """The bytes are not JSON, or are JSON that parsers would read differently."""


def loads(data: bytes, *, max_depth_levels: int = MAX_DEPTH_LEVELS) -> Any:
    """Parse ``data`` (UTF-8 JSON text) or raise ``JSONError`` saying what is wrong with it."""
    # RFC 8259 section 8.1: UTF-8, and no byte-order mark.
    if data.startswith(b"\xef\xbb\xbf"):
        raise JSONError("it starts with a byte-order mark; JSON must be UTF-8 without one")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:4]:
        raise JSONError("it is encoded in UTF-16 or UTF-32; JSON must be UTF-8")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JSONError(f"it is not valid UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_unique_members,
            parse_constant=_not_a_number,
            parse_int=_integer,
        )
    except RecursionError:
        raise JSONError(f"it is nested more than {max_depth_levels} levels deep") from None
    except JSONError:
        raise
    except ValueError as exc:
        raise JSONError(f"it is not valid JSON ({exc})") from None
    # A string can hold an unpaired surrogate only through a \u escape (the text is valid UTF-8),
    # and a document is nested no deeper than it has opening brackets: most documents need no walk.
    if "\\u" in text or text.count("{") + text.count("[") >= max_depth_levels:
        _check_value(value, max_depth_levels)
    return value


def fold(name: str) -> str:
    """``name`` as Go's encoding/json compares member names with field names."""
    if name.isascii():  # the usual case, and the same as the loop below for ASCII
        return name.upper()
    out = []
    for ch in name:
        if ch < "\x80":
            out.append(ch.upper())
            continue
        folded = _ASCII_FOLDS.get(ch)
        if folded is None:
            candidates = [c for c in (ch, ch.lower(), ch.upper()) if len(c) == 1 and c >= "\x80"]
            folded = min(candidates) if candidates else ch
        out.append(folded)
    return "".join(out)


def check_names(obj: Mapping[str, Any], defined: Collection[str], what: str) -> None:
    """Refuse members of ``obj`` that differ from a ``defined`` name, or from each other, only by case."""
    defined_by_fold = _folded(defined) if isinstance(defined, tuple) else _fold_all(defined)
    seen: dict[str, str] = {}
    for name in obj:
        folded = fold(name)
        known = defined_by_fold.get(folded)
        if known is not None and known != name:
            raise JSONError(
                f"{what} has a member {name!r}, which differs from {known!r} only by letter case "
                f"(Go-based tools such as notation read it as {known!r})"
            )
        other = seen.get(folded)
        if other is not None:
            raise JSONError(
                f"{what} has members {other!r} and {name!r}, whose names differ only by letter case"
            )
        seen[folded] = name


@functools.lru_cache(maxsize=64)  # the specifications' tuples of member names: a handful
def _folded(defined: tuple[str, ...]) -> Mapping[str, str]:
    return _fold_all(defined)


def _fold_all(defined: Collection[str]) -> dict[str, str]:
    return {fold(name): name for name in defined}


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JSONError(f"it has a duplicate member {key!r}")
        out[key] = value
    return out


def _not_a_number(token: str) -> Any:
    raise JSONError(f"it holds {token}, which is not a JSON number")


def _integer(digits: str) -> int | float:
    return int(digits) if len(digits) <= _MAX_EXACT_INT_DIGITS else float(digits)


def _check_value(value: Any, max_depth_levels: int) -> None:
    """Depth and strings, without recursion: every string must be encodable as UTF-8."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_string(item)
        elif isinstance(item, dict | list):
            if depth >= max_depth_levels:
                raise JSONError(f"it is nested more than {max_depth_levels} levels deep")
            if isinstance(item, dict):
                for key, member in item.items():
                    _check_string(key)
                    stack.append((member, depth + 1))
            else:
                stack.extend((member, depth + 1) for member in item)


def _check_string(text: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise JSONError("a string in it escapes an unpaired surrogate (RFC 8259 section 8.2)") from None

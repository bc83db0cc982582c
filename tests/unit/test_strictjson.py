"""webhook.strictjson: JSON read one way only (RFC 8259, and Go's member-name folding)."""

from __future__ import annotations

import json
import math

import pytest

from webhook import strictjson
from webhook.strictjson import JSONError, check_names, fold, loads


def test_plain_json_reads_as_json() -> None:
    text = '{"a": [1, 2.5, "x", true, null, {"b": -0}], "c": "h\\u00e9llo \u4e16"}'
    assert loads(text.encode()) == json.loads(text)


@pytest.mark.parametrize(
    ("data", "phrase"),
    [
        (b'\xef\xbb\xbf{"a":1}', "byte-order mark"),
        ('{"a":1}'.encode("utf-16-le"), "UTF-16 or UTF-32"),
        ('{"a":1}'.encode("utf-16"), "UTF-16 or UTF-32"),
        ('{"a":1}'.encode("utf-32-be"), "UTF-16 or UTF-32"),
        (b'{"a":"\xff"}', "not valid UTF-8"),
        (b'{"a":NaN}', "NaN"),
        (b'{"a":Infinity}', "Infinity"),
        (b'{"a":-Infinity}', "-Infinity"),
        (b'{"a":1,"a":2}', "duplicate member 'a'"),
        (b'{"a":"\\ud800"}', "unpaired surrogate"),
        (b'{"\\udc00":1}', "unpaired surrogate"),
        (b'{"a":1} x', "not valid JSON"),
        (b"", "not valid JSON"),
    ],
)
def test_what_is_not_json_is_refused(data: bytes, phrase: str) -> None:
    with pytest.raises(JSONError, match=phrase):
        loads(data)


def test_a_surrogate_pair_is_one_character() -> None:
    assert loads(b'"\\ud83d\\ude00"') == "\U0001f600"


@pytest.mark.parametrize("depth", [101, 999, 5000, 100_000])
def test_deep_nesting_is_refused_not_a_crash(depth: int) -> None:
    with pytest.raises(JSONError, match="nested more than 100 levels"):
        loads(b"[" * depth + b"]" * depth)
    with pytest.raises(JSONError, match="nested more than 100 levels"):
        loads(b'{"a":' * depth + b"1" + b"}" * depth)


def test_nesting_up_to_the_limit_is_fine() -> None:
    assert loads(b"[" * strictjson.MAX_DEPTH_LEVELS + b"]" * strictjson.MAX_DEPTH_LEVELS)


def test_large_numbers_keep_their_value_and_never_fail() -> None:
    assert loads(b"123456789012345678901234567890") == 123456789012345678901234567890
    assert loads(b"1e400") == math.inf
    assert loads(b"-1e400") == -math.inf
    assert loads(b"9" * 5000) == math.inf  # longer than Python converts to int: a float
    assert loads(b"1e-400") == 0.0


def test_go_folding_of_member_names() -> None:
    assert fold("targetArtifact") == fold("TARGETARTIFACT") == fold("TargetArtifact")
    assert fold("io.cncf.notary.\u017figningScheme") == fold("io.cncf.notary.signingScheme")
    assert fold("\u212aid") == fold("kid")
    # These look alike but Go does not fold them onto ASCII letters.
    assert fold("d\u0130gest") != fold("digest")
    assert fold("d\u0131gest") != fold("digest")


def test_member_that_differs_from_a_defined_name_only_by_case_is_refused() -> None:
    check_names({"digest": 1, "other": 2}, ("digest", "size"), "the descriptor")
    with pytest.raises(JSONError, match="'Digest', which differs from 'digest' only by letter case"):
        check_names({"Digest": 1}, ("digest",), "the descriptor")
    with pytest.raises(JSONError, match="'DIGEST', which differs from 'digest'"):
        check_names({"digest": 1, "DIGEST": 2}, ("digest",), "the descriptor")
    with pytest.raises(JSONError, match="differ only by letter case"):
        check_names({"note": 1, "Note": 2}, (), "the descriptor")

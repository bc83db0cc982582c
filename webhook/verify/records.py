"""What the gate shares with other replicas, as data: a decision without the words of one request
(the image as written, its spelling, notes, cache ages), and a tag's digest. Read back strictly: a
record of the wrong shape, or about another digest than its key names, is not a decision.

The shared store checks who wrote a record (``webhook.shared.codec``); this module checks that it
says what its key asks. "Could not check" decisions are never written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from webhook import __version__
from webhook.verify.decision import MAX_REASON_CHARS, Artifact, Decision, Requirement

RELEASE = __version__
DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")
MAX_LIST_ITEMS = 64  # requirements, artifacts and signers of one decision
MAX_TEXT_CHARS = 2 * MAX_REASON_CHARS
_SHARED = ("allowed", "reason", "digest", "signer_subject", "signer_issuer", "signing_time",
           "signing_scheme", "statement", "requirements", "artifacts", "signers")  # fmt: skip


def name_of(key: tuple[str, ...]) -> str:
    """A key as one string (the store hashes it), under Referee's release: during a rolling upgrade
    replicas of two releases, whose checks may differ, never take each other's records."""
    return json.dumps([f"referee/{RELEASE}", *key], separators=(",", ":"))


def verdict_record(decision: Decision) -> dict[str, Any] | None:
    if decision.inconclusive or decision.digest is None:
        return None  # never shared, as never cached
    return {
        "allowed": decision.allowed,
        "reason": decision.reason,
        "digest": decision.digest,
        "signer_subject": decision.signer_subject,
        "signer_issuer": decision.signer_issuer,
        "signing_time": decision.signing_time,
        "signing_scheme": decision.signing_scheme,
        "statement": decision.statement,
        "requirements": [[r.name, r.met, r.detail] for r in decision.requirements],
        "artifacts": [[a.artifact_type, a.digest, a.signed, a.signer] for a in decision.artifacts],
        "signers": [list(s) for s in decision.signers],
    }


def verdict_from(key: tuple[str, ...], data: Mapping[str, Any]) -> Decision | None:
    """The decision a record holds for ``key`` (repository, digest, ...); None when it is not one."""
    if set(data) != set(_SHARED) or not isinstance(data["allowed"], bool) or data["digest"] != key[1]:
        return None
    texts = [data[k] for k in _SHARED if k not in ("allowed", "requirements", "artifacts", "signers")]
    if not all(_text(t) for t in texts):
        return None
    requirements = _rows(data["requirements"], (str, bool, str))
    artifacts = _rows(data["artifacts"], (str, str, (bool, type(None)), str))
    signers = _rows(data["signers"], (str, str))
    if requirements is None or artifacts is None or signers is None:
        return None
    return Decision(
        image="",  # the gate puts the image of the request in
        allowed=data["allowed"],
        reason=data["reason"],
        digest=data["digest"],
        signer_subject=data["signer_subject"],
        signer_issuer=data["signer_issuer"],
        signing_time=data["signing_time"],
        signing_scheme=data["signing_scheme"],
        statement=data["statement"],
        requirements=tuple(Requirement(*r) for r in requirements),
        artifacts=tuple(Artifact(*a) for a in artifacts),
        signers=tuple((s[0], s[1]) for s in signers),
    )


def tag_record(digest: str) -> dict[str, Any]:
    return {"digest": digest}


def tag_from(key: tuple[str, ...], data: Mapping[str, Any]) -> str | None:
    digest = data.get("digest")
    if set(data) != {"digest"} or not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        return None
    return digest


def _text(value: object) -> bool:
    return isinstance(value, str) and len(value) <= MAX_TEXT_CHARS


def _rows(value: object, shape: tuple[Any, ...]) -> list[list[Any]] | None:
    if not isinstance(value, list) or len(value) > MAX_LIST_ITEMS:
        return None
    rows = []
    for row in value:
        if not isinstance(row, list) or len(row) != len(shape):
            return None
        for cell, kind in zip(row, shape, strict=True):
            if not isinstance(cell, kind) or (isinstance(cell, str) and len(cell) > MAX_TEXT_CHARS):
                return None
        rows.append(row)
    return rows

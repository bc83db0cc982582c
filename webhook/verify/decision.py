"""A decision about one image, as data: allowed or not, why, about which digest, signed by whom,
which requirements of Referee's policy it met, what refers to it, whether it came from the cache.
Texts for people are rendered from it at the edges (``describe``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Requirement:
    """One requirement of a Referee policy statement, and whether the image met it."""

    name: str  # "signedManifest", "userMetadata", "minSigners", "requiredIdentities", "referrer"
    met: bool
    detail: str  # what was asked and what was found, in words

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "met": self.met, "detail": self.detail}


@dataclass(frozen=True)
class Artifact:
    """An artifact found referring to the image while its requirements were checked."""

    artifact_type: str
    digest: str
    signed: bool | None  # None: no signature was asked for, so none was checked
    signer: str = ""  # the subject of the signature that verified

    def to_json(self) -> dict[str, Any]:
        return {
            "artifactType": self.artifact_type,
            "digest": self.digest,
            "signed": self.signed,
            "signer": self.signer or None,
        }


NOT_IN_TIME = "not decided in time (the registry is too slow)"
MAX_REASON_CHARS = 600  # what a person reads in kubectl's output


@dataclass(frozen=True)
class Decision:
    image: str  # as the workload wrote it
    allowed: bool
    reason: str = ""  # why not, or why allowed without checking (exempt)
    digest: str | None = None
    inconclusive: bool = False  # could not decide (never cached)
    cached: bool = False
    signer_subject: str = ""  # of the signature that verified
    signer_issuer: str = ""
    signing_time: str = ""  # RFC 3339
    signing_scheme: str = ""
    canonical: str = ""  # the reference Referee decided on, when it is spelt otherwise than written
    cache_age_s: float = 0.0  # for an answer from the cache: how old it is
    recheck_in_s: float = 0.0  # and how soon it is checked again
    notes: tuple[str, ...] = ()  # context a person needs, e.g. pull secrets that could not be used
    statement: str = ""  # the Referee policy statement that applied, if any
    requirements: tuple[Requirement, ...] = ()  # its requirements, met or not
    artifacts: tuple[Artifact, ...] = ()  # what was found referring to the image
    signers: tuple[tuple[str, str], ...] = ()  # (subject, issuer) of every signer counted
    # How long this very answer stays true: the shortest life left of the cached facts it rests on
    # (the verdict, and the tag's digest for a tag); 0 for anything not to be reused as it is.
    reusable_s: float = 0.0

    @classmethod
    def refused(cls, image: str, reason: str, digest: str | None = None) -> Decision:
        """The image (or its signature) is bad or missing: a denial that may be cached."""
        return cls(image, False, _clip(reason), digest)

    @classmethod
    def unchecked(cls, image: str, why: str, digest: str | None = None) -> Decision:
        """Referee could not decide (registry down, refused credentials): denied, never cached."""
        return cls(image, False, f"could not check: {_clip(why)}", digest, inconclusive=True)

    @classmethod
    def late(cls, image: str, digest: str | None = None) -> Decision:
        """Not decided before the request's deadline: denied, never cached."""
        return cls(image, False, NOT_IN_TIME, digest, inconclusive=True)

    def describe(self) -> str:
        details = [f"as {self.canonical}"] if self.canonical else []
        if self.digest:
            details.append(self.digest)
        where = f" ({', '.join(details)})" if details else ""
        text = f"image {self.image}{where}: {self.reason}"
        if self.notes:
            text += " (" + "; ".join(self.notes) + ")"
        if self.cached and not self.allowed:
            text += (
                f" (Referee's answer from {self.cache_age_s:.0f} s ago; "
                f"it is checked again in {max(1.0, self.recheck_in_s):.0f} s)"
            )
        return text


def _clip(text: str) -> str:
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS] + "..."

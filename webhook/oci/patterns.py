"""Patterns over image references, matched by structure: registry host, repository, tag or digest.

Used for ``exemptImages`` and ``allowedRegistries``. A glob (``*``, ``?``, ``[...]``) never crosses
the boundary of the part it is written in, so a pattern cannot be stretched to another registry:

    pattern     := host [ "/" repository [ ":" tag | "@" digest ] ]
    host        := label ( "." label )* [ ":" port ]     a glob per DNS label; the port exact
    repository  := segment ( "/" segment )*              a glob per path segment; "**" alone
                                                        stands for any number of segments (0 or more)
    tag         := a glob on the tag                     ("*": any tag; an image that carries a
                                                        digest, with or without a tag, does not match)
    digest      := ALGORITHM:HEX                          exactly

With no tag or digest part, a pattern matches the repository whatever its tag or digest. Patterns
are matched against the canonical reference (``webhook.oci.reference``): lower-case host, ``:443``
dropped, Docker Hub as ``docker.io/library/...``. Examples:

    registry.k8s.io/pause:*                    registry.k8s.io/pause:3.9 (not .../pause/evil)
    *.dkr.ecr.us-east-1.amazonaws.com/platform/*
                                               123.dkr.ecr.us-east-1.amazonaws.com/platform/agent:1
                                               (not evil.example/x.dkr.ecr...)
    docker.io/library/busybox:*                busybox:1.36 (not busybox:443/miner:1)
    ghcr.io/acme/**                            ghcr.io/acme/a/b/c:v1

Pure: no I/O.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from webhook.errors import ConfigError
from webhook.oci.reference import Reference, canonical_domain, validate_digest

_HOST_LABEL = re.compile(r"[a-z0-9*?\[\]!-]+")
_SEGMENT = re.compile(r"[a-z0-9._*?\[\]!-]+")
_TAG = re.compile(r"[A-Za-z0-9_.*?\[\]!-]{1,128}")
_PORT = re.compile(r"[0-9]{1,5}")


def _match(pattern: str, text: str) -> bool:
    return fnmatch.fnmatchcase(text, pattern)


@dataclass(frozen=True)
class HostPattern:
    """A registry host: one glob per DNS label (as many labels as written), the port exact."""

    text: str
    labels: tuple[str, ...]
    port: str  # "" when none
    ipv6: str = ""  # a bracketed IPv6 literal, matched exactly

    @classmethod
    def parse(cls, text: str, what: str) -> HostPattern:
        host = canonical_domain(text)
        if host.startswith("["):
            end = host.find("]")
            literal, rest = host[: end + 1], host[end + 1 :]
            if end < 0 or (rest and not (rest.startswith(":") and _PORT.fullmatch(rest[1:]))):
                raise ConfigError(f"{what}: {text!r} is not a valid [IPv6]:port host")
            return cls(text, (), rest[1:], literal)
        name, colon, port = host.partition(":")
        if colon and not _PORT.fullmatch(port):
            raise ConfigError(
                f"{what}: the port of {text!r} must be digits (globs are not allowed there; Docker Hub "
                "images are written in full, e.g. docker.io/library/busybox:*)"
            )
        labels = tuple(name.split("."))
        if not name or not all(_HOST_LABEL.fullmatch(label) for label in labels):
            raise ConfigError(
                f"{what}: {text!r} is not a registry host pattern (DNS labels of letters, digits and "
                "'-', each of which may be a glob such as '*'; an optional :PORT)"
            )
        return cls(text, labels, port)

    def matches(self, domain: str) -> bool:
        """``domain`` is a canonical host[:port] (``Reference.domain``)."""
        if self.ipv6:
            literal, _, port = domain.partition("]")
            return literal + "]" == self.ipv6 and port.removeprefix(":") == self.port
        name, _, port = domain.partition(":")
        labels = name.split(".")
        if port != self.port or len(labels) != len(self.labels):
            return False
        return all(_match(p, label) for p, label in zip(self.labels, labels, strict=True))


@dataclass(frozen=True)
class ImagePattern:
    """One ``exemptImages`` entry (see the module's grammar)."""

    text: str
    host: HostPattern
    segments: tuple[str, ...]  # () matches any repository of the host
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str, what: str = "exemptImages") -> ImagePattern:
        if not isinstance(text, str) or not text or text != text.strip():
            raise ConfigError(f"{what}: patterns must be non-empty strings without surrounding space")
        host_text, slash, rest = _split_host(text)
        host = HostPattern.parse(host_text, f"{what} {text!r}")
        if not slash:
            return cls(text, host, ())
        tag = digest = None
        if "@" in rest:
            rest, _, digest = rest.partition("@")
            try:
                validate_digest(digest)
            except Exception:  # noqa: BLE001 - InvalidReference; say it in config terms
                raise ConfigError(f"{what}: {text!r} has an invalid digest (ALGORITHM:HEX, exact)") from None
        elif ":" in rest:
            rest, _, tag = rest.partition(":")
            if not _TAG.fullmatch(tag):
                raise ConfigError(f"{what}: {text!r} has an invalid tag pattern {tag!r}")
        segments = tuple(rest.split("/"))
        if not all(_SEGMENT.fullmatch(s) for s in segments):
            raise ConfigError(
                f"{what}: {text!r}: each repository segment is lower-case letters, digits, '.', '_', "
                "'-' or a glob of them ('**' alone for any number of segments)"
            )
        if any("**" in s and s != "**" for s in segments):
            raise ConfigError(f"{what}: {text!r}: '**' must be a whole path segment")
        return cls(text, host, segments, tag, digest)

    def matches(self, ref: Reference) -> bool:
        if not self.host.matches(ref.domain):
            return False
        if self.segments and not _match_segments(self.segments, tuple(ref.path.split("/"))):
            return False
        if self.digest is not None:
            return ref.digest == self.digest
        if self.tag is not None:
            # A tag pattern says which tags are exempt; an image that carries a digest is pulled by
            # its digest whatever tag is written before it, so no tag pattern matches it (else
            # ``app:v1@<any digest of the repository>`` would be exempt, unsigned builds included).
            return ref.tag is not None and ref.digest is None and _match(self.tag, ref.tag)
        return True


def _split_host(text: str) -> tuple[str, str, str]:
    """(host, "/", rest): the host part is always written out (no Docker Hub shorthand)."""
    if text.startswith("["):
        end = text.find("]")
        slash = text.find("/", end + 1 if end >= 0 else 0)
    else:
        slash = text.find("/")
    if slash < 0:
        return text, "", ""
    return text[:slash], "/", text[slash + 1 :]


def _match_segments(patterns: tuple[str, ...], segments: tuple[str, ...]) -> bool:
    if not patterns:
        return not segments
    head, rest = patterns[0], patterns[1:]
    if head == "**":
        return any(_match_segments(rest, segments[i:]) for i in range(len(segments) + 1))
    return bool(segments) and _match(head, segments[0]) and _match_segments(rest, segments[1:])


def parse_patterns(values: tuple[str, ...], what: str) -> tuple[ImagePattern, ...]:
    return tuple(ImagePattern.parse(v, what) for v in values)


def parse_hosts(values: tuple[str, ...], what: str) -> tuple[HostPattern, ...]:
    out = []
    for value in values:
        if "/" in value:
            raise ConfigError(f"{what}: {value!r} is a registry host (host[:port]), not a repository")
        out.append(HostPattern.parse(value, what))
    return tuple(out)

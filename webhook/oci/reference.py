"""Image references: parse and normalise every form a pod spec may hold.

The grammar and the normalisation rules are those of the distribution reference library (the one
the Docker CLI, containerd and the kubelet use), so ``nginx`` means ``docker.io/library/nginx:latest``
here exactly as it does to the kubelet:

    reference := name [ ":" tag ] [ "@" digest ]
    name      := [ domain "/" ] path
    domain    := host [ ":" port ]           host: DNS-like labels, IPv4, or [IPv6]
    path      := component ( "/" component )*
    component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag       := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest    := algorithm ":" hex           sha256, sha384 or sha512, lowercase hex of exact length

One step goes beyond that library: the registry host is put in its canonical form (lower case, the
HTTPS default port ``:443`` dropped, ``index.docker.io`` read as ``docker.io``), so that
``LOCALHOST:5000/app`` and ``registry.example.com:443/app`` are the same repository as
``localhost:5000/app`` and ``registry.example.com/app`` for every decision Referee makes (trust-policy
scope, exemptions, allowed registries, credentials, caches). The image as written is kept by callers
for messages. Both spellings reach the same server, so nothing the kubelet pulls changes.

Pure: no I/O.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from dataclasses import dataclass

from webhook.errors import InvalidReference

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
DOCKER_HUB_API_HOST = "registry-1.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
HTTPS_DEFAULT_PORT_SUFFIX = ":443"
MAX_PATH_CHARS = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_PATH = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN = rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

# re.ASCII: in the reference grammar \w is [A-Za-z0-9_], never a Unicode letter.
_REFERENCE_RE = re.compile(rf"((?:{_DOMAIN}/)?{_PATH})(?::({_TAG}))?(?:@({_DIGEST}))?", re.ASCII)
_NAME_RE = re.compile(rf"(?:({_DOMAIN})/)?({_PATH})", re.ASCII)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")
_TAG_RE = re.compile(_TAG, re.ASCII)

# Registered digest algorithms and the exact length of their lowercase hex encoding.
DIGEST_HEX_CHARS = {"sha256": 64, "sha384": 96, "sha512": 128}


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is a well-formed digest of a supported algorithm, else raise."""
    algorithm, sep, encoded = digest.partition(":")
    if not sep:
        raise InvalidReference(f"invalid digest {digest!r}: expected ALGORITHM:HEX")
    want = DIGEST_HEX_CHARS.get(algorithm)
    if want is None:
        raise InvalidReference(
            f"invalid digest {digest!r}: unsupported algorithm {algorithm!r} "
            f"(supported: {', '.join(DIGEST_HEX_CHARS)})"
        )
    if len(encoded) != want or not re.fullmatch(r"[a-f0-9]+", encoded):
        raise InvalidReference(f"invalid digest {digest!r}: {algorithm} needs {want} lowercase hex digits")
    return digest


def validate_tag(tag: str) -> str:
    if not _TAG_RE.fullmatch(tag):
        raise InvalidReference(
            f"invalid tag {tag!r}: a tag is 1 to 128 characters of letters, digits, '_', '.' and '-', "
            "not starting with '.' or '-'"
        )
    return tag


@dataclass(frozen=True)
class Reference:
    """A fully qualified image reference.

    ``domain`` is the registry as users name it (``docker.io`` for Docker Hub); ``api_host`` is where
    its API lives. ``tag`` is ``latest`` when neither tag nor digest was given; when both are given
    the digest decides what is fetched and verified, and the tag is kept only for display.
    """

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``domain/path``: the repository, fully qualified (what trust policy scopes match)."""
        return f"{self.domain}/{self.path}"

    @property
    def api_host(self) -> str:
        """``host[:port]`` to send registry API requests to."""
        return DOCKER_HUB_API_HOST if self.domain == DEFAULT_DOMAIN else self.domain

    @property
    def pinned(self) -> bool:
        return self.digest is not None

    @property
    def target(self) -> str:
        """What to ask the registry for: the digest if there is one, otherwise the tag."""
        if self.digest is not None:
            return self.digest
        assert self.tag is not None  # parse() guarantees a tag or a digest
        return self.tag

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.domain, self.path, self.tag, validate_digest(digest))

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag is not None else "") + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.name + self._suffix()

    def familiar(self) -> str:
        """The short form people type (``nginx:1.27``); for display only, never for policy."""
        name = self.name
        if self.domain == DEFAULT_DOMAIN:
            rest = self.path.removeprefix(OFFICIAL_REPO_PREFIX)
            official = self.path.startswith(OFFICIAL_REPO_PREFIX) and "/" not in rest
            name = rest if official else self.path
        return name + self._suffix()


def canonical_domain(domain: str) -> str:
    """The one name of a registry host: lower case (DNS names and IPv6 hex are case-insensitive),
    without the HTTPS default port, and ``docker.io`` for its legacy alias ``index.docker.io``.

    A plain-HTTP registry's ``:80`` is not dropped here: whether a host speaks plain HTTP is
    configuration, and ``host:80`` over HTTPS is another endpoint than ``host``.
    """
    text = domain.lower()
    if text.startswith("["):  # [IPv6]:port; one spelling per address ([0:0::1] is [::1])
        end = text.find("]")
        literal, rest = text[1:end], text[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")):
            return text  # not [IPv6][:PORT]; left for the grammar to refuse
        with contextlib.suppress(ValueError):
            literal = ipaddress.IPv6Address(literal).compressed
        host, has_port, port = f"[{literal}]", bool(rest), rest[1:]
    else:
        host, colon, port = text.partition(":")
        has_port = bool(colon)
    if has_port and not port.isdigit():
        return text  # not HOST:PORT; left for the grammar to refuse
    # A port is a number: 0443 and 443 are one port, and 443 is HTTPS's own.
    if has_port and int(port) != 443:
        host = f"{host}:{int(port)}"
    return DEFAULT_DOMAIN if host == LEGACY_DEFAULT_DOMAIN else host


def canonical_repository(name: str) -> str:
    """``host[:port]/path`` with its host in canonical form (for trust-policy scopes and patterns)."""
    host, slash, path = name.partition("/")
    if not slash:
        return name
    return f"{canonical_domain(host)}/{path}"


def respelled(text: str, ref: Reference) -> bool:
    """Whether ``text`` names ``ref``'s registry in another spelling than its canonical one (upper
    case, ``:443``, ``index.docker.io``): messages then show both."""
    first, slash, _ = text.partition("/")
    if not slash or first == ref.domain:
        return False
    return canonical_domain(first) == ref.domain and first.lower() != "docker.io"


def _split_domain(text: str) -> tuple[str, str]:
    """Split ``text`` into (domain, remainder) the way the Docker CLI and kubelet do, then put the
    domain in canonical form (``canonical_domain``)."""
    first, slash, rest = text.partition("/")
    if not slash:
        return DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + text
    if first == "localhost":
        domain, remainder = first, rest
    elif first == LEGACY_DEFAULT_DOMAIN:
        domain, remainder = DEFAULT_DOMAIN, rest
    elif "." in first or ":" in first or first.lower() != first:
        # A dot or colon (host name, IP address, port) or upper case (never valid in a path)
        # makes the first component a registry.
        domain, remainder = first, rest
    else:
        domain, remainder = DEFAULT_DOMAIN, text
    domain = canonical_domain(domain)
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def parse(text: str, *, default_tag: bool = True) -> Reference:
    """Parse and normalise an image reference.

    Raises ``InvalidReference`` naming the offending part. With ``default_tag`` (the kubelet's
    behaviour) a reference with neither tag nor digest gets the tag ``latest``.
    """
    if not isinstance(text, str) or text == "":
        raise InvalidReference("invalid image reference: it is empty")
    shown = text if len(text) <= 300 else text[:300] + "..."
    if text != text.strip():
        raise InvalidReference(f"invalid image reference {shown!r}: leading or trailing white space")
    if _IDENTIFIER_RE.fullmatch(text):
        raise InvalidReference(
            f"invalid image reference {shown!r}: a bare 64-hex string is an image ID, not a repository name"
        )
    domain, remainder = _split_domain(text)
    repo_part = remainder.split(":", 1)[0].split("@", 1)[0]
    if repo_part.lower() != repo_part:
        raise InvalidReference(
            f"invalid image reference {shown!r}: repository name {repo_part!r} must be lowercase"
        )

    full = f"{domain}/{remainder}"
    match = _REFERENCE_RE.fullmatch(full)
    if match is None:
        raise InvalidReference(f"invalid image reference {shown!r}: {_explain(domain, remainder)}")
    name, tag, digest = match.group(1), match.group(2), match.group(3)
    name_match = _NAME_RE.fullmatch(name)
    assert name_match is not None and name_match.group(1) is not None  # domain was always prefixed
    path = name_match.group(2)
    if len(path) > MAX_PATH_CHARS:
        raise InvalidReference(
            f"invalid image reference {shown!r}: repository path is {len(path)} characters, "
            f"the limit is {MAX_PATH_CHARS}"
        )
    if digest is not None:
        try:
            validate_digest(digest)
        except InvalidReference as exc:
            raise InvalidReference(f"invalid image reference {shown!r}: {exc}") from None
    if tag is None and digest is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain=name_match.group(1), path=path, tag=tag, digest=digest)


def _explain(domain: str, remainder: str) -> str:
    """Name the part of an unparseable reference that is wrong."""
    if not re.fullmatch(_DOMAIN, domain, re.ASCII):
        return f"registry {domain!r} is not a valid host[:port]"
    rest = remainder
    digest = None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not re.fullmatch(_DIGEST, digest, re.ASCII):
            return f"digest {digest!r} is not ALGORITHM:HEX"
    path, tag = rest, None
    if ":" in rest:
        path, tag = rest.split(":", 1)
    for component in path.split("/"):
        if not re.fullmatch(_PATH_COMPONENT, component):
            if component == "":
                return f"repository path {path!r} has an empty component"
            return (
                f"repository path component {component!r} is invalid (lowercase letters and digits, "
                "separated by '.', '_', '__' or dashes)"
            )
    if tag is not None and not _TAG_RE.fullmatch(tag):
        return f"tag {tag!r} is invalid (up to 128 of [A-Za-z0-9_.-], not starting with '.' or '-')"
    return "does not follow NAME[:TAG][@DIGEST]"

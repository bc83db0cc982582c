"""Notary Project trust policy documents (``trustpolicy.json``, version 1.0), read as notation reads them.

Parsing validates everything notation-go validates, in the same order, with messages that say what
to fix; a document that parses is safe to use. ``select`` picks the statement for a repository
(exact scope first, then the global ``*``). Pure: bytes in, frozen dataclasses out.

Where the specification is silent, notation-go decides (each such place says so).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any

from webhook.errors import ConfigError
from webhook.oci.reference import canonical_repository

SUPPORTED_VERSION = "1.0"
LEVELS = ("strict", "permissive", "audit", "skip")
CHECKS = ("integrity", "authenticity", "authenticTimestamp", "expiry", "revocation")
STORE_TYPES = ("ca", "signingAuthority", "tsa")
STORE_NAME_RE = re.compile(r"[a-zA-Z0-9_.-]+")
MANDATORY_DN_ATTRIBUTES = ("C", "ST", "O")

# notation-go's scope grammar (oci.go validateRegistryScopeFormat): a DNS-like domain with an
# optional port (upper case allowed, one label allowed), then a lowercase repository path.
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_SCOPE_DOMAIN_RE = re.compile(rf"{_DOMAIN_LABEL}(?:(?:\.{_DOMAIN_LABEL})+)?(?::[0-9]+)?")
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:(?:[._]|__|[-]*)[a-z0-9]+)+)?"
_SCOPE_PATH_RE = re.compile(rf"{_PATH_COMPONENT}(?:(?:/{_PATH_COMPONENT})+)?")


class Action(Enum):
    """What a failed check does: stop verification, be recorded, or not run at all."""

    ENFORCE = "enforce"
    LOG = "log"
    SKIP = "skip"


# The enforcement matrix of the trust store and trust policy specification.
_MATRIX: Mapping[str, Mapping[str, Action]] = {
    "strict": dict.fromkeys(CHECKS, Action.ENFORCE),
    "permissive": {
        "integrity": Action.ENFORCE,
        "authenticity": Action.ENFORCE,
        "authenticTimestamp": Action.LOG,
        "expiry": Action.LOG,
        "revocation": Action.LOG,
    },
    "audit": {"integrity": Action.ENFORCE, **dict.fromkeys(CHECKS[1:], Action.LOG)},
    "skip": dict.fromkeys(CHECKS, Action.SKIP),
}


@dataclass(frozen=True)
class TrustedIdentity:
    """One ``x509.subject:`` entry: attributes that must all appear, with these values, in the leaf."""

    text: str
    attributes: Mapping[str, str] = field(hash=False)

    def matches(self, subject: Mapping[str, str]) -> bool:
        # notation-go IsSubsetDN: every attribute named here equals the leaf's (a missing leaf
        # attribute reads as ""); extra leaf attributes do not matter.
        return all(subject.get(key, "") == value for key, value in self.attributes.items())


@dataclass(frozen=True)
class TrustPolicy:
    name: str
    registry_scopes: tuple[str, ...]
    level: str
    actions: Mapping[str, Action] = field(hash=False)  # check -> action, overrides applied
    verify_timestamp: str  # "always" | "afterCertExpiry"
    trust_stores: tuple[tuple[str, str], ...]  # (type, name)
    trust_any_identity: bool  # trustedIdentities is ["*"]
    trusted_identities: tuple[TrustedIdentity, ...]  # the x509.subject entries
    other_identities: tuple[str, ...]  # entries with prefixes other than x509.subject (plugins)

    @property
    def is_global(self) -> bool:
        return self.registry_scopes == ("*",)

    def enforced_checks(self) -> tuple[str, ...]:
        return tuple(check for check in CHECKS if self.actions.get(check) is Action.ENFORCE)

    def stores_of_type(self, store_type: str) -> tuple[str, ...]:
        return tuple(name for kind, name in self.trust_stores if kind == store_type)


@dataclass(frozen=True)
class TrustPolicyDocument:
    version: str
    policies: tuple[TrustPolicy, ...]

    def select(self, repository: str) -> TrustPolicy | None:
        """The statement for ``host/path``, else the global one.

        Scopes and ``repository`` are compared with their registry host in canonical form (lower
        case, no ``:443``): notation compares them as written, so ``LOCALHOST:5000/app`` would fall
        through to ``*`` there although it is the same repository as ``localhost:5000/app``.
        The path part is compared exactly (paths are lower case by grammar).
        """
        wanted = canonical_repository(repository)
        fallback = None
        for policy in self.policies:
            if policy.is_global:
                fallback = policy
            elif any(canonical_repository(scope) == wanted for scope in policy.registry_scopes):
                return policy
        return fallback

    def named(self, name: str) -> TrustPolicy | None:
        """The statement called ``name`` (names are unique)."""
        return next((p for p in self.policies if p.name == name), None)

    def weaker_global_warnings(self) -> tuple[str, ...]:
        """Where the global ``*`` statement enforces less than a scoped one: a registry that can be
        reached under a second DNS name (or an IP address) is judged by ``*`` under that name."""
        fallback = next((p for p in self.policies if p.is_global), None)
        if fallback is None:
            return ()
        enforced_global = fallback.enforced_checks()
        warnings = []
        for policy in self.policies:
            if policy.is_global:
                continue
            missing = [c for c in policy.enforced_checks() if c not in enforced_global]
            if missing or LEVELS.index(fallback.level) > LEVELS.index(policy.level):
                warnings.append(
                    f"the '*' statement {fallback.name!r} (level {fallback.level}) enforces less than "
                    f"{policy.name!r} (level {policy.level}"
                    + (f"; not enforced by '*': {', '.join(missing)}" if missing else "")
                    + f"): an image of {', '.join(policy.registry_scopes[:3])} written with another "
                    "registry name (a DNS alias, an IP address) is judged by the weaker statement"
                )
        return tuple(warnings)


def _err(message: str) -> ConfigError:
    return ConfigError(f"trust policy: {message}")


def parse_trust_policy(data: bytes | str) -> TrustPolicyDocument:
    """Parse and validate a trust policy document; raise ``ConfigError`` saying what to fix."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise _err(f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise _err("the document must be a JSON object with 'version' and 'trustPolicies'")
    version = doc.get("version")
    if version in (None, ""):
        raise _err('the document has no version; it must be "1.0"')
    if version != SUPPORTED_VERSION:
        raise _err(f'unsupported version {version!r}; it must be "1.0"')
    raw_policies = doc.get("trustPolicies")
    if not isinstance(raw_policies, list) or not raw_policies:
        raise _err("'trustPolicies' must list at least one trust policy statement")
    policies: list[TrustPolicy] = []
    names: set[str] = set()
    for i, raw in enumerate(raw_policies):
        if not isinstance(raw, dict):
            raise _err(f"statement #{i + 1} is not a JSON object")
        name = raw.get("name")
        if isinstance(name, str) and name in names:
            raise _err(f"more than one statement is named {name!r}; names must be unique")
        policy = _parse_statement(raw, i)
        names.add(policy.name)
        policies.append(policy)
    _check_scopes(policies)
    return TrustPolicyDocument(SUPPORTED_VERSION, tuple(policies))


def _strings(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _err(f"{what} must be a list of strings")
    return list(value)


def _parse_statement(raw: Mapping[str, Any], index: int) -> TrustPolicy:
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise _err(f"statement #{index + 1} has no name; every statement needs one")
    level, actions, verify_timestamp = _parse_verification(name, raw.get("signatureVerification"))
    stores = _strings(raw.get("trustStores"), f"statement {name!r}: trustStores")
    identities = _strings(raw.get("trustedIdentities"), f"statement {name!r}: trustedIdentities")
    if level == "skip":
        if stores or identities:
            raise _err(
                f"statement {name!r} skips signature verification but lists trust stores or trusted "
                "identities; remove them, or choose another level"
            )
    elif not stores or not identities:
        raise _err(f"statement {name!r} needs both trustStores and trustedIdentities")
    trust_stores = tuple(_parse_store(name, s) for s in stores)
    any_identity, subjects, others = _parse_identities(name, identities)
    scopes = _strings(raw.get("registryScopes"), f"statement {name!r}: registryScopes")
    return TrustPolicy(
        name=name,
        registry_scopes=tuple(scopes),
        level=level,
        actions=MappingProxyType(actions),
        verify_timestamp=verify_timestamp,
        trust_stores=trust_stores,
        trust_any_identity=any_identity,
        trusted_identities=subjects,
        other_identities=others,
    )


def _parse_verification(name: str, raw: Any) -> tuple[str, dict[str, Action], str]:
    where = f"statement {name!r} signatureVerification"
    if not isinstance(raw, dict):
        raise _err(f"{where} is missing; it needs at least a level ({', '.join(LEVELS)})")
    level = raw.get("level")
    if level in (None, ""):
        raise _err(f"{where} has no level; use one of {', '.join(LEVELS)}")
    if level not in LEVELS:
        raise _err(f"{where} has an unknown level {level!r}; use one of {', '.join(LEVELS)}")
    actions = dict(_MATRIX[level])
    overrides = raw.get("override") or {}
    if not isinstance(overrides, dict):
        raise _err(f"{where}: override must be an object of check -> action")
    if overrides and level == "skip":
        raise _err(f"{where}: level 'skip' cannot be customised with overrides")
    for check, value in overrides.items():
        if check not in CHECKS:
            raise _err(f"{where}: cannot override {check!r}; the checks are {', '.join(CHECKS)}")
        if value not in ("enforce", "log", "skip"):
            raise _err(f"{where}: action {value!r} for {check!r} is not enforce, log or skip")
        if check == "integrity":
            raise _err(f"{where}: integrity cannot be overridden")
        if value == "skip" and check != "revocation":
            raise _err(f"{where}: {check!r} cannot be skipped (only revocation can)")
        actions[check] = Action(value)
    verify_timestamp = raw.get("verifyTimestamp") or "always"
    if verify_timestamp not in ("always", "afterCertExpiry"):
        raise _err(
            f'{where}: verifyTimestamp must be "always" or "afterCertExpiry", not {verify_timestamp!r}'
        )
    return level, actions, verify_timestamp


def _parse_store(name: str, value: str) -> tuple[str, str]:
    kind, sep, store = value.partition(":")
    if not sep:
        raise _err(f"statement {name!r}: trust store {value!r} is not TYPE:NAME")
    if kind not in STORE_TYPES:
        kinds = ", ".join(STORE_TYPES)
        raise _err(f"statement {name!r}: trust store type {kind!r} in {value!r} is not one of {kinds}")
    if not STORE_NAME_RE.fullmatch(store):
        raise _err(f"statement {name!r}: trust store name {store!r} in {value!r} must match [a-zA-Z0-9_.-]+")
    return kind, store


def _parse_identities(
    name: str, identities: list[str]
) -> tuple[bool, tuple[TrustedIdentity, ...], tuple[str, ...]]:
    if "*" in identities:
        if len(identities) > 1:
            raise _err(
                f"statement {name!r}: the wildcard identity '*' cannot be combined with other identities"
            )
        return True, (), ()
    subjects: list[TrustedIdentity] = []
    others: list[str] = []
    for identity in identities:
        if identity == "":
            raise _err(f"statement {name!r} has an empty trusted identity")
        prefix, sep, value = identity.partition(":")
        if not sep:
            raise _err(
                f"statement {name!r}: trusted identity {identity!r} has no 'x509.subject:' style prefix"
            )
        if prefix != "x509.subject":
            others.append(identity)  # reserved for plugins; notation accepts and ignores them here
            continue
        if not value.strip():
            raise _err(f"statement {name!r}: trusted identity {identity!r} has no distinguished name")
        try:
            attributes = parse_distinguished_name(value)
        except ValueError as exc:
            raise _err(f"statement {name!r}: trusted identity {identity!r}: {exc}") from None
        subjects.append(TrustedIdentity(identity, MappingProxyType(attributes)))
    for a in subjects:
        for b in subjects:
            if a is not b and a.matches(b.attributes):
                raise _err(
                    f"statement {name!r}: trusted identities {b.text!r} and {a.text!r} overlap "
                    "(every attribute of the first is in the second); keep one"
                )
    return False, tuple(subjects), tuple(others)


def _check_scopes(policies: list[TrustPolicy]) -> None:
    owner: dict[str, str] = {}
    for policy in policies:
        scopes = policy.registry_scopes
        if not scopes:
            raise _err(
                f"statement {policy.name!r} has no registryScopes; list at least one repository or '*'"
            )
        if "*" in scopes and len(scopes) > 1:
            raise _err(
                f"statement {policy.name!r}: the wildcard scope '*' cannot be combined with other scopes"
            )
        for scope in scopes:
            if scope != "*":
                check_scope(scope)
            key = canonical_repository(scope)  # one repository may be spelt two ways
            if key in owner:
                raise _err(
                    f"registry scope {scope!r} appears in statements {owner[key]!r} and {policy.name!r}; "
                    "a scope may belong to one statement only (registry hosts are compared in lower "
                    "case and without :443)"
                )
            owner[key] = policy.name


def check_scope(scope: str) -> None:
    """Raise ``ConfigError`` unless ``scope`` is a fully qualified repository (``host[:port]/path``)."""
    problem = scope_problem(scope)
    if problem is not None:
        raise _err(problem)


def scope_problem(scope: str) -> str | None:
    """What is wrong with a registry scope other than ``*`` (None: it is a fully qualified repository)."""
    hint = (
        "use a fully qualified repository without scheme, tag or digest, e.g. registry.example.com/team/app"
    )
    if "*" in scope:
        return f"registry scope {scope!r} contains a wildcard; {hint}"
    domain, slash, path = scope.partition("/")
    if (
        not slash
        or not domain
        or not path
        or not _SCOPE_DOMAIN_RE.fullmatch(domain)
        or not _SCOPE_PATH_RE.fullmatch(path)
    ):
        return f"registry scope {scope!r} is not valid; {hint}"
    return None


# --- distinguished names -------------------------------------------------------------------------

_HEX_PAIR = re.compile(r"[0-9a-fA-F]{2}")


def parse_distinguished_name(text: str) -> dict[str, str]:
    """Parse an RFC 4514 DN into {attribute type: value}, with notation's extra rules.

    notation-go (internal/pkix) rejects ``=#`` (hex-encoded values), multi-valued RDNs (``+``) and
    repeated attribute types, and requires non-empty ``C``, ``ST`` and ``O``. Attribute types are
    kept exactly as written (no ``S`` -> ``ST`` mapping, no case folding), as notation does.
    """
    if "=#" in text:
        raise ValueError(f"distinguished name {text!r} contains '=#' (hex values are not supported)")
    rdns = _split_unescaped(text, ",;")
    attributes: dict[str, str] = {}
    for rdn in rdns:
        parts = _split_unescaped(rdn, "+")
        if len(parts) > 1:
            raise ValueError(f"distinguished name {text!r} has a multi-valued RDN ({rdn.strip()!r})")
        kind, sep, raw_value = rdn.partition("=")
        kind = kind.strip()
        if not sep or not kind:
            raise ValueError(
                f"distinguished name {text!r} is not TYPE=VALUE pairs separated by commas "
                '(it needs at least C, ST and O, as in "C=US, ST=WA, O=Example")'
            )
        value = _unescape(raw_value.strip(), text)
        if attributes.get(kind):
            raise ValueError(f"distinguished name {text!r} repeats the attribute {kind!r}")
        attributes[kind] = value
    for required in MANDATORY_DN_ATTRIBUTES:
        if not attributes.get(required):
            raise ValueError(f"distinguished name {text!r} has no {required!r}; C, ST and O are required")
    return attributes


def _split_unescaped(text: str, separators: str) -> list[str]:
    parts, current, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if ch in separators:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def _unescape(value: str, text: str) -> str:
    out, i = bytearray(), 0
    while i < len(value):
        ch = value[i]
        if ch == "\\":
            if i + 2 < len(value) + 1 and _HEX_PAIR.fullmatch(value[i + 1 : i + 3]):
                out.append(int(value[i + 1 : i + 3], 16))
                i += 3
                continue
            if i + 1 >= len(value):
                raise ValueError(f"distinguished name {text!r} ends with a lone backslash")
            out.extend(value[i + 1].encode())
            i += 2
            continue
        out.extend(ch.encode())
        i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"distinguished name {text!r} has an escaped value that is not UTF-8") from None

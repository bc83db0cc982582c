"""Referee's own policy, once for every entry point: which namespaces and operations are looked at,
which images are exempt, which registries may be contacted, whether a tag is enough (from the
configuration); and the policy document's statements, what must hold beyond a valid signature
(signed platform manifests, user metadata, signer thresholds, signed referrers).

Pure but for ``read_policy_document`` and ``PolicyFile`` (the document on disk). The trust policy
(who may sign, how strictly) is notation's and lives in ``webhook.notary``; this is what Referee
adds around it. The pipeline that applies the statements is ``verify.image``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from webhook.errors import ConfigError
from webhook.notary.trustpolicy import TrustedIdentity, parse_distinguished_name, scope_problem
from webhook.notary.verifier import SignatureOutcome, Signer
from webhook.oci.model import Platform
from webhook.oci.patterns import HostPattern, ImagePattern
from webhook.oci.reference import Reference, canonical_repository
from webhook.reloading import Reloading, file_stamp

if TYPE_CHECKING:
    from webhook.config import Config

CHECKED_OPERATIONS = ("CREATE", "UPDATE")


@dataclass(frozen=True)
class Precheck:
    """A decision made from the reference alone, before any registry is contacted."""

    allowed: bool
    reason: str


@dataclass(frozen=True)
class Policy:
    mode: str = "enforce"
    own_namespace: str = ""
    exempt_namespaces: tuple[str, ...] = ()
    exempt_images: tuple[ImagePattern, ...] = ()
    allowed_registries: tuple[HostPattern, ...] = ()
    require_digest: bool = False

    @classmethod
    def from_config(cls, config: Config) -> Policy:
        return cls(
            mode=config.mode,
            own_namespace=config.namespace,
            exempt_namespaces=config.exempt_namespaces,
            exempt_images=config.exempt_images,
            allowed_registries=config.allowed_registries,
            require_digest=config.require_digest,
        )

    def namespace_exempt(self, namespace: str) -> bool:
        """Referee's own namespace and ``exemptNamespaces``: for AdmissionReviews, whose namespace
        the API server states. Never for a namespace named inside a Gatekeeper key."""
        return bool(namespace) and (namespace == self.own_namespace or namespace in self.exempt_namespaces)

    @staticmethod
    def operation_checked(operation: str) -> bool:
        return operation in CHECKED_OPERATIONS

    def precheck(self, ref: Reference) -> Precheck | None:
        """Exempt (allowed unread), or refused unread; None when the image must be verified.

        An exemption is the operator's explicit word about one image, so it comes first; then the
        registry allow-list, so that a pod spec cannot make Referee connect anywhere unlisted; then
        the digest requirement.
        """
        for pattern in self.exempt_images:
            if pattern.matches(ref):
                return Precheck(True, f"exempt by configuration ({pattern.text})")
        if self.allowed_registries and not any(h.matches(ref.domain) for h in self.allowed_registries):
            return Precheck(
                False, f"registry {ref.domain} is not one of the allowed registries (allowedRegistries)"
            )
        if self.require_digest and ref.digest is None:
            return Precheck(
                False,
                "the image is not pinned by digest and requireDigest is on: write it as "
                f"{ref.name}@sha256:… (or enable Referee's digest pinning, mutate: true)",
            )
        return None


# --- Referee's policy document: what else must hold, per repository -----------------------------
#
# A YAML file (config key ``policy``) of statements. Each statement selects repositories with
# ``registryScopes`` in the trust policy's own grammar (a fully qualified repository, or ``*``;
# a repository's exact scope first, then ``*``), so one scope selects a trust-policy statement and
# a Referee statement alike; the statement then adds requirements to the trust policy's verdict.
# No statement for a repository: the trust policy alone decides, as without a document.

POLICY_VERSION = "1.0"
SIGNED_MANIFEST_MODES = ("referenced", "referencedOrPlatforms", "platforms")
MAX_POLICY_BYTES = 1 << 20
MAX_STATEMENTS = 1000
MAX_PLATFORMS = 8  # platforms one statement lists
MAX_PLATFORM_MANIFESTS = 16  # an index's manifests verified for them (arm/v6, arm/v7, ... count apart)
MAX_REFERRER_RULES = 4  # required artifact types per statement
MAX_REFERRERS_TRIED = 3  # artifacts of one type looked at before the requirement counts as unmet
MAX_USER_METADATA = 32  # key-value pairs
MAX_MIN_SIGNERS = 16
MAX_REQUIRED_IDENTITIES = 8
RESERVED_METADATA_PREFIX = "io.cncf.notary"  # notation reserves these annotation keys for itself
_PLATFORM_RE = re.compile(r"[a-z0-9][a-z0-9._-]*")
_STATEMENT_KEYS = frozenset(
    {"name", "registryScopes", "signedManifest", "platforms", "userMetadata", "minSigners",
     "requiredIdentities", "referrers"}
)  # fmt: skip
_REFERRER_KEYS = frozenset({"artifactType", "signed", "trustPolicy", "required"})
_ARTIFACT_TYPE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*")


@dataclass(frozen=True)
class PlatformSpec:
    """``os/architecture[/variant]``. Without a variant it stands for every variant (``linux/arm``
    is arm/v6 and arm/v7 alike), so every such manifest must meet the requirement."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def matches(self, platform: Platform) -> bool:
        return (platform.os, platform.architecture) == (self.os, self.architecture) and (
            not self.variant or platform.variant == self.variant
        )


@dataclass(frozen=True)
class ReferrerRule:
    """An artifact of ``artifact_type`` must refer to the image; with ``signed``, it must itself
    carry a signature that the trust-policy statement ``trust_policy`` (else the image's) accepts.
    ``required: false`` looks for it and reports what was found without denying."""

    artifact_type: str
    signed: bool = False
    trust_policy: str = ""
    required: bool = True

    def describe(self) -> str:
        what = (
            f"a signed {self.artifact_type} artifact" if self.signed else f"a {self.artifact_type} artifact"
        )
        if self.signed and self.trust_policy:
            what += f" (trust policy statement {self.trust_policy!r})"
        return what


@dataclass(frozen=True)
class Judgement:
    """How a manifest's signatures meet a ``SignerRule``."""

    met: bool
    metadata_met: bool
    signers_met: bool  # minSigners and requiredIdentities
    reason: str  # why not, "" when met
    signers: tuple[Signer, ...]  # the distinct signers whose signatures count


@dataclass(frozen=True)
class SignerRule:
    """What the signatures of one manifest must show beyond the trust policy: user metadata in the
    signed payload, a number of distinct signers, named signers. The default is the trust policy's
    own rule: one valid signature."""

    user_metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    min_signers: int = 1
    required_identities: tuple[TrustedIdentity, ...] = ()

    @property
    def is_default(self) -> bool:
        return not self.user_metadata and self.min_signers == 1 and not self.required_identities

    @property
    def signers_needed(self) -> int:
        return max(self.min_signers, len(self.required_identities))

    def metadata_problem(self, outcome: SignatureOutcome) -> str | None:
        """notation verify --user-metadata: every pair must be in the signed payload's annotations."""
        for key, value in self.user_metadata.items():
            found = outcome.user_metadata.get(key)
            if found is None:
                return f"lacks {key}"
            if found != value:
                return f"has {key}={found}, not {key}={value}"
        return None

    def judge(self, outcomes: Sequence[tuple[str, SignatureOutcome]]) -> Judgement:
        valid = [(d, o) for d, o in outcomes if o.verified and o.signer is not None]
        counted = [(d, o) for d, o in valid if self.metadata_problem(o) is None]
        distinct: dict[tuple[str, str], Signer] = {}
        for _, outcome in counted:
            assert outcome.signer is not None
            distinct.setdefault((outcome.signer.subject, outcome.signer.issuer), outcome.signer)
        signers = tuple(distinct.values())
        metadata_met = not valid or bool(counted)
        unmatched = _unmatched_identities(self.required_identities, signers)
        signers_met = len(signers) >= self.signers_needed and not unmatched
        met = bool(counted) and signers_met
        if met or not valid:
            return Judgement(met, metadata_met, signers_met or not valid, "", signers)
        if not counted:
            pairs = ", ".join(f"{k}={v}" for k, v in self.user_metadata.items())
            lacking = "; ".join(
                f"signature {d} by {_who(o)} {self.metadata_problem(o)}" for d, o in valid[:3]
            )
            reason = f"no valid signature carries the user metadata {pairs} ({lacking})"
        elif unmatched:
            names = ", ".join(i.text for i in unmatched)
            reason = f"no valid signature from the required identity {names} (signed by {_signers(signers)})"
        else:
            reason = (
                f"{self.signers_needed} distinct signers are required and {len(signers)} signed "
                f"({_signers(signers)})"
            )
        return Judgement(False, metadata_met, False, reason, signers)


def _who(outcome: SignatureOutcome) -> str:
    return repr(outcome.signer.subject) if outcome.signer else "an unknown signer"


def _signers(signers: Sequence[Signer]) -> str:
    return ", ".join(repr(s.subject) for s in signers) or "nobody"


def _unmatched_identities(
    required: tuple[TrustedIdentity, ...], signers: Sequence[Signer]
) -> tuple[TrustedIdentity, ...]:
    """The required identities left without a signer of their own: each needs a distinct signer
    (one certificate whose subject matches two of them does not count for both). A maximum
    bipartite matching by augmenting paths; both sides are small (``MAX_REQUIRED_IDENTITIES``,
    ``limits.maxSignatures``)."""
    owner: dict[int, int] = {}  # signer index -> identity index

    def assign(i: int, seen: set[int]) -> bool:
        for j, signer in enumerate(signers):
            if j in seen or not required[i].matches(signer.attributes):
                continue
            seen.add(j)
            if j not in owner or assign(owner[j], seen):
                owner[j] = i
                return True
        return False

    return tuple(identity for i, identity in enumerate(required) if not assign(i, set()))


@dataclass(frozen=True)
class Statement:
    name: str
    registry_scopes: tuple[str, ...]
    signed_manifest: str = "referenced"
    platforms: tuple[PlatformSpec, ...] = ()
    signers: SignerRule = field(default_factory=SignerRule)
    referrers: tuple[ReferrerRule, ...] = ()

    @property
    def is_global(self) -> bool:
        return self.registry_scopes == ("*",)


@dataclass(frozen=True)
class PolicyDocument:
    statements: tuple[Statement, ...] = ()
    fingerprint: str = ""  # of the bytes the statements were parsed from; "" without a document

    def select(self, repository: str) -> Statement | None:
        """The statement whose scope is ``repository``, else the ``*`` one, as the trust policy
        selects (registry hosts compared in canonical form)."""
        wanted = canonical_repository(repository)
        fallback = None
        for statement in self.statements:
            if statement.is_global:
                fallback = statement
            elif any(canonical_repository(scope) == wanted for scope in statement.registry_scopes):
                return statement
        return fallback


def _load_yaml(data: bytes) -> Any:
    """YAML whose mappings may not repeat a key: a second ``minSigners`` must not quietly win.
    (PyYAML is imported here: a ``referee verify`` without ``--policy`` does not need it.)"""
    import yaml  # noqa: PLC0415

    class UniqueKeyLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} appears twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        loader.flatten_mapping(node)
        return dict(loader.construct_pairs(node))

    UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    try:
        return yaml.load(data, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise _perr(f"not valid YAML ({exc})") from None


def _perr(message: str) -> ConfigError:
    return ConfigError(message)


def parse_policy_document(data: bytes) -> PolicyDocument:
    """Parse and validate a Referee policy document; ``ConfigError`` says what to fix and where."""
    doc = _load_yaml(data)
    if not isinstance(doc, dict):
        raise _perr("the document must be a mapping with 'version' and 'statements'")
    unknown = sorted(str(k) for k in set(doc) - {"version", "statements"})
    if unknown:
        raise _perr(f"unknown key(s) {', '.join(unknown)}")
    if doc.get("version") != POLICY_VERSION:
        raise _perr(f'version must be "{POLICY_VERSION}", not {doc.get("version")!r}')
    raw = doc.get("statements")
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise _perr("statements must be a list")
    if len(raw) > MAX_STATEMENTS:
        raise _perr(f"more than {MAX_STATEMENTS} statements")
    statements: list[Statement] = []
    owner: dict[str, str] = {}
    for i, item in enumerate(raw):
        statement = _statement(item, i)
        if any(s.name == statement.name for s in statements):
            raise _perr(f"more than one statement is named {statement.name!r}; names must be unique")
        for scope in statement.registry_scopes:
            key = canonical_repository(scope)
            if key in owner:
                raise _perr(
                    f"registry scope {scope!r} appears in statements {owner[key]!r} and "
                    f"{statement.name!r}; a scope may belong to one statement only"
                )
            owner[key] = statement.name
        statements.append(statement)
    return PolicyDocument(tuple(statements), hashlib.sha256(data).hexdigest())


def _statement(raw: Any, index: int) -> Statement:
    if not isinstance(raw, dict):
        raise _perr(f"statement #{index + 1} is not a mapping")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise _perr(f"statement #{index + 1} has no name; every statement needs one")
    where = f"statement {name!r}"
    unknown = sorted(str(k) for k in set(raw) - _STATEMENT_KEYS)
    if unknown:
        raise _perr(f"{where}: unknown key(s) {', '.join(unknown)}")
    scopes = _scopes(raw.get("registryScopes"), where)
    mode = raw.get("signedManifest", "referenced")
    if mode not in SIGNED_MANIFEST_MODES:
        choices = ", ".join(SIGNED_MANIFEST_MODES)
        raise _perr(f"{where}: signedManifest must be one of {choices}, not {mode!r}")
    platforms = _platforms(raw.get("platforms"), mode, where)
    referrers = tuple(
        _referrer(r, f"{where}: referrers[{i}]")
        for i, r in enumerate(_list(raw.get("referrers"), f"{where}: referrers"))
    )
    if len(referrers) > MAX_REFERRER_RULES:
        raise _perr(f"{where}: more than {MAX_REFERRER_RULES} referrers")
    return Statement(
        name=name,
        registry_scopes=tuple(scopes),
        signed_manifest=mode,
        platforms=platforms,
        signers=SignerRule(
            user_metadata=_user_metadata(raw.get("userMetadata"), f"{where}: userMetadata"),
            min_signers=_min_signers(raw.get("minSigners", 1), f"{where}: minSigners"),
            required_identities=_identities(raw.get("requiredIdentities"), f"{where}: requiredIdentities"),
        ),
        referrers=referrers,
    )


def _scopes(value: Any, where: str) -> list[str]:
    scopes = _string_list(value, f"{where}: registryScopes")
    if not scopes:
        raise _perr(f"{where} has no registryScopes; list at least one repository or '*'")
    if "*" in scopes and len(scopes) > 1:
        raise _perr(f"{where}: the wildcard scope '*' cannot be combined with other scopes")
    for scope in scopes:
        problem = None if scope == "*" else scope_problem(scope)
        if problem is not None:
            raise _perr(f"{where}: {problem}")
    return scopes


def _platforms(value: Any, mode: str, where: str) -> tuple[PlatformSpec, ...]:
    platforms = tuple(_platform(p, f"{where}: platforms") for p in _string_list(value, f"{where}: platforms"))
    if mode == "referenced" and platforms:
        raise _perr(f"{where}: platforms are for signedManifest referencedOrPlatforms or platforms")
    if mode != "referenced" and not platforms:
        raise _perr(f"{where}: signedManifest {mode} needs platforms, e.g. [linux/amd64, linux/arm64]")
    if len(platforms) > MAX_PLATFORMS:
        raise _perr(f"{where}: more than {MAX_PLATFORMS} platforms")
    if len(set(platforms)) != len(platforms):
        raise _perr(f"{where}: platforms lists one platform twice")
    return platforms


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _perr(f"{where} must be a list")
    return value


def _string_list(value: Any, where: str) -> list[str]:
    items = _list(value, where)
    if not all(isinstance(v, str) and v for v in items):
        raise _perr(f"{where} must be a list of non-empty strings")
    return items


def _platform(text: str, where: str) -> PlatformSpec:
    parts = text.split("/")
    if not 2 <= len(parts) <= 3 or not all(_PLATFORM_RE.fullmatch(p) for p in parts):
        raise _perr(f"{where}: {text!r} is not OS/ARCHITECTURE[/VARIANT] in lower case, e.g. linux/arm64")
    return PlatformSpec(*parts)


def _user_metadata(value: Any, where: str) -> Mapping[str, str]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, dict) or not all(isinstance(k, str) and k for k in value):
        raise _perr(f"{where} must be a mapping of keys to string values")
    if len(value) > MAX_USER_METADATA:
        raise _perr(f"{where}: more than {MAX_USER_METADATA} pairs")
    for key, item in value.items():
        if not isinstance(item, str):
            raise _perr(f'{where}: the value of {key!r} must be a string (quote it: {key}: "{item}")')
        if key.startswith(RESERVED_METADATA_PREFIX):
            raise _perr(f"{where}: {key!r} is reserved for notation ({RESERVED_METADATA_PREFIX}.*)")
    return MappingProxyType(dict(value))


def _min_signers(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_MIN_SIGNERS:
        raise _perr(f"{where} must be a whole number from 1 to {MAX_MIN_SIGNERS}, not {value!r}")
    return value


def _identities(value: Any, where: str) -> tuple[TrustedIdentity, ...]:
    texts = _string_list(value, where)
    if len(texts) > MAX_REQUIRED_IDENTITIES:
        raise _perr(f"{where}: more than {MAX_REQUIRED_IDENTITIES} identities")
    out = []
    for text in texts:
        prefix, sep, dn = text.partition(":")
        if prefix != "x509.subject" or not sep:
            raise _perr(f"{where}: {text!r} must be written x509.subject:C=..., ST=..., O=...")
        try:
            attributes = parse_distinguished_name(dn)
        except ValueError as exc:
            raise _perr(f"{where}: {exc}") from None
        out.append(TrustedIdentity(text, MappingProxyType(attributes)))
    return tuple(out)


def _referrer(raw: Any, where: str) -> ReferrerRule:
    if not isinstance(raw, dict):
        raise _perr(f"{where} must be a mapping with artifactType")
    unknown = sorted(str(k) for k in set(raw) - _REFERRER_KEYS)
    if unknown:
        raise _perr(f"{where}: unknown key(s) {', '.join(unknown)}")
    artifact_type = raw.get("artifactType")
    if not isinstance(artifact_type, str) or not _ARTIFACT_TYPE_RE.fullmatch(artifact_type):
        raise _perr(f"{where}: artifactType must be a media type such as application/spdx+json")
    signed, required = raw.get("signed", False), raw.get("required", True)
    if not isinstance(signed, bool) or not isinstance(required, bool):
        raise _perr(f"{where}: signed and required are true or false")
    trust_policy = raw.get("trustPolicy", "")
    if not isinstance(trust_policy, str):
        raise _perr(f"{where}: trustPolicy names a trust policy statement")
    if trust_policy and not signed:
        raise _perr(f"{where}: trustPolicy is for signed: true")
    return ReferrerRule(artifact_type, signed, trust_policy, required)


def read_policy_document(path: Path) -> PolicyDocument:
    """The document at ``path`` (at most ``MAX_POLICY_BYTES``); errors name the key and the file."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_POLICY_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"policy {path}: cannot be read: {exc.strerror}") from None
    if len(data) > MAX_POLICY_BYTES:
        raise ConfigError(f"policy {path}: over the {MAX_POLICY_BYTES}-byte limit")
    try:
        return parse_policy_document(data)
    except ConfigError as exc:
        raise ConfigError(f"policy {path}: {exc}") from None


class PolicyFile:
    """The policy document on disk, read again when it changes (checked every few seconds); a
    change that does not load keeps the last good document, and ``last_error`` says why (/readyz).
    Without a path, the empty document: the trust policy alone decides."""

    def __init__(self, path: Path | None, check_every_s: float = 2.0) -> None:
        self._path = path
        self._files: Reloading[PolicyDocument] | None = None
        if path is not None:
            self._files = Reloading(
                "Referee policy",
                lambda: file_stamp([path]),
                lambda: read_policy_document(path),
                check_every_s=check_every_s,
            )

    def current(self) -> PolicyDocument:
        return self._files.current() if self._files else PolicyDocument()

    @property
    def last_error(self) -> str:
        return self._files.last_error if self._files else ""

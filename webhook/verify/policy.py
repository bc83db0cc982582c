"""Referee's own policy, once for every entry point: which namespaces and operations are looked at,
which images are exempt, which registries may be contacted, whether a tag is enough.

Pure: configuration in, answers out. The trust policy (who may sign, how strictly) is notation's
and lives in ``webhook.notary``; this is what Referee adds around it.
"""

from __future__ import annotations

from dataclasses import dataclass

from webhook.config import Config
from webhook.oci.patterns import HostPattern, ImagePattern
from webhook.oci.reference import Reference

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

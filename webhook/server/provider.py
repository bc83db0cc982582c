"""Gatekeeper external data (``externaldata.gatekeeper.sh/v1beta1``): ProviderRequest in, ProviderResponse
out. Pure: the decisions come from the caller.

Each key is an image reference, or ``[namespace]image`` as Referee's templates write it (the pod's
namespace first, so a prefix a pod author writes stays inside the image and fails to parse). The
namespace only chooses whose pull secrets are read, and only for an authenticated Gatekeeper; it
never makes an image exempt: namespace exemptions on the Gatekeeper path are the constraints' own
``match``. ``/provider/mutate`` (Gatekeeper's ``Assign`` sends the raw image field) takes every key as
an image. The item ``value`` is a small stable object a Rego author can test against::

    {"verified": true, "digest": "sha256:…", "signer": {"subject": "…", "issuer": "…"},
     "signers": [{"subject": "…", "issuer": "…"}], "signingTime": "…", "signingScheme": "notary.x509",
     "reason": "", "statement": "release",
     "artifacts": [{"artifactType": "application/spdx+json", "digest": "sha256:…", "signed": true,
                    "signer": "…"}]}

``signers`` lists every signer counted under a Referee policy statement (empty without one);
``artifacts`` what was found referring to the image for its ``referrers`` requirements (``signed``
null when no signature was asked for).

A failed image sets the item's ``error`` to the same text the validating webhook would deny with.
An image that could not be checked (registry down, out of time) also sets ``systemError``: it is a
passing condition, and Gatekeeper caches per-key errors but not a failed request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webhook.server.admission import AdmissionError

API_VERSION = "externaldata.gatekeeper.sh/v1beta1"
MAX_KEYS = 256
_NAMESPACED = re.compile(r"\[([a-z0-9]([-a-z0-9]*[a-z0-9])?)\](.+)")


@dataclass(frozen=True)
class Key:
    key: str  # as sent
    namespace: str  # "" when the key carries none
    image: str


def parse_request(doc: Any, *, namespaced: bool = True) -> list[Key]:
    """The distinct keys; with ``namespaced`` (``/provider``), ``[namespace]image`` keys are split."""
    if not isinstance(doc, dict) or doc.get("kind") != "ProviderRequest":
        raise AdmissionError("expected a ProviderRequest")
    if doc.get("apiVersion") not in (API_VERSION, "externaldata.gatekeeper.sh/v1alpha1"):
        raise AdmissionError(f"unsupported apiVersion {str(doc.get('apiVersion'))[:64]!r}")
    request = doc.get("request")
    keys = request.get("keys") if isinstance(request, dict) else None
    if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
        raise AdmissionError("ProviderRequest request.keys must be a list of non-empty strings")
    if len(keys) > MAX_KEYS:
        raise AdmissionError(f"ProviderRequest has more than {MAX_KEYS} keys")
    out = []
    for key in dict.fromkeys(keys):
        match = _NAMESPACED.fullmatch(key) if namespaced else None
        out.append(Key(key, match.group(1), match.group(3)) if match else Key(key, "", key))
    return out


def response(items: Sequence[Mapping[str, Any]], system_error: str = "") -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "ProviderResponse",
        "response": {"idempotent": True, "items": list(items), "systemError": system_error},
    }

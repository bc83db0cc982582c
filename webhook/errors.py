"""The errors of Referee, split by cause.

Two families, and both deny an image:

* ``VerificationFailed``: the artifact is bad or missing (no such image, no signature, a registry
  that serves other bytes than the digest promises, a manifest over a size cap). The answer is
  permanent for that digest and trust policy, so it may be cached.
* ``VerificationInconclusive``: we could not decide (registry unreachable, authentication refused,
  rate limited, out of time). Never cached as a verdict; retrying later may succeed.

Every message names what it is about: the image or repository, the digest when known, and a
reason a person can act on.
"""

from __future__ import annotations


class RefereeError(Exception):
    """Root of every error Referee raises on purpose."""


class ConfigError(RefereeError):
    """Referee's own settings, a credentials file or a trust file is malformed."""


class InvalidReference(RefereeError, ValueError):
    """An image reference (or digest) does not follow the reference grammar."""


# --- the artifact is bad or missing -------------------------------------------------------------


class VerificationFailed(RefereeError):
    """The artifact is bad or missing; permanent for that digest and policy."""


class NotFound(VerificationFailed):
    """The registry says the repository, manifest, tag or blob does not exist."""


class ContentMismatch(VerificationFailed):
    """Fetched bytes do not match their digest, size or media type, or a header contradicts them."""


class ContentTooLarge(VerificationFailed):
    """A manifest, blob or index is larger than the configured cap."""


class RegistryProtocolError(VerificationFailed):
    """The registry answered, but not in a way the OCI distribution specification allows
    (malformed JSON, a pagination loop, a link to another origin, too many pages)."""


# --- we could not decide -------------------------------------------------------------------------


class VerificationInconclusive(RefereeError):
    """We could not check the artifact; never cached, a later try may succeed."""


class RegistryUnavailable(VerificationInconclusive):
    """The registry could not be reached, or answered with a server error."""


class AuthenticationFailed(VerificationInconclusive):
    """The registry (or its token server) refused our credentials or our anonymous request."""


class RateLimited(VerificationInconclusive):
    """The registry kept answering 429 Too Many Requests."""


class DeadlineExceeded(VerificationInconclusive):
    """The caller's time budget ran out before the registry finished answering."""

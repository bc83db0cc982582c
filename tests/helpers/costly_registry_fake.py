"""A registry built to cost Referee memory (fake: no real registry serves this on purpose)."""

from __future__ import annotations

import json
import os

from tests.helpers.fake_registry import FakeHandler
from webhook.oci.model import NOTARY_SIGNATURE, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, compute_digest

MANIFEST_FILL_BYTES = (4 << 20) - 4096  # just under the manifest cap
ENVELOPE_BYTES = (256 << 10) - 16  # just under the envelope cap


class CostlyRegistryFake:
    """Answers every repository with what costs Referee the most memory it still reads: a bearer
    challenge whose token is 16 KiB and lives for years, a manifest just under the cap (unique per
    repository), 1000 Notation referrers, each with an envelope just under the cap (fake: no real
    registry serves this on purpose)."""

    def __init__(self) -> None:
        self.envelope = os.urandom(ENVELOPE_BYTES)
        self.envelope_digest = compute_digest(self.envelope)
        self.token = json.dumps({"token": "t" * (16 << 10), "expires_in": 10**8}).encode()
        sig = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": NOTARY_SIGNATURE,
                          "config": {"mediaType": OCI_EMPTY, "digest": compute_digest(b"{}"), "size": 2},
                          "layers": [{"mediaType": "application/jose+json", "digest": self.envelope_digest,
                                      "size": ENVELOPE_BYTES}]}).encode()  # fmt: skip
        self.sig, self.sig_digest = sig, compute_digest(sig)

    def manifest(self, repo: str) -> tuple[bytes, str]:
        config = {"mediaType": OCI_EMPTY, "digest": compute_digest(b"{}"), "size": 2}
        fill = {"fill": repo + "x" * MANIFEST_FILL_BYTES}
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config,
            "layers": [],
            "annotations": fill,
        }
        body = json.dumps(doc).encode()
        return body, compute_digest(body)

    def referrers(self, n: int = 1000) -> bytes:
        entries = [{"mediaType": OCI_MANIFEST, "digest": self.sig_digest if i == 0 else f"sha256:{i:064x}",
                    "size": len(self.sig), "artifactType": NOTARY_SIGNATURE} for i in range(n)]  # fmt: skip
        return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()

    def handle(self, h: FakeHandler) -> None:
        path = h.path.split("?")[0]
        if path == "/token":
            h.reply(200, self.token, {"Content-Type": "application/json"})
            return
        if not h.headers.get("Authorization", "").startswith("Bearer "):
            realm = f"http://{h.headers.get('Host')}/token"
            h.reply(401, b"", {"WWW-Authenticate": f'Bearer realm="{realm}",service="costly"'})
            return
        parts = path.split("/")  # /v2/<repo...>/<kind>/<ref>
        repo, kind, ref = "/".join(parts[2:-2]), parts[-2], parts[-1]
        if kind == "manifests" and ref == self.sig_digest:
            h.reply(200, self.sig, {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": self.sig_digest})
        elif kind == "manifests" and ref.startswith("sha256:"):
            h.reply(404, b"{}", {"Content-Type": "application/json"})
        elif kind == "manifests":
            body, digest = self.manifest(repo)
            h.reply(200, body, {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": digest})
        elif kind == "referrers":
            h.reply(200, self.referrers(), {"Content-Type": OCI_INDEX})
        elif kind == "blobs" and ref == self.envelope_digest:
            h.reply(200, self.envelope, {"Content-Type": "application/octet-stream"})
        else:
            h.reply(404, b"{}", {"Content-Type": "application/json"})

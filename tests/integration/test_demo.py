"""The README's first command: scripts/demo.sh runs from start to end and shows what it promises."""

from __future__ import annotations

import re

from tests.helpers.tools import ROOT, run


def test_the_demo_allows_the_signed_image_and_denies_the_others_everywhere_it_shows() -> None:
    proc = run(["bash", str(ROOT / "scripts" / "demo.sh")], timeout=300)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)  # kubectl's errors go to stderr
    # referee verify, the webhook over HTTPS, and kubectl against a real API server, in that order
    assert re.search(r"Verified \S+/demo/app:v1 \(sha256:[0-9a-f]{64}\)", plain)
    unsigned = r"FAILED \S+/demo/unsigned:v1 \(sha256:[0-9a-f]{64}\): no Notation signature found"
    assert re.search(unsigned, plain)
    assert plain.count("  ALLOWED") == 1 and plain.count("  DENIED: ") == 2
    assert "pod/signed created" in plain
    refusals = re.findall(r'admission webhook "validate.referee.dev" denied the request: (.*)', plain)
    assert len(refusals) == 2
    assert "demo/unsigned:v1 (sha256:" in refusals[0] and "no Notation signature found" in refusals[0]
    assert "demo/tampered:v1 (sha256:" in refusals[1] and "the signature failed verification" in refusals[1]
    assert proc.stdout.rstrip().endswith("demo files removed.")

"""A worker loads at start what its first request would otherwise load (about 30 ms of CPU, which
the first cold admission after a rollout paid)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers.codesign import make_chain, write_trust_policy, write_trust_store

PROBE = """
import json, sys
from pathlib import Path
from webhook.config import parse_config
from webhook.server.app import create_app
work = Path(sys.argv[1])
config = parse_config({"trustPolicy": str(work / "trustpolicy.json"), "trustStore": str(work / "store")},
                      base=work, environ={})
before = set(sys.modules)
create_app(config)
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_the_app_loads_metrics_and_the_signature_backend_before_its_first_request(tmp_path: Path) -> None:
    chain = make_chain()
    write_trust_store(tmp_path / "store", "ca", "test", chain.root)
    write_trust_policy(tmp_path / "trustpolicy.json", stores=["ca:test"])
    out = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path)], capture_output=True, text=True,
                         check=True, env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})  # fmt: skip
    loaded = json.loads(out.stdout.splitlines()[-1])
    for module in ("prometheus_client", "cryptography.hazmat.backends.openssl", "encodings.idna"):
        assert module in loaded, module

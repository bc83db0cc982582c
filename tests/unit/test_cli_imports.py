"""``referee verify`` as a whole process is mostly Python's imports: each command imports what it needs
when it runs, and nothing of signing, YAML or the server is loaded to verify."""

from __future__ import annotations

import json
import subprocess
import sys

from webhook.cli import main
from webhook.verify import schemes

PROBE = """
import json, sys
from webhook.cli.main import main
missing = "/nonexistent/trustpolicy.json"
rc = main(["verify", "127.0.0.1:1/x:v1", "--trust-policy", missing, "--trust-store", "/nonexistent"])
print(json.dumps([rc, sorted(m for m in sys.modules)]))
"""


def test_referee_verify_loads_no_signing_yaml_or_server_modules() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    rc, modules = json.loads(out.stdout.splitlines()[-1])
    assert rc == main.EXIT_USAGE  # the trust policy cannot be read: after the command's imports
    assert "webhook.verify.image" in modules  # the verification modules were loaded
    unwanted = [
        m for m in modules if m.split(".")[0] in {"yaml", "flask", "gunicorn", "werkzeug", "kubernetes"}
    ]
    unwanted += [m for m in modules if m in {"webhook.cli.sign", "webhook.config", "webhook.notary.signer"}]
    assert unwanted == []


def test_the_command_line_default_of_max_signatures_is_the_schemes_one() -> None:
    assert main.DEFAULT_MAX_SIGNATURES == schemes.DEFAULT_MAX_SIGNATURES

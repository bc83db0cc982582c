"""The container image's recipe, run here (no container engine runs on this machine): the commands of
the Dockerfile's two stages, then `referee serve` from the result, answering over TLS."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import requests

from tests.helpers import pki
from tests.helpers.codesign import make_chain, write_trust_policy, write_trust_store
from tests.helpers.serving import readyz, running
from tests.helpers.tools import ROOT, free_port, run


def test_dockerfile_runs_its_own_commands() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "pip wheel --no-cache-dir --wheel-dir /wheels ." in text
    assert "pip install --no-cache-dir --no-index --find-links /wheels referee" in text
    assert re.search(r"^USER 10001$", text, re.MULTILINE)
    assert 'ENTRYPOINT ["referee", "serve", "--config", "/etc/referee/config.yaml"]' in text


def test_wheels_install_offline_and_serve(tmp_path: Path) -> None:
    wheels, env_dir = tmp_path / "wheels", tmp_path / "env"
    # Stage one: Referee and its dependencies as wheels (pip's own cache makes repeat runs quick).
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels), str(ROOT)], timeout=600)
    assert any(p.name.startswith("referee-") for p in wheels.iterdir())
    # Stage two: a clean environment, installed with no index at all.
    run([sys.executable, "-m", "venv", str(env_dir)])
    pip = env_dir / "bin" / "pip"
    run([str(pip), "install", "--quiet", "--no-index", "--find-links", str(wheels), "referee"], timeout=600)
    # The installed entry point serves, with a metrics folder that does not exist yet (as mounted).
    chain = make_chain()
    write_trust_store(tmp_path / "truststore", "ca", "test", chain.root)
    write_trust_policy(tmp_path / "trustpolicy.json")
    ca = pki.make_ca(tmp_path)
    cert = pki.make_server_cert(tmp_path, ca)
    port = free_port()
    (tmp_path / "config.yaml").write_text(
        f"listen: 127.0.0.1:{port}\ntrustPolicy: trustpolicy.json\ntrustStore: truststore\n"
        f"tls: {{certFile: {cert.cert_path}, keyFile: {cert.key_path}}}\nserver: {{workers: 1, threads: 2}}\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics" / "mount")}
    command = [str(env_dir / "bin" / "referee"), "serve", "--config", str(tmp_path / "config.yaml")]
    url = f"https://127.0.0.1:{port}"
    with running(command, log=tmp_path / "serve.log", ready=readyz(url, ca.cert_path), env=env, cwd=tmp_path):
        metrics = requests.get(f"{url}/metrics", verify=str(ca.cert_path), timeout=5)
        assert "referee_verifications_in_flight" in metrics.text  # metrics work with the mounted folder

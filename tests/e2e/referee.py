"""Referee as the API server sees it in the end-to-end tests: ``referee serve`` started locally over
TLS, and the webhook configurations that point the API server at it by URL."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

# Every kind Referee checks, and the ephemeral-containers subresource (added to a running pod).
RULES = [
    {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
     "resources": ["pods", "pods/ephemeralcontainers", "replicationcontrollers", "podtemplates"]},
    {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
     "resources": ["deployments", "replicasets", "statefulsets", "daemonsets"]},
    {"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
     "resources": ["jobs", "cronjobs"]},
]  # fmt: skip


@dataclass(frozen=True)
class RunningReferee:
    url: str  # https://127.0.0.1:PORT
    ca_file: Path  # the CA of its serving certificate: the webhook's caBundle
    log: Path

    def decisions(self) -> list[dict[str, Any]]:
        """The JSON decision lines Referee has logged so far."""
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith('{"event"')]


@contextlib.contextmanager
def serve(
    config: Path, url: str, ca_file: Path, *, env: Mapping[str, str] | None = None
) -> Iterator[RunningReferee]:
    """``python -m webhook serve --config CONFIG`` (listening at ``url``, its certificate issued by
    ``ca_file``) until the block ends; ready once ``/readyz`` says so."""
    log = config.parent / "referee.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "webhook", "serve", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"referee serve exited ({proc.returncode}):\n{log.read_text()}")
            try:
                if requests.get(f"{url}/readyz", verify=str(ca_file), timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"referee serve not ready after 60s:\n{log.read_text()}")
            time.sleep(0.2)
        yield RunningReferee(url, ca_file, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ca_bundle(ca_file: Path) -> str:
    return base64.b64encode(ca_file.read_bytes()).decode()


def webhook_configurations(
    name: str,
    url: str,
    ca_file: Path,
    *,
    namespace_selector: Mapping[str, Any],
    timeout_s: int,
    mutate: bool,
) -> list[dict[str, Any]]:
    """A ValidatingWebhookConfiguration (and a Mutating one when ``mutate``) calling ``url`` by URL,
    failing closed, as a cluster administrator would register Referee by hand."""

    def hook(path: str) -> dict[str, Any]:
        return {
            "name": f"{path}.{name}.referee.dev",
            "clientConfig": {"url": f"{url}/{path}", "caBundle": ca_bundle(ca_file)},
            "rules": RULES,
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": timeout_s,
            "namespaceSelector": dict(namespace_selector),
            "matchPolicy": "Equivalent",
        }

    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [hook("validate")],
        }
    ]
    if mutate:
        mutating = hook("mutate")
        mutating["reinvocationPolicy"] = "IfNeeded"
        docs.append(
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "MutatingWebhookConfiguration",
                "metadata": {"name": name},
                "webhooks": [mutating],
            }
        )
    return docs

"""Real registries started for tests: CNCF Distribution 2.8 (``docker-registry``) and ``olareg``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.helpers.serving import running
from tests.helpers.tools import free_port, tool


@dataclass(frozen=True)
class RunningRegistry:
    kind: str  # "distribution" (no referrers API) or "olareg" (referrers API)
    host: str  # 127.0.0.1:PORT
    plain_http: bool
    ca_file: Path | None = None
    username: str | None = None  # credentials the test tools push with
    password: str | None = None

    @property
    def has_referrers_api(self) -> bool:
        return self.kind == "olareg"

    def oras_flags(self) -> list[str]:
        flags = ["--plain-http"] if self.plain_http else ["--ca-file", str(self.ca_file)]
        if self.username is not None and self.password is not None:
            flags += ["--username", self.username, "--password", self.password]
        return flags


@contextlib.contextmanager
def _process(args: list[str], log: Path, url: str, verify: bool | str) -> Iterator[None]:
    """The registry, until the block ends; ready once ``url`` answers (401 counts: auth is on)."""

    def ready() -> bool:
        try:
            return requests.get(url, timeout=1, verify=verify).status_code in (200, 401)
        except requests.RequestException:
            return False

    with running(args, log=log, ready=ready, timeout_s=30):
        yield


@contextlib.contextmanager
def distribution(
    workdir: Path,
    *,
    tls: tuple[Path, Path, Path] | None = None,
    auth_yaml: str = "",
    username: str | None = None,
    password: str | None = None,
    port: int | None = None,
) -> Iterator[RunningRegistry]:
    """CNCF Distribution 2.8. ``tls`` is (cert, key, ca); ``auth_yaml`` an indented ``auth:`` block;
    ``port`` a fixed port (443 lets a test spell the registry with and without the default port)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    tls_yaml = f"\n  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}" if tls else ""
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}{tls_yaml}\n"
        f"{auth_yaml}"
    )
    scheme = "https" if tls else "http"
    verify: bool | str = str(tls[2]) if tls else True
    with _process(
        [tool("docker-registry"), "serve", str(config)],
        workdir / "registry.log",
        f"{scheme}://127.0.0.1:{port}/v2/",
        verify,
    ):
        yield RunningRegistry(
            "distribution",
            f"127.0.0.1:{port}",
            plain_http=tls is None,
            ca_file=tls[2] if tls else None,
            username=username,
            password=password,
        )


@contextlib.contextmanager
def olareg(workdir: Path) -> Iterator[RunningRegistry]:
    """olareg: an OCI 1.1 registry with the referrers API, plain HTTP."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [
        tool("olareg"),
        "serve",
        "--addr",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(workdir / "data"),
    ]
    with _process(args, workdir / "olareg.log", f"http://127.0.0.1:{port}/v2/", True):
        yield RunningRegistry("olareg", f"127.0.0.1:{port}", plain_http=True)

"""Starting a server process for a test and waiting, bounded, until it says it is ready."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import requests


def readyz(url: str, ca_file: Path) -> Callable[[], bool]:
    """A readiness check: ``GET URL/readyz`` answers 200 over TLS verified with ``ca_file``."""

    def check() -> bool:
        try:
            return requests.get(f"{url}/readyz", verify=str(ca_file), timeout=1).status_code == 200
        except requests.RequestException:
            return False

    return check


@contextlib.contextmanager
def running(
    argv: list[str],
    *,
    log: Path,
    ready: Callable[[], bool],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float = 60,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` (output to ``log``) until the block ends. It must become ``ready`` within
    ``timeout_s``; an early exit or a timeout fails with what it printed."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=dict(env or os.environ), cwd=cwd
        )
    try:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if proc.poll() is not None:
                raise AssertionError(f"{argv[0]} exited ({proc.returncode}):\n{log.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{argv[0]} not ready after {timeout_s:g}s:\n{log.read_text()}")
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def referee_serve(
    config: Path, url: str, ca_file: Path, *, env: Mapping[str, str] | None = None
) -> Iterator[Path]:
    """``python -m webhook serve --config CONFIG`` listening at ``url`` with a certificate ``ca_file``
    issued, until the block ends; yields the log's path (``referee.log`` beside the config)."""
    log = config.parent / "referee.log"
    argv = [sys.executable, "-m", "webhook", "serve", "--config", str(config)]
    with running(argv, log=log, ready=readyz(url, ca_file), env={**os.environ, **(env or {})}):
        yield log

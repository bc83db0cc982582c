"""Locating the tools that scripts/install-tools.sh installs. A missing tool fails the test loudly."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = ROOT / ".tools" / "bin"


def tool(name: str) -> str:
    """Path of a required tool; fails (never skips) when it is not installed."""
    candidate = TOOLS_BIN / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(f"required tool {name!r} is missing: run scripts/install-tools.sh", pytrace=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(
    args: list[str],
    *,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 120,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing output; on failure the assertion shows what it printed."""
    proc = subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"command failed ({proc.returncode}): {' '.join(args)}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def referee(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``referee ARGS...`` run as ``python -m webhook``, its output captured (the caller checks the exit)."""
    return subprocess.run(
        [sys.executable, "-m", "webhook", *args], capture_output=True, text=True, timeout=timeout, check=False
    )

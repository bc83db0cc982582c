"""A real ``redis-server`` (Debian's, installed by scripts/install-tools.sh) on a loopback port with a
password, for the shared cache's tests. A missing binary fails the test (``tools.tool``)."""

from __future__ import annotations

import contextlib
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.helpers.tools import free_port, tool


@dataclass
class RedisServer:
    workdir: Path
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_hex(16))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def password_file(self) -> Path:
        path = self.workdir / "redis-password"
        path.write_text(self.password + "\n")
        return path

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=5)

    def start(self) -> None:
        """Start (or start again, on the same port, empty: nothing is saved)."""
        assert self.proc is None, "already running"
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [tool("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--requirepass", self.password, "--dir", str(self.workdir),
             "--enable-debug-command", "local"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while True:
            try:
                if self.client().ping():
                    return
            except redis.RedisError:
                pass
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited:\n{(self.workdir / 'redis.log').read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError("redis-server did not answer within 15 s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        # Nothing listens on the port any more: a client is refused at once.
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
            raise AssertionError("the port still answers after redis-server stopped")


@contextlib.contextmanager
def redis_server(workdir: Path, *, password: str | None = None) -> Iterator[RedisServer]:
    """A running redis-server until the block ends; ``password`` (else a random one) is required."""
    server = RedisServer(workdir) if password is None else RedisServer(workdir, password=password)
    server.start()
    try:
        yield server
    finally:
        server.stop()

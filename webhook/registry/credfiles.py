"""Registry credentials from files (``registries.<host>.dockerConfig``, docker ``config.json``
format), read again when a file changes: a rotated pull Secret needs no restart."""

from __future__ import annotations

from pathlib import Path

from webhook.errors import ConfigError
from webhook.registry.credentials import Keyring
from webhook.reloading import Reloading, file_stamp

MAX_DOCKER_CONFIG_BYTES = 1 << 20  # the API server's limit on the Secret such a file comes from


def read_docker_config(path: Path) -> Keyring:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_DOCKER_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"registry credentials {path}: cannot read ({exc.strerror})") from None
    if len(data) > MAX_DOCKER_CONFIG_BYTES:
        raise ConfigError(f"registry credentials {path}: over {MAX_DOCKER_CONFIG_BYTES} bytes")
    return Keyring.from_docker_config(data, source=str(path))


def docker_config_files(paths: list[Path], check_every_s: float = 2.0) -> Reloading[Keyring]:
    """The credentials of every file, merged in the order given; re-read when any of them changes."""
    return Reloading(
        "registry credentials",
        lambda: file_stamp(paths),
        lambda: Keyring.merged(read_docker_config(p) for p in paths),
        check_every_s=check_every_s,
    )

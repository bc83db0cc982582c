"""Reading trust material from disk: the trust policy file and the trust store directory.

The layout is notation's, so an existing notation configuration works unchanged:

    DIR/x509/{ca,signingAuthority,tsa}/<store name>/<certificate files>

Every file of a named store is read (PEM bundles or DER, any file name); symbolic links and
sub-directories are refused, as notation refuses them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from webhook.errors import ConfigError
from webhook.notary.trustpolicy import TrustPolicyDocument, parse_trust_policy
from webhook.notary.truststore import TrustStore, check_store_certificates, parse_certificates
from webhook.reloading import Reloading, file_stamp

log = logging.getLogger(__name__)

MAX_POLICY_BYTES = 1 << 20
MAX_CERT_FILE_BYTES = 1 << 20
MAX_CERT_FILES = 1000


def _read_regular(path: Path, cap: int, what: str) -> bytes:
    try:
        info = path.lstat()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{what} {path} is not a regular file (symbolic links and directories are refused)")
    if info.st_size > cap:
        raise ConfigError(f"{what} {path} is {info.st_size} bytes, over the {cap}-byte limit")
    return path.read_bytes()


def load_trust_policy(path: Path) -> TrustPolicyDocument:
    return read_trust_policy(path)[0]


def read_trust_policy(path: Path) -> tuple[TrustPolicyDocument, bytes]:
    """The parsed policy and the very bytes it was parsed from (what its fingerprint must cover)."""
    data = _read_regular(path, MAX_POLICY_BYTES, "trust policy")
    try:
        return parse_trust_policy(data), data
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def load_trust_store(root: Path, policy: TrustPolicyDocument) -> TrustStore:
    """The named stores the trust policy uses, read from ``root/x509/<type>/<name>/``.

    Like notation, only the stores a policy names are read; unlike notation, a named store that is
    missing or empty is an error now, not a denial later.
    """
    wanted = sorted({store for statement in policy.policies for store in statement.trust_stores})
    stores: dict[tuple[str, str], tuple[x509.Certificate, ...]] = {}
    files = 0
    for kind, name in wanted:
        store_dir = root / "x509" / kind / name
        label = f"trust store {kind}:{name}"
        try:
            _require_directory(store_dir)
        except FileNotFoundError:
            raise ConfigError(f"{label} does not exist: put its certificates in {store_dir}/") from None
        certs: list[x509.Certificate] = []
        for cert_file in sorted(store_dir.iterdir()):
            files += 1
            if files > MAX_CERT_FILES:
                raise ConfigError(f"trust store {root}: more than {MAX_CERT_FILES} certificate files")
            source = f"{label} file {cert_file.name}"
            parsed = parse_certificates(_read_regular(cert_file, MAX_CERT_FILE_BYTES, source), source)
            check_store_certificates(parsed, kind, source)
            certs.extend(parsed)
        if not certs:
            raise ConfigError(f"{label} in {store_dir} holds no certificates")
        stores[(kind, name)] = tuple(certs)
    return TrustStore(stores)


def _require_directory(path: Path) -> None:
    info = os.lstat(path)  # FileNotFoundError propagates
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"trust store {path} is not a regular directory (symbolic links are refused)")


@dataclass(frozen=True)
class TrustMaterial:
    policy: TrustPolicyDocument
    store: TrustStore
    fingerprint: str  # changes whenever the policy or any trusted certificate changes
    warnings: tuple[str, ...] = ()  # weaknesses worth an operator's look (logged, shown on /readyz)


class TrustFiles:
    """The trust policy and trust store on disk, reloaded when they change (checked every few seconds).

    A reload that fails keeps the previous material and is logged: a half-edited file must not open
    the gate or take it down.
    """

    def __init__(self, policy_path: Path, store_path: Path, check_every_s: float = 2.0) -> None:
        self._policy_path, self._store_path = policy_path, store_path
        self._files = Reloading("trust material", self._disk_stamp, self._load, check_every_s=check_every_s)

    def _load(self) -> TrustMaterial:
        # The fingerprint covers the bytes that were parsed: reading the file a second time could
        # see the next edit and give old rules a new fingerprint (or new rules an old one).
        policy, data = read_trust_policy(self._policy_path)
        store = load_trust_store(self._store_path, policy)
        digest = hashlib.sha256(data).hexdigest()
        warnings = policy.weaker_global_warnings()
        for warning in warnings:
            log.warning("trust policy %s: %s", self._policy_path, warning)
        return TrustMaterial(
            policy,
            store,
            hashlib.sha256(f"{digest}:{store.fingerprint()}".encode()).hexdigest(),
            warnings,
        )

    def _disk_stamp(self) -> Hashable:
        paths = [self._policy_path]
        if self._store_path.is_dir():
            paths.extend(sorted(self._store_path.rglob("*")))
        return file_stamp(paths)

    def current(self) -> TrustMaterial:
        return self._files.current()

    @property
    def last_error(self) -> str:
        return self._files.last_error

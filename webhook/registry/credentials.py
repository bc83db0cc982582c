"""Registry credentials: docker ``config.json``, Kubernetes pull secrets, and the kubelet's matching.

A ``Keyring`` maps registry keys (``host[:port][/path]``, globs allowed per host label) to
credentials. ``lookup`` answers for an image the way the kubelet does, so a pull secret that works
for pulling an image also works for verifying it:

1. keys are normalised (scheme stripped; ``/v1/`` and ``/v2/`` paths reduced to the host);
2. a key matches when the port is equal, the host has as many dot-separated labels as the image's
   and each label glob-matches, and the key's path is a prefix of the image's path;
3. every matching key contributes, the most specific (reverse-sorted) first;
4. with no match, an image on Docker Hub uses the ``index.docker.io`` entry.

Pure: parsing and matching only. Secrets never appear in ``repr`` or in error messages.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook.errors import ConfigError
from webhook.oci.reference import DEFAULT_DOMAIN, DOCKER_HUB_API_HOST, LEGACY_DEFAULT_DOMAIN

DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
DOCKER_CFG = "kubernetes.io/dockercfg"


@dataclass(frozen=True)
class Credential:
    """One set of credentials. Exactly what a docker ``config.json`` entry can hold."""

    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)  # OAuth2 refresh token
    registry_token: str = field(default="", repr=False)  # bearer token, used as is
    source: str = ""  # where it came from, for messages: "secret ns/name", "config.json"

    @property
    def is_anonymous(self) -> bool:
        return not (self.username or self.password or self.identity_token or self.registry_token)

    def fingerprint(self) -> str:
        """A stable, non-secret key for caches (a hash, never the secret itself)."""
        material = "\0".join([self.username, self.password, self.identity_token, self.registry_token])
        return hashlib.sha256(material.encode()).hexdigest()[:16]


ANONYMOUS = Credential(source="anonymous")


def _normalise_key(key: str) -> str:
    key = key.strip()
    for prefix in ("https://", "http://"):
        if key.lower().startswith(prefix):
            key = key[len(prefix) :]
            break
    host, slash, path = key.partition("/")
    # Lower case, and without the HTTPS default port: image references are read that way too.
    host = host.lower().removesuffix(":443")
    if slash and (path.startswith(("v1/", "v2/")) or path in ("v1", "v2")):
        return host
    path = path.rstrip("/")
    return f"{host}/{path}" if path else host


def _decode_entry(entry: Any, source: str, key: str) -> Credential:
    if not isinstance(entry, dict):
        raise ConfigError(f"{source}: entry for {key!r} is not an object")
    username = entry.get("username") or ""
    password = entry.get("password") or ""
    auth = entry.get("auth") or ""
    if not all(isinstance(v, str) for v in (username, password, auth)):
        raise ConfigError(f"{source}: entry for {key!r} has non-string fields")
    if auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ConfigError(f"{source}: 'auth' for {key!r} is not base64 of USER:PASSWORD") from None
        user, sep, secret = decoded.partition(":")
        if not sep:
            raise ConfigError(f"{source}: 'auth' for {key!r} does not decode to USER:PASSWORD")
        username, password = user, secret
    identity_token = entry.get("identitytoken") or ""
    registry_token = entry.get("registrytoken") or ""
    if not isinstance(identity_token, str) or not isinstance(registry_token, str):
        raise ConfigError(f"{source}: tokens for {key!r} must be strings")
    return Credential(username, password, identity_token, registry_token, source)


def _host_port(hostport: str) -> tuple[str, str]:
    if hostport.startswith("["):  # [IPv6]:port
        end = hostport.find("]")
        host, rest = hostport[: end + 1], hostport[end + 1 :]
        return host, rest[1:] if rest.startswith(":") else ""
    host, _, port = hostport.partition(":")
    return host, port


def _key_matches(key: str, host_port: str, path: str) -> bool:
    key_hostport, _, key_path = key.partition("/")
    key_host, key_port = _host_port(key_hostport)
    host, port = _host_port(host_port.lower())
    if key_port != port:
        return False
    key_labels, labels = key_host.split("."), host.split(".")
    if len(key_labels) != len(labels):
        return False
    if not all(
        fnmatch.fnmatchcase(label, pattern) for pattern, label in zip(key_labels, labels, strict=True)
    ):
        return False
    return path.startswith(key_path)


@dataclass(frozen=True)
class Keyring:
    entries: tuple[tuple[str, Credential], ...] = ()

    @classmethod
    def from_docker_config(
        cls, data: bytes | str | Mapping[str, Any], source: str = "config.json"
    ) -> Keyring:
        """Read a docker ``config.json`` (``{"auths": {...}}``) or a legacy ``.dockercfg`` map."""
        if isinstance(data, (bytes, str)):
            try:
                doc = json.loads(data)
            except ValueError as exc:
                raise ConfigError(f"{source}: not valid JSON ({exc})") from None
        else:
            doc = data
        if not isinstance(doc, dict):
            raise ConfigError(f"{source}: expected a JSON object")
        auths = doc.get("auths", doc)
        if not isinstance(auths, dict):
            raise ConfigError(f"{source}: 'auths' must be an object")
        entries = [(_normalise_key(key), _decode_entry(entry, source, key)) for key, entry in auths.items()]
        return cls(tuple(entries))

    @classmethod
    def from_secret(cls, secret: Mapping[str, Any]) -> Keyring:
        """Read a Kubernetes Secret of type ``kubernetes.io/dockerconfigjson`` or ``dockercfg``."""
        meta = secret.get("metadata") or {}
        source = f"secret {meta.get('namespace', '?')}/{meta.get('name', '?')}"
        kind = secret.get("type")
        key = {DOCKER_CONFIG_JSON: ".dockerconfigjson", DOCKER_CFG: ".dockercfg"}.get(str(kind))
        if key is None:
            raise ConfigError(f"{source}: type {kind!r} is not {DOCKER_CONFIG_JSON} or {DOCKER_CFG}")
        string_data = secret.get("stringData") or {}
        data = secret.get("data") or {}
        if key in string_data:
            raw: bytes | str = string_data[key]
        elif key in data:
            try:
                raw = base64.b64decode(data[key], validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise ConfigError(f"{source}: data[{key!r}] is not base64") from None
        else:
            raise ConfigError(f"{source}: has no {key!r} key")
        return cls.from_docker_config(raw, source)

    @classmethod
    def merged(cls, keyrings: Iterable[Keyring]) -> Keyring:
        return cls(tuple(entry for ring in keyrings for entry in ring.entries))

    def lookup(self, domain: str, path: str) -> list[Credential]:
        """Every credential that applies to ``domain/path``, most specific first (kubelet order)."""
        host_port = DOCKER_HUB_API_HOST if domain == LEGACY_DEFAULT_DOMAIN else domain
        candidates = [host_port] if host_port != DEFAULT_DOMAIN else [DEFAULT_DOMAIN, DOCKER_HUB_API_HOST]
        matched = [
            (key, cred)
            for key, cred in self.entries
            if any(_key_matches(key, candidate, path) for candidate in candidates)
        ]
        if not matched and domain in (DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN):
            matched = [(key, cred) for key, cred in self.entries if key == LEGACY_DEFAULT_DOMAIN]
        matched.sort(key=lambda kv: kv[0], reverse=True)
        seen: set[str] = set()
        out: list[Credential] = []
        for _, cred in matched:
            fp = cred.fingerprint()
            if fp not in seen:
                seen.add(fp)
                out.append(cred)
        return out

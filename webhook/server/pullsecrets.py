"""Pull secrets read from the cluster: the credentials the kubelet would use for a pod's images.

For a pod, the kubelet tries the Secrets named in ``spec.imagePullSecrets`` and then those named in
its service account's ``imagePullSecrets``. ``PullSecrets`` reads both through the Kubernetes API
(``get`` on ``secrets`` and ``serviceaccounts`` in the pod's namespace is all the RBAC it needs),
keeps what it read for a short time, and turns the Secrets into a ``Keyring``.

As the kubelet does, a Secret that is missing or of another type is skipped, not fatal: the image may
well be public. What was skipped, and why, comes back as ``notes`` so that a denial for refused
credentials can say which pull secret could not be used. Secret contents are never logged.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from webhook.deadline import Deadline
from webhook.errors import ConfigError
from webhook.registry.credentials import Keyring
from webhook.verify.cache import TTLCache

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")  # where the kubelet mounts it
MAX_OBJECT_BYTES = 1 << 20  # the API server's own limit on a Secret
MAX_SECRETS_PER_POD = 32  # Secrets read for one pod, its own and its service account's together
API_TIMEOUT_S = 2.0  # per API call, and never past the request's deadline


@dataclass(frozen=True)
class PodKeyring:
    keyring: Keyring
    notes: tuple[str, ...] = ()  # pull secrets that could not be used, and why (no secret values)


@dataclass(frozen=True)
class _Read:
    """One object read from the API: its JSON, or why there is none (``missing`` is cacheable)."""

    doc: dict[str, Any] | None
    problem: str = ""
    missing: bool = False


class ObjectReader(Protocol):
    def read(self, kind: str, namespace: str, name: str, timeout_s: float) -> _Read: ...


class KubernetesReader:
    """Reads Secrets and ServiceAccounts with the ``kubernetes`` client."""

    def __init__(
        self,
        kubeconfig: Path | None,
        *,
        service_account: Path = SERVICE_ACCOUNT_DIR,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """From ``kubeconfig``, or else as a pod: the token and CA the kubelet mounts in
        ``service_account`` (re-read as the kubelet rotates the token) and the API server named by
        ``KUBERNETES_SERVICE_HOST`` and ``KUBERNETES_SERVICE_PORT``."""
        # Imported here: the client is large, and only servers that read pull secrets need it.
        from kubernetes import client, config  # noqa: PLC0415
        from kubernetes.config.incluster_config import InClusterConfigLoader  # noqa: PLC0415

        configuration = client.Configuration()
        try:
            if kubeconfig is not None:
                config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=str(kubeconfig), client_configuration=configuration
                )
            else:
                InClusterConfigLoader(  # type: ignore[no-untyped-call]
                    token_filename=str(service_account / "token"),
                    cert_filename=str(service_account / "ca.crt"),
                    environ=os.environ if environ is None else environ,
                ).load_and_set(configuration)
        except (config.ConfigException, OSError, ValueError) as exc:
            where = str(kubeconfig) if kubeconfig else "the in-cluster service account"
            raise ConfigError(f"kubernetes: cannot load credentials from {where}: {exc}") from None
        self._api = client.CoreV1Api(client.ApiClient(configuration))
        self._api_exception = client.exceptions.ApiException

    def read(self, kind: str, namespace: str, name: str, timeout_s: float) -> _Read:
        what = f"{kind} {namespace}/{name}"
        try:
            body = self._get(kind, namespace, name, timeout_s)
        except self._api_exception as exc:
            if exc.status == 404:
                return _Read(None, f"{what} not found", missing=True)
            hint = ": check Referee's RBAC" if exc.status in (401, 403) else ""
            return _Read(None, f"{what} cannot be read (HTTP {exc.status}{hint})")
        except Exception as exc:  # noqa: BLE001 - urllib3 raises many kinds; all mean "unreachable"
            return _Read(None, f"{what} cannot be read (Kubernetes API unreachable: {type(exc).__name__})")
        problem = f"{what} is larger than {MAX_OBJECT_BYTES} bytes" if len(body) > MAX_OBJECT_BYTES else ""
        try:
            doc = None if problem else json.loads(body)
        except ValueError:
            doc = None
        if not problem and not isinstance(doc, dict):
            problem = f"{what}: the API answered with something that is not a JSON object"
        return _Read(doc if isinstance(doc, dict) and not problem else None, problem)

    def _get(self, kind: str, namespace: str, name: str, timeout_s: float) -> bytes:
        """The object's JSON as the API server sent it (no model classes: the Keyring reads JSON)."""
        method = {
            "secret": self._api.read_namespaced_secret,
            "serviceaccount": self._api.read_namespaced_service_account,
        }[kind]
        resp: Any = method(name, namespace, _preload_content=False, _request_timeout=(timeout_s, timeout_s))
        try:
            return bytes(resp.read(MAX_OBJECT_BYTES + 1))
        finally:
            resp.release_conn()


class PullSecrets:
    """The keyring of a pod: its own pull secrets, then its service account's, cached briefly."""

    def __init__(self, reader: ObjectReader, *, ttl_s: float, max_entries: int = 4096) -> None:
        self._reader = reader
        self._ttl_s = ttl_s
        # What was read (an account's secret names, a Secret's keyring, or "not found") is kept for
        # ttl_s; errors are not, so the next request tries again.
        self._accounts: TTLCache[tuple[str, str], tuple[str, ...] | str] = TTLCache(max_entries)
        self._keyrings: TTLCache[tuple[str, str], Keyring | str] = TTLCache(max_entries)

    def for_pod(
        self, namespace: str, service_account: str, secret_names: tuple[str, ...], deadline: Deadline
    ) -> PodKeyring:
        notes: list[str] = []
        names = list(secret_names)
        from_account = self._account_secrets(namespace, service_account, deadline)
        if isinstance(from_account, str):
            notes.append(from_account)
        else:
            names += [n for n in from_account if n not in names]
        keyrings: list[Keyring] = []
        for name in names[:MAX_SECRETS_PER_POD]:
            ring = self._secret_keyring(namespace, name, deadline)
            if isinstance(ring, str):
                notes.append(ring)
            else:
                keyrings.append(ring)
        return PodKeyring(Keyring.merged(keyrings), tuple(n for n in notes if n))

    def _account_secrets(self, namespace: str, name: str, deadline: Deadline) -> tuple[str, ...] | str:
        cached = self._accounts.get((namespace, name))
        if cached is not None:
            return cached
        read = self._read("serviceaccount", namespace, name, deadline)
        if read.doc is None and not read.missing:
            return read.problem
        entries = (read.doc or {}).get("imagePullSecrets") or []
        found = tuple(
            e["name"]
            for e in entries[:MAX_SECRETS_PER_POD]
            if isinstance(e, dict) and isinstance(e.get("name"), str)
        )
        # A missing account is the API server's business (it refuses the pod), not a credential problem.
        self._accounts.put((namespace, name), found, self._ttl_s)
        return found

    def _secret_keyring(self, namespace: str, name: str, deadline: Deadline) -> Keyring | str:
        cached = self._keyrings.get((namespace, name))
        if cached is not None:
            return cached
        read = self._read("secret", namespace, name, deadline)
        if read.doc is None:
            problem = f"pull {read.problem}"  # "pull secret NS/NAME not found", ...
            if not read.missing:
                return problem
            ring: Keyring | str = problem
        else:
            try:
                ring = Keyring.from_secret(read.doc)
            except ConfigError as exc:
                ring = f"pull secret {namespace}/{name} is not usable: {exc}"
        self._keyrings.put((namespace, name), ring, self._ttl_s)
        return ring

    def _read(self, kind: str, namespace: str, name: str, deadline: Deadline) -> _Read:
        timeout_s = min(API_TIMEOUT_S, deadline.remaining_s())
        if timeout_s <= 0.05:
            return _Read(None, f"{kind} {namespace}/{name} not read: out of time")
        read = self._reader.read(kind, namespace, name, timeout_s)
        if read.problem and not read.missing:
            log.warning("pull secrets: %s", read.problem)
        return read

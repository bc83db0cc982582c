"""``referee serve``: the Flask app under gunicorn, over TLS, as it runs in a cluster; requests are
read by the worker's event loop before a thread serves them (``worker.py``).

The config is validated and the trust material loaded before gunicorn starts, so a bad file fails
the command at once with a message rather than workers that crash in a loop.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import ssl
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from webhook.config import Config, load_config
from webhook.errors import ConfigError
from webhook.registry.credfiles import docker_config_files
from webhook.reloading import Reloading, file_stamp
from webhook.server.clientauth import read_ca_file
from webhook.server.health import serve_in_thread, wait_for_trust
from webhook.server.pullsecrets import KubernetesReader
from webhook.server.worker import BoundedThreadWorker
from webhook.trust.files import TrustFiles
from webhook.verify.policy import PolicyFile

log = logging.getLogger(__name__)

KEEPALIVE_S = 20  # an idle kept-alive connection is closed after this long
MAX_CONNECTIONS_PER_WORKER = 1000  # open connections, kept-alive and being read included
REQUEST_READ_TIMEOUT_S = 5.0  # the TLS handshake, headers and body of one request


class TlsFiles:
    """The serving certificate and key (and the client CAs), re-read when they change on disk
    (cert-manager, a rotated Secret): the workers ask for the TLS context on every new connection,
    and get the one built from the files as they are now. A half-written pair keeps
    the previous context (``Reloading``)."""

    def __init__(self, client_ca_files: tuple[Path, ...] = ()) -> None:
        self._client_ca_files = client_ca_files  # every group's client CA (tls.clientAuth)
        self._lock = threading.Lock()
        self._contexts: Reloading[ssl.SSLContext] | None = None

    def __call__(self, conf: Any, factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        with self._lock:
            if self._contexts is None:
                files = [Path(conf.certfile), Path(conf.keyfile), *self._client_ca_files]
                self._contexts = Reloading(
                    "TLS certificate",
                    lambda: file_stamp(files),
                    lambda: self._build(factory),
                    check_every_s=0,
                )
        return self._contexts.current()

    def _build(self, factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        try:
            context = factory()
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            for ca_file in self._client_ca_files:
                context.load_verify_locations(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"TLS files cannot be loaded: {exc}") from None
        return context


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, config: Config) -> None:
        self._config = config
        super().__init__()

    def load_config(self) -> None:
        c = self._config
        host, port = c.host_port
        settings: dict[str, Any] = {
            "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
            "workers": c.workers,
            "threads": c.threads,
            # gthread, but a request is read in full by the worker's event loop before a thread
            # is given to it (webhook/server/worker.py): slow clients cost no thread.
            "worker_class": "webhook.server.worker.BoundedThreadWorker",
            "keepalive": KEEPALIVE_S,
            "worker_connections": MAX_CONNECTIONS_PER_WORKER,
            "timeout": int(c.admission_timeout_s) + 20,
            "graceful_timeout": 10,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": c.log_level,
            "control_socket_disable": True,
            "child_exit": _child_exit,
        }
        if c.health_port:
            settings["post_worker_init"] = _health_thread(host, c.health_port)
        if c.tls_cert_file and c.tls_key_file:
            settings["certfile"] = str(c.tls_cert_file)
            settings["keyfile"] = str(c.tls_key_file)
            client_cas = tuple(a.ca_file for a in (c.admission_client, c.provider_client) if a is not None)
            settings["ssl_context"] = TlsFiles(client_cas)
            if client_cas:
                # Ask every client for a certificate and verify any it shows against every
                # group's CA; each group of endpoints then insists on one its own CA issued.
                settings["cert_reqs"] = ssl.CERT_OPTIONAL
        for key, value in settings.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)
        # Read by the workers, which gunicorn forks from this process.
        BoundedThreadWorker.read_timeout_s = min(REQUEST_READ_TIMEOUT_S, c.deadline_s)
        BoundedThreadWorker.max_request_bytes = c.max_body_bytes * 8  # oversized: read so far, then refused

    def load(self) -> Any:
        from webhook.server.app import create_app  # noqa: PLC0415 (in the worker, after the metrics directory is set)

        return create_app(self._config)


def _health_thread(host: str, port: int) -> Callable[[Any], None]:
    """In each worker, once its app is loaded: the probes on their own port and thread."""

    def start(worker: Any) -> None:
        serve_in_thread(host, port, worker.wsgi.extensions["referee.readiness"])

    return start


def _child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess  # noqa: PLC0415

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


# glibc's mallopt parameters: M_MMAP_THRESHOLD (-3) and M_ARENA_MAX (-8).
_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8
_MMAP_THRESHOLD_BYTES = 128 << 10


def _tune_malloc() -> None:
    """Large buffers (a manifest near its cap) straight from mmap and back to the system when freed,
    and few arenas: by default glibc raises its mmap threshold after each such buffer is freed and
    keeps later ones in per-thread arenas, where a worker's resident memory stays near its peak."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return  # not glibc: nothing to tune
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
    mallopt(_M_ARENA_MAX, 2)


def serve(config_path: Path) -> None:
    config = load_config(config_path)
    _tune_malloc()  # before gunicorn forks its workers, which inherit it
    # Metrics from every worker are added up at /metrics (prometheus-client multiprocess mode).
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="referee-metrics-")
    else:  # a mounted folder (the container image sets one): created if needed, emptied of old runs
        Path(metrics_dir).mkdir(parents=True, exist_ok=True)
        for stale in Path(metrics_dir).glob("*.db"):
            stale.unlink()
    logging.basicConfig(level=config.log_level.upper(), format="%(message)s")
    # Fail now, not in every worker: trust material and credentials files must be readable. With a
    # health port, trust material that cannot be loaded makes Referee wait, unready, saying why.
    if config.health_port:
        wait_for_trust(config.host_port[0], config.health_port,
                       lambda: TrustFiles(config.trust_policy, config.trust_store))  # fmt: skip
    else:
        TrustFiles(config.trust_policy, config.trust_store)
    PolicyFile(config.policy)
    docker_config_files([Path(r.docker_config) for r in config.registries.values() if r.docker_config])
    for auth in (config.admission_client, config.provider_client):
        if auth is not None:
            read_ca_file(auth.ca_file)
    if config.shared_cache_url:
        from webhook.server.app import shared_settings  # noqa: PLC0415 (Flask is for the workers)

        shared_settings(config)  # the signing key, the password and the CA files
    if config.pull_secrets:
        KubernetesReader(config.kubeconfig)  # the kubeconfig, or the pod's service account token
    if not (config.tls_cert_file and config.tls_key_file):
        logging.getLogger(__name__).warning(
            "serving WITHOUT TLS: the API server and Gatekeeper require HTTPS"
        )
    for path in (config.tls_cert_file, config.tls_key_file):
        if path is not None and not path.is_file():
            raise ConfigError(f"TLS file {path} does not exist")
    _log_exemptions(config)
    _Gunicorn(config).run()


def _log_exemptions(config: Config) -> None:
    """Anything that weakens checks is said at start-up."""
    if config.namespace:
        log.info("Referee's own namespace %s is exempt", config.namespace)
    else:
        log.warning("Referee's own namespace is not known (set POD_NAMESPACE or namespace): none is exempt")
    if config.exempt_namespaces:
        log.info("exempt namespaces: %s", ", ".join(config.exempt_namespaces))
    if config.exempt_images:
        log.info("exempt images: %s", ", ".join(p.text for p in config.exempt_images))
    if config.mode == "audit":
        log.warning("mode audit: images that fail verification are admitted with a warning")
    if config.pull_secrets and config.trust_unauthenticated_callers:
        log.warning("pull secrets are read for callers that present no client certificate")

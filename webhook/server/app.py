"""The HTTP service: ``create_app(config)`` builds the Flask app that gunicorn serves.

Routes are thin: who calls (``clientauth``), the body (``body``), what to do with it (``handlers``),
the answer. Nothing is read or loaded at import time.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from flask import Flask, Response, request

from webhook.config import Config, load_config
from webhook.errors import RefereeError
from webhook.metrics import exposition, metrics
from webhook.registry.client import ClientSettings, HostSettings, RegistryClient
from webhook.registry.credfiles import docker_config_files
from webhook.server import provider as provider_protocol
from webhook.server.admission import AdmissionError, review_response
from webhook.server.body import Unreadable, read_json_bytes, read_review
from webhook.server.clientauth import Caller, ClientCheck
from webhook.server.handlers import admit, log_decision, log_refusal, pin, provide, refuse, result_of
from webhook.server.memo import AnswerMemo
from webhook.server.pullsecrets import KubernetesReader, PullSecrets
from webhook.shared.redis_store import RedisStore, SharedOutages, StoreSettings, read_settings
from webhook.trust.files import TrustFiles
from webhook.trust.revocation import HttpRevocationSource
from webhook.verify import records
from webhook.verify.cache import SharedStore, TTLCache, TwoLevelCache
from webhook.verify.decision import Decision
from webhook.verify.gate import Gate
from webhook.verify.policy import Policy, PolicyFile

log = logging.getLogger("referee.admission")

# Verification threads per worker. They wait on registries far more than they compute, so there are
# more of them than request threads: at most half of them serve one registry host (the gate's
# per-host cap), 20 at the least, so a pod's 20 images on one registry go out in one wave, and a
# registry that stalls holds only its half. Memory bounds the cap: each image in flight on a registry
# built to cost memory holds about 9 MiB, and 32 per host took a worker to 320 MiB under the hostile
# benchmark (its budget is 256 MiB; 20 per host: 240 MiB, 8: 152 MiB).
VERIFY_THREADS_MIN = 40
VERIFY_THREADS_PER_REQUEST_THREAD = 5


def build_gate(config: Config) -> Gate:
    """Everything that talks to registries and holds trust material, made once per worker."""
    hosts = {
        host: HostSettings(plain_http=r.plain_http, ca_file=r.ca_file, token_realms=r.token_realms)
        for host, r in config.registries.items()
    }
    credentials = docker_config_files(
        [Path(r.docker_config) for r in config.registries.values() if r.docker_config]
    )
    client = RegistryClient(ClientSettings(hosts=hosts))
    client.on_response = lambda method, status: metrics().registry_requests.labels(method, str(status)).inc()
    shared = _shared_caches(config, client)
    return Gate(
        client,
        TrustFiles(config.trust_policy, config.trust_store),
        credentials=credentials,
        verdict_ttl_s=config.verdict_ttl_s,
        denied_ttl_s=config.denied_ttl_s,
        tag_ttl_s=config.tag_ttl_s,
        max_entries=config.cache_max_entries,
        max_signatures=config.max_signatures,
        revocation=HttpRevocationSource(network=not config.revocation_offline, crl_files=config.crl_files),
        policy=Policy.from_config(config),
        workers=max(VERIFY_THREADS_MIN, config.threads * VERIFY_THREADS_PER_REQUEST_THREAD),
        statements=PolicyFile(config.policy),
        **shared,
    )


def _shared_caches(config: Config, client: RegistryClient) -> dict[str, Any]:
    """With ``cache.shared.url``: the verdict and tag caches backed by Redis, the registry hosts'
    outages shared, and the store's state for /readyz (Gate keyword arguments); else nothing."""
    if not config.shared_cache_url:
        return {}
    store = RedisStore(shared_settings(config))
    client.health.share(SharedOutages(store))
    return {**shared_caches(store, config.cache_max_entries), "shared_state": store.state}


def shared_caches(store: SharedStore, max_entries: int) -> dict[str, Any]:
    """The gate's verdict and tag caches: local first, then ``store`` (Gate keyword arguments)."""
    verdicts: TwoLevelCache[tuple[str, str, str], Decision] = TwoLevelCache(
        TTLCache(max_entries), store, "verdict",
        name=records.name_of, encode=records.verdict_record, decode=records.verdict_from,
    )  # fmt: skip
    tags: TwoLevelCache[tuple[str, str], str] = TwoLevelCache(
        TTLCache(max_entries), store, "tag",
        name=records.name_of, encode=records.tag_record, decode=records.tag_from,
    )  # fmt: skip
    return {"verdicts": verdicts, "tags": tags}


def shared_settings(config: Config) -> StoreSettings:
    """The shared cache's settings with its files read (a ConfigError names the key at fault)."""
    return read_settings(
        config.shared_cache_url,
        signing_key_file=config.shared_cache_signing_key_file,
        password_file=config.shared_cache_password_file,
        ca_file=config.shared_cache_ca_file,
        key_prefix=config.shared_cache_key_prefix,
        budget_ms=config.shared_cache_budget_ms,
    )


def _warm_up() -> None:
    """Load now what the worker's first request would otherwise load (about 30 ms of CPU, paid by
    the first cold admission): prometheus-client and the metric objects (the metrics directory is
    set by now: this runs in the worker), the codec the socket module encodes host names with, and
    the OpenSSL backend cryptography loads on its first signature check."""
    import encodings.idna  # noqa: F401, PLC0415

    from cryptography.hazmat.backends import default_backend  # noqa: PLC0415

    default_backend()
    metrics()


def _dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(_dumps(body), status=status, mimetype="application/json")


def create_app(config: Config | None = None) -> Flask:
    """The app; without a config, the file named by REFEREE_CONFIG is read."""
    if config is None:
        config = load_config(Path(os.environ.get("REFEREE_CONFIG", "/etc/referee/config.yaml")))
    gate = build_gate(config)
    _warm_up()
    policy = Policy.from_config(config)
    secrets = (
        PullSecrets(KubernetesReader(config.kubeconfig), ttl_s=config.pull_secret_ttl_s)
        if config.pull_secrets
        else None
    )
    callers = _Callers(config, secrets)
    app = Flask("referee")
    # For the health thread (webhook.server.health): the same answer as /readyz, ready once the
    # app exists (its gate has loaded the trust material).
    app.extensions["referee.readiness"] = lambda: (True, _readiness(gate))

    @app.get("/healthz")
    def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        _certificate_expiry(config)
        body, content_type = exposition()
        return Response(body, mimetype=None, content_type=content_type)

    @app.get("/readyz")
    def readyz() -> Response:
        return _json(_readiness(gate))

    @app.errorhandler(_Forbidden)
    def forbidden(exc: _Forbidden) -> Response:
        metrics().decisions.labels(request.path.strip("/"), "forbidden").inc()
        return _json({"error": str(exc)}, 403)

    @app.errorhandler(AdmissionError)
    def bad_request(exc: AdmissionError) -> Response:
        metrics().decisions.labels(request.path.strip("/"), "bad_request").inc()
        return _json({"error": str(exc)}, 400)

    @app.post("/validate")
    def validate() -> Response:
        started = time.monotonic()
        caller_secrets = callers.admission()
        body = read_review(config.max_body_bytes)
        if isinstance(body, Unreadable):
            answer = refuse(body.uid, body.problem, config)
            log_refusal(body, answer, started)
            return _json(answer)
        answer, decisions = admit(body, config, policy, gate, caller_secrets)
        log_decision(body, answer, decisions, started)
        metrics().decisions.labels("validate", result_of(answer)).inc()
        return _json(answer)

    @app.post("/mutate")
    def mutate() -> Response:
        if not config.mutate:
            return _json({"error": "digest pinning is not enabled (set mutate: true)"}, 404)
        caller_secrets = callers.admission()
        body = read_review(config.max_body_bytes)
        if isinstance(body, Unreadable):
            # Pinning never refuses: the validating webhook denies what cannot be checked.
            return _json(review_response(body.uid, allowed=True))
        answer = pin(body, config, policy, gate, caller_secrets)
        metrics().decisions.labels(
            "mutate", "patched" if "patch" in answer["response"] else "unchanged"
        ).inc()
        return _json(answer)

    _provider_routes(app, config, gate, callers)
    return app


def _provider_routes(app: Flask, config: Config, gate: Gate, callers: _Callers) -> None:
    """Gatekeeper's external data; an answer that may be reused is kept (``memo``) for the worker's
    event loop to send again to an identical request (``referee.kept_answer``)."""
    memo = AnswerMemo()

    def provider_answer(pin: bool) -> Response:
        who = callers.provider_caller()
        caller_secrets = None if pin else callers.secrets_for(who)
        generation = gate.generation()  # taken before deciding: a reload meanwhile is a miss later
        doc, data = read_json_bytes(config.max_body_bytes)
        keys = provider_protocol.parse_request(doc, namespaced=not pin)
        answer, reusable_s = provide(keys, config, gate, caller_secrets, pin=pin)
        body = _dumps(answer)
        if caller_secrets is None:  # an answer that read pull secrets is never kept
            memo.put((request.path, who.authenticated, data), body, len(keys), generation, reusable_s)
        return Response(body, mimetype="application/json")

    @app.post("/provider")
    def provider() -> Response:
        return provider_answer(pin=False)

    @app.post("/provider/mutate")
    def provider_mutate() -> Response:
        return provider_answer(pin=True)

    def kept_answer(path: str, body: bytes, peer_der: bytes | None) -> bytes | None:
        """For the worker's event loop: the kept answer to an identical ProviderRequest, or None
        (then the request is served as usual, which also answers 403 to a caller it refuses).
        Counted as the usual answer from cached verdicts is: a verdict cache hit and a decision
        timed in the histogram per image, one answered ProviderRequest."""
        if path not in ("/provider", "/provider/mutate"):
            return None
        started = time.monotonic()
        who = callers.provider_caller_of(peer_der)
        if who is None or (path == "/provider" and callers.secrets_for(who) is not None):
            return None
        kept = memo.get((path, who.authenticated, body), gate.generation())
        if kept is None:
            return None
        answer, images = kept
        decided = metrics().verify_seconds.labels("allowed")
        took_s = time.monotonic() - started
        for _ in range(images):
            decided.observe(took_s)
        metrics().cache.labels("verdict", "hit").inc(images)
        metrics().decisions.labels("provider", "answered").inc()
        return answer

    app.extensions["referee.kept_answer"] = kept_answer


class _Callers:
    """Who calls: authenticated by a client certificate (``tls.clientAuth``), or not asked to be.
    A group that requires a certificate answers 403 to a client without a valid one. Pull secrets
    are read only for a caller that proved who it is (or when the operator chose to trust every
    caller): anyone else could name any namespace and have its Secrets used."""

    def __init__(self, config: Config, secrets: PullSecrets | None) -> None:
        self._secrets = secrets
        self._trust_all = config.trust_unauthenticated_callers
        self._admission = (
            ClientCheck(config.admission_client, "/validate and /mutate") if config.admission_client else None
        )
        self._provider = ClientCheck(config.provider_client, "/provider") if config.provider_client else None

    def admission(self) -> PullSecrets | None:
        return self.secrets_for(self._check(self._admission))

    def provider_caller(self) -> Caller:
        return self._check(self._provider)

    def provider_caller_of(self, der: bytes | None) -> Caller | None:
        """The /provider caller with this client certificate, or None when it would be refused."""
        if self._provider is None:
            return Caller(False)
        who = self._provider.check(der)
        return who if who.authenticated else None

    def secrets_for(self, who: Caller) -> PullSecrets | None:
        return self._secrets if who.authenticated or self._trust_all else None

    @staticmethod
    def _check(check: ClientCheck | None) -> Caller:
        if check is None:
            return Caller(False)
        sock = request.environ.get("gunicorn.socket")
        der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
        who = check.check(der)
        if not who.authenticated:
            log.warning("refused a call to %s: %s", request.path, who.problem)
            raise _Forbidden(who.problem)
        return who


def _certificate_expiry(config: Config) -> None:
    """The serving certificate's end, read from disk at each scrape (what the next connection gets),
    for an alert before it lapses. A file that cannot be read leaves the last value."""
    if config.tls_cert_file is None:
        return
    try:
        cert = x509.load_pem_x509_certificate(config.tls_cert_file.read_bytes())
    except (OSError, ValueError):
        return
    metrics().certificate_expiry.set(cert.not_valid_after_utc.timestamp())


def _readiness(gate: Gate) -> dict[str, Any]:
    trust_error, credentials_error = gate.reload_errors()
    material = gate.trust_material()
    body: dict[str, Any] = {"status": "ready", "trust": material.fingerprint[:12]}
    # Still ready: the last valid material is in use. Say why the new one is not.
    if trust_error:
        body["trustReloadError"] = trust_error
    if credentials_error:
        body["credentialsReloadError"] = credentials_error
    if material.warnings:
        body["trustWarnings"] = list(material.warnings)
    policy_error = gate.policy_reload_error()
    if policy_error:
        body["policyReloadError"] = policy_error
    shared = gate.shared_cache_state()
    if shared:  # still ready when Redis is down: the local cache answers, decisions do not change
        body["sharedCache"] = shared
    return body


class _Forbidden(RefereeError):
    """Answered with HTTP 403: the caller did not authenticate as the endpoint requires."""

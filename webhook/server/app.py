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
from webhook.server.body import Unreadable, read_json, read_review
from webhook.server.clientauth import Caller, ClientCheck
from webhook.server.handlers import admit, log_decision, log_refusal, pin, provide, refuse, result_of
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
        workers=max(4, config.threads * 2),
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


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status=status, mimetype="application/json")


def create_app(config: Config | None = None) -> Flask:
    """The app; without a config, the file named by REFEREE_CONFIG is read."""
    if config is None:
        config = load_config(Path(os.environ.get("REFEREE_CONFIG", "/etc/referee/config.yaml")))
    gate = build_gate(config)
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

    @app.post("/provider")
    def provider() -> Response:
        caller_secrets = callers.provider()
        keys = provider_protocol.parse_request(read_json(config.max_body_bytes))
        return _json(provide(keys, config, gate, caller_secrets))

    @app.post("/provider/mutate")
    def provider_mutate() -> Response:
        callers.provider()
        keys = provider_protocol.parse_request(read_json(config.max_body_bytes), namespaced=False)
        return _json(provide(keys, config, gate, None, pin=True))

    return app


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
        return self._secrets_for(self._check(self._admission))

    def provider(self) -> PullSecrets | None:
        return self._secrets_for(self._check(self._provider))

    def _secrets_for(self, who: Caller) -> PullSecrets | None:
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

"""The HTTP service: ``create_app(config)`` builds the Flask app that gunicorn serves.

Handlers are thin: parse the AdmissionReview, ask the gate about its images, answer. Nothing is
read or loaded at import time.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import ssl
import time
import uuid
from pathlib import Path
from typing import Any

from flask import Flask, Response, request

from webhook import provider as provider_protocol
from webhook.admission import (
    AdmissionError,
    AdmissionRequest,
    PullSecretNames,
    images_of,
    parse_review,
    pin_patch,
    pull_secret_names,
    review_response,
)
from webhook.config import Config, load_config
from webhook.credfiles import docker_config_files
from webhook.deadline import Deadline
from webhook.kube import KubernetesReader, PodKeyring, PullSecrets
from webhook.metrics import exposition, metrics
from webhook.registry.client import ClientSettings, HostSettings, RegistryClient
from webhook.revocation_fetch import HttpRevocationSource
from webhook.trustfiles import TrustFiles
from webhook.verify import Gate, ImageDecision

log = logging.getLogger("referee.admission")


def build_gate(config: Config) -> Gate:
    """Everything that talks to registries and holds trust material, made once per worker."""
    hosts = {
        host: HostSettings(plain_http=r.plain_http, ca_file=r.ca_file)
        for host, r in config.registries.items()
    }
    credentials = docker_config_files(
        [Path(r.docker_config) for r in config.registries.values() if r.docker_config]
    )
    client = RegistryClient(ClientSettings(hosts=hosts))
    client.on_response = lambda method, status: metrics().registry_requests.labels(method, str(status)).inc()
    return Gate(
        client,
        TrustFiles(config.trust_policy, config.trust_store),
        credentials=credentials,
        verdict_ttl_s=config.verdict_ttl_s,
        tag_ttl_s=config.tag_ttl_s,
        max_entries=config.cache_max_entries,
        max_signatures=config.max_signatures,
        revocation=HttpRevocationSource(network=not config.revocation_offline, crl_files=config.crl_files),
        exempt_images=config.exempt_images,
        workers=max(4, config.threads * 2),
    )


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status=status, mimetype="application/json")


def _bad_request(message: str) -> Response:
    return _json({"error": message}, 400)


def create_app(config: Config | None = None) -> Flask:
    """The app; without a config, the file named by REFEREE_CONFIG is read."""
    if config is None:
        config = load_config(Path(os.environ.get("REFEREE_CONFIG", "/etc/referee/config.yaml")))
    gate = build_gate(config)
    secrets = (
        PullSecrets(KubernetesReader(config.kubeconfig), ttl_s=config.pull_secret_ttl_s)
        if config.pull_secrets
        else None
    )
    app = Flask("referee")

    @app.get("/healthz")
    def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        body, content_type = exposition()
        return Response(body, mimetype=None, content_type=content_type)

    @app.get("/readyz")
    def readyz() -> Response:
        trust_error, credentials_error = gate.reload_errors()
        body = {"status": "ready", "trust": gate.trust_material().fingerprint[:12]}
        # Still ready: the last valid material is in use. Say why the new one is not.
        if trust_error:
            body["trustReloadError"] = trust_error
        if credentials_error:
            body["credentialsReloadError"] = credentials_error
        return _json(body)

    @app.errorhandler(AdmissionError)
    def bad_review(exc: AdmissionError) -> Response:
        metrics().decisions.labels(request.path.strip("/"), "bad_request").inc()
        if isinstance(exc, _Forbidden):
            return _json({"error": str(exc)}, 403)
        return _bad_request(str(exc))

    @app.post("/validate")
    def validate() -> Response:
        started = time.monotonic()
        review = parse_review(_read_json(config.max_body_bytes))
        answer, decisions = _admit(review, config, gate, secrets)
        _log_decision(review, answer, decisions, started)
        metrics().decisions.labels("validate", "allowed" if answer["response"]["allowed"] else "denied").inc()
        return _json(answer)

    @app.post("/mutate")
    def mutate() -> Response:
        if not config.mutate:
            return _json({"error": "digest pinning is not enabled (set mutate: true)"}, 404)
        review = parse_review(_read_json(config.max_body_bytes))
        answer = _pin(review, config, gate, secrets)
        metrics().decisions.labels(
            "mutate", "patched" if "patch" in answer["response"] else "unchanged"
        ).inc()
        return _json(answer)

    @app.post("/provider")
    def provider() -> Response:
        _require_client_certificate(config)
        keys = provider_protocol.parse_request(_read_json(config.max_body_bytes))
        return _json(_provide(keys, config, gate, secrets))

    @app.post("/provider/mutate")
    def provider_mutate() -> Response:
        _require_client_certificate(config)
        keys = provider_protocol.parse_request(_read_json(config.max_body_bytes))
        return _json(_provide(keys, config, gate, secrets, pin=True))

    return app


class _Forbidden(AdmissionError):
    """Answered with HTTP 403."""


def _require_client_certificate(config: Config) -> None:
    """With ``tls.clientCAFile``, the provider answers only clients whose certificate that CA signed
    (Gatekeeper presents its own); the TLS layer has already verified any certificate it shows."""
    if config.tls_client_ca_file is None:
        return
    sock = request.environ.get("gunicorn.socket")
    peer = sock.getpeercert() if isinstance(sock, ssl.SSLSocket) else None
    if not peer:
        raise _Forbidden("this endpoint requires a client certificate issued by the configured client CA")


def _decide(
    gate: Gate,
    secrets: PullSecrets | None,
    images: list[str],
    deadline: Deadline,
    *,
    namespace: str,
    pull: PullSecretNames | None,
) -> list[ImageDecision]:
    """The gate's decisions, with the pod's pull secrets when Referee reads them. Where an image could
    not be checked and a pull secret could not be used, the reason says so."""
    if not images:
        return []
    found: PodKeyring | None = None
    if secrets is not None and namespace and pull is not None:
        found = secrets.for_pod(namespace, pull.service_account, pull.secrets, deadline)
    decisions = gate.decide(images, deadline, found.keyring if found else None)
    if found is None or not found.notes:
        return decisions
    note = " (pull secrets: " + "; ".join(found.notes) + ")"
    return [dataclasses.replace(d, reason=d.reason + note) if d.inconclusive else d for d in decisions]


def _provide(
    keys: list[provider_protocol.Key],
    config: Config,
    gate: Gate,
    secrets: PullSecrets | None,
    *,
    pin: bool = False,
) -> dict[str, Any]:
    exempt = {
        k.key for k in keys if k.namespace and k.namespace in (config.namespace, *config.exempt_namespaces)
    }
    deadline = Deadline.after(config.provider_deadline_s)
    decisions: dict[tuple[str, str], ImageDecision] = {}
    # Keys of one namespace share that namespace's default service account's pull secrets.
    by_namespace: dict[str, list[str]] = {}
    for k in keys:
        if k.key not in exempt:
            by_namespace.setdefault(k.namespace, []).append(k.image)
    for namespace, images in by_namespace.items():
        names = PullSecretNames("default", ()) if namespace else None
        for d in _decide(gate, secrets, images, deadline, namespace=namespace, pull=names):
            decisions[(namespace, d.image)] = d
    items: list[dict[str, Any]] = []
    transient: list[str] = []
    for k in keys:
        if k.key in exempt:
            items.append({"key": k.key, "value": k.image if pin else _value(None, "exempt namespace")})
            continue
        d = decisions[(k.namespace, k.image)]
        if not d.allowed:
            items.append({"key": k.key, "error": d.describe()})
            if d.inconclusive:
                transient.append(d.describe())
        elif pin:
            pinned = k.image if "@" in k.image or not d.digest else f"{k.image}@{d.digest}"
            items.append({"key": k.key, "value": pinned})
        else:
            items.append({"key": k.key, "value": _value(d, d.reason)})
    metrics().decisions.labels("provider", "system_error" if transient else "answered").inc()
    return provider_protocol.response(items, "; ".join(transient))


def _value(d: ImageDecision | None, reason: str) -> dict[str, Any]:
    return {
        "verified": True,
        "digest": d.digest if d else None,
        "signer": {"subject": d.signer_subject, "issuer": d.signer_issuer}
        if d and d.signer_subject
        else None,
        "signingTime": d.signing_time if d else "",
        "signingScheme": d.signing_scheme if d else "",
        "reason": reason,
    }


def _pin(review: AdmissionRequest, config: Config, gate: Gate, secrets: PullSecrets | None) -> dict[str, Any]:
    """Allowed always (the validating webhook decides); a patch pins the images that verified."""
    annotations = ((review.object or {}).get("metadata") or {}).get("annotations") or {}
    exempt = review.namespace in (config.namespace, *config.exempt_namespaces)
    if exempt or review.operation not in ("CREATE", "UPDATE") or "kubernetes.io/config.mirror" in annotations:
        return review_response(review.uid, allowed=True)
    uses = images_of(review.group, review.kind, review.object)
    images = [u.image for u in uses if u.image and "@" not in u.image][: config.max_images_per_request]
    pull = pull_secret_names(review.group, review.kind, review.object)
    deadline = Deadline.after(config.deadline_s)
    decisions = _decide(gate, secrets, images, deadline, namespace=review.namespace, pull=pull)
    digests = {d.image: d.digest for d in decisions if d.allowed and d.digest}
    ops = pin_patch(uses, digests)
    if not ops:
        return review_response(review.uid, allowed=True)
    patch = base64.b64encode(json.dumps(ops, separators=(",", ":")).encode()).decode()
    return review_response(review.uid, allowed=True, patch=patch)


def _read_json(max_bytes: int) -> Any:
    """The request body as JSON; ``AdmissionError`` (HTTP 400) when it is too large or not JSON."""
    length = request.content_length
    if length is None or length > max_bytes:
        _drain(length or 0, max_bytes * 8)
        raise AdmissionError(f"the request body must have a Content-Length of at most {max_bytes} bytes")
    try:
        return json.loads(request.get_data(cache=False))
    except (ValueError, UnicodeDecodeError):
        raise AdmissionError("the request body is not JSON") from None


def _drain(length: int, cap: int) -> None:
    """Read and drop an oversized body (up to ``cap`` bytes) so the client gets our 400, not a reset."""
    left = min(length, cap)
    while left > 0:
        chunk = request.stream.read(min(left, 64 * 1024))
        if not chunk:
            break
        left -= len(chunk)


def _admit(
    review: AdmissionRequest, config: Config, gate: Gate, secrets: PullSecrets | None
) -> tuple[dict[str, Any], list[ImageDecision]]:
    if review.namespace and (
        review.namespace == config.namespace or review.namespace in config.exempt_namespaces
    ):
        return review_response(review.uid, allowed=True), []
    if review.operation not in ("CREATE", "UPDATE"):
        return review_response(review.uid, allowed=True), []
    uses = images_of(review.group, review.kind, review.object)
    problems = [f"{u.path} names no image" for u in uses if not u.image and review.kind == "Pod"]
    images = [u.image for u in uses if u.image]
    if len(set(images)) > config.max_images_per_request:
        problems.append(f"more than {config.max_images_per_request} distinct images in one object")
        images = []
    pull = pull_secret_names(review.group, review.kind, review.object)
    deadline = Deadline.after(config.deadline_s)
    decisions = _decide(gate, secrets, images, deadline, namespace=review.namespace, pull=pull)
    problems += [d.describe() for d in decisions if not d.allowed]
    if not problems:
        return review_response(review.uid, allowed=True), decisions
    what = f"referee: {review.display} not admitted: " if config.mode == "enforce" else "referee (audit): "
    if config.mode == "audit":
        return review_response(
            review.uid, allowed=True, warnings=tuple(what + p for p in problems)
        ), decisions
    return review_response(review.uid, allowed=False, message=what + "; ".join(problems)), decisions


def _log_decision(
    review: AdmissionRequest, answer: dict[str, Any], decisions: list[ImageDecision], started: float
) -> None:
    """One JSON line per decision: who, what, which images and digests, the verdict. Never the spec."""
    log.info(
        "%s",
        json.dumps(
            {
                "event": "admission",
                "id": str(uuid.uuid4()),
                "uid": review.uid,
                "object": review.display,
                "operation": review.operation,
                "dryRun": review.dry_run,
                "allowed": answer["response"]["allowed"],
                "images": [
                    {
                        "image": d.image,
                        "digest": d.digest,
                        "allowed": d.allowed,
                        "cached": d.cached,
                        "reason": d.reason,
                    }
                    for d in decisions
                ],
                "durationMs": round((time.monotonic() - started) * 1000, 1),
            },
            separators=(",", ":"),
        ),
    )

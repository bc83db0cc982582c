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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, Response, request

from webhook import provider as provider_protocol
from webhook.admission import (
    UID_PREFIX_BYTES,
    AdmissionError,
    AdmissionRequest,
    ImageUse,
    PullSecretNames,
    images_of,
    parse_review,
    pin_patch,
    pull_secret_names,
    review_response,
    uid_from_prefix,
    uid_of,
)
from webhook.clientauth import Caller, ClientCheck
from webhook.config import Config, load_config
from webhook.credfiles import docker_config_files
from webhook.deadline import Deadline
from webhook.errors import RefereeError
from webhook.kube import KubernetesReader, PodKeyring, PullSecrets
from webhook.metrics import exposition, metrics
from webhook.policy import Policy
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
        denied_ttl_s=config.denied_ttl_s,
        tag_ttl_s=config.tag_ttl_s,
        max_entries=config.cache_max_entries,
        max_signatures=config.max_signatures,
        revocation=HttpRevocationSource(network=not config.revocation_offline, crl_files=config.crl_files),
        policy=Policy.from_config(config),
        workers=max(4, config.threads * 2),
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

    @app.get("/healthz")
    def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
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
        body = _read_review(config.max_body_bytes)
        if isinstance(body, _Unreadable):
            answer = _refuse(body.uid, body.problem, config)
            _log_refusal(body, answer, started)
            return _json(answer)
        answer, decisions = _admit(body, config, policy, gate, caller_secrets)
        _log_decision(body, answer, decisions, started)
        allowed = answer["response"]["allowed"]
        metrics().decisions.labels("validate", "allowed" if allowed else "denied").inc()
        return _json(answer)

    @app.post("/mutate")
    def mutate() -> Response:
        if not config.mutate:
            return _json({"error": "digest pinning is not enabled (set mutate: true)"}, 404)
        caller_secrets = callers.admission()
        body = _read_review(config.max_body_bytes)
        if isinstance(body, _Unreadable):
            # Pinning never refuses: the validating webhook denies what cannot be checked.
            return _json(review_response(body.uid, allowed=True))
        answer = _pin(body, config, policy, gate, caller_secrets)
        metrics().decisions.labels(
            "mutate", "patched" if "patch" in answer["response"] else "unchanged"
        ).inc()
        return _json(answer)

    @app.post("/provider")
    def provider() -> Response:
        caller_secrets = callers.provider()
        keys = provider_protocol.parse_request(_read_json(config.max_body_bytes))
        return _json(_provide(keys, config, gate, caller_secrets))

    @app.post("/provider/mutate")
    def provider_mutate() -> Response:
        callers.provider()
        keys = provider_protocol.parse_request(_read_json(config.max_body_bytes), namespaced=False)
        return _json(_provide(keys, config, gate, None, pin=True))

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
    return body


class _Forbidden(RefereeError):
    """Answered with HTTP 403: the caller did not authenticate as the endpoint requires."""


@dataclass(frozen=True)
class _Unreadable:
    """A body that is not a review Referee can check: denied, with its uid when one can be read."""

    uid: str
    problem: str


def _read_review(max_bytes: int) -> AdmissionRequest | _Unreadable:
    length = request.content_length
    if length is None or length > max_bytes:
        prefix = _drain(length or 0, max_bytes * 8)
        what = "has no Content-Length" if length is None else f"is {length} bytes"
        return _Unreadable(
            uid_from_prefix(prefix),
            f"the request {what}; Referee checks requests of at most {max_bytes} bytes (limits.maxBodyBytes)",
        )
    data = request.get_data(cache=False)
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return _Unreadable(uid_from_prefix(data), "the request body is not JSON")
    try:
        return parse_review(doc)
    except AdmissionError as exc:
        return _Unreadable(uid_of(doc), str(exc))


def _refuse(uid: str, problem: str, config: Config) -> dict[str, Any]:
    """What Referee will not check in full is not admitted (in audit mode: admitted, with a warning)."""
    if config.mode == "audit":
        return review_response(uid, allowed=True, warnings=(f"referee (audit): not checked: {problem}",))
    return review_response(uid, allowed=False, message=f"referee: not admitted: {problem}")


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
    """Every key is decided: no content of a key makes an image exempt (namespace exemptions on
    the Gatekeeper path are the constraints' ``match``)."""
    deadline = Deadline.after(config.provider_deadline_s)
    decisions: dict[tuple[str, str], ImageDecision] = {}
    # Keys of one namespace share that namespace's default service account's pull secrets.
    by_namespace: dict[str, list[str]] = {}
    for k in keys:
        by_namespace.setdefault(k.namespace, []).append(k.image)
    for namespace, images in by_namespace.items():
        names = PullSecretNames("default", ()) if namespace else None
        for d in _decide(gate, secrets, images, deadline, namespace=namespace, pull=names):
            decisions[(namespace, d.image)] = d
    items: list[dict[str, Any]] = []
    transient: list[str] = []
    for k in keys:
        d = decisions[(k.namespace, k.image)]
        if not d.allowed:
            items.append({"key": k.key, "error": d.describe()})
            if d.inconclusive:
                transient.append(d.describe())
        elif pin:
            pinned = k.image if "@" in k.image or not d.digest else f"{k.image}@{d.digest}"
            items.append({"key": k.key, "value": pinned})
        else:
            items.append({"key": k.key, "value": _value(d)})
    metrics().decisions.labels("provider", "system_error" if transient else "answered").inc()
    return provider_protocol.response(items, "; ".join(transient))


def _value(d: ImageDecision) -> dict[str, Any]:
    return {
        "verified": True,
        "digest": d.digest,
        "signer": {"subject": d.signer_subject, "issuer": d.signer_issuer} if d.signer_subject else None,
        "signingTime": d.signing_time,
        "signingScheme": d.signing_scheme,
        "reason": d.reason,
    }


def _images_to_check(review: AdmissionRequest) -> tuple[list[ImageUse], set[str]]:
    """The image positions of the object, and the images an UPDATE left as they were (already
    admitted: a label edit or a finalizer removal must not need the registry)."""
    uses = images_of(review.group, review.kind, review.object)
    unchanged: set[str] = set()
    if review.operation == "UPDATE" and review.old_object is not None:
        try:
            before = {u.image for u in images_of(review.group, review.kind, review.old_object) if u.image}
        except AdmissionError:
            before = set()
        unchanged = {u.image for u in uses if u.image in before}
    return uses, unchanged


def _pin(
    review: AdmissionRequest, config: Config, policy: Policy, gate: Gate, secrets: PullSecrets | None
) -> dict[str, Any]:
    """Allowed always (the validating webhook decides); a patch pins the images that verified.
    Images an UPDATE did not change are never re-pinned (that would restart their containers)."""
    annotations = ((review.object or {}).get("metadata") or {}).get("annotations") or {}
    if (
        policy.namespace_exempt(review.namespace)
        or not policy.operation_checked(review.operation)
        or "kubernetes.io/config.mirror" in annotations
    ):
        return review_response(review.uid, allowed=True)
    try:
        uses, unchanged = _images_to_check(review)
        pull = pull_secret_names(review.group, review.kind, review.object)
    except AdmissionError:
        return review_response(review.uid, allowed=True)  # /validate denies it
    uses = [u for u in uses if u.image not in unchanged]
    images = [u.image for u in uses if u.image and "@" not in u.image]
    images = list(dict.fromkeys(images))[: config.max_images_per_request]
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
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise AdmissionError("the request body is not JSON") from None


def _drain(length: int, cap: int) -> bytes:
    """Read and drop an oversized body (up to ``cap`` bytes) so the client gets our answer, not a
    reset; returns its first bytes (where the uid is)."""
    left = min(length, cap)
    prefix = b""
    while left > 0:
        chunk = request.stream.read(min(left, 64 * 1024))
        if not chunk:
            break
        if len(prefix) < UID_PREFIX_BYTES:
            prefix += chunk[: UID_PREFIX_BYTES - len(prefix)]
        left -= len(chunk)
    return prefix


def _admit(
    review: AdmissionRequest, config: Config, policy: Policy, gate: Gate, secrets: PullSecrets | None
) -> tuple[dict[str, Any], list[ImageDecision]]:
    if policy.namespace_exempt(review.namespace) or not policy.operation_checked(review.operation):
        return review_response(review.uid, allowed=True), []
    try:
        uses, unchanged = _images_to_check(review)
        pull = pull_secret_names(review.group, review.kind, review.object)
    except AdmissionError as exc:
        return _refuse(review.uid, f"{review.display}: {exc}", config), []
    problems = [f"{u.path} names no image" for u in uses if not u.image and review.kind == "Pod"]
    images = [u.image for u in uses if u.image and u.image not in unchanged]
    if len(set(images)) > config.max_images_per_request:
        problems.append(
            f"more than {config.max_images_per_request} distinct images in one object "
            "(limits.maxImagesPerRequest): none was checked"
        )
        images = []
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


def _log_refusal(body: _Unreadable, answer: dict[str, Any], started: float) -> None:
    metrics().decisions.labels("validate", "denied" if not answer["response"]["allowed"] else "allowed").inc()
    log.info(
        "%s",
        json.dumps(
            {
                "event": "admission",
                "id": str(uuid.uuid4()),
                "uid": body.uid,
                "allowed": answer["response"]["allowed"],
                "unchecked": body.problem,
                "durationMs": round((time.monotonic() - started) * 1000, 1),
            },
            separators=(",", ":"),
        ),
    )


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

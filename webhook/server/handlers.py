"""What each endpoint does with a parsed request: the images to check, Referee's policy, the gate's
decisions, and the answer in the shape its caller reads (AdmissionReview, ProviderResponse).
Texts for people are rendered here, from the decisions."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import time
import uuid
from typing import Any

from webhook.config import Config
from webhook.deadline import Deadline
from webhook.metrics import metrics
from webhook.server import provider as provider_protocol
from webhook.server.admission import (
    AdmissionError,
    AdmissionRequest,
    ImageUse,
    PullSecretNames,
    images_of,
    pin_patch,
    pull_secret_names,
    review_response,
)
from webhook.server.body import Unreadable
from webhook.server.pullsecrets import PodKeyring, PullSecrets
from webhook.verify.decision import Decision
from webhook.verify.gate import Gate
from webhook.verify.policy import Policy

log = logging.getLogger("referee.admission")


def admit(
    review: AdmissionRequest, config: Config, policy: Policy, gate: Gate, secrets: PullSecrets | None
) -> tuple[dict[str, Any], list[Decision]]:
    if policy.namespace_exempt(review.namespace) or not policy.operation_checked(review.operation):
        return review_response(review.uid, allowed=True), []
    try:
        uses, unchanged = _images_to_check(review)
        pull = pull_secret_names(review.group, review.kind, review.object)
    except AdmissionError as exc:
        return refuse(review.uid, f"not checked: {exc}", config, review.display), []
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


def pin(
    review: AdmissionRequest, config: Config, policy: Policy, gate: Gate, secrets: PullSecrets | None
) -> dict[str, Any]:
    """Allowed always (the validating webhook decides); a patch pins the images that verified.
    Images an UPDATE did not change are never re-pinned (that would restart their containers).
    Only the kinds of ``mutateKinds`` are pinned, and never an object a controller owns: its owner
    was pinned, and a ReplicaSet whose template no longer equals its Deployment's makes the
    Deployment controller create another one."""
    if (
        policy.namespace_exempt(review.namespace)
        or not policy.operation_checked(review.operation)
        or review.kind not in config.mutate_kinds
        or _left_alone(review.object)
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


def _left_alone(obj: Any) -> bool:
    """A mirror pod (the kubelet's copy of a static pod), or an object with a controller owner."""
    meta = (obj or {}).get("metadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict):
        return False
    annotations = meta.get("annotations")
    if isinstance(annotations, dict) and "kubernetes.io/config.mirror" in annotations:
        return True
    owners = meta.get("ownerReferences")
    return isinstance(owners, list) and any(
        isinstance(o, dict) and o.get("controller") is True for o in owners
    )


def provide(
    keys: list[provider_protocol.Key],
    config: Config,
    gate: Gate,
    secrets: PullSecrets | None,
    *,
    pin: bool = False,
) -> tuple[dict[str, Any], float]:
    """Every key is decided: no content of a key makes an image exempt (namespace exemptions on
    the Gatekeeper path are the constraints' ``match``). With the answer, how long it may be reused
    as it is: the shortest ``reusable_s`` of its decisions when every image was allowed, else 0."""
    deadline = Deadline.after(config.provider_mutation_deadline_s if pin else config.provider_deadline_s)
    decisions: dict[tuple[str, str], Decision] = {}
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
    every = decisions.values()
    reusable_s = min((d.reusable_s for d in every), default=0.0) if all(d.allowed for d in every) else 0.0
    return provider_protocol.response(items, "; ".join(transient)), reusable_s


def refuse(uid: str, problem: str, config: Config, display: str = "") -> dict[str, Any]:
    """What Referee will not check in full is not admitted (in audit mode: admitted, with a warning).
    ``display`` names the object when the review could be read."""
    if config.mode == "audit":
        return review_response(uid, allowed=True, warnings=(f"referee (audit): not checked: {problem}",))
    what = f"{display} not admitted" if display else "not admitted"
    return review_response(uid, allowed=False, message=f"referee: {what}: {problem}")


def _decide(
    gate: Gate,
    secrets: PullSecrets | None,
    images: list[str],
    deadline: Deadline,
    *,
    namespace: str,
    pull: PullSecretNames | None,
) -> list[Decision]:
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
    note = "pull secrets: " + "; ".join(found.notes)
    return [dataclasses.replace(d, notes=(*d.notes, note)) if d.inconclusive else d for d in decisions]


def _value(d: Decision) -> dict[str, Any]:
    return {
        "verified": True,
        "digest": d.digest,
        "signer": {"subject": d.signer_subject, "issuer": d.signer_issuer} if d.signer_subject else None,
        "signers": [{"subject": subject, "issuer": issuer} for subject, issuer in d.signers],
        "signingTime": d.signing_time,
        "signingScheme": d.signing_scheme,
        "reason": d.reason,
        "statement": d.statement,  # the Referee policy statement that applied ("" for none)
        "artifacts": [a.to_json() for a in d.artifacts],
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


def result_of(answer: dict[str, Any]) -> str:
    """The metric result of an AdmissionReview answer: an audit-mode admission that carries
    reasons as warnings is its own result, not an allow."""
    response = answer["response"]
    if not response["allowed"]:
        return "denied"
    return "audit" if response.get("warnings") else "allowed"


def log_refusal(body: Unreadable, answer: dict[str, Any], started: float) -> None:
    metrics().decisions.labels("validate", result_of(answer)).inc()
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


def log_decision(
    review: AdmissionRequest, answer: dict[str, Any], decisions: list[Decision], started: float
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

"""Kubernetes AdmissionReview (admission.k8s.io/v1): the request in, the images it runs, the answer out.

Pure: a parsed JSON document in, frozen dataclasses out; ``AdmissionError`` for anything that is
not a well-formed review or a spec Referee will not check in full. Such a request is *denied*
(``allowed: false``, with the request's uid whenever it can be read), never answered with an HTTP
error: under ``failurePolicy: Ignore`` an error admits the pod unchecked.

Where images live (``specs.md`` 4.5):

    Pod                                     spec
    ReplicationController, ReplicaSet, Deployment, StatefulSet, DaemonSet, Job, PodTemplate
                                            spec.template.spec   (PodTemplate: template.spec)
    CronJob                                 spec.jobTemplate.spec.template.spec

and within a pod spec: ``containers``, ``initContainers``, ``ephemeralContainers`` (their ``image``)
and ``volumes[].image.reference`` (image volumes).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook.errors import RefereeError

API_VERSION = "admission.k8s.io/v1"
MAX_CONTAINERS = 256  # per list; the API server's own limits are far below what this allows
MAX_MESSAGE_CHARS = 4000  # what a person can read in kubectl's error

_TEMPLATE_KINDS = {
    ("", "ReplicationController"),
    ("apps", "ReplicaSet"),
    ("apps", "Deployment"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("batch", "Job"),
}
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


class AdmissionError(RefereeError):
    """The body is not a well-formed AdmissionReview, or its object cannot be checked in full."""


_UID_RE = re.compile(rb'"uid"\s*:\s*"([A-Za-z0-9._:-]{1,128})"')
UID_PREFIX_BYTES = 64 * 1024


def uid_of(doc: Any) -> str:
    """The request's uid from a document that may not be a valid review ("" when there is none)."""
    request = doc.get("request") if isinstance(doc, dict) else None
    uid = request.get("uid") if isinstance(request, dict) else None
    return uid if isinstance(uid, str) and len(uid) <= 128 else ""


def uid_from_prefix(prefix: bytes) -> str:
    """The uid of a body too large (or too broken) to parse, from its first bytes. The API server
    writes ``request.uid`` before anything a pod author controls, so the first ``"uid"`` is it."""
    match = _UID_RE.search(prefix[:UID_PREFIX_BYTES])
    return match.group(1).decode() if match else ""


@dataclass(frozen=True)
class ImageUse:
    """One place in an object that names an image."""

    path: str  # e.g. spec.template.spec.containers[0].image
    image: str


@dataclass(frozen=True)
class AdmissionRequest:
    uid: str
    group: str
    version: str
    kind: str
    namespace: str
    name: str
    operation: str
    sub_resource: str
    dry_run: bool
    username: str
    object: Mapping[str, Any] | None = field(default=None, hash=False, repr=False)
    old_object: Mapping[str, Any] | None = field(default=None, hash=False, repr=False)

    @property
    def display(self) -> str:
        """``Kind namespace/name`` for logs and messages (never the object itself)."""
        name = self.name or _generate_name(self.object) or "(unnamed)"
        return f"{self.kind} {self.namespace}/{name}" if self.namespace else f"{self.kind} {name}"


def _generate_name(obj: Mapping[str, Any] | None) -> str:
    meta = (obj or {}).get("metadata")
    if isinstance(meta, dict):
        value = meta.get("name") or meta.get("generateName")
        if isinstance(value, str):
            return value
    return ""


def _string(value: Any, what: str, *, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise AdmissionError(f"AdmissionReview {what} must be a {'non-empty ' if required else ''}string")
    return value


def parse_review(doc: Any) -> AdmissionRequest:
    """Validate an AdmissionReview and return its request."""
    if not isinstance(doc, dict):
        raise AdmissionError("the body is not a JSON object")
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != "AdmissionReview":
        raise AdmissionError(
            f"expected apiVersion {API_VERSION} and kind AdmissionReview, "
            f"got {str(doc.get('apiVersion'))[:64]!r} and {str(doc.get('kind'))[:64]!r}"
        )
    request = doc.get("request")
    if not isinstance(request, dict):
        raise AdmissionError("AdmissionReview has no request object")
    kind = request.get("kind")
    if not isinstance(kind, dict):
        raise AdmissionError("AdmissionReview request.kind must be an object {group, version, kind}")
    obj, old = request.get("object"), request.get("oldObject")
    for what, value in (("request.object", obj), ("request.oldObject", old)):
        if value is not None and not isinstance(value, dict):
            raise AdmissionError(f"AdmissionReview {what} must be an object")
    user_info = request.get("userInfo")
    user: dict[str, Any] = user_info if isinstance(user_info, dict) else {}
    dry_run = request.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise AdmissionError("AdmissionReview request.dryRun must be a boolean")
    return AdmissionRequest(
        uid=_string(request.get("uid"), "request.uid", required=True),
        group=_string(kind.get("group"), "request.kind.group"),
        version=_string(kind.get("version"), "request.kind.version"),
        kind=_string(kind.get("kind"), "request.kind.kind", required=True),
        namespace=_string(request.get("namespace"), "request.namespace"),
        name=_string(request.get("name"), "request.name"),
        operation=_string(request.get("operation"), "request.operation", required=True),
        sub_resource=_string(request.get("subResource"), "request.subResource"),
        dry_run=dry_run,
        username=_string(user.get("username"), "request.userInfo.username"),
        object=obj,
        old_object=old,
    )


_PATHS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "Pod"): ("spec",),
    ("", "PodTemplate"): ("template", "spec"),
    **{kind: ("spec", "template", "spec") for kind in _TEMPLATE_KINDS},
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template", "spec"),
}


def _pod_spec(group: str, kind: str, obj: Mapping[str, Any]) -> tuple[str, Any] | None:
    """(path prefix, pod spec) of an object of a kind that runs pods; None for other kinds. A part
    of the path that is there but not an object is malformed (``AdmissionError``)."""
    path = _PATHS.get((group, kind))
    if path is None:
        return None
    node: Any = obj
    for i, part in enumerate(path):
        node = node.get(part)
        if node is None:
            break
        if not isinstance(node, dict):
            raise AdmissionError(f"{'.'.join(path[: i + 1])} must be an object")
    return ".".join(path), node


def runs_pods(group: str, kind: str) -> bool:
    return _pod_spec(group, kind, {}) is not None


def images_of(group: str, kind: str, obj: Mapping[str, Any] | None) -> list[ImageUse]:
    """Every image an object names, in spec order. Raises ``AdmissionError`` on a malformed spec."""
    if obj is None:
        return []
    found = _pod_spec(group, kind, obj)
    if found is None:
        return []
    prefix, spec = found
    if spec is None:
        return []
    if not isinstance(spec, dict):
        raise AdmissionError(f"{prefix} must be an object")
    return [*_container_images(prefix, spec), *_volume_images(prefix, spec)]


@dataclass(frozen=True)
class PullSecretNames:
    """Where the kubelet would find credentials to pull a pod's images: the pod's own
    ``imagePullSecrets`` and those of its service account (names only; the Secrets are read later)."""

    service_account: str  # "default" when the spec names none, as the API server fills it in
    secrets: tuple[str, ...]


MAX_SPEC_PULL_SECRETS = 32  # names read from one pod spec; far more than any real pod names


def pull_secret_names(group: str, kind: str, obj: Mapping[str, Any] | None) -> PullSecretNames | None:
    """The pull-secret names of an object that runs pods; None for other kinds. Malformed entries
    raise ``AdmissionError`` like malformed containers do."""
    found = _pod_spec(group, kind, obj or {})
    if found is None or not isinstance(found[1], dict):
        return None
    prefix, spec = found
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    if not isinstance(account, str):
        raise AdmissionError(f"{prefix}.serviceAccountName must be a string")
    entries = spec.get("imagePullSecrets") or []
    if not isinstance(entries, list):
        raise AdmissionError(f"{prefix}.imagePullSecrets must be a list")
    names: list[str] = []
    for i, entry in enumerate(entries[:MAX_SPEC_PULL_SECRETS]):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            raise AdmissionError(f"{prefix}.imagePullSecrets[{i}].name must be a string")
        if name and name not in names:
            names.append(name)
    return PullSecretNames(account, tuple(names))


def _container_images(prefix: str, spec: Mapping[str, Any]) -> list[ImageUse]:
    uses: list[ImageUse] = []
    for list_name in _CONTAINER_LISTS:
        containers = spec.get(list_name) or []
        if not isinstance(containers, list):
            raise AdmissionError(f"{prefix}.{list_name} must be a list")
        if len(containers) > MAX_CONTAINERS:
            raise AdmissionError(f"{prefix}.{list_name} has more than {MAX_CONTAINERS} entries")
        for i, container in enumerate(containers):
            if not isinstance(container, dict):
                raise AdmissionError(f"{prefix}.{list_name}[{i}] must be an object")
            image = container.get("image")
            if image is not None and not isinstance(image, str):
                raise AdmissionError(f"{prefix}.{list_name}[{i}].image must be a string")
            # An empty image in a template may be filled in later (by a controller or another
            # webhook); the pod that finally runs is checked then. Pods must name one.
            uses.append(ImageUse(f"{prefix}.{list_name}[{i}].image", image or ""))
    return uses


def _volume_images(prefix: str, spec: Mapping[str, Any]) -> list[ImageUse]:
    volumes = spec.get("volumes") or []
    if not isinstance(volumes, list):
        raise AdmissionError(f"{prefix}.volumes must be a list")
    uses: list[ImageUse] = []
    # Every volume is looked at: a cut-off would let an image volume hide behind many others. The
    # body size limit bounds the count; the distinct images are bounded by the caller.
    for i, volume in enumerate(volumes):
        source = volume.get("image") if isinstance(volume, dict) else None
        if isinstance(source, dict):
            reference = source.get("reference")
            if not isinstance(reference, str):
                raise AdmissionError(f"{prefix}.volumes[{i}].image.reference must be a string")
            uses.append(ImageUse(f"{prefix}.volumes[{i}].image.reference", reference))
    return uses


# --- the answer --------------------------------------------------------------------------------


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def review_response(
    uid: str,
    *,
    allowed: bool,
    message: str = "",
    warnings: tuple[str, ...] = (),
    patch: str | None = None,
    audit_annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An AdmissionReview response (``patch``: base64 of a JSON Patch, for the mutating webhook)."""
    response: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if not allowed:
        response["status"] = {
            "code": 403,
            "reason": "Forbidden",
            "message": _clip(message, MAX_MESSAGE_CHARS),
        }
    if warnings:
        # kubectl shows each as a "Warning:" line; the API server drops what exceeds 4096 bytes in all.
        response["warnings"] = [_clip(w, 256) for w in warnings[:16]]
    if patch is not None:
        response["patchType"] = "JSONPatch"
        response["patch"] = patch
    if audit_annotations:
        response["auditAnnotations"] = dict(audit_annotations)
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}


def json_pointer(path: str) -> str:
    """``spec.containers[0].image`` -> ``/spec/containers/0/image`` (RFC 6901)."""
    parts = []
    for part in path.replace("[", ".").replace("]", "").split("."):
        parts.append(part.replace("~", "~0").replace("/", "~1"))
    return "/" + "/".join(parts)


def pin_patch(uses: list[ImageUse], digests: Mapping[str, str]) -> list[dict[str, Any]]:
    """JSON Patch operations that pin each image in ``digests`` to its digest (``name:tag@digest``).

    Each replacement is guarded by a ``test`` of the current value, so a patch never overwrites an
    image that changed in between; images already pinned by digest are left alone.
    """
    ops: list[dict[str, Any]] = []
    for use in uses:
        digest = digests.get(use.image)
        if digest is None or "@" in use.image:
            continue
        pointer = json_pointer(use.path)
        ops.append({"op": "test", "path": pointer, "value": use.image})
        ops.append({"op": "replace", "path": pointer, "value": f"{use.image}@{digest}"})
    return ops

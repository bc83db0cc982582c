"""AdmissionReview parsing, the images of every workload kind, and the response shape."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from webhook.server.admission import (
    AdmissionError,
    PullSecretNames,
    images_of,
    parse_review,
    pull_secret_names,
    review_response,
    runs_pods,
    uid_from_prefix,
    uid_of,
)

POD_SPEC: dict[str, Any] = {
    "initContainers": [{"name": "init", "image": "registry.example/init:1"}],
    "containers": [
        {"name": "app", "image": "registry.example/app:1"},
        {"name": "side", "image": "registry.example/side@sha256:" + "a" * 64},
    ],
    "ephemeralContainers": [{"name": "debug", "image": "busybox"}],
    "volumes": [
        {"name": "data", "image": {"reference": "registry.example/data:1"}},
        {"name": "tmp", "emptyDir": {}},
    ],
}
IMAGES = [
    "registry.example/init:1",
    "registry.example/app:1",
    "registry.example/side@sha256:" + "a" * 64,
    "busybox",
    "registry.example/data:1",
]


def template(spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": "x"}}, "spec": spec}


KINDS: list[tuple[str, str, dict[str, Any], str]] = [
    ("", "Pod", {"spec": POD_SPEC}, "spec"),
    ("", "PodTemplate", {"template": template(POD_SPEC)}, "template.spec"),
    ("", "ReplicationController", {"spec": {"template": template(POD_SPEC)}}, "spec.template.spec"),
    ("apps", "ReplicaSet", {"spec": {"template": template(POD_SPEC)}}, "spec.template.spec"),
    ("apps", "Deployment", {"spec": {"template": template(POD_SPEC)}}, "spec.template.spec"),
    ("apps", "StatefulSet", {"spec": {"template": template(POD_SPEC)}}, "spec.template.spec"),
    ("apps", "DaemonSet", {"spec": {"template": template(POD_SPEC)}}, "spec.template.spec"),
    ("batch", "Job", {"spec": {"template": template(POD_SPEC)}}, "spec.template.spec"),
    ("batch", "CronJob", {"spec": {"jobTemplate": {"spec": {"template": template(POD_SPEC)}}}},
     "spec.jobTemplate.spec.template.spec"),
]  # fmt: skip


@pytest.mark.parametrize(("group", "kind", "obj", "prefix"), KINDS, ids=[k[1] for k in KINDS])
def test_images_of_every_workload_kind(group: str, kind: str, obj: dict[str, Any], prefix: str) -> None:
    uses = images_of(group, kind, obj)
    assert [u.image for u in uses] == IMAGES
    assert uses[0].path == f"{prefix}.initContainers[0].image"
    assert uses[-1].path == f"{prefix}.volumes[0].image.reference"
    assert runs_pods(group, kind)


def test_other_kinds_run_no_images() -> None:
    assert images_of("", "ConfigMap", {"data": {"image": "x"}}) == []
    assert images_of("apps", "Pod", {"spec": POD_SPEC}) == []  # the group matters
    assert not runs_pods("", "Service")


def test_template_without_image_is_reported_empty() -> None:
    uses = images_of("apps", "Deployment", {"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}})
    assert [(u.path, u.image) for u in uses] == [("spec.template.spec.containers[0].image", "")]


@pytest.mark.parametrize(
    ("spec", "phrase"),
    [
        ({"containers": {"name": "a"}}, "containers must be a list"),
        ({"containers": ["a"]}, "containers[0] must be an object"),
        ({"containers": [{"image": 5}]}, "containers[0].image must be a string"),
        ({"volumes": [{"image": {"reference": None}}]}, "volumes[0].image.reference"),
        ({"containers": [{"image": "a"}] * 257}, "more than 256"),
        ("spec", "must be an object"),
    ],
)
def test_malformed_pod_specs(spec: Any, phrase: str) -> None:
    with pytest.raises(AdmissionError) as info:
        images_of("", "Pod", {"spec": spec})
    assert phrase in str(info.value)


def review(**request: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": "team-a",
        "operation": "CREATE",
        "userInfo": {"username": "alice"},
        "object": {"metadata": {"generateName": "web-"}, "spec": POD_SPEC},
    }
    base.update(request)
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": base}


def test_parse_review() -> None:
    req = parse_review(review(dryRun=True))
    assert (req.uid, req.kind, req.namespace, req.operation, req.dry_run) == (
        "705ab4f5-6393-11e8-b7cc-42010a800002", "Pod", "team-a", "CREATE", True)  # fmt: skip
    assert req.display == "Pod team-a/web-"
    assert req.username == "alice"
    assert "spec" not in repr(req)  # the object never reaches a log through repr


@pytest.mark.parametrize(
    ("doc", "phrase"),
    [
        ([], "not a JSON object"),
        (
            {"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {}},
            "expected apiVersion",
        ),
        ({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}, "no request"),
        (review(uid=""), "request.uid"),
        (review(uid=None), "request.uid"),
        (review(kind="Pod"), "request.kind must be an object"),
        (review(object=[]), "request.object must be an object"),
        (review(dryRun="yes"), "dryRun"),
        (review(operation=None), "request.operation"),
    ],
)
def test_malformed_reviews(doc: Any, phrase: str) -> None:
    with pytest.raises(AdmissionError) as info:
        parse_review(doc)
    assert phrase in str(info.value)


def test_allow_and_deny_responses() -> None:
    allow = review_response("u1", allowed=True, warnings=("image x: audit mode: not signed",))
    assert allow == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": "u1", "allowed": True, "warnings": ["image x: audit mode: not signed"]},
    }
    deny = review_response("u2", allowed=False, message="image a:1 (sha256:...): no Notation signature found")
    assert deny["response"]["status"] == {
        "code": 403,
        "reason": "Forbidden",
        "message": "image a:1 (sha256:...): no Notation signature found",
    }
    assert "warnings" not in deny["response"]
    json.dumps(deny)  # serialisable as is


def test_long_messages_and_warnings_are_clipped() -> None:
    deny = review_response(
        "u", allowed=False, message="x" * 10_000, warnings=tuple("w" * 500 for _ in range(40))
    )
    assert len(deny["response"]["status"]["message"]) == 4000
    assert len(deny["response"]["warnings"]) == 16 and all(
        len(w) == 256 for w in deny["response"]["warnings"]
    )


def test_images_of_does_not_modify_the_object() -> None:
    obj = {"spec": copy.deepcopy(POD_SPEC)}
    before = copy.deepcopy(obj)
    images_of("", "Pod", obj)
    assert obj == before


def test_json_pointer_and_pin_patch() -> None:
    from webhook.server.admission import ImageUse, json_pointer, pin_patch  # noqa: PLC0415

    assert json_pointer("spec.template.spec.containers[2].image") == "/spec/template/spec/containers/2/image"
    uses = [
        ImageUse("spec.containers[0].image", "registry.example/app:1"),
        ImageUse("spec.containers[1].image", "registry.example/pinned@sha256:" + "b" * 64),
        ImageUse("spec.volumes[0].image.reference", "registry.example/data:1"),
        ImageUse("spec.initContainers[0].image", "registry.example/unverified:1"),
    ]
    digest = "sha256:" + "c" * 64
    ops = pin_patch(uses, {"registry.example/app:1": digest, "registry.example/data:1": digest})
    assert ops == [
        {"op": "test", "path": "/spec/containers/0/image", "value": "registry.example/app:1"},
        {"op": "replace", "path": "/spec/containers/0/image", "value": f"registry.example/app:1@{digest}"},
        {"op": "test", "path": "/spec/volumes/0/image/reference", "value": "registry.example/data:1"},
        {
            "op": "replace",
            "path": "/spec/volumes/0/image/reference",
            "value": f"registry.example/data:1@{digest}",
        },
    ]


@pytest.mark.parametrize(("group", "kind", "obj", "prefix"), KINDS, ids=[k[1] for k in KINDS])
def test_pull_secret_names_of_every_workload_kind(
    group: str, kind: str, obj: dict[str, Any], prefix: str
) -> None:
    assert pull_secret_names(group, kind, obj) == PullSecretNames("default", ())
    with_secrets = copy.deepcopy(obj)
    spec = with_secrets
    for part in prefix.split("."):
        spec = spec[part]
    spec["serviceAccountName"] = "builder"
    spec["imagePullSecrets"] = [{"name": "regcred"}, {"name": "mirror"}, {"name": "regcred"}]
    assert pull_secret_names(group, kind, with_secrets) == PullSecretNames("builder", ("regcred", "mirror"))


def test_pull_secret_names_refuse_malformed_entries() -> None:
    with pytest.raises(AdmissionError, match=r"spec.imagePullSecrets\[0\].name must be a string"):
        pull_secret_names("", "Pod", {"spec": {"imagePullSecrets": [{"name": 5}]}})
    with pytest.raises(AdmissionError, match=r"spec\.imagePullSecrets must be a list"):
        pull_secret_names("", "Pod", {"spec": {"imagePullSecrets": "regcred"}})
    assert pull_secret_names("", "ConfigMap", {"data": {}}) is None


def test_image_volume_after_a_thousand_empty_dirs_is_found() -> None:
    """Attack: 1024 emptyDir volumes, then an unsigned image volume; the volume list was cut off
    at 1024 entries and the image was never looked at."""
    volumes: list[dict[str, Any]] = [{"name": f"v{i}", "emptyDir": {}} for i in range(1024)]
    volumes.append({"name": "evil", "image": {"reference": "registry.example/miner:1"}})
    uses = images_of("", "Pod", {"spec": {"containers": [], "volumes": volumes}})
    assert [(u.path, u.image) for u in uses] == [
        ("spec.volumes[1024].image.reference", "registry.example/miner:1")
    ]


def test_uid_is_read_from_a_review_too_broken_to_parse() -> None:
    assert uid_of({"request": {"uid": "abc-123", "kind": "nonsense"}}) == "abc-123"
    assert uid_of({"request": {"uid": 5}}) == uid_of([]) == ""
    body = json.dumps(
        {"kind": "AdmissionReview", "request": {"uid": "u-1", "object": {"metadata": {"uid": "x"}}}}
    )
    assert uid_from_prefix(body.encode()) == "u-1"
    assert uid_from_prefix(b"not json at all") == ""


@pytest.mark.parametrize(
    ("kind", "obj", "where"),
    [
        (("apps", "Deployment"), {"spec": {"template": []}}, "spec.template must be an object"),
        (("", "PodTemplate"), {"template": "x"}, "template must be an object"),
        (
            ("batch", "CronJob"),
            {"spec": {"jobTemplate": {"spec": 3}}},
            "spec.jobTemplate.spec must be an object",
        ),
    ],
)
def test_template_that_is_not_an_object_is_malformed_not_a_crash(
    kind: tuple[str, str], obj: dict[str, Any], where: str
) -> None:
    """Bug: a template that was a list or a string raised AttributeError (an HTTP 500)."""
    with pytest.raises(AdmissionError, match=where):
        images_of(kind[0], kind[1], obj)

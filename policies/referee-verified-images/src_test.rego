package refereeverifiedimages_test

import rego.v1

import data.refereeverifiedimages

signed := "registry.example/app:1"

unsigned := "registry.example/other:1"

verified_value := {
	"verified": true, "digest": "sha256:aaaa", "reason": "", "signingScheme": "notary.x509",
	"signingTime": "2026-11-25T00:00:00+00:00",
	"signer": {"subject": "CN=build,O=Acme,ST=WA,C=US", "issuer": "CN=Acme CA,O=Acme,ST=WA,C=US"},
}

ok := {"responses": [[sprintf("[team-a]%s", [signed]), verified_value]], "errors": [], "system_error": "", "status_code": 200}

denied := {
	"responses": [[sprintf("[team-a]%s", [signed]), verified_value]],
	"errors": [[sprintf("[team-a]%s", [unsigned]), "image registry.example/other:1 (sha256:bbbb): no Notation signature found"]],
	"system_error": "", "status_code": 200,
}

down := {"responses": [], "errors": [], "system_error": "could not check: registry down", "status_code": 200}

mock_ok(_) := ok

mock_denied(_) := denied

mock_down(_) := down

pod(images) := {"kind": {"kind": "Pod"}, "namespace": "team-a", "object": {"spec": {"containers": [{"name": "c", "image": i} | some i in images]}}}

review(kind, object) := {"kind": {"kind": kind}, "namespace": "team-a", "object": object}

template_spec(images) := {"template": {"spec": {"initContainers": [{"name": "i", "image": i} | some i in images]}}}

test_signed_pod_passes if {
	count(refereeverifiedimages.violation) == 0 with input as {"review": pod([signed]), "parameters": {}}
		with external_data as mock_ok
}

test_unsigned_image_is_a_violation_with_referees_reason if {
	violations := refereeverifiedimages.violation with input as {"review": pod([signed, unsigned]), "parameters": {}}
		with external_data as mock_denied
	count(violations) == 1
	some v in violations
	v.details == {"image": unsigned, "reason": "not_verified"}
	contains(v.msg, "no Notation signature found")
}

test_system_error_is_a_violation if {
	violations := refereeverifiedimages.violation with input as {"review": pod([signed]), "parameters": {}}
		with external_data as mock_down
	some v in violations
	v.details.reason == "system_error"
	contains(v.msg, "registry down")
}

test_exempt_images_are_not_asked_about if {
	count(refereeverifiedimages.violation) == 0 with input as {"review": pod([unsigned]), "parameters": {"exemptImages": ["registry.example/other:*"]}}
		with external_data as mock_denied
	refereeverifiedimages.checked == set() with input as {"review": pod([unsigned]), "parameters": {"exemptImages": ["registry.example/*"]}}
}

test_keys_carry_the_namespace if {
	refereeverifiedimages.key_of(signed) == "[team-a]registry.example/app:1" with input as {"review": pod([signed]), "parameters": {}}
	refereeverifiedimages.key_of(signed) == signed with input as {"review": {"kind": {"kind": "Pod"}, "object": {}}, "parameters": {}}
	refereeverifiedimages.image_of("[team-a]registry.example/app:1") == "registry.example/app:1"
}

test_signer_filter if {
	allowed := {"allowedSigners": ["CN=build,O=Acme,*"]}
	count(refereeverifiedimages.violation) == 0 with input as {"review": pod([signed]), "parameters": allowed}
		with external_data as mock_ok
	violations := refereeverifiedimages.violation with input as {"review": pod([signed]), "parameters": {"allowedSigners": ["CN=release,*"]}}
		with external_data as mock_ok
	some v in violations
	v.details.reason == "signer_not_allowed"
	contains(v.msg, "CN=build,O=Acme")
}

test_every_workload_kind if {
	some kind in ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController"]
	refereeverifiedimages.images == {unsigned} with input as {"review": review(kind, {"spec": template_spec([unsigned])}), "parameters": {}}
}

test_cronjob_and_ephemeral_containers if {
	cron := review("CronJob", {"spec": {"jobTemplate": {"spec": template_spec([unsigned])}}})
	refereeverifiedimages.images == {unsigned} with input as {"review": cron, "parameters": {}}
	debug := review("Pod", {"spec": {"containers": [{"name": "c", "image": signed}], "ephemeralContainers": [{"name": "d", "image": unsigned}]}})
	refereeverifiedimages.images == {signed, unsigned} with input as {"review": debug, "parameters": {}}
}

test_other_kinds_have_no_images if {
	refereeverifiedimages.images == set() with input as {"review": review("ConfigMap", {"data": {"image": "x"}}), "parameters": {}}
	count(refereeverifiedimages.violation) == 0 with input as {"review": review("ConfigMap", {}), "parameters": {}}
		with external_data as mock_down
}

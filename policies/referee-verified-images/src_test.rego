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
	refereeverifiedimages.image_named("[team-a]registry.example/app:1") == "registry.example/app:1" with input as {"review": pod([signed]), "parameters": {}}
}

# A pod's author cannot choose the namespace Referee reads: the template's own prefix comes first,
# and what the author wrote stays inside the image.
test_forged_namespace_prefix_stays_inside_the_image if {
	forged := "[kube-system]registry.example/evil:v1"
	keys := {key | some key, _ in refereeverifiedimages.image_of} with input as {"review": pod([forged]), "parameters": {}}
	keys == {"[team-a][kube-system]registry.example/evil:v1"}
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
	refereeverifiedimages.checked == {unsigned} with input as {"review": review(kind, {"spec": template_spec([unsigned])}), "parameters": {}}
}

test_cronjob_and_ephemeral_containers if {
	cron := review("CronJob", {"spec": {"jobTemplate": {"spec": template_spec([unsigned])}}})
	refereeverifiedimages.checked == {unsigned} with input as {"review": cron, "parameters": {}}
	debug := review("Pod", {"spec": {"containers": [{"name": "c", "image": signed}], "ephemeralContainers": [{"name": "d", "image": unsigned}]}})
	refereeverifiedimages.checked == {signed, unsigned} with input as {"review": debug, "parameters": {}}
}

test_other_kinds_have_no_images if {
	refereeverifiedimages.checked == set() with input as {"review": review("ConfigMap", {"data": {"image": "x"}}), "parameters": {}}
	count(refereeverifiedimages.violation) == 0 with input as {"review": review("ConfigMap", {}), "parameters": {}}
		with external_data as mock_down
}

unsigned_volume := "registry.example/data:1"

skipped := "registry.example/skipped:1"

# Referee's answer for an image its trust policy does not verify (level skip) or that it exempts.
no_signer_value := {"verified": true, "digest": null, "signer": null, "signingTime": "", "signingScheme": "", "reason": "verification skipped by trust policy"}

mock_volume_denied(_) := {
	"responses": [[sprintf("[team-a]%s", [signed]), verified_value]],
	"errors": [[sprintf("[team-a]%s", [unsigned_volume]), "image registry.example/data:1 (sha256:cccc): no Notation signature found"]],
	"system_error": "", "status_code": 200,
}

mock_skipped(_) := {
	"responses": [[sprintf("[team-a]%s", [signed]), verified_value], [sprintf("[team-a]%s", [skipped]), no_signer_value]],
	"errors": [], "system_error": "", "status_code": 200,
}

image_volume(name, image) := {"name": name, "image": {"reference": image, "pullPolicy": "IfNotPresent"}}

# The attack: an unsigned image mounted as a volume beside a signed container, behind many ordinary
# volumes.
test_unsigned_image_volume_is_a_violation if {
	volumes := array.concat([{"name": sprintf("e%d", [i]), "emptyDir": {}} | some i in numbers.range(1, 1100)], [image_volume("data", unsigned_volume)])
	spec := {"containers": [{"name": "c", "image": signed}], "volumes": volumes}
	attack := review("Pod", {"spec": spec})
	refereeverifiedimages.checked == {signed, unsigned_volume} with input as {"review": attack, "parameters": {}}
	violations := refereeverifiedimages.violation with input as {"review": attack, "parameters": {}}
		with external_data as mock_volume_denied
	count(violations) == 1
	some v in violations
	v.details == {"image": unsigned_volume, "reason": "not_verified"}
	contains(v.msg, "no Notation signature found")
}

test_image_volumes_in_every_pod_template if {
	spec := {"containers": [{"name": "c", "image": signed}], "volumes": [{"name": "cfg", "configMap": {"name": "x"}}, image_volume("data", unsigned_volume), {"name": "empty", "image": {"reference": ""}}]}
	some object in [
		{"kind": "Deployment", "object": {"spec": {"template": {"spec": spec}}}},
		{"kind": "ReplicationController", "object": {"spec": {"template": {"spec": spec}}}},
		{"kind": "PodTemplate", "object": {"template": {"spec": spec}}},
		{"kind": "CronJob", "object": {"spec": {"jobTemplate": {"spec": {"template": {"spec": spec}}}}}},
	]
	refereeverifiedimages.checked == {signed, unsigned_volume} with input as {"review": review(object.kind, object.object), "parameters": {}}
}

test_pod_template_containers_are_checked if {
	refereeverifiedimages.checked == {unsigned} with input as {"review": review("PodTemplate", template_spec([unsigned])), "parameters": {}}
}

test_exempt_image_volume_is_not_asked_about if {
	spec := {"containers": [{"name": "c", "image": signed}], "volumes": [image_volume("data", unsigned_volume)]}
	refereeverifiedimages.checked == {signed} with input as {"review": review("Pod", {"spec": spec}), "parameters": {"exemptImages": ["registry.example/data:*"]}}
}

# allowedSigners: an image Referee admitted without checking a signature passes only when the
# constraint says so.
test_signer_filter_refuses_an_image_without_a_signer if {
	parameters := {"allowedSigners": ["CN=build,O=Acme,*"]}
	violations := refereeverifiedimages.violation with input as {"review": pod([signed, skipped]), "parameters": parameters}
		with external_data as mock_skipped
	count(violations) == 1
	some v in violations
	v.details == {"image": skipped, "reason": "no_signer"}
	contains(v.msg, "verification skipped by trust policy")
	contains(v.msg, "allowedSigners")
}

test_allow_unsigned_when_skipped_lets_it_through if {
	parameters := {"allowedSigners": ["CN=build,O=Acme,*"], "allowUnsignedWhenSkipped": true}
	count(refereeverifiedimages.violation) == 0 with input as {"review": pod([signed, skipped]), "parameters": parameters}
		with external_data as mock_skipped
	not_true := {"allowedSigners": ["CN=build,O=Acme,*"], "allowUnsignedWhenSkipped": "true"}
	count(refereeverifiedimages.violation) == 1 with input as {"review": pod([signed, skipped]), "parameters": not_true}
		with external_data as mock_skipped
}

test_without_allowed_signers_an_image_without_a_signer_passes if {
	count(refereeverifiedimages.violation) == 0 with input as {"review": pod([signed, skipped]), "parameters": {}}
		with external_data as mock_skipped
}

mock_not_verified(_) := {"responses": [[sprintf("[team-a]%s", [signed]), {"verified": false}]], "errors": [], "system_error": "", "status_code": 200}

test_an_answer_that_is_not_a_verification_is_a_violation if {
	violations := refereeverifiedimages.violation with input as {"review": pod([signed]), "parameters": {}}
		with external_data as mock_not_verified
	some v in violations
	v.details == {"image": signed, "reason": "not_verified"}
}

# Whatever the provider answers, only an object saying "verified": true passes: no field, a string
# "true", null or a bare string are violations, one per image.
mock_odd_answers(_) := {
	"responses": [
		[sprintf("[team-a]%s", [signed]), {"digest": "sha256:aaaa"}],
		[sprintf("[team-a]%s", [unsigned]), {"verified": "true"}],
		["[team-a]registry.example/third:1", null],
		["[team-a]registry.example/fourth:1", "verified"],
	],
	"errors": [], "system_error": "", "status_code": 200,
}

test_an_answer_without_verified_true_is_a_violation_whatever_its_shape if {
	images := [signed, unsigned, "registry.example/third:1", "registry.example/fourth:1"]
	violations := refereeverifiedimages.violation with input as {"review": pod(images), "parameters": {}}
		with external_data as mock_odd_answers
	{v.details.image | some v in violations; v.details.reason == "not_verified"} == {i | some i in images}
}

test_an_image_left_unanswered_is_a_violation if {
	violations := refereeverifiedimages.violation with input as {"review": pod([signed, unsigned]), "parameters": {}}
		with external_data as mock_ok
	count(violations) == 1
	some v in violations
	v.details == {"image": unsigned, "reason": "not_verified"}
	contains(v.msg, "not answered")
}

# exemptImages are matched by structure: a glob never reaches into another registry.
test_exempt_patterns_cannot_reach_another_registry if {
	parameters := {"exemptImages": ["busybox:*", "docker.io/library/busybox:*", "*.dkr.ecr.us-east-1.amazonaws.com/platform/*"]}
	attacks := ["busybox:443/miner:1", "evil.example/x.dkr.ecr.us-east-1.amazonaws.com/platform/miner:1"]
	refereeverifiedimages.checked == {i | some i in attacks} with input as {"review": pod(attacks), "parameters": parameters}
	allowed := ["busybox:1.36", "123456789012.dkr.ecr.us-east-1.amazonaws.com/platform/agent:2"]
	refereeverifiedimages.checked == set() with input as {"review": pod(allowed), "parameters": parameters}
}

# --- requiredArtifactTypes ----------------------------------------------------------------------

sbom := "application/spdx+json"

with_artifacts(artifacts) := {"responses": [[sprintf("[team-a]%s", [signed]), object.union(verified_value, {"artifacts": artifacts})]], "errors": [], "system_error": "", "status_code": 200}

mock_signed_sbom(_) := with_artifacts([{"artifactType": sbom, "digest": "sha256:cccc", "signed": true, "signer": "CN=build"}])

mock_unchecked_sbom(_) := with_artifacts([{"artifactType": sbom, "digest": "sha256:cccc", "signed": null, "signer": null}])

mock_failed_sbom(_) := with_artifacts([{"artifactType": sbom, "digest": "sha256:cccc", "signed": false, "signer": null}])

mock_no_artifacts(_) := with_artifacts([])

required_sbom := {"review": pod([signed]), "parameters": {"requiredArtifactTypes": [sbom]}}

test_an_image_with_the_required_artifact_passes if {
	count(refereeverifiedimages.violation) == 0 with input as required_sbom with external_data as mock_signed_sbom
	count(refereeverifiedimages.violation) == 0 with input as required_sbom with external_data as mock_unchecked_sbom
}

test_an_image_without_the_required_artifact_is_a_violation if {
	violations := refereeverifiedimages.violation with input as required_sbom with external_data as mock_no_artifacts
	count(violations) == 1
	some v in violations
	v.details == {"image": signed, "reason": "missing_artifact", "artifactType": sbom}
	startswith(v.msg, "referee: image registry.example/app:1 has no application/spdx+json artifact that Referee found")
}

test_an_artifact_whose_signature_failed_does_not_count if {
	count(refereeverifiedimages.violation) == 1 with input as required_sbom with external_data as mock_failed_sbom
}

test_an_answer_without_artifacts_does_not_count if {
	count(refereeverifiedimages.violation) == 1 with input as required_sbom with external_data as mock_ok
}

test_no_required_artifact_types_asks_for_none if {
	count(refereeverifiedimages.violation) == 0 with input as {"review": pod([signed]), "parameters": {}}
		with external_data as mock_no_artifacts
}

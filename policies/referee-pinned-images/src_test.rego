package refereepinnedimages_test

import rego.v1

import data.refereepinnedimages

digest := "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

pod(images) := {"kind": {"kind": "Pod"}, "object": {"spec": {"containers": [{"name": "c", "image": i} | some i in images]}}}

test_pinned_images_pass if {
	count(refereepinnedimages.violation) == 0 with input as {"review": pod([sprintf("registry.example/app:1@%s", [digest])]), "parameters": {}}
}

test_tag_only_is_a_violation if {
	violations := refereepinnedimages.violation with input as {"review": pod(["registry.example/app:1"]), "parameters": {}}
	some v in violations
	v.details.image == "registry.example/app:1"
	contains(v.msg, "not pinned by digest")
}

test_short_or_foreign_digests_are_not_pins if {
	count(refereepinnedimages.violation) == 1 with input as {"review": pod(["registry.example/app@sha256:abc"]), "parameters": {}}
}

test_exempt_and_workloads if {
	count(refereepinnedimages.violation) == 0 with input as {"review": pod(["registry.k8s.io/pause:3.9"]), "parameters": {"exemptImages": ["registry.k8s.io/*"]}}
	deploy := {"kind": {"kind": "Deployment"}, "object": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "a:1"}]}}}}}
	count(refereepinnedimages.violation) == 1 with input as {"review": deploy, "parameters": {}}
}

test_unpinned_image_volume_is_a_violation if {
	spec := {"containers": [{"name": "c", "image": sprintf("registry.example/app:1@%s", [digest])}], "volumes": [{"name": "data", "image": {"reference": "registry.example/data:1"}}]}
	violations := refereepinnedimages.violation with input as {"review": {"kind": {"kind": "Pod"}, "object": {"spec": spec}}, "parameters": {}}
	[v] := [v | some v in violations]
	v.details.image == "registry.example/data:1"
	template := {"kind": {"kind": "PodTemplate"}, "object": {"template": {"spec": spec}}}
	count(refereepinnedimages.violation) == 1 with input as {"review": template, "parameters": {}}
}

test_exempt_patterns_cannot_reach_another_registry if {
	count(refereepinnedimages.violation) == 1 with input as {"review": pod(["busybox:443/miner:1"]), "parameters": {"exemptImages": ["busybox:*"]}}
}

package lib.refereeimages_test

import rego.v1

import data.lib.refereeimages

digest := "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

# [pattern, image, exempt?]
cases := [
	["registry.k8s.io/pause:*", "registry.k8s.io/pause:3.9", true],
	["registry.k8s.io/pause:*", "REGISTRY.K8S.IO:443/pause:3.9", true],
	["registry.k8s.io/pause:*", "registry.k8s.io/pause", true],
	["registry.k8s.io/pause:3.*", "registry.k8s.io/pause:latest", false],
	["busybox:*", "busybox:1.36", false],
	["docker.io/library/busybox:*", "busybox:1.36", true],
	["docker.io/library/busybox:*", "index.docker.io/busybox:1.36", true],
	["docker.io/library/busybox:*", "docker.io/busybox:1.36", true],
	["busybox:*", "busybox:443/miner:1", false],
	["busybox:*", "evil.example/busybox:1", false],
	["*.dkr.ecr.us-east-1.amazonaws.com/platform/*", "123.dkr.ecr.us-east-1.amazonaws.com/platform/agent:1", true],
	["*.dkr.ecr.us-east-1.amazonaws.com/platform/*", "evil.example/x.dkr.ecr.us-east-1.amazonaws.com/platform/miner:1", false],
	["*.dkr.ecr.us-east-1.amazonaws.com/platform/*", "a.b.dkr.ecr.us-east-1.amazonaws.com/platform/agent:1", false],
	["*.dkr.ecr.us-east-1.amazonaws.com/platform/*", "123.dkr.ecr.us-east-1.amazonaws.com/platform/a/agent:1", false],
	["*.dkr.ecr.us-east-1.amazonaws.com/platform/**", "123.dkr.ecr.us-east-1.amazonaws.com/platform/a/agent:1", true],
	["registry.example/**/web:1", "registry.example/web:1", true],
	["registry.example/**/web:1", "registry.example/a/b/web:1", true],
	["registry.example/**/web:1", "registry.example/a/bweb:1", false],
	["registry.example/a.b", "registry.example/axb", false],
	["registry.example/app*", "registry.example/app-x/y", false],
	["localhost:5000/*", "localhost:5000/app:v1", true],
	["localhost:5000/*", "LOCALHOST:5000/app:v1", true],
	["localhost:5000/*", "localhost:5001/app:v1", false],
	["localhost:5000/*", "localhost/app:v1", false],
	["registry.example/*", "registry.example:443/app:v1", true],
	["registry.example:*/*", "registry.example:5000/app:v1", false],
	# An image that carries a digest is pulled by it: a tag pattern never exempts it.
	["registry.example/app:v1", sprintf("registry.example/app:v1@%s", [digest]), false],
	[sprintf("registry.example/app@%s", [digest]), "registry.example/app:v1", false],
	[sprintf("registry.example/app@%s", [digest]), sprintf("registry.example/app@%s", [digest]), true],
	["registry.example/app:latest", "registry.example/app", true],
	["registry.example/app", "[kube-system]registry.example/app", false],
	["[kube-system]registry.example/app", "[kube-system]registry.example/app", false],
	["registry.example/App", "registry.example/App", false],
	["127.0.0.1:43801/hook/unsigned:v1", "127.0.0.1:43801/hook/unsigned:v1", true],
	["registry.example.com", "registry.example.com/a/b:1", true],
	["REGISTRY.EXAMPLE.COM:443", sprintf("registry.example.com/a@%s", [digest]), true],
	["registry.example.com", "registry.example.com:5000/a:1", false],
	["*.example.com", "registry.example.com/a:1", true],
	["*.example.com", "a.registry.example.com/a:1", false],
	["registry.example/app:*", sprintf("registry.example/app@%s", [digest]), false],
	["registry.example/app:*", sprintf("registry.example/app:v1@%s", [digest]), false],
	["registry.example/app", sprintf("registry.example/app:v1@%s", [digest]), true],
	["index.docker.io/library/*", "busybox", true],
]

test_exempt_patterns_match_by_structure if {
	wrong := [c | some c in cases; refereeimages.exempt(c[1], [c[0]]) == true != c[2]]
	wrong == []
}

test_an_unreadable_pattern_exempts_nothing if {
	not refereeimages.exempt("registry.example/app:1", ["registry.example/app:1:2", "", "a@b@c", 7])
}

test_images_of_every_field if {
	spec := {
		"initContainers": [{"name": "i", "image": "i:1"}],
		"containers": [{"name": "c", "image": "c:1"}, {"name": "blank", "image": ""}, {"name": "none"}],
		"ephemeralContainers": [{"name": "e", "image": "e:1"}],
		"volumes": [{"name": "v", "image": {"reference": "v:1"}}, {"name": "d", "emptyDir": {}}],
	}
	refereeimages.images == {"i:1", "c:1", "e:1", "v:1"} with input as {"review": {"kind": {"kind": "Pod"}, "object": {"spec": spec}}}
}

# What both Referee templates share: every image the object under review runs (containers,
# init containers, ephemeral containers and image volumes, in a Pod or in any pod template), and
# `exemptImages` patterns matched by structure on the image's canonical name, as Referee matches
# them. Gatekeeper embeds this file in each template as a library (`libs`).
package lib.refereeimages

template_kinds := {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController"}

pod_specs contains input.review.object.spec if input.review.kind.kind == "Pod"

pod_specs contains input.review.object.spec.template.spec if input.review.kind.kind in template_kinds

pod_specs contains input.review.object.template.spec if input.review.kind.kind == "PodTemplate"

pod_specs contains input.review.object.spec.jobTemplate.spec.template.spec if input.review.kind.kind == "CronJob"

images contains container.image if {
	some spec in pod_specs
	some field in ["initContainers", "containers", "ephemeralContainers"]
	some container in object.get(spec, field, [])
	is_string(container.image)
	container.image != ""
}

# Image volumes (`volumes[].image.reference`) are pulled by the kubelet like container images.
images contains volume.image.reference if {
	some spec in pod_specs
	some volume in object.get(spec, "volumes", [])
	is_string(object.get(volume, ["image", "reference"], null))
	volume.image.reference != ""
}

# --- exemptImages -----------------------------------------------------------------------------
#
# A pattern is HOST[/REPOSITORY[:TAG|@DIGEST]], the grammar of Referee's own exemptImages. The host
# is always written out. In the host, a glob (`*`, `?`, `[...]`) stands for part of one DNS label
# and never crosses a `.`; the port, if any, is matched exactly. In the repository, `*` and `?`
# stand for part of one path segment and never cross a `/`; a segment `**` stands for any number
# of segments. The tag is a glob, and needs an image named by tag alone (one that carries a digest
# is pulled by it, whatever tag is written before it); a digest is matched exactly. A pattern without a repository matches every image of its host; one
# without a tag or digest, every tag and digest of its repositories. The image is read the way the
# kubelet reads it, its host in canonical form (lower case, no `:443`, `docker.io` for
# `index.docker.io`, `docker.io/library/` for a bare name). An image or a pattern that cannot be
# read this way is never exempt: the image goes to Referee.

exempt(image, patterns) if {
	ref := reference(image)
	some pattern in patterns
	is_string(pattern)
	matches(parse_pattern(pattern), ref)
}

# The parts of an image reference; undefined when it is not one.
reference(image) := ref if {
	ref := parse(image)
	regex.match(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[0-9]{1,5})?$`, ref.host)
	regex.match(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`, ref.path)
	regex.match(`^([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$`, ref.tag)
	regex.match(`^(|sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})$`, ref.digest)
}

# host, path, tag and digest of an image (`@` and `:` split as the kubelet splits).
parse(text) := {"host": host, "path": path, "tag": tag, "digest": digest} if {
	[rest, digest] := split_digest(text)
	[name, tag] := split_tag(rest)
	[host, path] := split_domain(name)
}

split_digest(text) := [parts[0], parts[1]] if {
	parts := split(text, "@")
	count(parts) == 2
	parts[1] != ""
} else := [text, ""] if not contains(text, "@")

split_tag(name) := [concat("/", array.concat(array.slice(segments, 0, last), [before])), after] if {
	segments := split(name, "/")
	last := count(segments) - 1
	parts := split(segments[last], ":")
	count(parts) == 2
	[before, after] := parts
	after != ""
} else := [name, ""] if not contains(regex.replace(name, "^.*/", ""), ":")

split_domain(name) := [host, path] if {
	i := indexof(name, "/")
	i > 0
	first := substring(name, 0, i)
	is_domain(first)
	host := canonical_host(first)
	path := official(host, substring(name, i + 1, -1))
} else := ["docker.io", official("docker.io", name)]

# The distribution library's rule: the first component names a registry when it has a dot, a
# port or upper-case letters, or is localhost.
is_domain(first) if contains(first, ".")

is_domain(first) if contains(first, ":")

is_domain("localhost")

is_domain(first) if lower(first) != first

canonical_host(host) := "docker.io" if {
	trim_suffix(lower(host), ":443") == "index.docker.io"
} else := trim_suffix(lower(host), ":443")

official("docker.io", path) := concat("", ["library/", path]) if not contains(path, "/")

official(host, path) := path if host != "docker.io"

official("docker.io", path) := path if contains(path, "/")

# host, path, tag and digest of a pattern; path null when it names only a host.
parse_pattern(text) := {"host": canonical_host(substring(text, 0, i)), "path": path, "tag": tag, "digest": digest} if {
	i := indexof(text, "/")
	i > 0
	[path, tag, digest] := split_pattern_rest(substring(text, i + 1, -1))
} else := {"host": canonical_host(text), "path": null, "tag": "", "digest": ""} if {
	text != ""
	not contains(text, "/")
}

split_pattern_rest(rest) := [parts[0], "", parts[1]] if {
	parts := split(rest, "@")
	count(parts) == 2
} else := [substring(rest, 0, i), substring(rest, i + 1, -1), ""] if {
	not contains(rest, "@")
	i := indexof(rest, ":")
	i >= 0
} else := [rest, "", ""] if {
	not contains(rest, "@")
	not contains(rest, ":")
}

matches(pattern, ref) if {
	host_matches(pattern.host, ref.host)
	pattern.path == null
}

matches(pattern, ref) if {
	host_matches(pattern.host, ref.host)
	is_string(pattern.path)
	regex.match(path_regex(pattern.path), concat("/", ["", ref.path]))
	tag_matches(pattern, ref)
}

host_matches(pattern, host) if {
	[pattern_name, pattern_port] := host_port(pattern)
	[name, port] := host_port(host)
	pattern_port == port
	labels := split(name, ".")
	pattern_labels := split(pattern_name, ".")
	count(labels) == count(pattern_labels)
	every i, label in labels {
		glob.match(pattern_labels[i], null, label)
	}
}

host_port(host) := [parts[0], parts[1]] if {
	parts := split(host, ":")
	count(parts) == 2
} else := [host, ""] if not contains(host, ":")

# A regular expression for a repository pattern, matched against "/" and the path: each segment's
# `*` and `?` stay inside the segment, `**` is any number of segments, every other character is
# itself.
path_regex(pattern) := concat("", ["^", concat("", [segment_regex(s) | some s in split(pattern, "/")]), "$"])

segment_regex("**") := `(/[^/]+)*`

segment_regex(segment) := concat("", ["/", concat("", [char_regex(c) | some c in split(segment, "")])]) if {
	segment != "**"
}

char_regex("*") := `[^/]*`

char_regex("?") := `[^/]`

char_regex(c) := c if regex.match(`^[A-Za-z0-9]$`, c)

char_regex(c) := concat("", [`\`, c]) if {
	not regex.match(`^[A-Za-z0-9*?]$`, c)
}

tag_matches(pattern, _) if {
	pattern.tag == ""
	pattern.digest == ""
}

# An image that carries a digest is pulled by it, whatever tag is written before it: no tag
# pattern matches it.
tag_matches(pattern, ref) if {
	pattern.tag != ""
	ref.digest == ""
	glob.match(pattern.tag, null, image_tag(ref))
	pattern.digest == ""
}

tag_matches(pattern, ref) if {
	pattern.digest != ""
	pattern.digest == ref.digest
}

# An image without a tag or digest is pulled as `latest`.
image_tag(ref) := ref.tag if ref.tag != ""

image_tag(ref) := "latest" if {
	ref.tag == ""
	ref.digest == ""
}

# Every image must be pinned by digest (name@sha256:...): for clusters that let a mutation (Referee's
# /mutate, or Gatekeeper's Assign with Referee as the provider) pin images first, and then insist.
package refereepinnedimages

template_kinds := {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController"}

pod_specs contains input.review.object.spec if input.review.kind.kind == "Pod"

pod_specs contains input.review.object.spec.template.spec if input.review.kind.kind in template_kinds

pod_specs contains input.review.object.spec.jobTemplate.spec.template.spec if input.review.kind.kind == "CronJob"

images contains container.image if {
	some spec in pod_specs
	some field in ["initContainers", "containers", "ephemeralContainers"]
	some container in object.get(spec, field, [])
	container.image != ""
}

exempt(image) if {
	some pattern in object.get(input.parameters, "exemptImages", [])
	glob.match(pattern, null, image)
}

violation contains {"msg": msg, "details": {"image": image}} if {
	some image in images
	not exempt(image)
	not regex.match(`@sha256:[a-f0-9]{64}$`, image)
	msg := sprintf("image %s is not pinned by digest (name@sha256:...)", [image])
}

# Every image of a Pod, or of a workload's pod template, must be verified by Referee: one batched
# external_data call to the Referee provider, a violation per image it did not verify (with
# Referee's reason), one when the call itself failed, and one per image whose signer is not among
# `allowedSigners` when the constraint lists any.
package refereeverifiedimages

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

checked contains image if {
	some image in images
	not exempt(image)
}

# Keys carry the namespace ("[team-a]registry.example/app:1") so Referee applies its exemptions.
namespace := object.get(input.review, "namespace", "")

key_of(image) := sprintf("[%s]%s", [namespace, image]) if namespace != ""

key_of(image) := image if namespace == ""

image_of(key) := substring(key, indexof(key, "]") + 1, -1) if startswith(key, "[")

image_of(key) := key if not startswith(key, "[")

provider := object.get(input.parameters, "provider", "referee")

response := external_data({"provider": provider, "keys": [key_of(image) | some image in checked]})

violation contains {"msg": msg, "details": {"reason": "system_error"}} if {
	count(checked) > 0
	response.system_error != ""
	msg := sprintf("referee could not verify the images: %s", [response.system_error])
}

violation contains {"msg": msg, "details": {"image": image_of(key), "reason": "not_verified"}} if {
	count(checked) > 0
	some [key, error] in response.errors
	msg := sprintf("referee: %s", [error])
}

violation contains {"msg": msg, "details": {"image": image_of(key), "reason": "signer_not_allowed"}} if {
	count(checked) > 0
	signers := object.get(input.parameters, "allowedSigners", [])
	count(signers) > 0
	some [key, value] in response.responses
	value.signer != null
	not signer_allowed(value.signer.subject, signers)
	msg := sprintf("referee: image %s is signed by %q, not by a signer this constraint allows", [image_of(key), value.signer.subject])
}

signer_allowed(subject, signers) if {
	some allowed in signers
	glob.match(allowed, null, subject)
}

# Every image of a Pod, or of a workload's pod template (containers, init and ephemeral containers,
# image volumes), must be verified by Referee: one batched external_data call to the Referee
# provider, a violation per image it did not verify (with Referee's reason), one when the call
# itself failed, and, when the constraint lists `allowedSigners`, one per image whose signer is not
# among them, including an image Referee admitted without a signer (trust-policy level `skip`, an
# exempt image) unless `allowUnsignedWhenSkipped` is true; and, when it lists
# `requiredArtifactTypes`, one per image and type for which Referee found no such artifact.
package refereeverifiedimages

import data.lib.refereeimages

checked contains image if {
	some image in refereeimages.images
	not refereeimages.exempt(image, object.get(input.parameters, "exemptImages", []))
}

# Keys carry the pod's namespace first ("[team-a]registry.example/app:1"): Referee uses only that
# namespace's pull secrets, and never an exemption, for it. A "[...]" the pod's author wrote into
# an image stays part of the image, which then does not parse.
namespace := object.get(input.review, "namespace", "")

key_of(image) := sprintf("[%s]%s", [namespace, image]) if namespace != ""

key_of(image) := image if namespace == ""

image_of := {key_of(image): image | some image in checked}

# The image a key in Referee's answer stands for (the key itself if it is not one that was sent).
image_named(key) := image_of[key]

image_named(key) := key if not image_of[key]

provider := object.get(input.parameters, "provider", "referee")

response := external_data({"provider": provider, "keys": [key_of(image) | some image in checked]})

violation contains {"msg": msg, "details": {"reason": "system_error"}} if {
	count(checked) > 0
	response.system_error != ""
	msg := sprintf("referee could not verify the images: %s", [response.system_error])
}

violation contains {"msg": msg, "details": {"image": image_named(key), "reason": "not_verified"}} if {
	count(checked) > 0
	some [key, error] in response.errors
	msg := sprintf("referee: %s", [error])
}

# An answer that is not a verification (a provider that is not Referee, or a newer one) is refused:
# only an object whose "verified" is true passes. (object.get on a value that is not an object
# fails, and a failed expression under `not` made a null or a bare string pass.)
violation contains {"msg": msg, "details": {"image": image_named(key), "reason": "not_verified"}} if {
	count(checked) > 0
	some [key, value] in response.responses
	not verified(value)
	msg := sprintf("referee: image %s was not verified", [image_named(key)])
}

verified(value) if {
	is_object(value)
	value.verified == true
}

# An image asked about and not answered at all is refused too.
violation contains {"msg": msg, "details": {"image": image, "reason": "not_verified"}} if {
	count(checked) > 0
	response.system_error == ""
	some image in checked
	not answered(key_of(image))
	msg := sprintf("referee: image %s was not answered", [image])
}

answered(key) if {
	some [answered_key, _] in response.responses
	answered_key == key
}

answered(key) if {
	some [answered_key, _] in response.errors
	answered_key == key
}

signers := object.get(input.parameters, "allowedSigners", [])

violation contains {"msg": msg, "details": {"image": image_named(key), "reason": "signer_not_allowed"}} if {
	count(checked) > 0
	count(signers) > 0
	some [key, value] in response.responses
	subject := object.get(value, ["signer", "subject"], null)
	is_string(subject)
	not signer_allowed(subject)
	msg := sprintf("referee: image %s is signed by %q, not by a signer this constraint allows", [image_named(key), subject])
}

# No signer: Referee's trust policy skips verification for this image (level `skip`) or Referee
# exempts it. A constraint that names its signers refuses it unless it says otherwise.
violation contains {"msg": msg, "details": {"image": image_named(key), "reason": "no_signer"}} if {
	count(checked) > 0
	count(signers) > 0
	not object.get(input.parameters, "allowUnsignedWhenSkipped", false) == true
	some [key, value] in response.responses
	not is_string(object.get(value, ["signer", "subject"], null))
	reason := object.get(value, "reason", "")
	msg := sprintf("referee: image %s has no verified signer (%s), and this constraint accepts only the signers it lists (allowedSigners)", [image_named(key), why(reason)])
}

why(reason) := reason if {
	is_string(reason)
	reason != ""
} else := "Referee did not check its signature"

signer_allowed(subject) if {
	some allowed in signers
	glob.match(allowed, null, subject)
}

# --- requiredArtifactTypes ----------------------------------------------------------------------
#
# Referee reports the artifacts it looked for under its policy document (a statement's `referrers`,
# `required: false` for those only reported): each with its type, digest and `signed` (true, false
# when a required signature failed, null when none was asked for). An image counts as having a type
# when Referee found an artifact of it whose signature did not fail.

required_artifact_types := object.get(input.parameters, "requiredArtifactTypes", [])

violation contains {"msg": msg, "details": {"image": image_named(key), "reason": "missing_artifact", "artifactType": wanted}} if {
	count(checked) > 0
	some [key, value] in response.responses
	some wanted in required_artifact_types
	not has_artifact(value, wanted)
	msg := sprintf("referee: image %s has no %s artifact that Referee found (Referee looks only for the artifact types its policy statement for the repository lists under referrers)", [image_named(key), wanted])
}

has_artifact(value, wanted) if {
	some artifact in object.get(value, "artifacts", [])
	artifact.artifactType == wanted
	not artifact.signed == false
}

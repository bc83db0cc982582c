# Every image must be pinned by digest (name@sha256:...): for clusters that let a mutation (Referee's
# /mutate, or Gatekeeper's Assign with Referee as the provider) pin images first, and then insist.
# Every image counts: containers, init and ephemeral containers and image volumes, in a Pod or in
# any pod template.
package refereepinnedimages

import data.lib.refereeimages

violation contains {"msg": msg, "details": {"image": image}} if {
	some image in refereeimages.images
	not refereeimages.exempt(image, object.get(input.parameters, "exemptImages", []))
	not regex.match(`@sha256:[a-f0-9]{64}$`, image)
	msg := sprintf("image %s is not pinned by digest (name@sha256:...)", [image])
}

"""The images most webhook tests start from: one signed by the real notation, one never signed, one
whose only "signature" is a forged envelope, in one real registry, with the trust policy and trust
store that accept the signer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from tests.helpers.artifacts import Notation, attach, push_image
from tests.helpers.codesign import (
    Chain,
    install_notation_key,
    make_chain,
    write_trust_policy,
    write_trust_store,
)
from tests.helpers.registries import RunningRegistry

NOTARY = "application/vnd.cncf.notary.signature"
# A JWS-shaped envelope with alg "none" and no certificates: what an attacker can attach to any image.
FORGED_ENVELOPE = '{"payload":"e30","protected":"e30","header":{"x5c":[]},"signature":"AA"}'


@dataclass(frozen=True)
class SampleImages:
    registry: RunningRegistry
    signed: str  # registry/prefix/signed:v1
    signed_digest: str
    unsigned: str
    unsigned_digest: str
    tampered: str
    tampered_digest: str
    chain: Chain  # the signer's certificate chain
    notation: Notation  # a notation home holding the signing key
    policy: Path  # trustpolicy.json: the "ca:test" store, every repository, level strict
    store: Path  # the trust store directory holding the chain's root as x509/ca/test

    @property
    def root_pem(self) -> str:
        return self.chain.root.public_bytes(serialization.Encoding.PEM).decode()


def sample_images(registry: RunningRegistry, work: Path, prefix: str) -> SampleImages:
    """Push ``prefix/signed``, ``prefix/unsigned`` and ``prefix/tampered`` (tag v1, distinct content)."""
    chain = make_chain()
    notation = Notation(work / "home")
    install_notation_key(notation.home, "test", chain)
    signed = push_image(registry, f"{prefix}/signed", "v1", work / "a", content=f"{prefix} signed")
    notation.sign(registry, f"{registry.host}/{prefix}/signed@{signed}")
    unsigned = push_image(registry, f"{prefix}/unsigned", "v1", work / "b", content=f"{prefix} unsigned")
    tampered = push_image(registry, f"{prefix}/tampered", "v1", work / "c", content=f"{prefix} tampered")
    attach(registry, f"{registry.host}/{prefix}/tampered@{tampered}", NOTARY, work / "c", name="e.jws",
           content=FORGED_ENVELOPE)  # fmt: skip
    store = work / "truststore"
    write_trust_store(store, "ca", "test", chain.root)
    base = f"{registry.host}/{prefix}"
    return SampleImages(
        registry=registry,
        signed=f"{base}/signed:v1",
        signed_digest=signed,
        unsigned=f"{base}/unsigned:v1",
        unsigned_digest=unsigned,
        tampered=f"{base}/tampered:v1",
        tampered_digest=tampered,
        chain=chain,
        notation=notation,
        policy=write_trust_policy(work / "trustpolicy.json", stores=["ca:test"]),
        store=store,
    )

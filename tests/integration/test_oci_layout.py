"""The registry seam over an OCI image layout, checked against oras and notation on the same layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import NOTARY, SignedImage
from tests.helpers.artifacts import Notation, oras, referrer_tree
from tests.helpers.codesign import write_trust_policy
from tests.helpers.tools import referee, run, tool
from webhook.deadline import Deadline
from webhook.errors import ContentMismatch, InvalidReference, NotFound
from webhook.registry.layout import LayoutRepository, split_layout_reference


@pytest.fixture()
def layout(signed_image: SignedImage, notation: Notation, tmp_path: Path) -> Path:
    """The signed image copied with its referrers into a layout, plus a signature notation made there."""
    if signed_image.registry.kind != "distribution":
        pytest.fail("layout tests copy from the distribution registry only", pytrace=False)
    path = tmp_path / "layout"
    oras("cp", "-r", "--from-plain-http", signed_image.reference, "--to-oci-layout", f"{path}:v1")
    notation.sign_layout(f"{path}:v1")
    return path


@pytest.mark.parametrize("registry", ["distribution"], indirect=True)
def test_layout_discover_matches_oras(layout: Path, signed_image: SignedImage) -> None:
    proc = referee("discover", "--oci-layout", "--output", "json", f"{layout}:v1")
    assert proc.returncode == 0, proc.stderr
    ours = json.loads(proc.stdout)
    theirs = json.loads(oras("discover", "--oci-layout", "--format", "json", f"{layout}:v1"))
    assert ours["digest"] == theirs["digest"] == signed_image.digest
    assert referrer_tree(ours) == referrer_tree(theirs)
    signatures = [r for r in ours["referrers"] if r["artifactType"] == NOTARY]
    assert len(signatures) == 3  # two copied from the registry, one made in the layout


@pytest.mark.parametrize("registry", ["distribution"], indirect=True)
def test_layout_by_digest_and_filter(layout: Path, signed_image: SignedImage) -> None:
    repo = LayoutRepository(layout)
    deadline = Deadline.after(5)
    assert repo.resolve(signed_image.digest, deadline).descriptor.digest == signed_image.digest
    found = repo.referrers(signed_image.digest, deadline, "application/spdx+json")
    assert [d.digest for d in found.descriptors] == [signed_image.sbom]
    assert found.source == "oci-layout"


@pytest.mark.parametrize("registry", ["distribution"], indirect=True)
def test_tampered_blob_in_layout_is_detected(layout: Path, signed_image: SignedImage) -> None:
    algorithm, encoded = signed_image.digest.split(":")
    blob = layout / "blobs" / algorithm / encoded
    blob.write_bytes(blob.read_bytes().replace(b'"schemaVersion"', b' "schemaVersion"', 1))
    with pytest.raises(ContentMismatch):
        LayoutRepository(layout).resolve("v1", Deadline.after(5))
    proc = referee("discover", "--oci-layout", f"{layout}:v1")
    assert proc.returncode == 1 and "hashes to" in proc.stderr


@pytest.mark.parametrize("registry", ["distribution"], indirect=True)
def test_symlinked_blob_is_refused(layout: Path, signed_image: SignedImage, tmp_path: Path) -> None:
    algorithm, encoded = signed_image.digest.split(":")
    blob = layout / "blobs" / algorithm / encoded
    outside = tmp_path / "outside"
    outside.write_bytes(blob.read_bytes())
    blob.unlink()
    blob.symlink_to(outside)
    with pytest.raises(NotFound):
        LayoutRepository(layout).resolve("v1", Deadline.after(5))


def test_missing_layout_and_tag(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        LayoutRepository(tmp_path)
    (tmp_path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (tmp_path / "index.json").write_text('{"schemaVersion": 2, "manifests": []}')
    with pytest.raises(NotFound) as info:
        LayoutRepository(tmp_path).resolve("v9", Deadline.after(5))
    assert "v9" in str(info.value)


@pytest.mark.parametrize(
    ("text", "path", "target"),
    [
        ("./dir:v1", "dir", "v1"),
        ("/a/b:latest", "/a/b", "latest"),
        ("dir@sha256:" + "a" * 64, "dir", "sha256:" + "a" * 64),
    ],
)
def test_split_layout_reference(text: str, path: str, target: str) -> None:
    p, t = split_layout_reference(text)
    assert (p, t) == (Path(path), target)


@pytest.mark.parametrize("text", ["dir", ":v1", "dir@sha256:short", "dir:-bad"])
def test_split_layout_reference_rejects(text: str) -> None:
    with pytest.raises(InvalidReference):
        split_layout_reference(text)


@pytest.mark.parametrize("registry", ["distribution"], indirect=True)
def test_verify_a_layout_with_a_scope(layout: Path, notation: Notation, tmp_path: Path) -> None:
    """notation verify --oci-layout --scope and referee verify --oci-layout --scope agree."""
    config = notation.home / "notation"
    stores = sorted(p.name for p in (config / "truststore" / "x509" / "ca").iterdir())
    policy = write_trust_policy(tmp_path / "trustpolicy.json", stores=[f"ca:{s}" for s in stores],
                                scopes=["local/app"], name="local")  # fmt: skip
    (config / "trustpolicy.json").write_text(policy.read_text())
    for scope, allowed in (("local/app", True), ("local/other", False)):
        theirs = run([tool("notation"), "verify", "--oci-layout", "--scope", scope, f"{layout}:v1"],
                     env=notation.env(), check=False)  # fmt: skip
        ours = referee("verify", "--oci-layout", "--scope", scope, "--trust-policy", str(policy),
                       "--trust-store", str(config / "truststore"), f"{layout}:v1")  # fmt: skip
        assert (theirs.returncode == 0) is allowed, theirs.stderr
        assert (ours.returncode == 0) is allowed, ours.stdout + ours.stderr
    missing = referee("verify", "--oci-layout", "--trust-policy", str(policy), "--trust-store",
                      str(config / "truststore"), f"{layout}:v1")  # fmt: skip
    assert missing.returncode == 2 and "--scope" in missing.stderr

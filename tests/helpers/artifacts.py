"""Putting images, signatures and other artifacts into registries with the real oras and notation."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.registries import RunningRegistry
from tests.helpers.tools import run, tool


@dataclass(frozen=True)
class Notation:
    """The notation CLI with its own configuration directory and a test signing key."""

    home: Path

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "XDG_CONFIG_HOME": str(self.home),
            "XDG_CACHE_HOME": str(self.home / "cache"),  # notation's CRL cache, per test
            "NOTATION_EXPERIMENTAL": "1",
        }

    def sign(self, registry: RunningRegistry, reference: str, *extra: str) -> None:
        args = [tool("notation"), "sign", *extra]
        if registry.plain_http:
            args.append("--insecure-registry")
        if registry.has_referrers_api:
            args.append("--force-referrers-tag=false")
        env = self.env()
        if registry.ca_file is not None:
            env["SSL_CERT_FILE"] = str(registry.ca_file)
        run([*args, reference], env=env)

    def sign_layout(self, layout_ref: str) -> None:
        run([tool("notation"), "sign", "--oci-layout", layout_ref], env=self.env())


def make_notation(home: Path, key_name: str = "referee-test.example") -> Notation:
    notation = Notation(home)
    run([tool("notation"), "cert", "generate-test", "--default", key_name], env=notation.env())
    return notation


def oras(*args: str, cwd: Path | None = None) -> str:
    return run([tool("oras"), *args], cwd=cwd).stdout


def push_image(registry: RunningRegistry, repo: str, tag: str, workdir: Path, content: str = "hello") -> str:
    """Push a small OCI image (config + one layer); return its digest."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "layer.txt").write_text(content)
    (workdir / "config.json").write_text(
        json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    )
    out = oras(
        "push",
        *registry.oras_flags(),
        f"{registry.host}/{repo}:{tag}",
        "--config",
        "config.json:application/vnd.oci.image.config.v1+json",
        "layer.txt:application/vnd.oci.image.layer.v1.tar",
        "--format",
        "json",
        cwd=workdir,
    )
    return str(json.loads(out)["digest"])


def attach(
    registry: RunningRegistry,
    subject: str,
    artifact_type: str,
    workdir: Path,
    *,
    name: str = "attached.json",
    content: str = "{}",
) -> str:
    """Attach an artifact with oras (image-spec 1.1 form: artifactType + empty config); return its digest."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / name).write_text(content)
    out = oras(
        "attach",
        *registry.oras_flags(),
        "--artifact-type",
        artifact_type,
        subject,
        name,
        "--format",
        "json",
        cwd=workdir,
    )
    return str(json.loads(out)["digest"])


def oras_discover(registry: RunningRegistry, reference: str) -> dict[str, object]:
    return dict(json.loads(oras("discover", *registry.oras_flags(), "--format", "json", reference)))


def referrer_tree(node: dict[str, object]) -> set[tuple[str, str, str]]:
    """(parent digest, digest, artifactType) for every edge of an oras- or referee-style tree."""
    edges: set[tuple[str, str, str]] = set()

    def walk(parent: str, children: object) -> None:
        assert isinstance(children, list)
        for child in children:
            edges.add((parent, child["digest"], child.get("artifactType") or ""))
            walk(child["digest"], child.get("referrers") or [])

    walk(str(node["digest"]), node.get("referrers") or [])
    return edges


OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def manifest_descriptor(registry: RunningRegistry, reference: str) -> dict[str, object]:
    """The descriptor (mediaType, digest, size) of a manifest, as oras resolves it."""
    return dict(json.loads(oras("manifest", "fetch", "--descriptor", *registry.oras_flags(), reference)))


def push_index(
    registry: RunningRegistry, repo: str, tag: str, platforms: list[str], workdir: Path
) -> tuple[str, dict[str, str]]:
    """A multi-platform image: one small image per platform (``os/arch[/variant]``, each with its own
    content), and an OCI image index of them pushed with ``oras manifest push`` under ``tag``.
    Returns the index's digest and each platform's manifest digest."""
    entries: list[dict[str, object]] = []
    children: dict[str, str] = {}
    for platform in platforms:
        os_name, architecture, *variant = platform.split("/")
        label = platform.replace("/", "-")
        digest = push_image(registry, repo, f"{tag}-{label}", workdir / label, content=f"{repo} {platform}")
        descriptor = manifest_descriptor(registry, f"{registry.host}/{repo}@{digest}")
        spec: dict[str, str] = {"os": os_name, "architecture": architecture}
        if variant:
            spec["variant"] = variant[0]
        entries.append({**descriptor, "platform": spec})
        children[platform] = digest
    index = workdir / f"{tag}-index.json"
    index.write_text(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}))
    out = oras(
        "manifest", "push", *registry.oras_flags(), "--media-type", OCI_INDEX, "--descriptor",
        f"{registry.host}/{repo}:{tag}", str(index),
    )  # fmt: skip
    return str(json.loads(out)["digest"]), children

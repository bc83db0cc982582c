"""Shared fixtures: real registries of both kinds, the real notation CLI, populated repositories."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import registries
from tests.helpers.artifacts import Notation, attach, make_notation, oras_discover, push_image
from tests.helpers.registries import RunningRegistry

NOTARY = "application/vnd.cncf.notary.signature"
SBOM = "application/spdx+json"


@pytest.fixture(scope="session")
def notation(tmp_path_factory: pytest.TempPathFactory) -> Notation:
    return make_notation(tmp_path_factory.mktemp("notation"))


@pytest.fixture(scope="session")
def distribution(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    with registries.distribution(tmp_path_factory.mktemp("distribution")) as reg:
        yield reg


@pytest.fixture(scope="session")
def olareg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    with registries.olareg(tmp_path_factory.mktemp("olareg")) as reg:
        yield reg


@pytest.fixture(scope="session", params=["distribution", "olareg"])
def registry(request: pytest.FixtureRequest) -> RunningRegistry:
    """Each test that takes this runs once per registry kind."""
    reg: RunningRegistry = request.getfixturevalue(request.param)
    return reg


@dataclass(frozen=True)
class SignedImage:
    registry: RunningRegistry
    repo: str
    tag: str
    digest: str
    notation_signature: str  # signed by notation (config.mediaType form)
    v11_signature: str  # artifactType + empty config form, attached by oras
    sbom: str
    sbom_signature: str  # a signature on the SBOM: a second level of the tree

    @property
    def reference(self) -> str:
        return f"{self.registry.host}/{self.repo}:{self.tag}"


@pytest.fixture(scope="session")
def signed_image(
    registry: RunningRegistry, notation: Notation, tmp_path_factory: pytest.TempPathFactory
) -> SignedImage:
    """An image with signatures of both shapes notation accepts, an SBOM, and a signature on the SBOM."""
    work = tmp_path_factory.mktemp(f"signed-{registry.kind}")
    repo = "demo/app"
    digest = push_image(registry, repo, "v1", work)
    subject = f"{registry.host}/{repo}@{digest}"
    notation.sign(registry, subject)
    v11 = attach(registry, subject, NOTARY, work, name="envelope.jws", content='{"not":"a real envelope"}')
    sbom = attach(registry, subject, SBOM, work, name="sbom.spdx.json", content='{"spdxVersion":"SPDX-2.3"}')
    sbom_signature = attach(
        registry, f"{registry.host}/{repo}@{sbom}", NOTARY, work, name="sbom-sig.jws", content='{"x":1}'
    )
    listed = oras_discover(registry, subject)["referrers"]
    assert isinstance(listed, list)
    notation_sig = next(r["digest"] for r in listed if r["artifactType"] == NOTARY and r["digest"] != v11)
    return SignedImage(registry, repo, "v1", digest, notation_sig, v11, sbom, sbom_signature)


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    return tmp_path


# --- In CI a skipped test is a failure: a skip must never hide a missing tool. ---------------------

_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI") and _skipped and exitstatus == 0:
        session.exitstatus = 1
        print(f"\nCI: {len(_skipped)} test(s) skipped; skips are failures in CI: {_skipped[:5]}")

"""The Gatekeeper policies, checked and tested by the real OPA; templates in step with their Rego."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers.tools import ROOT, run, tool

POLICIES = ROOT / "policies"


@pytest.fixture(scope="module")
def capabilities(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tool("opa")
    out = tmp_path_factory.mktemp("opa") / "capabilities.json"
    run(["bash", str(ROOT / "scripts" / "opa-capabilities.sh"), str(out)])
    return out


def test_opa_check_strict(capabilities: Path) -> None:
    run([tool("opa"), "check", "--strict", "--capabilities", str(capabilities), str(POLICIES)])


def test_opa_tests_pass(capabilities: Path) -> None:
    args = [tool("opa"), "test", "--ignore", "*.yaml", "--capabilities", str(capabilities), str(POLICIES)]
    proc = run(args, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS: 29/29" in proc.stdout


def test_opa_fmt_clean() -> None:
    proc = run([tool("opa"), "fmt", "--list", str(POLICIES)], check=False)
    assert proc.stdout.strip() == "", f"not opa-fmt formatted: {proc.stdout}"


def test_templates_are_generated_from_their_rego() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen-templates.py"), "--check"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", ["referee-verified-images", "referee-pinned-images"])
def test_template_rego_compiles_as_embedded(name: str, capabilities: Path, tmp_path: Path) -> None:
    template = yaml.safe_load((POLICIES / name / "template.yaml").read_text())
    assert template["apiVersion"] == "templates.gatekeeper.sh/v1"
    assert template["metadata"]["name"] == template["spec"]["crd"]["spec"]["names"]["kind"].lower()
    schema = template["spec"]["crd"]["spec"]["validation"]["openAPIV3Schema"]
    assert schema["type"] == "object" and all(
        "type" in p for p in schema["properties"].values()
    )  # structural
    [target] = template["spec"]["targets"]
    [code] = target["code"]
    assert code["engine"] == "Rego" and code["source"]["version"] == "v1"
    # Gatekeeper refuses templates that import rego.v1 ("bad import"); source.version v1 is enough.
    assert "import rego.v1" not in code["source"]["rego"]
    # The shared library rides along as the template's libs, the only ones it imports.
    assert code["source"]["libs"] == [(POLICIES / "lib" / "images.rego").read_text().expandtabs(4)]
    files = []
    for i, text in enumerate([code["source"]["rego"], *code["source"]["libs"]]):
        assert "import rego.v1" not in text
        files.append(tmp_path / f"embedded-{i}.rego")
        files[-1].write_text(text)
    run([tool("opa"), "check", "--strict", "--capabilities", str(capabilities), *map(str, files)])


def test_samples_are_valid_yaml_of_the_expected_kinds() -> None:
    kinds = []
    for path in sorted(POLICIES.rglob("*.yaml")):
        kinds.extend(doc["kind"] for doc in yaml.safe_load_all(path.read_text()) if doc)
    for expected in (
        "ConstraintTemplate",
        "Provider",
        "RefereeVerifiedImages",
        "RefereePinnedImages",
        "Assign",
        "Pod",
    ):
        assert expected in kinds

"""The Gatekeeper policies, checked and tested by the real OPA; templates in step with their Rego."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers.tools import ROOT, run, tool
from webhook.errors import ConfigError
from webhook.oci import reference
from webhook.oci.patterns import ImagePattern

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
    assert "PASS: 35/35" in proc.stdout


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


# --- exemptImages: the templates read them as Referee does ----------------------------------------

_DIGEST = "sha256:" + "0123456789abcdef" * 4
_PATTERNS = [
    "registry.k8s.io/pause:*",
    "registry.k8s.io/pause",
    "registry.k8s.io",
    "*.k8s.io/*",
    "registry.*.io/**",
    "docker.io/library/busybox:*",
    "docker.io/**",
    "index.docker.io/library/busybox:1.*",
    "*.dkr.ecr.us-east-1.amazonaws.com/platform/*",
    "*.dkr.ecr.us-east-1.amazonaws.com/platform/**",
    "localhost:5000/*",
    "localhost:5000",
    "LOCALHOST:5000/app:v?",
    "registry.example.com:443/apps/**/web:[0-9]*",
    f"registry.example.com/app@{_DIGEST}",
    "registry.example.com/app:latest",
    "registry.example.com/a*p/x",
    "registry.example.com/**/**",
    "127.0.0.1:5000/*/*:v1",
    "*/*",
    "*",
    "r?gistry.example.com/app",
    "busybox:*",  # refused by Referee (the host is always written out); exempts nothing in Rego
]
_IMAGES = [
    "registry.k8s.io/pause:3.9",
    "REGISTRY.K8S.IO:443/pause:3.9",
    "registry.k8s.io/pause",
    "registry.k8s.io/pause/evil:1",
    "busybox",
    "busybox:1.36",
    "index.docker.io/library/busybox:1.36",
    "busybox:443/miner:1",
    f"library/busybox@{_DIGEST}",
    "123.dkr.ecr.us-east-1.amazonaws.com/platform/agent:1",
    "123.dkr.ecr.us-east-1.amazonaws.com/platform/a/agent:1",
    "evil.example/x.dkr.ecr.us-east-1.amazonaws.com/platform/miner:1",
    "localhost:5000/app",
    "LOCALHOST:5000/app:v2",
    "registry.example.com/apps/web:1",
    "registry.example.com/apps/x/y/web:12",
    "registry.example.com:443/apps/web:x",
    f"registry.example.com/app@{_DIGEST}",
    f"registry.example.com/app:v1@{_DIGEST}",
    "registry.example.com/app",
    "registry.example.com/abcp/x:1",
    "127.0.0.1:5000/a/b:v1",
    "127.0.0.1:5000/a:v1",
    "rXgistry.example.com/app:1",
    "[kube-system]registry.example.com/app:1",
    "registry.example.com/App:1",
    "registry.example.com/app:",
]


def test_templates_exempt_exactly_the_images_referee_exempts(tmp_path: Path) -> None:
    """policies/lib/images.rego against webhook.oci.patterns over every pattern and image above: the
    same answer for each pattern Referee accepts, and no exemption from one it refuses."""
    cases = []
    for pattern, image in itertools.product(_PATTERNS, _IMAGES):
        try:
            parsed = ImagePattern.parse(pattern)
        except ConfigError:
            cases.append([pattern, image, False])
            continue
        try:
            ref = reference.parse(image)
        except reference.InvalidReference:
            cases.append([pattern, image, False])
            continue
        cases.append([pattern, image, parsed.matches(ref)])
    assert sum(1 for c in cases if c[2]) > 40  # the table exempts a good share, not nothing
    (tmp_path / "input.json").write_text(json.dumps(cases))
    (tmp_path / "compare.rego").write_text(
        "package compare\n\nimport data.lib.refereeimages\n\n"
        "exempt(image, pattern) := true if refereeimages.exempt(image, [pattern]) else := false\n\n"
        "differ := [[c[0], c[1], c[2]] | some c in input; exempt(c[1], c[0]) != c[2]]\n"
    )
    lib, compare, given = POLICIES / "lib" / "images.rego", tmp_path / "compare.rego", tmp_path / "input.json"
    proc = run([tool("opa"), "eval", "--format", "json", "-d", str(lib), "-d", str(compare), "-i", str(given),
                "data.compare.differ"])  # fmt: skip
    differ = json.loads(proc.stdout)["result"][0]["expressions"][0]["value"]
    assert differ == [], f"[pattern, image, Referee's answer] where the Rego differs: {differ}"

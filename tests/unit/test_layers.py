"""The package's layers (docs/architecture.md): imports point downward only, and the pure cores do
no I/O. Read from the source with ``ast``, so a violation fails here before it is ever run."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "webhook"

# Lowest first. A module may import from its own layer and the ones below it, never above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("basics", ("webhook", "webhook.errors", "webhook.deadline", "webhook.metrics", "webhook.reloading",
                "webhook.strictjson", "webhook.transport")),
    ("shared store", ("webhook.shared",)),
    ("pure cores", ("webhook.notary", "webhook.oci")),
    ("registry", ("webhook.registry",)),
    ("trust I/O", ("webhook.trust",)),
    ("configuration", ("webhook.config",)),
    ("orchestration", ("webhook.verify",)),
    ("entry points", ("webhook.server", "webhook.cli", "webhook.__main__")),
]  # fmt: skip

# What the pure cores may never import: networks, processes, servers, clients, files by path.
IO_MODULES = ("flask", "urllib3", "requests", "kubernetes", "gunicorn", "socket", "http", "subprocess",
              "prometheus_client", "yaml", "os", "pathlib", "threading", "urllib.request")  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    """The most specific prefix decides (``webhook.transport`` is a basic)."""
    best, best_len = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    return best


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    assert [module_name(p) for p in MODULES if layer_of(module_name(p)) < 0] == []


@pytest.mark.parametrize("path", MODULES, ids=[module_name(p) for p in MODULES])
def test_imports_point_downward(path: Path) -> None:
    mine = layer_of(module_name(path))
    upward = []
    for name in imports_of(path):
        if name.startswith("webhook"):
            theirs = layer_of(name)
            if theirs > mine:
                upward.append(f"{name} ({LAYERS[theirs][0]})")
    assert upward == [], f"{module_name(path)} ({LAYERS[mine][0]}) imports from a higher layer"


@pytest.mark.parametrize(
    "path", [p for p in MODULES if LAYERS[layer_of(module_name(p))][0] == "pure cores"], ids=module_name
)
def test_pure_cores_do_no_io(path: Path) -> None:
    found = [n for n in imports_of(path) if any(n == m or n.startswith(m + ".") for m in IO_MODULES)]
    assert found == [], f"{module_name(path)} imports I/O modules"


@pytest.mark.parametrize(
    "path", [p for p in MODULES if module_name(p).startswith("webhook.shared")], ids=module_name
)
def test_the_shared_store_imports_only_basics(path: Path) -> None:
    """The Redis adapter knows nothing of images, registries or decisions: the gate's records are
    made in verify/records.py, and server/app.py wires the store in."""
    basics = LAYERS[0][1]
    found = [n for n in imports_of(path) if n.startswith("webhook") and layer_of(n) > 1]
    assert found == [], f"{module_name(path)} imports beyond {', '.join(basics)}"


def test_the_codec_does_no_io() -> None:
    found = [n for n in imports_of(PACKAGE / "shared" / "codec.py")
             if any(n == m or n.startswith(m + ".") for m in (*IO_MODULES, "redis"))]  # fmt: skip
    assert found == []

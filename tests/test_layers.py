"""The house's layers: no import circles, and no arrow from a lower layer to a higher one.

`diffusion/` (the maths) and `models/` (the networks) must stay usable without Lightning, Hydra,
the LightningModule or the data modules; that is what lets the same sampler drive a test model
and an 8B checkpoint, and a new objective be one file.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "llada"
# Top-level packages a lower layer must not import (Hydra's own config library included).
FORBIDDEN_BELOW = ("lightning", "hydra", "omegaconf", "torchmetrics")
LOWER_LAYERS = {
    "llada.diffusion": ("llada.diffusion",),
    "llada.models": ("llada.models", "llada.hub"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, everywhere: bool) -> set[str]:
    """Absolute names a file imports: at module level only, or anywhere in it."""
    tree = ast.parse(path.read_text())
    nodes = ast.walk(tree) if everywhere else tree.body
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


FILES = sorted(PACKAGE.rglob("*.py"))
MODULES = {module_name(path) for path in FILES}


def llada_imports(path: Path) -> set[str]:
    """The llada modules a file imports, lazily inside functions too (a lazy import hides a
    circle from Python, not from the design)."""
    return {name for name in imports(path, everywhere=True) if name in MODULES} - {
        module_name(path)
    }


@pytest.mark.parametrize("layer", sorted(LOWER_LAYERS))
def test_lower_layers_import_nothing_above_them(layer: str) -> None:
    allowed = LOWER_LAYERS[layer]
    for path in FILES:
        if not module_name(path).startswith(layer):
            continue
        for name in imports(path, everywhere=True):
            top = name.split(".")[0]
            assert top not in FORBIDDEN_BELOW, f"{path.name} imports {name}"
            if top == "llada":
                assert name.startswith(allowed), f"{path.name} imports {name} (above {layer})"


def test_no_import_circles() -> None:
    graph = {module_name(path): llada_imports(path) for path in FILES}
    done: set[str] = set()

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            cycle = [*stack[stack.index(node) :], node]
            raise AssertionError("import circle: " + " -> ".join(cycle))
        if node in done:
            return
        for child in graph.get(node, ()):
            if child != "llada" and not node.startswith(child + "."):  # a package's own parent
                visit(child, [*stack, node])
        done.add(node)

    for module in graph:
        visit(module, [])

"""Architecture rules that must keep holding (DESIGN §3)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(("package", "forbidden"), [("edge", "cloud"), ("cloud", "edge"),
                                                    ("models", "edge"), ("models", "cloud")])
def test_packages_do_not_import_each_other(package: str, forbidden: str) -> None:
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / package).rglob("*.py")
                 if forbidden in _imported_top_levels(p)]
    assert offenders == [], f"{package} must not import {forbidden}: {offenders}"


HEAVY = {"openvino", "tensorrt", "pycuda", "transformers", "accelerate", "ultralytics", "torch", "faiss",
         "onnx2torch", "psycopg"}


def test_heavy_runtimes_are_not_imported_at_module_level() -> None:
    offenders = []
    for path in list((ROOT / "models").rglob("*.py")) + list((ROOT / "edge").rglob("*.py")) + \
            list((ROOT / "cloud").rglob("*.py")) + list((ROOT / "crossview").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only; imports inside functions are lazy
            mods: list[str] = []
            if isinstance(node, ast.Import):
                mods = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                mods = [node.module.split(".")[0]]
            offenders += [f"{path.relative_to(ROOT)}: {m}" for m in mods if m in HEAVY]
    assert offenders == [], f"import these lazily (models.errors.require): {offenders}"

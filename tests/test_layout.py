"""Architecture rules that must keep holding (docs/architecture.md §5: floors and rooms)."""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "protos", "persist", "edge", "cloud", "crossview", "tools")  # whose import graph is checked
SIZE_CHECKED = ("models", "edge", "cloud", "crossview", "persist")
MAX_LINES = 550

# Who may import the generated wire code; everyone else sees dataclasses and numpy (docs/architecture.md §4).
WIRE_MODULE = "protos.crossview.v1"
WIRE_IMPORTERS = (
    "protos/*",
    "cloud/wire.py",
    "cloud/edge_session*.py",
    "cloud/server.py",
    "cloud/handshake*.py",
    "edge/uplink/*",
    "tests/*",
    "tools/*",
)
EDGE_ROOMS = ("sources", "uplink", "storage")


def _python_files(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py") if ".venv" not in p.parts)


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import that runs: module level and inside functions, not under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _imported_names(path: Path) -> list[tuple[str, int]]:
    """Absolute dotted names a file imports (relative imports resolved), with line numbers.

    ``from a.b import c`` yields ``a.b.c`` (a submodule or a name in ``a.b``; callers resolve which).
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[tuple[str, int]] = []
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
            continue
        if node.level:
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        out += [(f"{prefix}.{alias.name}" if alias.name != "*" else prefix, node.lineno) for alias in node.names]
    return sorted(out, key=lambda item: item[1])  # source order: the first import of a module names it


def _top_levels(path: Path) -> set[str]:
    return {name.split(".")[0] for name, _ in _imported_names(path)}


def import_graph(folders: tuple[str, ...] = PACKAGES) -> dict[str, dict[str, int]]:
    """Project module → {project module it imports: line}; an import names the longest known module."""
    files = {_module_name(p): p for p in _python_files(*folders)}
    graph: dict[str, dict[str, int]] = {m: {} for m in files}
    for module, path in files.items():
        for name, line in _imported_names(path):
            parts = name.split(".")
            target = next((".".join(parts[:n]) for n in range(len(parts), 0, -1)
                           if ".".join(parts[:n]) in files), None)
            if target is not None and target != module:
                graph[module].setdefault(target, line)
    return graph


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (a, b, ..., a) per strongly connected component with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):  # iterative Tarjan
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return [_cycle_in(graph, set(c)) for c in components]


def _cycle_in(graph: dict[str, dict[str, int]], component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself (breadth first)."""
    start = min(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child not in component:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle found in component {sorted(component)}")


def _describe(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in itertools.pairwise(cycle)) + \
        f" -> {cycle[-1]}"


# --- (a) no import cycles ------------------------------------------------------------------------

def test_no_import_cycles() -> None:
    graph = import_graph()
    cycles = find_cycles(graph)
    assert cycles == [], "import cycles (break them with a module both sides import):\n" + \
        "\n".join(_describe(graph, c) for c in cycles)


def test_cycle_finder_reports_a_cycle() -> None:
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3, "d": 4}, "d": {}, "e": {"d": 5}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert _describe(graph, ["a", "b", "c", "a"]) == "a (line 1) -> b (line 2) -> c (line 3) -> a"
    assert find_cycles({"a": {"b": 1}, "b": {}}) == []


def test_relative_and_function_level_imports_resolve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    for name in ("__init__.py", "sub/__init__.py", "sub/leaf.py"):
        (package / name).write_text("")
    (package / "a.py").write_text("from .sub import leaf\n")
    (package / "sub" / "leaf.py").write_text("def f():\n    from ..a import x\n    from .. import a\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    graph = import_graph(("pkg",))
    assert graph["pkg.a"] == {"pkg.sub.leaf": 1}
    assert graph["pkg.sub.leaf"] == {"pkg.a": 2}
    assert find_cycles(graph) == [["pkg.a", "pkg.sub.leaf", "pkg.a"]]


# --- floors: edge and cloud never import each other; persist stays below them ---------------------

@pytest.mark.parametrize(("package", "forbidden"), [
    ("edge", "cloud"), ("cloud", "edge"), ("models", "edge"), ("models", "cloud"),
    ("persist", "edge"), ("persist", "cloud"), ("persist", "crossview"),  # (d)
])
def test_packages_do_not_import_each_other(package: str, forbidden: str) -> None:
    offenders = [_rel(p) for p in _python_files(package) if forbidden in _top_levels(p)]
    assert offenders == [], f"{package} must not import {forbidden}: {offenders}"


def test_persist_exists() -> None:
    assert (ROOT / "persist" / "__init__.py").is_file(), "persist/ is the shared SQLite and durable-write package"


# --- (b) the generated wire code only where messages are built -----------------------------------

def _wire_offenders(files: list[Path]) -> list[str]:
    offenders = []
    for path in files:
        rel = _rel(path)
        if any(fnmatch(rel, pattern) for pattern in WIRE_IMPORTERS):
            continue
        hits = {line for name, line in _imported_names(path)
                if name == WIRE_MODULE or name.startswith(WIRE_MODULE + ".")}
        offenders += [f"{rel}:{line}" for line in sorted(hits)]
    return offenders


def test_wire_module_imported_only_where_allowed() -> None:
    offenders = _wire_offenders(_python_files(*PACKAGES, "tests", "scripts"))
    assert offenders == [], (f"{WIRE_MODULE} may be imported only by {', '.join(WIRE_IMPORTERS)}; "
                             f"elsewhere use the dataclasses of cloud/wire.py or edge/uplink/messages.py: {offenders}")


# --- (c) edge rooms, and grpc only in the uplink ----------------------------------------------------

@pytest.mark.parametrize("room", EDGE_ROOMS)
def test_edge_room_exists(room: str) -> None:
    assert (ROOT / "edge" / room / "__init__.py").is_file(), f"edge/{room}/ should be a package"


def _grpc_offenders(files: list[Path]) -> list[str]:
    return [f"{_rel(p)}:{line}" for p in files if not _rel(p).startswith("edge/uplink/")
            for name, line in _imported_names(p) if name.split(".")[0] in ("grpc", "grpc_health")]


def test_only_the_uplink_imports_grpc_on_the_edge() -> None:
    offenders = _grpc_offenders(_python_files("edge"))
    assert offenders == [], f"only edge/uplink/ talks gRPC: {offenders}"


# --- (e) file size ----------------------------------------------------------------------------------

def test_no_module_over_max_lines() -> None:
    long = {_rel(p): n for p in _python_files(*SIZE_CHECKED) if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"split these (at most {MAX_LINES} lines a file): {long}"


# --- heavy runtimes ---------------------------------------------------------------------------------

HEAVY = {"openvino", "tensorrt", "pycuda", "transformers", "accelerate", "ultralytics", "torch", "faiss",
         "onnx2torch", "psycopg"}


def test_heavy_runtimes_are_not_imported_at_module_level() -> None:
    offenders = []
    for path in _python_files("models", "edge", "cloud", "crossview", "persist"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only; imports inside functions are lazy
            mods: list[str] = []
            if isinstance(node, ast.Import):
                mods = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                mods = [node.module.split(".")[0]]
            offenders += [f"{_rel(path)}: {m}" for m in mods if m in HEAVY]
    assert offenders == [], f"import these lazily (models.errors.require): {offenders}"

"""The package's shape (DESIGN.md principles 11 and 12): imports point one way, and importing the
package changes nothing in the process."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "analyzer"


def _module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the package's modules it imports, read from the source (ast), counting imports
    inside functions and under TYPE_CHECKING too. `from analyzer.x import y` points at
    analyzer.x.y when y is a module, else at analyzer.x. Importing analyzer.x.y also runs the
    package analyzer.x's __init__ first, so it points at that package too, unless the importer
    sits inside it."""
    files = {_module_name(p, package): p for p in sorted(package.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        here = name.split(".") if is_package else name.split(".")[:-1]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here[: len(here) - (node.level - 1)]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                targets = [f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in files else origin
                           for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in files:  # `import analyzer.x.y as z` -> a module
                    target = target.rpartition(".")[0]
                package = target.rpartition(".")[0]
                while package and not name.startswith(package + "."):  # its packages' __init__
                    edges.add(package)
                    package = package.rpartition(".")[0]
                if target and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[tuple[list[str], list[str]]]:
    """(one cycle a -> ... -> a, the whole group) for each group of modules that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def connect(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            connect(node)
    found = []
    for group in groups:
        start = min(group)
        # shortest way back to `start` inside the group (breadth first)
        paths = {start: [start]}
        frontier = [start]
        cycle = None
        while frontier and cycle is None:
            following = []
            for node in frontier:
                for nxt in sorted(graph[node] & group):
                    if nxt == start:
                        cycle = paths[node] + [start]
                        break
                    if nxt not in paths:
                        paths[nxt] = paths[node] + [nxt]
                        following.append(nxt)
                if cycle:
                    break
            frontier = following
        found.append((cycle, sorted(group)))
    return sorted(found)


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert "analyzer.pipeline" in graph and graph["analyzer.pipeline"], "the graph reads nothing"
    found = cycles(graph)
    report = "\n".join(f"cycle: {' -> '.join(loop)}\n  modules importing each other: {', '.join(group)}"
                       for loop, group in found)
    assert not found, f"import cycles in analyzer/:\n{report}"


def test_the_cycle_check_finds_a_cycle_through_a_function_level_import(tmp_path):
    pkg = tmp_path / "analyzer"
    (pkg / "parsers").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "parsers" / "__init__.py").write_text("")
    (pkg / "cli.py").write_text("from analyzer import batch\n")
    (pkg / "batch.py").write_text("def f():\n    from analyzer.cli import shown\n")
    (pkg / "parsers" / "a.py").write_text("from .b import split\n")
    (pkg / "parsers" / "b.py").write_text("def g():\n    from analyzer.parsers import a\n")
    # a package whose __init__ imports a module that imports a submodule of the package
    (pkg / "signatures").mkdir()
    (pkg / "signatures" / "__init__.py").write_text("from analyzer.signatures.load import x\n")
    (pkg / "signatures" / "load.py").write_text("from analyzer.signatures.model import y\n"
                                                 "from analyzer import detectors\n")
    (pkg / "signatures" / "model.py").write_text("")
    (pkg / "detectors.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                      "    from analyzer.signatures.model import Library\n")
    graph = import_graph(pkg)
    assert graph["analyzer.cli"] == {"analyzer.batch"}
    assert graph["analyzer.parsers.a"] == {"analyzer.parsers.b"}
    assert graph["analyzer.signatures.load"] == {"analyzer.signatures.model", "analyzer.detectors"}
    assert graph["analyzer.detectors"] == {"analyzer.signatures", "analyzer.signatures.model"}
    assert [loop for loop, _ in cycles(graph)] == [
        ["analyzer.batch", "analyzer.cli", "analyzer.batch"],
        ["analyzer.detectors", "analyzer.signatures", "analyzer.signatures.load", "analyzer.detectors"],
        ["analyzer.parsers.a", "analyzer.parsers.b", "analyzer.parsers.a"]]


def test_importing_the_package_changes_nothing_in_the_process():
    env = {k: v for k, v in os.environ.items() if k not in ("_RJEM_MALLOC_CONF", "MALLOC_MMAP_THRESHOLD_")}
    code = ("import os; e = dict(os.environ); import analyzer, analyzer.cli, analyzer.pipeline; "
            "assert e == dict(os.environ), set(os.environ.items()) ^ set(e.items())")
    run = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr

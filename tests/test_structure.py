"""The package's shape (DESIGN.md principles 11 and 12): imports point one way, and importing the
package changes nothing in the process."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
                while package and package != name and not name.startswith(package + "."):
                    edges.add(package)  # its packages' __init__
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


def _environment_change(imports: str) -> dict:
    """What importing `imports` in a fresh interpreter changes in os.environ (None: removed)."""
    env = {k: v for k, v in os.environ.items() if k not in ("_RJEM_MALLOC_CONF", "MALLOC_MMAP_THRESHOLD_")}
    code = ("import json, os; e = dict(os.environ); import " + imports + "; "
            "print(json.dumps({k: os.environ.get(k) for k in set(e) | set(os.environ) "
            "if e.get(k) != os.environ.get(k)}))")
    run = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_importing_the_package_changes_nothing_in_the_process():
    # polars itself writes its allocator defaults into _RJEM_MALLOC_CONF when it is imported
    assert _environment_change("polars, analyzer.cli, analyzer.pipeline") == _environment_change("polars")
    assert _environment_change("analyzer, analyzer.cli") == {}  # polars not loaded yet
    code = ("import os, polars; e = dict(os.environ); import analyzer, analyzer.cli, analyzer.pipeline, "
            "analyzer.batch, analyzer.watch, analyzer.report; assert e == dict(os.environ)")
    run = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


class _Libc:
    def __init__(self, calls: list):
        self.calls = calls

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return 1


def _tune(monkeypatch, args: list[str], **env: str) -> list:
    from analyzer import cli

    calls: list = []
    monkeypatch.setattr(cli.ctypes, "CDLL", lambda name: _Libc(calls))
    for name in ("_RJEM_MALLOC_CONF", "MALLOC_MMAP_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cli.tune_process(args)
    return calls


def test_the_command_line_sets_the_allocator_and_for_one_bundle_the_mmap_threshold(monkeypatch):
    from analyzer import cli

    assert _tune(monkeypatch, ["analyze", "-o", "out", "case.zip"]) == [(-3, cli.MMAP_THRESHOLD)]
    assert os.environ["_RJEM_MALLOC_CONF"] == cli.ALLOCATOR
    assert _tune(monkeypatch, ["inspect", "case.zip", "--json", "-"]) == [(-3, cli.MMAP_THRESHOLD)]
    for args in (["batch", "in", "-o", "out"], ["watch", "drop"], ["--version"], []):
        assert _tune(monkeypatch, args) == [], args
        assert os.environ["_RJEM_MALLOC_CONF"] == cli.ALLOCATOR


def test_what_the_user_sets_in_the_environment_wins(monkeypatch):
    assert _tune(monkeypatch, ["analyze", "case.zip"], MALLOC_MMAP_THRESHOLD_="65536",
                 _RJEM_MALLOC_CONF="narenas:2") == []
    assert os.environ["_RJEM_MALLOC_CONF"] == "narenas:2"


def test_main_tunes_the_process_before_anything_loads_polars(monkeypatch):
    from analyzer import cli

    order = []
    monkeypatch.setattr(cli, "tune_process", lambda args: order.append(("tune", args)))
    monkeypatch.setattr(cli, "_mount_signatures", lambda: order.append("mount"))
    monkeypatch.setattr(cli, "app", lambda **kwargs: order.append(("app", kwargs["args"])))
    monkeypatch.setattr(sys, "argv", ["bundle-analyzer", "inspect", "case.zip"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 0
    assert order == [("tune", ["inspect", "case.zip"]), "mount", ("app", ["inspect", "case.zip"])]
    code = "import sys, analyzer.cli; assert 'polars' not in sys.modules"
    run = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_render_leaves_the_garbage_collector_as_it_found_it():
    import gc
    import json

    from analyzer.report import render

    doc = json.loads((ROOT / "tests" / "fixtures" / "analysis_sample.json").read_text(encoding="utf-8"))
    assert gc.isenabled()
    render(doc)
    assert gc.isenabled()
    gc.disable()
    try:
        render(doc)
        assert not gc.isenabled()
    finally:
        gc.enable()

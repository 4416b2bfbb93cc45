"""No import cycles in gnn_inn: the module graph (every ``import`` of a gnn_inn module, at
module level or inside a function) is acyclic, and every module imports in a fresh
interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import gnn_inn

PKG = Path(gnn_inn.__file__).resolve().parent


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def import_graph() -> dict[str, set[str]]:
    """``{module: modules it imports}`` within gnn_inn; importing ``a.b.c`` also counts as
    importing the packages ``a.b`` (their ``__init__`` runs), except a module's own ancestors
    (Python runs them first) — unless it imports one by name (``from . import x`` inside a
    package's submodule is an edge back to the package)."""
    mods = _modules()
    graph = {}
    for name, (path, is_pkg) in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[:len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod
                           for a in node.names]
            for t in targets:
                if not t.startswith("gnn_inn"):
                    continue
                while t not in mods:
                    t = t.rsplit(".", 1)[0]
                parts = t.split(".")
                # the packages on the way run first; a module's own ancestors have run already,
                # unless the module imports one of them by name (``from . import x``)
                deps.update(d for d in (".".join(parts[:i]) for i in range(2, len(parts)))
                            if not name.startswith(d + "."))
                deps.add(t)
        graph[name] = deps - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle ``[a, b, ..., a]`` of ``graph``, or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state and (c := visit(w)):
                return c
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state and (c := visit(v)):
            return c
    return None


def test_import_graph_sees_an_import_of_the_own_package():
    graph = import_graph()
    # trainer imports its siblings, never its own package by name
    assert "gnn_inn.training" not in graph["gnn_inn.training.trainer"]
    assert "gnn_inn.training.losses" in graph["gnn_inn.training.trainer"]


def test_find_cycle_detects_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_gnn_inn():
    graph = import_graph()
    assert "gnn_inn.training.sampling" in graph["gnn_inn.training.trainer"]  # edges are seen
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_every_module_imports_in_dependency_order_in_a_fresh_interpreter():
    graph = import_graph()
    order: list[str] = []
    seen: set[str] = set()

    def visit(v: str) -> None:
        if v in seen:
            return
        seen.add(v)
        for w in sorted(graph[v]):
            visit(w)
        order.append(v)

    for v in sorted(graph):
        visit(v)
    code = ("import importlib, sys\n"
            f"for m in {order!r}:\n"
            "    importlib.import_module(m)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]

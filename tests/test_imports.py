"""No import cycles in gnn_inn: the module graph (every ``import`` of a gnn_inn module, at
module level or inside a function) is acyclic, and every module imports in a fresh
interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gnn_inn
from helpers import import_graph as _import_graph

PKG = Path(gnn_inn.__file__).resolve().parent


def import_graph() -> dict[str, set[str]]:
    return _import_graph(PKG)


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


# ------------------------------------------------------------------ import direction
#: The parts of gnn_inn, lowest layer first (the arrows of the design notes). A module may
#: import its own part and the parts of lower layers, never a sibling of its layer nor a part
#: above it. Layer 0 holds utilities that import nothing of the project; ``training`` sits
#: above ``evaluation`` because the trainer validates with the evaluator.
LAYERS: list[set[str]] = [
    {"gnn_inn", "config", "registry"},
    {"data", "flows"},
    {"encoders", "decoders"},
    {"model"},
    {"evaluation"},
    {"training"},
    {"export"},
    {"cli"},
]

#: Upward imports that cannot be avoided yet, as ``(importer, imported)`` module pairs, each
#: with the reason. Empty: every import runs downwards.
ALLOWED_UPWARD: set[tuple[str, str]] = set()


def part(module: str) -> str:
    """The part a module belongs to: ``gnn_inn.training.elbo`` -> ``training``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layer_of(module: str) -> int:
    p = part(module)
    for i, layer in enumerate(LAYERS):
        if p in layer:
            return i
    raise AssertionError(f"{module}: part {p!r} has no layer; add it to LAYERS in "
                         f"{Path(__file__).name} at the height its imports allow")


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """``(importer, imported)`` pairs that import a sibling part of the same layer or a part
    of a higher layer."""
    bad = []
    for mod, deps in graph.items():
        for dep in deps:
            if part(dep) == part(mod):
                continue
            if layer_of(dep) >= layer_of(mod):
                bad.append((mod, dep))
    return sorted(bad)


def test_upward_imports_are_detected():
    graph = {"gnn_inn.data.io": {"gnn_inn.model"},  # data reaching up
             "gnn_inn.encoders.rgcn": {"gnn_inn.decoders.base"},  # sibling of the same layer
             "gnn_inn.model": {"gnn_inn.encoders", "gnn_inn.decoders", "gnn_inn.data"},
             "gnn_inn.training.trainer": {"gnn_inn.training.losses", "gnn_inn.evaluation"}}
    assert upward_imports(graph) == [("gnn_inn.data.io", "gnn_inn.model"),
                                     ("gnn_inn.encoders.rgcn", "gnn_inn.decoders.base")]


def test_every_part_has_a_layer():
    for mod in import_graph():
        layer_of(mod)


def test_no_upward_import_in_gnn_inn():
    graph = import_graph()
    # function-level imports count: model imports the encoders inside build_model
    assert "gnn_inn.encoders" in graph["gnn_inn.model"]
    bad = [e for e in upward_imports(graph) if e not in ALLOWED_UPWARD]
    assert not bad, "imports against the layers:\n" + "\n".join(f"{a} -> {b}" for a, b in bad)


def test_layer_zero_imports_nothing_of_the_project():
    graph = import_graph()
    for mod, deps in graph.items():
        if layer_of(mod) == 0:
            assert not deps, f"{mod} imports {sorted(deps)}"

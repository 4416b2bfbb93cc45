"""Helpers shared by the test modules, imported by name (``from helpers import ...``):
pytest puts ``tests/`` on ``sys.path`` because ``tests/conftest.py`` lives there.
Fixtures live in ``tests/conftest.py``."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from gnn_inn.training import sampling

DATA = os.environ.get("GNN_INN_DATA")
"""Folder of the benchmark datasets (``$GNN_INN_DATA``), or ``None``."""

needs_data = pytest.mark.skipif(not DATA, reason="GNN_INN_DATA not set")
needs_backend = pytest.mark.skipif(sampling.sampling_backend() is None,
                                   reason="no torch-sparse / pyg-lib")


def perturb(module: nn.Module, *, std: float, seed: int) -> nn.Module:
    """Add ``N(0, std²)`` noise (a generator seeded with ``seed``) to every parameter of
    ``module`` in place, moving it away from its (often identity) initialisation; returns it."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)
    return module


def write_graph(root: Path, name: str = "toy") -> Path:
    """``root/name/{train,valid,test}.txt``: 30 entities (one name with a space), 3 relations."""
    g = torch.Generator().manual_seed(0)
    ents = [f"e{i}" for i in range(29)] + ["entity with space"]
    rels = ["r0", "r1", "r2"]
    rows = set()
    while len(rows) < 260:
        h, r, t = (int(torch.randint(30, (1,), generator=g)), int(torch.randint(3, (1,),
                   generator=g)), int(torch.randint(30, (1,), generator=g)))
        rows.add(f"{ents[h]}\t{rels[r]}\t{ents[t]}")
    rows = sorted(rows)
    folder = root / name
    folder.mkdir(parents=True)
    for split, part in (("train", rows[:200]), ("valid", rows[200:230]), ("test", rows[230:])):
        (folder / f"{split}.txt").write_text("\n".join(part) + "\n", encoding="utf-8")
    return root


# ------------------------------------------------------------------ import graph
def _modules(pkg: Path) -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in pkg.rglob("*.py"):
        parts = list(path.relative_to(pkg.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def import_graph(pkg: Path) -> dict[str, set[str]]:
    """``{module: modules it imports}`` within the package ``pkg`` (e.g. gnn_inn); importing
    ``a.b.c`` also counts as importing the packages ``a.b`` (their ``__init__`` runs), except a
    module's own ancestors (Python runs them first) — unless it imports one by name
    (``from . import x`` inside a package's submodule is an edge back to the package)."""
    mods = _modules(pkg)
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
                if t != pkg.name and not t.startswith(pkg.name + "."):
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

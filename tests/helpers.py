"""Helpers shared by the test modules, imported by name (``from helpers import ...``):
pytest puts ``tests/`` on ``sys.path`` because ``tests/conftest.py`` lives there.
Fixtures live in ``tests/conftest.py``."""

from __future__ import annotations

import os

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

"""Query batches: what one optimisation step of a full-batch objective scores.

A :class:`QueryBatch` is one direction of a step (tail queries ``(h, r, ?)`` or head queries
``(?, r, t)``) with the answers its objective needs. Imports nothing of the project.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class QueryBatch:
    """One step's queries. ``direction`` is ``'tail'`` (``a = h``) or ``'head'`` (``a = t``)."""

    direction: str
    anchor: Tensor  # [B]
    relation: Tensor  # [B]
    target: Tensor | None = None  # [B] single answer (1vsAll, NS)
    other: Tensor | None = None  # [B] for NS: the answer entity
    rows: Tensor | None = None  # [P] KvsAll multi-hot rows
    cols: Tensor | None = None  # [P] KvsAll multi-hot cols


def unique_queries(a: Tensor, r: Tensor, ans: Tensor, num_entities: int, num_relations: int):
    """Unique ``(a, r)`` pairs with CSR lists of their answers."""
    key = a * num_relations + r
    uniq, inv = torch.unique(key, return_inverse=True)
    order = torch.argsort(inv, stable=True)
    counts = torch.bincount(inv, minlength=uniq.numel())
    offsets = torch.zeros(uniq.numel() + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(counts, 0)
    return uniq // num_relations, uniq % num_relations, offsets, ans[order]


def gather_csr(idx: Tensor, offsets: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
    """For query indices ``idx[B]`` return ``(row[P], value[P])`` of their CSR lists."""
    start, end = offsets[idx], offsets[idx + 1]
    counts = end - start
    rows = torch.repeat_interleave(torch.arange(idx.numel()), counts)
    pos = torch.arange(int(counts.sum())) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts
    ) + torch.repeat_interleave(start, counts)
    return rows, values[pos]


__all__ = ["QueryBatch", "gather_csr", "unique_queries"]

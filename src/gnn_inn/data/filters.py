"""``FilterIndex``: every known answer of a query, for filtered ranking.

Stored as two CSR structures (tails per ``(h, r)`` and heads per ``(r, t)``) built with one
sort each; a batch lookup is a ``searchsorted`` over the unique query keys plus a
``repeat_interleave`` gather. Memory ``O(M)`` for ``M`` triples, no Python loop over triples.
"""

from __future__ import annotations

import torch
from torch import Tensor


class _CSR:
    def __init__(self, key: Tensor, value: Tensor) -> None:
        order = torch.argsort(key, stable=True)
        key, value = key[order], value[order]
        self.keys, counts = torch.unique_consecutive(key, return_counts=True)
        self.offsets = torch.zeros(self.keys.numel() + 1, dtype=torch.long)
        self.offsets[1:] = torch.cumsum(counts, 0)
        self.values = value

    def lookup(self, query: Tensor) -> tuple[Tensor, Tensor]:
        device = query.device
        q = query.cpu()
        if self.keys.numel() == 0:
            e = torch.empty(0, dtype=torch.long, device=device)
            return e, e
        pos = torch.searchsorted(self.keys, q).clamp_max(self.keys.numel() - 1)
        found = self.keys[pos] == q
        start = torch.where(found, self.offsets[pos], 0)
        counts = torch.where(found, self.offsets[pos + 1] - self.offsets[pos], 0)
        rows = torch.repeat_interleave(torch.arange(q.numel()), counts)
        first = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        idx = torch.arange(rows.numel()) - first + torch.repeat_interleave(start, counts)
        return rows.to(device), self.values[idx].to(device)


class FilterIndex:
    """Known tails of every ``(h, r)`` and heads of every ``(r, t)`` among ``triples[M, 3]``.

    Build it from ``triples`` (usually train ∪ valid ∪ test, *same* relation ids as the
    queries). :meth:`tails` / :meth:`heads` return the pairs ``(query row, entity id)`` of a
    batch of queries, ready for ``scores[rows, cols] = -inf``.
    """

    def __init__(self, triples: Tensor, num_entities: int, num_relations: int) -> None:
        triples = torch.as_tensor(triples, dtype=torch.long).cpu()
        if triples.ndim != 2 or triples.shape[1] != 3:
            raise ValueError(f"triples must have shape [M, 3], got {tuple(triples.shape)}")
        triples = torch.unique(triples, dim=0)  # a triple listed in two splits counts once
        self.num_entities = int(num_entities)
        self.num_relations = int(num_relations)
        self.num_triples = int(triples.shape[0])
        h, r, t = triples.unbind(1)
        self._tails = _CSR(h * num_relations + r, t)
        self._heads = _CSR(r * num_entities + t, h)

    def tails(self, h: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
        """``(row[P], t[P])``: all known tails ``t`` of the queries ``(h[row], r[row], ?)``."""
        return self._tails.lookup(h.long() * self.num_relations + r.long())

    def heads(self, r: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(row[P], h[P])``: all known heads ``h`` of the queries ``(?, r[row], t[row])``."""
        return self._heads.lookup(r.long() * self.num_entities + t.long())

    def __repr__(self) -> str:
        return f"FilterIndex(num_triples={self.num_triples})"

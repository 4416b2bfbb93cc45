"""Brute-force references shared by the evaluation tests (plain Python, obviously correct)."""

from __future__ import annotations

import torch
from torch import Tensor


class BruteFilter:
    """Filter index by linear scan over known triples (reference for ``FilterIndex``)."""

    def __init__(self, triples: Tensor, num_relations: int | None = None) -> None:
        self.tri = [tuple(x) for x in triples.tolist()]
        self.num_relations = num_relations

    def tails(self, h: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
        rows, cols = [], []
        for b, (hb, rb) in enumerate(zip(h.tolist(), r.tolist(), strict=True)):
            for hh, rr, tt in self.tri:
                if hh == hb and rr == rb:
                    rows.append(b)
                    cols.append(tt)
        return torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long)

    def heads(self, r: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        rows, cols = [], []
        for b, (rb, tb) in enumerate(zip(r.tolist(), t.tolist(), strict=True)):
            for hh, rr, tt in self.tri:
                if rr == rb and tt == tb:
                    rows.append(b)
                    cols.append(hh)
        return torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long)


def brute_rank(row: list[float], target: int, filtered: set[int], policy: str) -> float:
    """Rank of ``target`` in ``row`` ignoring ``filtered`` (except the target itself)."""
    st = row[target]
    others = [s for j, s in enumerate(row) if j != target and j not in filtered]
    greater = sum(s > st for s in others)
    ties = sum(s == st for s in others)
    return {
        "optimistic": 1.0 + greater,
        "pessimistic": 1.0 + greater + ties,
        "realistic": 1.0 + greater + ties / 2,
    }[policy]


def brute_ranks(scores: Tensor, targets: Tensor, rows: Tensor, cols: Tensor, policy: str) -> Tensor:
    filt: list[set[int]] = [set() for _ in range(scores.shape[0])]
    for b, c in zip(rows.tolist(), cols.tolist(), strict=True):
        filt[b].add(c)
    s = scores.double().tolist()
    return torch.tensor(
        [brute_rank(s[b], int(targets[b]), filt[b], policy) for b in range(len(s))],
        dtype=torch.float64,
    )

"""Triple membership: the one home of "is this triple known".

Every place that asks whether ``(h, r, t)`` belongs to a set of triples — filtering training
negatives, labelling known answers among shared candidates, hiding a step's supervision edges
from its encoder, the variational estimator's false-fact mask — goes through
:class:`TripleSet` (after PyKEEN's ``sampling/filtering.py`` ``Filterer.contains``): the set is
stored as sorted int64 keys ``(h · R + r) · N + t`` and a lookup is one ``searchsorted``.
Random corruptions of true triples (:func:`sample_negatives`) live here too.

Imports nothing of the project.
"""

from __future__ import annotations

import torch
from torch import Tensor


def triple_key(h: Tensor, r: Tensor, t: Tensor, num_entities: int,
               num_relations: int) -> Tensor:
    """``(h · R + r) · N + t`` as int64, elementwise (any common shape)."""
    return (h.long() * int(num_relations) + r.long()) * int(num_entities) + t.long()


class TripleSet:
    r"""A set of triples with a vectorised membership test.

    Args:
        triples: ``LongTensor[M, 3]`` (duplicates are fine).
        num_entities: ``N``.  num_relations: ``R`` (ids ``r < R``).

    Memory: one int64 per distinct triple (kept on CPU; answers move to the query's device).

    Example::

        >>> s = TripleSet(torch.tensor([[0, 1, 2]]), num_entities=3, num_relations=2)
        >>> s.contains(torch.tensor([[0, 1, 2], [2, 1, 0]])).tolist()
        [True, False]
    """

    def __init__(self, triples: Tensor, num_entities: int, num_relations: int) -> None:
        self.num_entities, self.num_relations = int(num_entities), int(num_relations)
        triples = torch.as_tensor(triples).long().cpu().reshape(-1, 3)
        h, r, t = triples.unbind(-1)
        self.keys = torch.unique(self.key(h, r, t))  # sorted

    def key(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        """The int64 key of each triple (:func:`triple_key`)."""
        return triple_key(h, r, t, self.num_entities, self.num_relations)

    def __len__(self) -> int:
        return self.keys.numel()

    def contains_hrt(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        """``BoolTensor`` of the broadcast shape of ``h, r, t``: the triple is in the set."""
        dev = h.device
        h, r, t = torch.broadcast_tensors(h.cpu(), r.cpu(), t.cpu())
        key = self.key(h, r, t)
        if self.keys.numel() == 0:
            return torch.zeros_like(key, dtype=torch.bool).to(dev)
        pos = torch.searchsorted(self.keys, key).clamp_max(self.keys.numel() - 1)
        return (self.keys[pos] == key).to(dev)

    def contains(self, triples: Tensor) -> Tensor:
        """``BoolTensor[...]`` for ``triples[..., 3]`` (any device; answered on CPU)."""
        h, r, t = triples.unbind(-1)
        return self.contains_hrt(h, r, t)

    def contains_answers(self, anchor: Tensor, r: Tensor, cand: Tensor,
                         direction: str) -> Tensor:
        """``BoolTensor[B, K]``: candidate ``cand`` (``[B, K]`` or shared ``[K]``) completes the
        query ``(anchor[b], r[b], ?)`` (``direction='tail'``) or ``(?, r[b], anchor[b])``
        (``direction='head'``) to a triple of the set."""
        a, rr = anchor.unsqueeze(1), r.unsqueeze(1)
        c = cand if cand.dim() == 2 else cand.unsqueeze(0)
        if check_direction(direction) == "tail":
            return self.contains_hrt(a, rr, c)
        return self.contains_hrt(c, rr, a)


def edges_outside(edge_index: Tensor, edge_type: Tensor, triples: Tensor, num_entities: int,
                  num_relations: int) -> Tensor:
    """Boolean mask ``[E]`` keeping the edges that are *not* one of ``triples[M, 3]`` or their
    inverse edges (types ``r + R``, direction reversed). Hides a step's supervision triples
    from its encoder (full batch with ``mask_targets``, and every sampled subgraph).
    """
    src, dst = edge_index
    fwd = edge_type < num_relations
    # orient every edge back to its original (h, r, t)
    h = torch.where(fwd, src, dst)
    t = torch.where(fwd, dst, src)
    hidden = TripleSet(triples, num_entities, num_relations)
    return ~hidden.contains_hrt(h, edge_type % num_relations, t)


#: The two query directions: ``'head'`` asks ``(?, r, t)``, ``'tail'`` asks ``(h, r, ?)``.
DIRECTIONS: tuple[str, ...] = ("head", "tail")


def check_direction(direction: str) -> str:
    """``direction`` itself when it is one of :data:`DIRECTIONS`, else a ``ValueError``."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'head' or 'tail', got {direction!r}")
    return direction

#: Which false facts :func:`sample_negatives` draws (``negatives`` of the ``elbo`` loss).
NEGATIVE_MODES: tuple[str, ...] = ("corrupt", "uniform")


def sample_negatives(h: Tensor, r: Tensor, t: Tensor, num_negatives: int, num_entities: int,
                     num_relations: int, mode: str = "corrupt",
                     generator: torch.Generator | None = None) -> Tensor:
    """``K`` random false-fact candidates per positive, ``LongTensor[B, K, 3]`` (h, r, t).

    ``corrupt``: each slot replaces the head or the tail (probability ½ each) by one of the
    ``N − 1`` *other* entities, uniformly — a uniform draw from the corruptions
    ``C(x) = {(h', r, t) : h' ≠ h} ∪ {(h, r, t') : t' ≠ t}``. ``uniform``: a uniform draw from
    ``E × R × E``. Candidates that are true facts are *not* removed here (test them with
    :class:`TripleSet`). All tensors on CPU.

    Args:
        h, r, t: the positives, ``LongTensor[B]``.
        num_negatives: ``K``.  num_entities: ``N``.  num_relations: ``R``.
        mode: ``"corrupt"`` or ``"uniform"``.
        generator: explicit ``torch.Generator`` for reproducible draws.
    """
    if mode not in NEGATIVE_MODES:
        raise ValueError(f"negatives must be one of {NEGATIVE_MODES}, got {mode!r}")
    b, k = h.numel(), int(num_negatives)
    if mode == "uniform":
        return torch.stack([torch.randint(num_entities, (b, k), generator=generator),
                            torch.randint(num_relations, (b, k), generator=generator),
                            torch.randint(num_entities, (b, k), generator=generator)], dim=-1)
    if num_entities < 2:
        raise ValueError("corrupted negatives need at least 2 entities")
    side = torch.randint(2, (b, k), generator=generator).bool()  # True: corrupt the head
    shift = 1 + torch.randint(num_entities - 1, (b, k), generator=generator)
    hh, rr, tt = (x.unsqueeze(1).expand(b, k) for x in (h, r, t))
    new_h = torch.where(side, (hh + shift) % num_entities, hh)
    new_t = torch.where(side, tt, (tt + shift) % num_entities)
    return torch.stack([new_h, rr, new_t], dim=-1)


__all__ = [
    "DIRECTIONS", "NEGATIVE_MODES", "TripleSet", "check_direction", "edges_outside",
    "sample_negatives", "triple_key",
]

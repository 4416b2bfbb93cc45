"""Classic relation decoders (baselines): TransE, DistMult, ComplEx, RotatE.

Each answers head queries with the closed-form inverse of its interaction, so none of them
needs reciprocal-relation parameters. Complex-valued models store a complex vector of size
``d/2`` as the real vector ``[re | im]`` of size ``d``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import (
    Decoder,
    complex_neg_distance_all,
    complex_neg_distance_pairs,
    dot_all,
    dot_pairs,
    neg_distance_all,
    neg_distance_pairs,
)


def _check_even(name: str, dim: int) -> None:
    if dim % 2:
        raise ValueError(f"{name} needs an even embedding dim (complex halves), got dim={dim}")


class TransE(Decoder):
    r"""TransE (Bordes et al., 2013): :math:`s(h, r, t) = \gamma - \lVert e_h + w_r - e_t\rVert_p`.

    Tail query ``q = e_h + w_r``, head query ``q = e_t − w_r``.

    Args:
        num_relations: ``R``.  dim: ``d``.
        p: norm order (1 or 2).  margin: ``γ`` added to every score (matters for BCE losses).
    """

    def __init__(
        self, *, num_relations: int, dim: int, p: float = 1.0, margin: float = 0.0,
        relation_source: str = "own",
    ) -> None:
        super().__init__(num_relations=num_relations, dim=dim, relation_source=relation_source)
        self.p = float(p)
        self.margin = float(margin)
        self.reset_parameters()

    def tail_query(self, ent, rel, h, r):
        return ent[h] + self.relation_embedding(rel, r)

    def head_query(self, ent, rel, r, t):
        return ent[t] - self.relation_embedding(rel, r)

    def similarity_all(self, q, ent):
        return neg_distance_all(q, ent, self.p) + self.margin

    def similarity_pairs(self, q, cand, cand_idx):
        return neg_distance_pairs(q, cand, self.p) + self.margin

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p:g}, margin={self.margin:g}"


class DistMult(Decoder):
    r"""DistMult (Yang et al., 2015): :math:`s(h, r, t) = \langle e_h, w_r, e_t\rangle`.

    Symmetric in ``h`` and ``t``: tail query ``e_h ∘ w_r``, head query ``e_t ∘ w_r``.
    """

    def __init__(self, *, num_relations: int, dim: int, relation_source: str = "own") -> None:
        super().__init__(num_relations=num_relations, dim=dim, relation_source=relation_source)
        self.reset_parameters()

    def tail_query(self, ent, rel, h, r):
        return ent[h] * self.relation_embedding(rel, r)

    def head_query(self, ent, rel, r, t):
        return ent[t] * self.relation_embedding(rel, r)

    def similarity_all(self, q, ent):
        return dot_all(q, ent)

    def similarity_pairs(self, q, cand, cand_idx):
        return dot_pairs(q, cand)


class ComplEx(Decoder):
    r"""ComplEx (Trouillon et al., 2016): :math:`s = \mathrm{Re}\langle e_h, w_r, \bar e_t\rangle`.

    Tail query ``q = e_h ∘ w_r``, head query ``q = \bar w_r ∘ e_t``; both scored by the real dot
    product of ``[re | im]`` vectors, i.e. one matrix product for all entities.
    """

    def __init__(self, *, num_relations: int, dim: int, relation_source: str = "own") -> None:
        _check_even("ComplEx", dim)
        super().__init__(num_relations=num_relations, dim=dim, relation_source=relation_source)
        self.reset_parameters()

    @staticmethod
    def _mul(a: Tensor, b: Tensor, conj_a: bool = False) -> Tensor:
        k = a.shape[-1] // 2
        ar, ai = a[..., :k], a[..., k:]
        if conj_a:
            ai = -ai
        br, bi = b[..., :k], b[..., k:]
        return torch.cat([ar * br - ai * bi, ar * bi + ai * br], dim=-1)

    def tail_query(self, ent, rel, h, r):
        return self._mul(ent[h], self.relation_embedding(rel, r))

    def head_query(self, ent, rel, r, t):
        return self._mul(self.relation_embedding(rel, r), ent[t], conj_a=True)

    def similarity_all(self, q, ent):
        return dot_all(q, ent)

    def similarity_pairs(self, q, cand, cand_idx):
        return dot_pairs(q, cand)


class RotatE(Decoder):
    r"""RotatE (Sun et al., 2019):
    :math:`s = \gamma - \sum_k |e_{h,k}\, e^{i\theta_{r,k}} - e_{t,k}|`.

    Relations are phases ``θ_r ∈ [−π, π]^{d/2}`` (own table ``[R, d/2]``, initialised uniformly);
    tail query ``e_h ∘ e^{iθ}``, head query ``e_t ∘ e^{−iθ}`` (rotation is unitary, so the
    head query is the exact inverse). With ``relation_source='encoder'`` the first ``d/2``
    coordinates of the encoder's relation vector are used as phases.

    Args:
        margin: ``γ`` (RotatE uses 6–24 depending on the dataset; matters for sigmoid losses).
    """

    def __init__(
        self, *, num_relations: int, dim: int, margin: float = 0.0, relation_source: str = "own",
    ) -> None:
        _check_even("RotatE", dim)
        super().__init__(
            num_relations=num_relations, dim=dim, rel_dim=dim // 2,
            relation_source=relation_source,
        )
        self.margin = float(margin)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.relation is not None:
            nn.init.uniform_(self.relation, -math.pi, math.pi)

    def _rotate(self, x: Tensor, phase: Tensor, sign: float) -> Tensor:
        k = x.shape[-1] // 2
        phase = phase[..., :k]
        c, s = torch.cos(phase), sign * torch.sin(phase)
        xr, xi = x[..., :k], x[..., k:]
        return torch.cat([xr * c - xi * s, xr * s + xi * c], dim=-1)

    def tail_query(self, ent, rel, h, r):
        return self._rotate(ent[h], self.relation_embedding(rel, r), 1.0)

    def head_query(self, ent, rel, r, t):
        return self._rotate(ent[t], self.relation_embedding(rel, r), -1.0)

    def similarity_all(self, q, ent):
        return complex_neg_distance_all(q, ent) + self.margin

    def similarity_pairs(self, q, cand, cand_idx):
        return complex_neg_distance_pairs(q, cand) + self.margin

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, margin={self.margin:g}"

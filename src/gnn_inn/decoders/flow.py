r"""``FlowDecoder``: each relation is an invertible map f_r with f_r(e_h) ≈ e_t.

.. math::
    s(h, r, t) = \gamma - \lVert f_r(e_h) - e_t \rVert_p

Tail queries run ``f_r`` once per query and score all entities with one ``[B, N]`` distance
(a matrix product for ``p = 2``); head queries run the exact inverse ``f_r⁻¹`` on the tail and do
the same. No reciprocal-relation parameters exist.

Relation conditioning (``conditioning``):

* ``"table"`` — every transform keeps its own per-relation parameter table (coupling nets share
  weights and read a learned per-relation embedding); best for few relations.
* ``"context"`` — shared coupling networks read a relation embedding as context: the decoder's
  own table ``[R, context_dim]`` or, with ``relation_source="encoder"``, the encoder's relation
  representations (CompGCN updates them). Best for many relations (hundreds).

Patterns by construction (``patterns``), per relation:

* ``free`` — any invertible ``f_r``;
* ``involution`` — ``f_r = g_r⁻¹ ∘ σ ∘ g_r`` with σ a fixed involution, so ``f_r ∘ f_r = id``
  exactly: the relation is symmetric whatever the weights;
* ``tied-inverse:<r1>`` — ``f_r = f_{r1}⁻¹``: inverse relation pairs share one map;
* ``auto`` — chosen from training statistics (:func:`gnn_inn.decoders.patterns.infer_patterns`).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor

from ..flows import build_flow, make_involution, soft_clamp
from .base import Decoder, neg_distance_all, neg_distance_pairs
from .patterns import RelationPattern, parse_patterns

log = logging.getLogger(__name__)

_KIND = {"free": 0, "involution": 1, "tied-inverse": 2}


class FlowDecoder(Decoder):
    r"""Invertible relation decoder (see module docstring).

    Capabilities: head queries by the exact inverse ``f_r⁻¹``; every option (patterns,
    ``entity_bias``, ``relation_scale``, table / context conditioning, relations from the
    encoder, ``symmetric_score``) scores shared candidate sets (:meth:`score_shared`), so the
    decoder trains full batch and neighbour-sampled alike.

    Args:
        num_relations: ``R``.
        dim: entity embedding size ``d`` (the flows act on ``ℝ^d``).
        flow: flow family name or ``{"name": ..., **kwargs}`` (see :data:`gnn_inn.flows.FLOWS`).
        conditioning: ``"table"`` or ``"context"``.
        context_dim: relation-embedding size in ``"context"`` mode (own table); with
            ``relation_source="encoder"`` the encoder's relation size is used.
        p: norm order of the distance.  margin: ``γ`` added to every score.
        patterns: ``"free"`` | ``"involution"`` | ``"auto"`` | list / dict per relation
            (already resolved to :class:`RelationPattern` objects by :func:`build_flow_decoder`
            when ``auto``).
        involution: the fixed involution σ: ``"sign"`` (flip the sign of half the coordinates)
            or ``"swap"`` (swap the two halves).
        symmetric_score: in training, score candidates by the mean of the forward distance
            ``‖f_r(e_h) − e_t‖`` and the backward distance ``‖e_h − f_r⁻¹(e_t)‖``.
        relation_source: ``"own"`` or ``"encoder"`` (context mode only).
        entity_bias: add a learned per-entity bias ``b_e`` to every score,
            ``s = γ − ‖f_r(e_h) − e_t‖ + b_t`` for tail queries and ``… + b_h`` for head queries
            (ConvE's output bias): an entity-popularity prior the distance cannot express.
            Needs ``num_entities``.
        num_entities: ``N`` (only used by ``entity_bias``).
        relation_scale: multiply each relation's distances by a learned ``τ_r > 0`` (stored as
            ``log τ_r``, soft-clamped to ``|log τ_r| ≤ 3``, starting at 1):
            ``s = γ − τ_r ‖f_r(e_h) − e_t‖ (+ b_t)``. A softmax / sigmoid over the scores is then
            as sharp as the relation needs (one answer) or as flat (many answers), which one
            shared embedding geometry cannot give every relation at once.
    """

    head_queries = "inverse"

    def __init__(
        self, *, num_relations: int, dim: int, flow: str | dict[str, Any] = "affine_coupling",
        conditioning: str = "table", context_dim: int = 32, p: float = 2.0, margin: float = 0.0,
        patterns: Any = "free", involution: str = "sign", symmetric_score: bool = False,
        relation_source: str = "own", train_triples: Tensor | None = None,
        relation_names: list[str] | None = None, entity_bias: bool = False,
        num_entities: int | None = None, relation_scale: bool = False,
    ) -> None:
        if conditioning not in ("table", "context"):
            raise ValueError(f"conditioning must be 'table' or 'context', got {conditioning!r}")
        own_table = conditioning == "context" and relation_source == "own"
        super().__init__(
            num_relations=num_relations, dim=dim, rel_dim=context_dim,
            relation_source="own" if own_table else "encoder",
        )
        self.conditioning = conditioning
        self.context_source = relation_source
        self.p = float(p)
        self.margin = float(margin)
        self.symmetric_score = bool(symmetric_score)
        if entity_bias and num_entities is None:
            raise ValueError("FlowDecoder: entity_bias=True needs num_entities")
        self.entity_bias = (torch.nn.Parameter(torch.zeros(int(num_entities))) if entity_bias
                            else None)
        self.log_scale = (torch.nn.Parameter(torch.zeros(num_relations)) if relation_scale
                          else None)
        if isinstance(patterns, list) and patterns and isinstance(patterns[0], RelationPattern):
            pats = patterns
        else:
            pats = parse_patterns(patterns, num_relations, train_triples, relation_names)
            if patterns == "auto":
                names = relation_names or [str(i) for i in range(num_relations)]
                chosen = {names[i]: q.as_str() for i, q in enumerate(pats) if q.kind != "free"}
                log.info("patterns=auto chose %s (all other relations free)", chosen or "nothing")
        self.patterns = pats
        self.register_buffer("kind", torch.tensor([_KIND[q.kind] for q in pats], dtype=torch.long))
        self.register_buffer("partner", torch.tensor(
            [q.partner if q.kind == "tied-inverse" else i for i, q in enumerate(pats)],
            dtype=torch.long))
        spec = {"name": flow} if isinstance(flow, str) else dict(flow)
        self.flow_spec = spec
        cond = ({"num_contexts": num_relations} if conditioning == "table"
                else {"context_dim": context_dim})
        self.flow = build_flow(spec, dim=dim, **cond)
        if any(q.kind == "involution" for q in pats):
            self.involution = make_involution(build_flow(spec, dim=dim, **cond), sigma=involution)
        else:
            self.involution = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for name in ("entity_bias", "log_scale"):
            if getattr(self, name, None) is not None:
                torch.nn.init.zeros_(getattr(self, name))
        for m in (self.flow, self.involution):
            if m is not None and hasattr(m, "reset_parameters"):
                m.reset_parameters()

    # --------------------------------------------------------------- transforms
    def _context(self, rel: Tensor | None, ids: Tensor) -> Tensor:
        if self.conditioning == "table":
            return ids
        return self.relation_embedding(rel, ids)

    def transform(self, x: Tensor, r: Tensor, rel: Tensor | None = None,
                  inverse: bool = False) -> tuple[Tensor, Tensor]:
        """Apply ``f_r`` (or ``f_r⁻¹``) row-wise: ``x[B, d], r[B] → (y[B, d], log|det|[B])``."""
        kind = self.kind[r]
        y = torch.empty_like(x)
        ladj = x.new_zeros(x.shape[0])
        # free relations run f in the asked direction, tied ones run their partner's map in the
        # opposite direction; involutions are their own inverse
        flip = kind == _KIND["tied-inverse"]
        ctx_id = torch.where(flip, self.partner[r], r)
        use_flow = kind != _KIND["involution"]
        run_inverse = flip ^ inverse
        for sel, inv in ((use_flow & ~run_inverse, False), (use_flow & run_inverse, True)):
            if sel.any():
                idx = sel.nonzero().squeeze(1)
                fn = self.flow.inverse if inv else self.flow.forward
                yi, li = fn(x[idx], self._context(rel, ctx_id[idx]))
                y[idx], ladj[idx] = yi.to(y.dtype), li.to(ladj.dtype)
        sel = ~use_flow
        if sel.any():
            idx = sel.nonzero().squeeze(1)
            yi, li = self.involution.forward(x[idx], self._context(rel, r[idx]))
            y[idx], ladj[idx] = yi.to(y.dtype), li.to(ladj.dtype)
        return y, ladj

    # ------------------------------------------------------------- decoder API
    def tail_query(self, ent, rel, h, r):
        return self.transform(ent[h], r, rel, inverse=False)[0]

    def head_query(self, ent, rel, r, t):
        return self.transform(ent[t], r, rel, inverse=True)[0]

    def _finish(self, neg_dist: Tensor, r: Tensor, cand_idx: Tensor | None) -> Tensor:
        """``γ − τ_r · dist (+ b_cand)`` from ``neg_dist = −dist [B, K]`` (``K = N`` when
        ``cand_idx`` is ``None``)."""
        if self.log_scale is not None:
            neg_dist = neg_dist * soft_clamp(self.log_scale[r], 3.0).exp().unsqueeze(1)
        s = neg_dist + self.margin
        if self.entity_bias is not None:
            s = s + (self.entity_bias.unsqueeze(0) if cand_idx is None
                     else self.entity_bias[cand_idx])
        return s

    def similarity_all(self, q, ent):
        if self.log_scale is not None:
            raise RuntimeError("relation_scale needs the relation: use score_tails/score_heads")
        return self._finish(neg_distance_all(q, ent, self.p), None, None)

    def similarity_pairs(self, q, cand, cand_idx):
        if self.log_scale is not None:
            raise RuntimeError("relation_scale needs the relation: use score_candidates")
        return self._finish(neg_distance_pairs(q, cand, self.p), None, cand_idx)

    def score_tails(self, ent, rel, h, r):
        q = self.tail_query(ent, rel, h, r)
        return self._finish(neg_distance_all(q, ent, self.p), r, None)

    def score_heads(self, ent, rel, r, t):
        q = self.head_query(ent, rel, r, t)
        return self._finish(neg_distance_all(q, ent, self.p), r, None)

    def score_candidates(self, ent, rel, h, r, t, candidates, mode="tail"):
        q = self.query_points(ent, rel, h, r, t, mode)
        fwd = neg_distance_pairs(q, ent[candidates], self.p)
        if self.symmetric_score and self.training:
            # backward direction: map every candidate through the opposite map, compare to
            # the anchor, and average the two distances
            b, k = candidates.shape
            rr = r.unsqueeze(1).expand(b, k).reshape(-1)
            c = ent[candidates].reshape(b * k, -1)
            mapped, _ = self.transform(c, rr, rel, inverse=(mode == "tail"))
            anchor = ent[h] if mode == "tail" else ent[t]
            fwd = 0.5 * (fwd + neg_distance_pairs(anchor, mapped.view(b, k, -1), self.p))
        return self._finish(fwd, r, candidates)

    def score_shared(self, ent, rel, h, r, t, candidates, mode="tail", ids=None):
        """Scores ``[B, K]`` of the queries against shared candidates ``candidates [K]`` (rows of
        ``ent``; ``ids`` their global ids, see :meth:`Decoder.score_shared`): one ``[B, K]``
        distance, then ``τ_r`` and the candidates' biases. With ``symmetric_score`` in training
        the backward distance ``‖e_anchor − f_r^{∓1}(e_c)‖`` maps the ``K`` candidates once per
        distinct relation of the batch (not once per query)."""
        q = self.query_points(ent, rel, h, r, t, mode)
        cand = ent[candidates]
        neg = neg_distance_all(q, cand, self.p)
        if self.symmetric_score and self.training:
            anchor = ent[h] if mode == "tail" else ent[t]
            rels, inv = torch.unique(r, return_inverse=True)
            back = torch.empty_like(neg)
            for i in range(rels.numel()):
                sel = (inv == i).nonzero().squeeze(1)
                mapped, _ = self.transform(cand, rels[i].expand(cand.shape[0]), rel,
                                           inverse=(mode == "tail"))
                back[sel] = neg_distance_all(anchor[sel], mapped, self.p)
            neg = 0.5 * (neg + back)
        return self._finish(neg, r, candidates if ids is None else ids[candidates])

    def pattern_table(self) -> list[str]:
        """One pattern string per relation (``free``, ``involution``, ``tied-inverse:<r1>``)."""
        return [q.as_str() for q in self.patterns]

    def pattern_summary(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for q in self.patterns:
            out[q.kind] = out.get(q.kind, 0) + 1
        return out

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, flow={self.flow_spec.get('name')}, "
                f"conditioning={self.conditioning}, p={self.p:g}, margin={self.margin:g}, "
                f"patterns={self.pattern_summary()}")

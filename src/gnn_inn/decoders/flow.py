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
* ``composition:<r1>,<r2>`` — ``f_r = f_{r2} ∘ f_{r1}`` (a body relation written ``<r>^-1`` is
  used inverted), exact inverse ``f_{r1}⁻¹ ∘ f_{r2}⁻¹``, log-dets summed; with ``,residual``
  ``f_r = g_r ∘ f_{r2} ∘ f_{r1}`` with a learned residual flow ``g_r`` that starts at the
  identity (for rules that hold only partly). Body relations may themselves be tied or composed:
  every relation's map is resolved once, in dependency order, into a *program* — a short list of
  (transform, direction, parameter row) steps — and a batch runs step by step, each step one
  call per transform and direction for all rows that need it;
* ``auto`` — chosen from training statistics (:func:`gnn_inn.decoders.patterns.infer_patterns`),
  composition rules mined by :func:`gnn_inn.data.rules.mine_rules` included.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor

from ..data.graph import relation_categories
from ..flows import build_flow, make_involution, soft_clamp
from .base import Decoder, neg_distance_all, neg_distance_pairs
from .patterns import RelationPattern, parse_patterns, resolution_order

log = logging.getLogger(__name__)

_KIND = {"free": 0, "involution": 1, "tied-inverse": 2, "composition": 3}
# steps of a relation's program: (operation, parameter row); NOOP pads short programs; SNAP
# marks the boundary between two body relations of a composition (see ``composition_snap``)
_NOOP, _FLOW, _FLOW_INV, _INVOL, _RES, _RES_INV, _SNAP = range(7)
_FLIP = {_FLOW: _FLOW_INV, _FLOW_INV: _FLOW, _INVOL: _INVOL, _RES: _RES_INV, _RES_INV: _RES,
         _SNAP: _SNAP}


def _invert(program: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return [(_FLIP[op], c) for op, c in reversed(program)]


def relation_programs(patterns: list[RelationPattern],
                      relation_names: list[str] | None = None,
                      snap: set[int] | frozenset[int] = frozenset()) -> list[list[tuple[int, int]]]:
    """Per relation, the forward map as ``[(operation, parameter row), ...]`` applied in order
    (dependencies resolved first; a cycle raises naming it). A ``_SNAP`` step separates
    consecutive body relations of every composed relation in ``snap`` (a body relation that is
    itself composed keeps its own snaps)."""
    prog: list[list[tuple[int, int]] | None] = [None] * len(patterns)
    for r in resolution_order(patterns, relation_names):
        q = patterns[r]
        if q.kind == "free":
            prog[r] = [(_FLOW, r)]
        elif q.kind == "involution":
            prog[r] = [(_INVOL, r)]
        elif q.kind == "tied-inverse":
            prog[r] = _invert(prog[q.partner])
        else:
            steps: list[tuple[int, int]] = []
            for k, (b, inv) in enumerate(q.body):
                if k and r in snap:
                    steps.append((_SNAP, 0))
                steps += _invert(prog[b]) if inv else prog[b]
            if q.residual:
                steps.append((_RES, r))
            prog[r] = steps
    return prog


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
        composition_confidence: ``patterns: auto`` ties a relation to a mined composition rule
            with at least this PCA confidence (``None``: mine no rules).
        composition_head_coverage: … and at least this head coverage.
        composition_min_support: … and at least this support (distinct head pairs).
        composition_residual: rules adopted by ``auto`` get a residual flow ``g_r``.
        residual_flow: the family of the residual flows ``g_r`` (name or spec); it must start at
            the identity (checked): ``affine`` (default), ``translation``, ``lu``,
            ``{name: rotation, init_angles: zero}``, ``orthogonal``.
        composition_snap: whether composed relations *snap*: when scoring, the point reached
            after each body relation but the last is replaced by entity embeddings before the
            next body map runs — ``ŷ = Σ_e softmax_e(−‖y − x_e‖ / τ) x_e`` for a temperature
            ``τ > 0``, the nearest entity for ``τ = 0`` (gradients pass straight through to
            ``y``). The chain then answers "the ``r2``-image of the ``r1``-answer" (continuous
            query decomposition, Arakelyan et al., ICLR 2021) instead of needing ``f_{r1}(e_x)``
            to land exactly on ``e_y``. ``"one-to-one"`` (default): nearest-entity snapping for
            the composed relations whose body relations are all 1-1 in ``train_triples`` (one
            intermediate per query, so one nearest entity is the right answer; through N-N
            bodies a single intermediate loses the others); a number ``τ``: every composed
            relation; ``None``: none (the continuous map ``f_{r2} ∘ f_{r1}``). The maps and
            their exact inverses are unchanged (:meth:`transform` without ``snap_to``, the
            certificate); head queries snap on the way back through ``f_{r2}⁻¹`` then
            ``f_{r1}⁻¹``. Costs one ``[B, N]`` distance per snap.
        composition_snap_train: snap in training too (default: only when scoring in eval
            mode, so training is that of the plain tie and only answering chains through
            entities, as continuous query decomposition answers multi-hop queries with a
            model trained on single hops).
    """

    head_queries = "inverse"
    relation_flows = True

    def __init__(
        self, *, num_relations: int, dim: int, flow: str | dict[str, Any] = "affine_coupling",
        conditioning: str = "table", context_dim: int = 32, p: float = 2.0, margin: float = 0.0,
        patterns: Any = "free", involution: str = "sign", symmetric_score: bool = False,
        relation_source: str = "own", train_triples: Tensor | None = None,
        relation_names: list[str] | None = None, entity_bias: bool = False,
        num_entities: int | None = None, relation_scale: bool = False,
        composition_confidence: float | None = 0.9, composition_head_coverage: float = 0.5,
        composition_min_support: int = 10, composition_residual: bool = False,
        residual_flow: str | dict[str, Any] = "affine",
        composition_snap: float | str | None = "one-to-one",
        composition_snap_train: bool = False,
    ) -> None:
        if conditioning not in ("table", "context"):
            raise ValueError(f"conditioning must be 'table' or 'context', got {conditioning!r}")
        own_table = conditioning == "context" and relation_source == "own"
        super().__init__(
            num_relations=num_relations, dim=dim, rel_dim=context_dim,
            relation_source="own" if own_table else "encoder",
        )
        self.conditioning = conditioning
        if conditioning == "table":  # relation parameters live inside the flow, indexed by id
            self.reads_relation_vectors = False
        self.context_source = relation_source
        self.p = float(p)
        self.margin = float(margin)
        if not (composition_snap is None or composition_snap == "one-to-one"
                or (isinstance(composition_snap, (int, float))
                    and not isinstance(composition_snap, bool) and composition_snap >= 0)):
            raise ValueError("FlowDecoder: composition_snap must be 'one-to-one', a number >= 0 "
                             f"or None, got {composition_snap!r}")
        self.composition_snap = (0.0 if composition_snap == "one-to-one"
                                 else None if composition_snap is None else float(composition_snap))
        self.composition_snap_train = bool(composition_snap_train)
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
            auto = {"composition_confidence": composition_confidence,
                    "composition_head_coverage": composition_head_coverage,
                    "composition_min_support": composition_min_support,
                    "composition_residual": composition_residual, "num_entities": num_entities}
            pats = parse_patterns(patterns, num_relations, train_triples, relation_names,
                                  auto_options=auto)
            if patterns == "auto":
                names = relation_names or [str(i) for i in range(num_relations)]
                chosen = {names[i]: q.as_str() for i, q in enumerate(pats) if q.kind != "free"}
                log.info("patterns=auto chose %s (all other relations free)", chosen or "nothing")
        self.patterns = pats
        self.relation_names = list(relation_names) if relation_names else None
        self.register_buffer("kind", torch.tensor([_KIND[q.kind] for q in pats], dtype=torch.long))
        self.register_buffer("partner", torch.tensor(
            [q.partner if q.kind == "tied-inverse" else i for i, q in enumerate(pats)],
            dtype=torch.long))
        # every relation's map as a padded program [R, L] of (operation, parameter row), both
        # directions (not saved: rebuilt from the patterns)
        composed = [r for r, q in enumerate(pats) if q.kind == "composition"]
        if composition_snap is None:
            snapped: list[int] = []
        elif composition_snap != "one-to-one":
            snapped = composed
        elif composed and train_triples is not None:
            cats = relation_categories(train_triples, num_relations, num_entities)
            snapped = [r for r in composed if all(cats[b] == "1-1" for b, _ in pats[r].body)]
        else:  # no triples to tell 1-1 bodies from others: the continuous map
            snapped = []
        self.snapped = frozenset(snapped)
        if not snapped:
            self.composition_snap = None
        progs = relation_programs(pats, relation_names, snap=self.snapped)
        length = max(len(p) for p in progs) if progs else 1
        for name, ps in (("prog", progs), ("prog_inv", [_invert(p) for p in progs])):
            ops = torch.full((num_relations, length), _NOOP, dtype=torch.long)
            rows = torch.zeros((num_relations, length), dtype=torch.long)
            for r, p in enumerate(ps):
                for k, (op, c) in enumerate(p):
                    ops[r, k], rows[r, k] = op, c
            self.register_buffer(f"{name}_op", ops, persistent=False)
            self.register_buffer(f"{name}_row", rows, persistent=False)
        spec = {"name": flow} if isinstance(flow, str) else dict(flow)
        self.flow_spec = spec
        cond = ({"num_contexts": num_relations} if conditioning == "table"
                else {"context_dim": context_dim})
        self.flow = build_flow(spec, dim=dim, **cond)
        if any(q.kind == "involution" for q in pats):
            self.involution = make_involution(build_flow(spec, dim=dim, **cond), sigma=involution)
        else:
            self.involution = None
        if any(q.kind == "composition" and q.residual for q in pats):
            rspec = {"name": residual_flow} if isinstance(residual_flow, str) else dict(
                residual_flow)
            self.residual = build_flow(rspec, dim=dim, **cond)
            self.residual_spec = rspec
        else:
            self.residual = None
        self.reset_parameters()
        if self.residual is not None:
            self._check_residual_identity(context_dim)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for name in ("entity_bias", "log_scale"):
            if getattr(self, name, None) is not None:
                torch.nn.init.zeros_(getattr(self, name))
        for m in (self.flow, self.involution):
            if m is not None and hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def _check_residual_identity(self, context_dim: int) -> None:
        """The residual flows must start at the identity (so a tied relation starts exactly at
        its rule); raise naming the family otherwise."""
        g = torch.Generator().manual_seed(0)
        x = torch.randn(8, self.dim, generator=g)
        ctx = (torch.zeros(8, dtype=torch.long) if self.conditioning == "table"
               else torch.randn(8, context_dim, generator=g))
        with torch.no_grad():
            y, _ = self.residual(x, ctx)
        if not torch.allclose(y, x, atol=1e-5):
            raise ValueError(
                f"FlowDecoder: residual_flow {self.residual_spec} does not start at the identity "
                f"(max |g(x) − x| = {float((y - x).abs().max()):.3g}); use one that does, e.g. "
                "'affine', 'translation', 'lu' or {name: rotation, init_angles: zero}")

    # --------------------------------------------------------------- transforms
    def _context(self, rel: Tensor | None, ids: Tensor) -> Tensor:
        if self.conditioning == "table":
            return ids
        return self.relation_embedding(rel, ids)

    def transform(self, x: Tensor, r: Tensor, rel: Tensor | None = None,
                  inverse: bool = False,
                  snap_to: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Apply ``f_r`` (or ``f_r⁻¹``) row-wise: ``x[B, d], r[B] → (y[B, d], log|det|[B])``.

        Runs each relation's program (see the module docstring): free relations one step of
        ``f`` in the asked direction, tied inverses their partner's steps reversed and inverted,
        involutions (their own inverse) one step, compositions their body's steps in order;
        log-dets add up. ``snap_to [N, d]``: the entity embeddings that composed relations snap
        to between body relations (``composition_snap``); without it the map is the exact flow
        (snap steps are the identity) and ``log|det|`` is exact. With it the snapped rows'
        ``log|det|`` counts only the flow steps.
        """
        ops = (self.prog_inv_op if inverse else self.prog_op)[r]
        rows = (self.prog_inv_row if inverse else self.prog_row)[r]
        ladj = x.new_zeros(x.shape[0])
        for k in range(ops.shape[1]):
            op_k = ops[:, k]
            if k and bool((op_k == _NOOP).all()):
                break
            y = x.clone() if k else torch.empty_like(x)
            for op in (_FLOW, _FLOW_INV, _INVOL, _RES, _RES_INV, _SNAP):
                sel = op_k == op
                if not sel.any():
                    continue
                idx = sel.nonzero().squeeze(1)
                if op == _SNAP:
                    y[idx] = x[idx] if snap_to is None else self._snap(x[idx], snap_to)
                    continue
                fn = {_FLOW: self.flow.forward, _FLOW_INV: self.flow.inverse,
                      _INVOL: getattr(self.involution, "forward", None),
                      _RES: getattr(self.residual, "forward", None),
                      _RES_INV: getattr(self.residual, "inverse", None)}[op]
                yi, li = fn(x[idx], self._context(rel, rows[idx, k]))
                y[idx] = yi.to(y.dtype)
                ladj = ladj.index_add(0, idx, li.to(ladj.dtype))
            x = y
        return x, ladj

    def _snap(self, y: Tensor, ent: Tensor) -> Tensor:
        """Replace points ``y [b, d]`` by entity embeddings (``ent [N, d]``): the softmax over
        ``−‖y − x_e‖ / τ`` averages them, ``τ = 0`` takes the nearest (straight-through
        gradient)."""
        neg = neg_distance_all(y, ent.to(y.dtype), self.p)
        if self.composition_snap == 0:
            hard = ent[neg.argmax(dim=1)].to(y.dtype)
            return hard + (y - y.detach())
        return torch.softmax(neg / self.composition_snap, dim=1) @ ent.to(y.dtype)

    # ------------------------------------------------------------- decoder API
    def _snap_to(self, ent: Tensor) -> Tensor | None:
        if self.composition_snap is None or (self.training and not self.composition_snap_train):
            return None
        return ent

    def tail_query(self, ent, rel, h, r):
        return self.transform(ent[h], r, rel, inverse=False, snap_to=self._snap_to(ent))[0]

    def head_query(self, ent, rel, r, t):
        return self.transform(ent[t], r, rel, inverse=True, snap_to=self._snap_to(ent))[0]

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

    def score_candidates(self, ent, rel, h, r, t, candidates, direction="tail"):
        q = self.query_points(ent, rel, h, r, t, direction)
        fwd = neg_distance_pairs(q, ent[candidates], self.p)
        if self.symmetric_score and self.training:
            # backward direction: map every candidate through the opposite map, compare to
            # the anchor, and average the two distances
            b, k = candidates.shape
            rr = r.unsqueeze(1).expand(b, k).reshape(-1)
            c = ent[candidates].reshape(b * k, -1)
            mapped, _ = self.transform(c, rr, rel, inverse=(direction == "tail"),
                                       snap_to=self._snap_to(ent))
            anchor = ent[h] if direction == "tail" else ent[t]
            fwd = 0.5 * (fwd + neg_distance_pairs(anchor, mapped.view(b, k, -1), self.p))
        return self._finish(fwd, r, candidates)

    def score_shared(self, ent, rel, h, r, t, candidates, direction="tail", ids=None):
        """Scores ``[B, K]`` of the queries against shared candidates ``candidates [K]`` (rows of
        ``ent``; ``ids`` their global ids, see :meth:`Decoder.score_shared`): one ``[B, K]``
        distance, then ``τ_r`` and the candidates' biases. With ``symmetric_score`` in training
        the backward distance ``‖e_anchor − f_r^{∓1}(e_c)‖`` maps the ``K`` candidates once per
        distinct relation of the batch (not once per query)."""
        q = self.query_points(ent, rel, h, r, t, direction)
        cand = ent[candidates]
        neg = neg_distance_all(q, cand, self.p)
        if self.symmetric_score and self.training:
            anchor = ent[h] if direction == "tail" else ent[t]
            rels, inv = torch.unique(r, return_inverse=True)
            back = torch.empty_like(neg)
            for i in range(rels.numel()):
                sel = (inv == i).nonzero().squeeze(1)
                mapped, _ = self.transform(cand, rels[i].expand(cand.shape[0]), rel,
                                           inverse=(direction == "tail"),
                                           snap_to=self._snap_to(ent))
                back[sel] = neg_distance_all(anchor[sel], mapped, self.p)
            neg = 0.5 * (neg + back)
        return self._finish(neg, r, candidates if ids is None else ids[candidates])

    def pattern_table(self) -> list[str]:
        """One pattern string per relation (``free``, ``involution``, ``tied-inverse:<r1>``,
        ``composition:<r1>,<r2>[,residual]``; relation ids, ``^-1`` marks an inverted body)."""
        return [q.as_str() for q in self.patterns]

    def composition_rules(self) -> list[dict]:
        """The composition ties, one dict per composed relation: head, body (relation names,
        ``^-1`` inverted), residual, and — when adopted by ``auto`` — the mined rule's support,
        head coverage and confidences."""
        names = self.relation_names or [str(i) for i in range(self.num_relations)]
        out = []
        for r, q in enumerate(self.patterns):
            if q.kind != "composition":
                continue
            d = {"head": names[r],
                 "body": [names[b] + ("^-1" if inv else "") for b, inv in q.body],
                 "residual": q.residual, "snap": r in self.snapped}
            if q.rule is not None:
                d.update({k: q.rule[k] for k in ("support", "head_coverage", "std_confidence",
                                                 "pca_confidence", "body_size")})
            out.append(d)
        return out

    def pattern_summary(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for q in self.patterns:
            out[q.kind] = out.get(q.kind, 0) + 1
        return out

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, flow={self.flow_spec.get('name')}, "
                f"conditioning={self.conditioning}, p={self.p:g}, margin={self.margin:g}, "
                f"patterns={self.pattern_summary()}")

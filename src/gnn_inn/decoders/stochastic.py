r"""``StochasticFlowDecoder``: a relation is a *conditional distribution* over tails.

A deterministic invertible ``f_r`` sends one head to one point, so a relation with several
valid answers (``has_member``) can only be fitted by pulling all answers onto that point.
Here the tail embedding is a random variable

.. math::
    e_t = F_{r, e_h}(z) = \mu + \sigma \odot C(z;\, c), \qquad z \sim \mathcal N(0, I_d),

    \mu = f_r(e_h), \qquad \log\sigma = \kappa \tanh\!\big(\mathrm{MLP}(c) / \kappa\big),
    \qquad c = [\rho_r,\ e_h],

with ``f_r`` a deterministic flow of :data:`gnn_inn.flows.FLOWS` (with the
:class:`~gnn_inn.decoders.flow.FlowDecoder`'s patterns), ``ρ_r`` a relation context vector and
``C`` a stack of conditional coupling layers (``context_dim = |ρ| + d``) that starts as a
fixed permutation, so the model starts as the Gaussian ``N(μ, diag σ²)`` exactly. A candidate
``e [d]`` is scored by its log-density

.. math::
    \log p(e \mid e_h, r) = \log\mathcal N\big(C^{-1}(u; c);\, 0, I\big)
        + \log\big|\det \partial C^{-1}/\partial u\big| - \textstyle\sum_k \log\sigma_k,
    \qquad u = (e - \mu) / \sigma,

and sampling ``z`` gives several answers (:meth:`StochasticFlowDecoder.sample`,
:func:`nearest_entities`).

**Two-stage ranking** (``[B, N]`` scores). Stage 1 scores every entity by the Gaussian
special case, ``s₁ = −½·([w, −2wμ] @ [e², e]ᵀ + Σ wμ²) − Σ log σ − (d/2)·log 2π`` with
``w = σ⁻²`` (one ``[B, 2d] × [2d, N]`` product); stage 2 evaluates the full density ``s₂`` on
the top ``K = rerank_k`` entities of stage 1 (``'all'``: on every entity). Out of the
re-ranked set ``I_b`` a query's scores are ``s₁ + δ_b`` with the per-query shift
``δ_b = min(0, min_{k∈I_b} s₂ − γ − max_{j∉I_b} s₁) ≤ 0`` (gap ``γ``), so ranks are the
full-density ranks inside ``I_b`` and ``K +`` the stage-1 ranks outside.
:meth:`score_candidates` always returns ``s₂``.

**Head queries** use the mirror model: ``μ = f_r⁻¹(e_t)`` (the exact inverse) and context
``c = [ρ_{r+R}, e_t]``; the scale network and coupling stack are shared by both directions.

**Training**: the ``1vsall`` loss runs on the log-densities as is; the ``flow_nll`` loss
(:meth:`density_terms`) adds the continuous NLL ``−log p(e_t | e_h, r) / d``, bounded below by
the soft-clamped ``log σ ∈ (−κ, κ)`` and the couplings' bounded log-dets.

Measurements and design notes: docs/design-notes.md#decoders-stochastic

References
----------
Dinh et al., "Density estimation using Real NVP", ICLR 2017. Durkan et al., "Neural spline
flows", NeurIPS 2019.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import torch
from torch import Tensor, nn

from ..data.triples import check_direction
from ..flows import build_flow, soft_clamp
from .base import Decoder, neg_distance_all
from .flow import FlowDecoder

log = logging.getLogger(__name__)

LOG_2PI = math.log(2.0 * math.pi)


def _check_k(value: Any, key: str) -> int | str:
    if value == "all":
        return "all"
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} must be an int ≥ 0 or 'all', got {value!r}")
    return int(value)


def nearest_entities(points: Tensor, ent: Tensor, chunk: int = 4096) -> Tensor:
    """Id of the Euclidean-nearest entity of every point: ``points [..., d], ent [N, d] →
    LongTensor[...]`` (the distance matrix is built ``chunk`` points at a time)."""
    flat = points.reshape(-1, points.shape[-1])
    out = [neg_distance_all(flat[i : i + chunk], ent, 2.0).argmax(1)
           for i in range(0, flat.shape[0], chunk)]
    idx = torch.cat(out) if out else flat.new_empty(0, dtype=torch.long)
    return idx.view(points.shape[:-1])


class StochasticFlowDecoder(Decoder):
    r"""Conditional-flow relation decoder with two-stage ranking (see the module docstring).

    Args:
        num_relations: ``R``.
        dim: entity embedding size ``d``.
        flow: family of the deterministic mean map ``f_r`` (name or ``{"name": ..., **kw}``,
            :data:`gnn_inn.flows.FLOWS`); an isometry such as ``rotation`` keeps ``σ``'s axes
            meaningful.
        conditioning: ``"table"`` (per-relation parameters of ``f_r``) or ``"context"``.
        patterns: relation patterns of ``f_r`` as in :class:`FlowDecoder` (``free``,
            ``involution``, ``auto``, ...).
        coupling: spec of the conditional stack ``C`` (default
            ``{"name": "affine_coupling", "num_blocks": 2, "hidden": 64}``;
            ``final_affine`` defaults to ``False`` here since ``σ`` already scales).
        context_dim: size of the relation context ``ρ`` (own table ``[2R, context_dim]``;
            default 32). With ``relation_source="encoder"`` the encoder's relation size
            (default ``dim``); the encoder must return ``2R`` rows (inverses at ``r + R``).
        scale_hidden: hidden width of the log-scale MLP ``[ρ, e_anchor] → log σ``.
        scale_clamp: ``κ``, log-scales are soft-clamped to ``(−κ, κ)``.
        init_log_scale: ``log σ`` at initialisation (the MLP's last layer starts at zero).
        rerank_k: entities re-ranked by the full density per query (int ``≥ 0`` or ``'all'``).
        train_rerank_k: the same in training mode (default: ``rerank_k``).
        gap: ``γ``, nats between the lowest re-ranked and the highest other entity.
        chunk_rows: candidate rows per coupling pass (memory ``≈ chunk_rows · (|ρ| + 2d)``).
        involution, relation_source, train_triples, relation_names: as in
            :class:`FlowDecoder`.

    Shapes: ``ent [N, d]``, ``rel [2R, |ρ|] | None``, ids ``LongTensor[B]``; ``score_tails``
    / ``score_heads`` → ``[B, N]``, ``score_candidates`` → ``[B, K]``, ``sample`` →
    ``[B, n, d]``.
    """

    #: the relation *context* has a row per direction (``r + R`` for head queries); the mean
    #: of a head query is the exact inverse ``f_r⁻¹``, never a reciprocal map
    uses_reciprocal = True
    head_queries = "inverse"
    relation_flows = True
    density = True
    samples_entities = True
    shared_score = "the Gaussian stage log N(e; μ, σ²); re-ranking at evaluation"

    def __init__(
        self, *, num_relations: int, dim: int, flow: str | dict[str, Any] = "rotation",
        conditioning: str = "table", patterns: Any = "free",
        coupling: str | dict[str, Any] | None = None, context_dim: int | None = None,
        scale_hidden: int = 64, scale_clamp: float = 3.0, init_log_scale: float = 0.0,
        rerank_k: int | str = 64, train_rerank_k: int | str | None = None, gap: float = 1.0,
        chunk_rows: int = 65536, involution: str = "sign", relation_source: str = "own",
        train_triples: Tensor | None = None, relation_names: list[str] | None = None,
    ) -> None:
        if context_dim is None:
            context_dim = dim if relation_source == "encoder" else 32
        super().__init__(num_relations=num_relations, dim=dim, rel_dim=context_dim,
                         relation_source=relation_source)
        self.rerank_k = _check_k(rerank_k, "rerank_k")
        self.train_rerank_k = (self.rerank_k if train_rerank_k is None
                               else _check_k(train_rerank_k, "train_rerank_k"))
        if not scale_clamp > 0:
            raise ValueError(f"scale_clamp must be > 0, got {scale_clamp}")
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be ≥ 1, got {chunk_rows}")
        self.scale_clamp = float(scale_clamp)
        self.init_log_scale = float(init_log_scale)
        self.gap = float(gap)
        self.chunk_rows = int(chunk_rows)
        # the deterministic mean map f_r (and its exact inverse) — a FlowDecoder's transform, so
        # patterns (involutions, tied inverses) and the invertibility certificate carry over
        self.mean = FlowDecoder(
            num_relations=num_relations, dim=dim, flow=flow, conditioning=conditioning,
            context_dim=context_dim, patterns=patterns, involution=involution,
            relation_source=relation_source, train_triples=train_triples,
            relation_names=relation_names,
        )
        cdim = self.rel_dim + dim
        self.scale_net = nn.Sequential(nn.Linear(cdim, scale_hidden), nn.ReLU(),
                                       nn.Linear(scale_hidden, dim))
        spec = ({"name": "affine_coupling", "num_blocks": 2, "hidden": 64} if coupling is None
                else {"name": coupling} if isinstance(coupling, str) else dict(coupling))
        spec.setdefault("final_affine", False)
        self.coupling_spec = spec
        self.coupling = build_flow(spec, dim=dim, context_dim=cdim)
        self.reset_rerank_statistics()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.mean.reset_parameters()
        self.scale_net[0].reset_parameters()
        nn.init.zeros_(self.scale_net[2].weight)
        nn.init.constant_(self.scale_net[2].bias, self.init_log_scale)
        self.coupling.reset_parameters()

    # ------------------------------------------------------------- statistics
    def reset_rerank_statistics(self) -> None:
        """Zero the counters of :meth:`rerank_statistics`."""
        self._stats = {"queries": 0, "top1_changed": 0, "reranked": 0,
                       "stage1_seconds": 0.0, "stage2_seconds": 0.0}

    def rerank_statistics(self) -> dict[str, Any]:
        """Counters of eval-mode ranking calls since the last reset.

        ``queries``; ``top1_changed`` and ``top1_change_rate`` — queries whose (unfiltered)
        top-1 entity after re-ranking differs from stage 1's; ``reranked_per_query`` — mean
        entities scored by the full density; ``stage1_seconds`` / ``stage2_seconds`` — wall
        time of the Gaussian matrix product (incl. top-K) and of the coupling passes (incl.
        merging); ``rerank_k``.
        """
        s = dict(self._stats)
        q = max(s["queries"], 1)
        s["top1_change_rate"] = s["top1_changed"] / q
        s["reranked_per_query"] = s.pop("reranked") / q
        s["rerank_k"] = self.rerank_k
        return s

    # -------------------------------------------------------------- components
    def transform(self, x: Tensor, r: Tensor, rel: Tensor | None = None,
                  inverse: bool = False) -> tuple[Tensor, Tensor]:
        """The mean map ``f_r`` (``inverse``: ``f_r⁻¹``): ``x [B, d] → (y [B, d], log|det| [B])``.
        """
        return self.mean.transform(x, r, rel, inverse=inverse)

    def pattern_table(self) -> list[str]:
        """Relation pattern of ``f_r`` per relation (see :class:`FlowDecoder`)."""
        return self.mean.pattern_table()

    @property
    def patterns(self):
        """The mean map's :class:`~gnn_inn.decoders.patterns.RelationPattern` per relation."""
        return self.mean.patterns

    def composition_rules(self) -> list[dict]:
        """The mean map's composition ties (see :meth:`FlowDecoder.composition_rules`)."""
        return self.mean.composition_rules()

    def _relation_context(self, rel: Tensor | None, r: Tensor, direction: str) -> Tensor:
        table = self.relation if rel is None else rel
        if table is None:
            return self.relation_embedding(rel, r)  # raises the base class's clear error
        if table.shape[0] < 2 * self.num_relations or table.shape[1] != self.rel_dim:
            raise ValueError(
                f"StochasticFlowDecoder needs relation representations [2R, {self.rel_dim}] = "
                f"[{2 * self.num_relations}, {self.rel_dim}] (rows r + R for head queries), got "
                f"{tuple(table.shape)}; set context_dim to the encoder's relation size or use "
                "relation_source='own'"
            )
        return table[r + self.num_relations if direction == "head" else r]

    def gaussian_params(self, ent: Tensor, rel: Tensor | None, anchor: Tensor, r: Tensor,
                        direction: str = "tail") -> tuple[Tensor, Tensor, Tensor]:
        """``(μ [B, d], log σ [B, d], context c [B, |ρ| + d])`` of the queries.

        ``direction='tail'``: ``anchor`` are heads, ``μ = f_r(e_h)``; ``'head'``: tails,
        ``μ = f_r⁻¹(e_t)``.
        """
        check_direction(direction)
        a = ent[anchor]
        mu, _ = self.mean.transform(a, r, rel, inverse=(direction == "head"))
        ctx = torch.cat([self._relation_context(rel, r, direction).to(a.dtype), a], dim=1)
        log_sigma = soft_clamp(self.scale_net(ctx), self.scale_clamp)
        return mu, log_sigma, ctx

    @staticmethod
    def gaussian_all(mu: Tensor, log_sigma: Tensor, ent: Tensor) -> Tensor:
        """``log N(e_n; μ_b, diag σ_b²)`` for all pairs by one matrix product, ``[B, N]``."""
        w = torch.exp(-2.0 * log_sigma)
        q = torch.cat([w, -2.0 * w * mu], dim=1)                      # [B, 2d]
        e = torch.cat([ent * ent, ent], dim=1)                         # [N, 2d]
        quad = torch.addmm((w * mu * mu).sum(-1, keepdim=True), q, e.t()).clamp_min(0.0)
        norm = log_sigma.sum(-1, keepdim=True) + 0.5 * mu.shape[1] * LOG_2PI
        return -0.5 * quad - norm

    def flow_log_prob(self, mu: Tensor, log_sigma: Tensor, ctx: Tensor, cand: Tensor) -> Tensor:
        """Full log-density of candidate points: ``cand [B, K, d] → [B, K]``."""
        b, k, d = cand.shape
        return self._flow_rows(mu, log_sigma, ctx,
                               torch.arange(b, device=cand.device).repeat_interleave(k),
                               cand.reshape(b * k, d)).view(b, k)

    def _flow_rows(self, mu, log_sigma, ctx, rows: Tensor, points: Tensor | None = None,
                   ent: Tensor | None = None, ids: Tensor | None = None) -> Tensor:
        """Log-density of ``points[P, d]`` (or ``ent[ids]``) under query ``rows[P]``; chunked."""
        out = []
        for i in range(0, rows.numel(), self.chunk_rows):
            b = rows[i : i + self.chunk_rows]
            e = points[i : i + self.chunk_rows] if points is not None \
                else ent[ids[i : i + self.chunk_rows]]
            ls = log_sigma[b]
            u = (e - mu[b]) * torch.exp(-ls)
            z, ladj = self.coupling.inverse(u, ctx[b])
            out.append(-0.5 * (z * z).sum(-1) - 0.5 * z.shape[1] * LOG_2PI + ladj - ls.sum(-1))
        return torch.cat(out) if out else mu.new_empty(0)

    def _flow_ids(self, mu, log_sigma, ctx, ent: Tensor, ids: Tensor) -> Tensor:
        """Full log-density of entities ``ids [B, K]`` → ``[B, K]``."""
        b, k = ids.shape
        rows = torch.arange(b, device=ids.device).repeat_interleave(k)
        return self._flow_rows(mu, log_sigma, ctx, rows, ent=ent, ids=ids.reshape(-1)).view(b, k)

    def log_prob(self, ent: Tensor, rel: Tensor | None, anchor: Tensor, r: Tensor,
                 candidates: Tensor, direction: str = "tail") -> Tensor:
        """Full ``log p(e_c | e_anchor, r)`` of entity ids ``candidates [B, K]`` → ``[B, K]``."""
        mu, ls, ctx = self.gaussian_params(ent, rel, anchor, r, direction)
        return self._flow_ids(mu, ls, ctx, ent, candidates)

    # ------------------------------------------------------------------ ranking
    def _rank_all(self, ent, rel, anchor, r, direction) -> Tensor:
        return self._two_stage(ent, *self.gaussian_params(ent, rel, anchor, r, direction))

    def _resolve_k(self, n: int) -> int:
        k = self.train_rerank_k if self.training else self.rerank_k
        return n if k == "all" else min(int(k), n)

    def _two_stage(self, ent, mu, ls, ctx) -> Tensor:
        """Scores ``[B, N]``: merged as under "Merging" in eval mode; in training mode the
        re-ranked entries get ``s₂`` and the others keep ``s₁`` *unshifted* (a detached shift
        would let the model lower the rest for free by lowering its worst re-ranked score)."""
        record = not self.training
        n = ent.shape[0]
        k = self._resolve_k(n)
        t0 = time.perf_counter()
        s1 = self.gaussian_all(mu, ls, ent) if k < n or record else None
        top = s1.topk(k, dim=1).indices if 0 < k < n else None
        t1 = time.perf_counter()
        if k == 0:
            out = s1
        elif k == n:
            out = self._flow_ids(mu, ls, ctx, ent, torch.arange(n, device=ent.device)
                                 .expand(mu.shape[0], n))
        elif not record:
            out = s1.scatter(1, top, self._flow_ids(mu, ls, ctx, ent, top))
        else:
            s2 = self._flow_ids(mu, ls, ctx, ent, top)
            inside = torch.zeros_like(s1, dtype=torch.bool).scatter_(1, top, True)
            rest_max = s1.masked_fill(inside, -math.inf).max(1).values
            shift = (s2.min(1).values - self.gap - rest_max).clamp_max(0.0)
            out = (s1 + shift.unsqueeze(1)).scatter(1, top, s2)
        if record:
            t2 = time.perf_counter()
            st = self._stats
            st["queries"] += mu.shape[0]
            st["top1_changed"] += int((out.argmax(1) != s1.argmax(1)).sum())
            st["reranked"] += k * mu.shape[0]
            st["stage1_seconds"] += t1 - t0
            st["stage2_seconds"] += t2 - t1
        return out

    def density_terms(self, ent: Tensor, rel: Tensor | None, anchor: Tensor, r: Tensor,
                      target: Tensor, direction: str = "tail") -> dict[str, Tensor]:
        """What the ``flow_nll`` loss needs, from one query computation.

        The re-ranker's candidate set is the target followed by stage 1's top ``K``
        (``train_rerank_k`` in training mode; all entities for ``'all'``). Returns
        ``{"gaussian": [B, N] stage-1 scores, "candidates": LongTensor[B, 1 + K] (column 0 the
        target), "candidate_scores": [B, 1 + K] full log-densities with the target's
        duplicate inside the top K set to −inf, "target_log_prob": [B]}``.
        """
        mu, ls, ctx = self.gaussian_params(ent, rel, anchor, r, direction)
        s1 = self.gaussian_all(mu, ls, ent)
        n = ent.shape[0]
        k = self._resolve_k(n)
        top = (torch.arange(n, device=ent.device).expand(mu.shape[0], n) if k == n
               else s1.topk(k, dim=1).indices)
        cand = torch.cat([target.unsqueeze(1), top], dim=1)
        s2 = self._flow_ids(mu, ls, ctx, ent, cand)
        dup = top == target.unsqueeze(1)
        scores = torch.cat([s2[:, :1], s2[:, 1:].masked_fill(dup, -math.inf)], dim=1)
        return {"gaussian": s1, "candidates": cand, "candidate_scores": scores,
                "target_log_prob": s2[:, 0]}

    # ------------------------------------------------------------- decoder API
    def score_tails(self, ent, rel, h, r):
        """Two-stage scores ``[B, N]`` of every entity as the tail of ``(h, r, ?)``."""
        return self._rank_all(ent, rel, h, r, "tail")

    def score_heads(self, ent, rel, r, t):
        """Two-stage scores ``[B, N]`` of every entity as the head of ``(?, r, t)``."""
        return self._rank_all(ent, rel, t, r, "head")

    def score_candidates(self, ent, rel, h, r, t, candidates, direction="tail"):
        """Full log-density ``[B, K]`` of ``candidates [B, K]`` replacing the tail or head."""
        anchor = h if check_direction(direction) == "tail" else t
        return self.log_prob(ent, rel, anchor, r, candidates, direction)

    def score_shared(self, ent, rel, h, r, t, candidates, direction="tail", ids=None):
        """Stage-1 scores ``[B, K]``: the Gaussian log-density ``log N(e_c; μ, diag σ²)`` of the
        shared candidates ``candidates [K]`` (one matrix product, :meth:`gaussian_all`). This is
        what neighbour-sampled training fits; the conditional coupling re-ranks at evaluation
        (and is trained by the full-batch ``flow_nll`` / ``nssa`` objectives)."""
        mu, ls, _ = self.gaussian_params(ent, rel, h if direction == "tail" else t, r, direction)
        return self.gaussian_all(mu, ls, ent[candidates])

    def tail_query(self, ent, rel, h, r):
        """The Gaussian mean ``f_r(e_h)`` ``[B, d]`` (the mode of the stage-1 density)."""
        return self.mean.transform(ent[h], r, rel)[0]

    def head_query(self, ent, rel, r, t):
        """The Gaussian mean ``f_r⁻¹(e_t)`` ``[B, d]``."""
        return self.mean.transform(ent[t], r, rel, inverse=True)[0]

    # ----------------------------------------------------------------- sampling
    def sample(self, ent: Tensor, rel: Tensor | None, h: Tensor, r: Tensor, n: int,
               generator: torch.Generator | None = None, *, direction: str = "tail",
               temperature: float = 1.0) -> Tensor:
        """``n`` samples ``e = μ + σ ⊙ C(T·z; c)``, ``z ~ N(0, I)``, per query: ``[B, n, d]``.

        ``h`` is the anchor: the head for ``direction='tail'``, the tail for ``direction='head'``.
        ``z`` is drawn on the CPU from ``generator`` (then moved), so a seed gives the same
        samples on every device. ``temperature`` ``T < 1`` samples the base distribution
        ``N(0, T²I)`` (Glow's reduced-temperature sampling): in ``d`` dimensions a sample lies
        at ``|z| ≈ T·√d``, so a smaller ``T`` trades diversity for landing nearer the modes.
        """
        if n < 1:
            raise ValueError(f"n must be ≥ 1, got {n}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        mu, ls, ctx = self.gaussian_params(ent, rel, h, r, direction)
        b, d = mu.shape
        z = torch.randn(b * n, d, generator=generator, dtype=mu.dtype).to(mu.device)
        u, _ = self.coupling(z * temperature, ctx.repeat_interleave(n, dim=0))
        return mu.unsqueeze(1) + torch.exp(ls).unsqueeze(1) * u.view(b, n, d)

    def sample_entities(self, ent: Tensor, rel: Tensor | None, h: Tensor, r: Tensor, n: int,
                        generator: torch.Generator | None = None, *, direction: str = "tail",
                        temperature: float = 1.0) -> Tensor:
        """Nearest entity ids ``LongTensor[B, n]`` of :meth:`sample`'s points."""
        return nearest_entities(self.sample(ent, rel, h, r, n, generator, direction=direction,
                                            temperature=temperature), ent)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, flow={self.mean.flow_spec.get('name')}, "
                f"coupling={self.coupling_spec.get('name')}, context_dim={self.rel_dim}, "
                f"rerank_k={self.rerank_k}, train_rerank_k={self.train_rerank_k}, "
                f"scale_clamp={self.scale_clamp:g}, gap={self.gap:g}")


__all__ = ["StochasticFlowDecoder", "nearest_entities"]

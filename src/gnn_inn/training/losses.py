"""Training objectives and the query batches they consume.

Three objectives, each a class with ``batches(batch_size, generator)`` yielding, per
optimisation step, a list of :class:`QueryBatch` (a tail part and a head part, scored from one
encoder pass) and ``__call__(model, batch, ent, rel)`` giving one part's mean loss:

* :class:`KvsAllLoss` — 1-N scoring with binary cross-entropy against multi-hot targets of all
  known training answers, with label smoothing (Dettmers et al., 2018). Queries are the unique
  ``(h, r, ?)`` and ``(?, r, t)`` of the training set; head queries are answered by the
  decoder's head map (an inverse flow or a closed form), never by reciprocal triples.
* :class:`OneVsAllLoss` — cross-entropy of the true entity against all entities, both
  directions per triple (Lacroix et al., 2018; Ruffinelli et al., 2020).
* :class:`NegativeSamplingLoss` — ``K`` uniformly sampled corruptions per triple and
  direction, with self-adversarial weighting ``softmax(α · s_neg)`` (Sun et al., 2019).
  Negatives that are true *training* triples are masked out (filtered against train only).

Type constraints
----------------
On a typed graph (ogbl-biokg: every relation links one entity type to another, and entity
types occupy contiguous id ranges) the three objectives take ``type_ranges``, a
``LongTensor[R, 2, 2]``: ``type_ranges[r, 0] = (start, end)`` is the ``[start, end)`` id range
of the valid *heads* of relation ``r`` and ``type_ranges[r, 1]`` that of its valid *tails*
(:func:`relation_type_ranges`, :func:`kg_type_ranges`). With it

* ``nssa`` draws the corruptions of a tail query ``(h, r, ?)`` uniformly from ``r``'s tail range
  and those of a head query from its head range (``start + ⌊u · (end − start)⌋``, ``u ~ U[0,
  1)``), as OGB's own biokg baselines do;
* ``1vsall`` / ``kvsall`` score all entities as before but treat the out-of-type ones as
  impossible: their logits are ``−∞`` in the softmax (:func:`softmax_loss`), and they are
  left out of the BCE sum (the ``−∞``-logit limit of a 0 target, written NaN-free), whose mean
  and label smoothing ``ε / count`` then run over the query's in-type candidates only.

This matches the OGB protocol, whose candidates are always of the replaced entity's type.
Relations never seen with types (``relation_types == −1``) keep the full range ``[0, N)``.
The trainer passes ``type_ranges`` by default when the graph is typed (config
``train.loss.type_constrained``, see :func:`resolve_type_ranges`).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import ConfigError
from ..data.triples import TripleSet
from ..registry import resolve
from .batches import QueryBatch, gather_csr, unique_queries
from .elbo import ELBOLoss

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- type constraints
def relation_type_ranges(relation_types: Tensor, type_ranges: Sequence[tuple[int, int]],
                         num_entities: int) -> Tensor:
    """Per-relation id ranges of valid heads and tails.

    Args:
        relation_types: ``LongTensor[R, 2]`` (head type, tail type) index of each relation,
            ``-1`` where unknown.
        type_ranges: ``[(start, end)]`` per type index: the type's global ids are
            ``start <= id < end``.
        num_entities: ``N``; an unknown type (``-1``) gets the full range ``(0, N)``.

    Returns:
        ``LongTensor[R, 2, 2]``: ``[r, 0] = (head start, head end)``, ``[r, 1] = (tail start,
        tail end)``.
    """
    rt = torch.as_tensor(relation_types, dtype=torch.long)
    if rt.dim() != 2 or rt.shape[1] != 2:
        raise ValueError(f"relation_types must be [R, 2], got {tuple(rt.shape)}")
    bounds = torch.tensor([[int(a), int(b)] for a, b in type_ranges],
                          dtype=torch.long).reshape(-1, 2)
    if rt.numel() and int(rt.max()) >= bounds.shape[0]:
        raise ValueError(f"relation_types names type {int(rt.max())} but only "
                         f"{bounds.shape[0]} type ranges are given")
    out = torch.tensor([0, int(num_entities)]).expand(rt.shape[0], 2, 2).clone()
    known = rt >= 0
    out[known] = bounds[rt[known]]
    return out


def kg_type_ranges(kg) -> Tensor | None:
    """``LongTensor[R, 2, 2]`` of a typed graph (one with ``relation_types [R, 2]`` and
    ``entity_type_ranges {type: (start, end)}``, e.g. ogbl-biokg), else ``None``.

    Type indices follow ``kg.entity_type_names`` when the graph has it, else the order of
    ``entity_type_ranges``.
    """
    rel_types, ranges = kg.relation_types, kg.entity_type_ranges
    if rel_types is None or not ranges:
        return None
    names = list(kg.entity_type_names or ranges)
    return relation_type_ranges(rel_types, [ranges[n] for n in names], kg.num_entities)


def check_type_ranges(type_ranges: Tensor, train: Tensor, num_entities: int,
                      num_relations: int) -> Tensor:
    """Validate ``type_ranges [R, 2, 2]`` (non-empty ranges within ``[0, N)``, every training
    head and tail inside its relation's range) and return it as a CPU ``LongTensor``."""
    tr = torch.as_tensor(type_ranges).to("cpu", torch.long)
    if tr.shape != (num_relations, 2, 2):
        raise ValueError(f"type_ranges must be [R, 2, 2] = [{num_relations}, 2, 2], got "
                         f"{tuple(tr.shape)}")
    lo, hi = tr[..., 0], tr[..., 1]
    if bool(((lo < 0) | (hi > num_entities) | (lo >= hi)).any()):
        raise ValueError(f"type_ranges: every range must satisfy 0 <= start < end <= "
                         f"{num_entities}")
    h, r, t = train.cpu().unbind(1)
    for side, ids in (("head", h), ("tail", t)):
        k = 0 if side == "head" else 1
        bad = (ids < lo[r, k]) | (ids >= hi[r, k])
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise ValueError(f"type_ranges: training triple {train[i].tolist()} has its {side} "
                             f"outside relation {int(r[i])}'s {side} range "
                             f"{tr[r[i], k].tolist()}")
    return tr


def sample_in_ranges(start: Tensor, end: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """``k`` ids drawn uniformly with replacement from ``[start, end)``, per element.

    Args:
        start, end: ``LongTensor[*S]`` (``end > start``).
        k: draws per element.
        generator: the sampling generator.

    Returns:
        ``LongTensor[*S, k]``: ``start + ⌊u · (end − start)⌋``, ``u ~ U[0, 1)`` in float64
        (exact for any id range), clamped to ``end − 1`` as a guard.
    """
    count = (end - start).unsqueeze(-1)
    u = torch.rand((*start.shape, k), generator=generator, dtype=torch.float64)
    off = torch.floor(u * count).long()
    return start.unsqueeze(-1) + torch.minimum(off, count - 1)


def type_candidate_mask(type_ranges: Tensor, relation: Tensor, direction: str,
                        num_entities: int) -> Tensor:
    """``BoolTensor[B, N]``: entity ``e`` is a valid answer of query ``b`` of ``direction``.

    Args:
        type_ranges: ``LongTensor[R, 2, 2]``.
        relation: ``LongTensor[B]`` relation of each query.
        direction: ``'tail'`` (answers in the tail range) or ``'head'``.
        num_entities: ``N``.
    """
    side = 1 if direction == "tail" else 0
    rng = type_ranges.to(relation.device)[relation, side]  # [B, 2]
    cols = torch.arange(num_entities, device=relation.device)
    return (cols >= rng[:, :1]) & (cols < rng[:, 1:])


def resolve_type_ranges(kg, type_constrained: bool | None, *, loss_name: str,
                        supported: bool = True) -> Tensor | None:
    """The ``type_ranges`` a loss gets from config ``train.loss.type_constrained``.

    Args:
        kg: the knowledge graph (typed when :func:`kg_type_ranges` finds types).
        type_constrained: ``None`` (default, *auto*): on when the graph is typed and the loss
            supports it; ``True``: on, an error when the graph is untyped or the loss has no
            type constraints; ``False``: off.
        loss_name: for messages.
        supported: whether the loss accepts ``type_ranges``.

    Returns:
        ``LongTensor[R, 2, 2]`` or ``None``.
    """
    if type_constrained is not None and not isinstance(type_constrained, bool):
        raise ConfigError(f"train.loss.type_constrained must be true, false or null (auto), "
                          f"got {type_constrained!r}")
    if type_constrained is False:
        return None
    ranges = kg_type_ranges(kg)
    if ranges is None:
        if type_constrained:
            raise ConfigError(f"train.loss.type_constrained: true needs a typed graph "
                              f"(relation_types and entity_type_ranges, e.g. ogbl-biokg); "
                              f"{kg.name} has none")
        return None
    if not supported:
        if type_constrained:
            raise ConfigError(f"train.loss.type_constrained: loss {loss_name!r} has no type "
                              "constraints; use nssa, 1vsall or kvsall, or drop the option")
        log.info("loss %r has no type constraints: training over all entities", loss_name)
        return None
    return ranges


def accepts_type_ranges(cls: type) -> bool:
    """Whether loss class ``cls`` takes a ``type_ranges`` argument."""
    try:
        return "type_ranges" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False


# ------------------------------------------------------- objectives of scores
# Each objective is written once, as a function of scores (PyKEEN's process_lcwa_scores /
# process_slcwa_scores): the full-batch losses below pass ``[B, N]`` scores against every
# entity, the neighbour-sampled objective (:mod:`gnn_inn.training.sampling`) ``[B, C]`` scores
# against the step's shared candidates, with ``ok`` masking the columns that do not count for
# a query (out of its type range; in sampled training also candidates that are not drawn
# negatives). All return the per-query loss ``[B]``; callers average.


def softmax_loss(scores: Tensor, target: Tensor, ok: Tensor | None = None,
                 label_smoothing: float = 0.0) -> Tensor:
    r"""Cross-entropy of the answer column among the candidates (1vsAll; Lacroix et al. 2018).

    .. math::
        \ell_b = -(1 - ε) \log p_{b, y_b} - \frac{ε}{|C_b|} \sum_{c \in C_b} \log p_{b, c},
        \qquad p_b = \mathrm{softmax}_{C_b}(s_b)

    Args:
        scores: ``[B, C]``.  target: ``LongTensor[B]`` column of each query's answer (the
            answer's column must be ``ok``).
        ok: ``BoolTensor[B, C]``, the candidate set ``C_b`` of each query; ``None`` = all.
        label_smoothing: ``ε``.

    Returns:
        ``[B]``.
    """
    if ok is None:
        logp = torch.log_softmax(scores, dim=1)
        smooth = -logp.mean(1)
    else:
        logp = torch.log_softmax(scores.masked_fill(~ok, float("-inf")), dim=1)
        smooth = -logp.masked_fill(~ok, 0.0).sum(1) / ok.sum(1).to(logp.dtype)
    loss = -logp.gather(1, target.unsqueeze(1))[:, 0]
    eps = float(label_smoothing)
    return (1.0 - eps) * loss + eps * smooth if eps else loss


def binary_loss(scores: Tensor, labels: Tensor, ok: Tensor | None = None,
                label_smoothing: float = 0.0) -> Tensor:
    r"""Binary cross-entropy against multi-hot labels, mean over the candidates (KvsAll;
    Dettmers et al. 2018), with targets ``(1 − ε)·y + ε / |C_b|``.

    Args:
        scores: ``[B, C]``.  labels: ``[B, C]`` 0 / 1 (bool or float): known answers.
        ok: ``BoolTensor[B, C]`` candidates that count (the ``−∞``-logit limit of a 0 target
            for the others, written NaN-free); ``None`` = all.
        label_smoothing: ``ε``.

    Returns:
        ``[B]``.
    """
    count = (scores.new_full((scores.shape[0], 1), scores.shape[1]) if ok is None
             else ok.sum(1, keepdim=True).to(scores.dtype))
    target = labels.to(scores.dtype)
    eps = float(label_smoothing)
    if eps:
        target = (1.0 - eps) * target + eps / count
    bce = F.binary_cross_entropy_with_logits(scores, target, reduction="none")
    if ok is not None:
        bce = torch.where(ok, bce, torch.zeros_like(bce))
    return bce.sum(1) / count[:, 0]


def self_adversarial_loss(s_pos: Tensor, s_neg: Tensor, mask: Tensor | None = None,
                          temperature: float = 1.0) -> Tensor:
    r"""Self-adversarial negative sampling (Sun et al. 2019):

    .. math::
        \ell_b = -\log\sigma(s^+_b) - \sum_i w_{b,i} \log\sigma(-s^-_{b,i}),\qquad
        w_b = \mathrm{softmax}_{m_b}(α\, s^-_b)\ \text{(no gradient)}

    Args:
        s_pos: ``[B]``.  s_neg: ``[B, K]``.
        mask: ``[B, K]`` (bool or 0 / 1): negatives that count; a query whose negatives are all
            masked gets no negative term. ``None`` = all.
        temperature: ``α``; ``0`` gives uniform weights over the kept negatives.

    Returns:
        ``[B]``.
    """
    m = torch.ones_like(s_neg) if mask is None else mask.to(s_neg.dtype)
    if temperature > 0:  # (× m: no weight at all when every negative is masked)
        w = torch.softmax(temperature * s_neg.detach() + torch.log(m + 1e-30), dim=1) * m
    else:
        w = m / m.sum(1, keepdim=True).clamp_min(1.0)
    return -F.logsigmoid(s_pos) - (w * F.logsigmoid(-s_neg)).sum(1)


def _score_all(model, batch: QueryBatch, ent: Tensor, rel: Tensor | None) -> Tensor:
    """``[B, N]`` decoder scores of the batch's queries against every entity."""
    dec = model.decoder
    if batch.direction == "tail":
        return dec.score_tails(ent, rel, batch.anchor, batch.relation)
    return dec.score_heads(ent, rel, batch.relation, batch.anchor)


class Loss:
    """Base: holds the training triples; subclasses define batching and the objective."""

    name = "base"

    def __init__(self, train: Tensor, num_entities: int, num_relations: int, *,
                 type_ranges: Tensor | None = None) -> None:
        self.train = train
        self.num_entities = num_entities
        self.num_relations = num_relations
        self.type_ranges = (None if type_ranges is None else
                            check_type_ranges(type_ranges, train, num_entities, num_relations))

    def num_batches(self, batch_size: int) -> int:
        raise NotImplementedError

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[list[QueryBatch]]:
        raise NotImplementedError

    def __call__(self, model, batch: QueryBatch, ent: Tensor, rel: Tensor | None) -> Tensor:
        raise NotImplementedError

    def _ok(self, batch: QueryBatch, logits: Tensor) -> Tensor | None:
        """``BoolTensor[B, N]`` in-type candidates of the batch's queries, ``None`` untyped."""
        if self.type_ranges is None:
            return None
        return type_candidate_mask(self.type_ranges, batch.relation.to(logits.device),
                                   batch.direction, logits.shape[1])


class KvsAllLoss(Loss):
    """1-N BCE with label smoothing ``ε``: targets ``(1 − ε)·y + ε / N``."""

    name = "kvsall"

    def __init__(self, train, num_entities, num_relations, *, label_smoothing: float = 0.1,
                 type_ranges: Tensor | None = None):
        super().__init__(train, num_entities, num_relations, type_ranges=type_ranges)
        self.label_smoothing = float(label_smoothing)
        h, r, t = train.unbind(1)
        self.tail_q = unique_queries(h, r, t, num_entities, num_relations)
        self.head_q = unique_queries(t, r, h, num_entities, num_relations)

    def num_batches(self, batch_size: int) -> int:
        n = self.tail_q[0].numel() + self.head_q[0].numel()
        return (n + batch_size - 1) // batch_size

    def batches(self, batch_size, generator):
        nt = self.tail_q[0].numel()
        n = nt + self.head_q[0].numel()
        perm = torch.randperm(n, generator=generator)
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            step = []
            for direction, sel, q in (("tail", idx[idx < nt], self.tail_q),
                                 ("head", idx[idx >= nt] - nt, self.head_q)):
                if sel.numel() == 0:
                    continue
                a, r, offsets, ans = q
                rows, cols = gather_csr(sel, offsets, ans)
                step.append(QueryBatch(direction, a[sel], r[sel], rows=rows, cols=cols))
            yield step

    def __call__(self, model, batch, ent, rel):
        logits = _score_all(model, batch, ent, rel).float()
        labels = torch.zeros_like(logits)
        labels[batch.rows.to(logits.device), batch.cols.to(logits.device)] = 1.0
        return binary_loss(logits, labels, self._ok(batch, logits), self.label_smoothing).mean()


class OneVsAllLoss(Loss):
    """Cross-entropy of the true answer among all entities, both directions per triple."""

    name = "1vsall"

    def __init__(self, train, num_entities, num_relations, *, label_smoothing: float = 0.0,
                 type_ranges: Tensor | None = None):
        super().__init__(train, num_entities, num_relations, type_ranges=type_ranges)
        self.label_smoothing = float(label_smoothing)

    def num_batches(self, batch_size):
        return (self.train.shape[0] + batch_size - 1) // batch_size

    def batches(self, batch_size, generator):
        perm = torch.randperm(self.train.shape[0], generator=generator)
        for i in range(0, perm.numel(), batch_size):
            h, r, t = self.train[perm[i : i + batch_size]].unbind(1)
            yield [QueryBatch("tail", h, r, target=t), QueryBatch("head", t, r, target=h)]

    def __call__(self, model, batch, ent, rel):
        logits = _score_all(model, batch, ent, rel).float()
        target = batch.target.to(logits.device)
        return softmax_loss(logits, target, self._ok(batch, logits), self.label_smoothing).mean()


class NegativeSamplingLoss(Loss):
    r"""Self-adversarial negative sampling (RotatE):

    .. math::
        L = -\log\sigma(s^+) - \sum_i p_i \log\sigma(-s^-_i),\qquad
        p = \mathrm{softmax}(\alpha s^-)\ \text{(no gradient)}

    ``α = 0`` gives uniform weights ``1/K``. Scores should include the decoder's margin ``γ``.
    Negatives equal to a known training answer of the same query are masked out (a query
    whose negatives are all masked gets no negative term).

    Corruptions are uniform over all entities, or, with ``type_ranges [R, 2, 2]`` (see the
    module docstring), uniform over the tail range of the query's relation (tail queries)
    and over its head range (head queries).
    """

    name = "nssa"

    def __init__(
        self, train, num_entities, num_relations, *, num_negatives: int = 64,
        adversarial_temperature: float = 1.0, filter_negatives: bool = True,
        type_ranges: Tensor | None = None,
    ):
        super().__init__(train, num_entities, num_relations, type_ranges=type_ranges)
        self.num_negatives = int(num_negatives)
        self.alpha = float(adversarial_temperature)
        self.filter_negatives = filter_negatives
        self.known = TripleSet(train, num_entities, num_relations) if filter_negatives else None

    def num_batches(self, batch_size):
        return (self.train.shape[0] + batch_size - 1) // batch_size

    def batches(self, batch_size, generator):
        perm = torch.randperm(self.train.shape[0], generator=generator)
        for i in range(0, perm.numel(), batch_size):
            h, r, t = self.train[perm[i : i + batch_size]].unbind(1)
            if self.type_ranges is None:
                neg = torch.randint(
                    self.num_entities, (2, h.numel(), self.num_negatives), generator=generator
                )
            else:  # [0]: tails from r's tail range, [1]: heads from its head range
                rng = self.type_ranges[r]  # [B, 2 (head, tail), 2 (start, end)]
                neg = sample_in_ranges(torch.stack([rng[:, 1, 0], rng[:, 0, 0]]),
                                       torch.stack([rng[:, 1, 1], rng[:, 0, 1]]),
                                       self.num_negatives, generator)  # [2, B, K]
            yield [QueryBatch("tail", h, r, target=t, other=neg[0]),
                   QueryBatch("head", t, r, target=h, other=neg[1])]

    def __call__(self, model, batch, ent, rel):
        dec = model.decoder
        dev = ent.device
        a, r, pos = batch.anchor.to(dev), batch.relation.to(dev), batch.target.to(dev)
        neg = batch.other.to(dev)
        cand = torch.cat([pos.unsqueeze(1), neg], dim=1)
        if batch.direction == "tail":
            s = dec.score_candidates(ent, rel, a, r, pos, cand, "tail")
        else:
            s = dec.score_candidates(ent, rel, pos, r, a, cand, "head")
        s = s.float()
        mask = None
        if self.filter_negatives:
            mask = ~self.known.contains_answers(a, r, neg, batch.direction)
        return self_adversarial_loss(s[:, 0], s[:, 1:], mask, self.alpha).mean()


LOSSES: dict[str, type[Loss]] = {
    "kvsall": KvsAllLoss,
    "1vsall": OneVsAllLoss,
    "nssa": NegativeSamplingLoss,
}


def build_loss(name: str, train: Tensor, num_entities: int, num_relations: int, *,
               type_ranges: Tensor | None = None, **kwargs) -> Loss:
    """Build the loss registered as ``name`` (see :data:`LOSSES`) on the train triples.

    ``kwargs`` are the loss's own options (``train.loss`` minus ``name``); an unknown name or
    option raises ``ValueError`` listing the accepted ones (:func:`gnn_inn.registry.resolve`).
    ``train [M, 3]``, ``num_entities``, ``num_relations`` and ``type_ranges`` (``[R, 2, 2]``
    type-constrained candidates, passed to losses that take them) come from the graph and
    are never reported as options.
    """
    return resolve("loss", LOSSES, name, train, num_entities, num_relations, options=kwargs,
                   offered={"type_ranges": type_ranges})


class FlowNLLLoss(OneVsAllLoss):
    r"""Density objective of the stochastic flow decoder (``flow_nll``), both directions:

    .. math::
        L = \mathrm{CE}_{\{y\} \cup \mathrm{top}_K(s_1)}(s_2, y)
            + \lambda_g\,\mathrm{CE}_{\mathcal E}(s_1, y)
            - \frac{\lambda_{nll}}{d}\,\log p(e_y \mid e_a, r)

    * ``CE(s₂, y)`` over the re-ranker's candidates — the true entity and stage 1's top
      ``K = train_rerank_k`` (all entities for ``'all'``), scored by the full log-density
      ``s₂``: ``p(y) = p(e_y) / Σ_j p(e_j)``, the *contrastive* term that keeps distinct
      entities apart (maximising the density alone would pull every embedding onto the query's
      mode). It trains stage 2 on exactly the set it re-ranks at evaluation;
    * ``CE(s₁, y)`` over all entities (weight ``gaussian_weight``) — the stage-1 Gaussian
      scores, so the cheap first stage learns to bring the answer into the top ``K``;
    * ``−log p(e_y | e_a, r) / d`` (weight ``nll_weight``) — the pure continuous NLL under the
      full conditional flow, per dimension. The softmax is blind to the density's
      normalisation (``Σ log σ`` cancels in it); this term makes the density cover all true
      answers of a query, which is what sampling needs. It is bounded below because the
      decoder soft-clamps its log-scales.

    Needs a decoder with ``density_terms(ent, rel, anchor, r, target, direction)`` (the
    ``stochastic_flow`` decoder). The plain ``1vsall`` loss also works with that decoder (its
    training-mode scores are ``s₂`` on stage 1's top ``K`` and ``s₁`` elsewhere) but trains
    neither the stage-1 ranking on its own nor the density's normalisation.
    """

    name = "flow_nll"

    def __init__(self, train, num_entities, num_relations, *, gaussian_weight: float = 0.5,
                 nll_weight: float = 1.0):
        super().__init__(train, num_entities, num_relations)
        self.gaussian_weight = float(gaussian_weight)
        self.nll_weight = float(nll_weight)

    def __call__(self, model, batch, ent, rel):
        dec = model.decoder
        if not dec.density:
            raise ValueError(f"loss 'flow_nll' needs a density decoder (decoder "
                             f"'stochastic_flow'), got {type(dec).__name__}; use '1vsall'")
        target = batch.target.to(ent.device)
        terms = dec.density_terms(ent, rel, batch.anchor.to(ent.device),
                                  batch.relation.to(ent.device), target, batch.direction)
        scores = terms["candidate_scores"].float()
        loss = F.cross_entropy(scores, torch.zeros_like(target))
        if self.gaussian_weight:
            loss = loss + self.gaussian_weight * F.cross_entropy(terms["gaussian"].float(), target)
        if self.nll_weight:
            loss = loss - self.nll_weight * terms["target_log_prob"].float().mean() / ent.shape[1]
        return loss


LOSSES["flow_nll"] = FlowNLLLoss


# variational embeddings (LIM / LFM): estimator and loss in .elbo
LOSSES["elbo"] = ELBOLoss

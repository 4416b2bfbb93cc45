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
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class QueryBatch:
    """One step's queries. ``kind`` is ``'tail'`` (``a = h``) or ``'head'`` (``a = t``)."""

    kind: str
    anchor: Tensor  # [B]
    relation: Tensor  # [B]
    target: Tensor | None = None  # [B] single answer (1vsAll, NS)
    other: Tensor | None = None  # [B] for NS: the answer entity
    rows: Tensor | None = None  # [P] KvsAll multi-hot rows
    cols: Tensor | None = None  # [P] KvsAll multi-hot cols


def _unique_queries(a: Tensor, r: Tensor, ans: Tensor, num_entities: int, num_relations: int):
    """Unique ``(a, r)`` pairs with CSR lists of their answers."""
    key = a * num_relations + r
    uniq, inv = torch.unique(key, return_inverse=True)
    order = torch.argsort(inv, stable=True)
    counts = torch.bincount(inv, minlength=uniq.numel())
    offsets = torch.zeros(uniq.numel() + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(counts, 0)
    return uniq // num_relations, uniq % num_relations, offsets, ans[order]


def _gather_csr(idx: Tensor, offsets: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
    """For query indices ``idx[B]`` return ``(row[P], value[P])`` of their CSR lists."""
    start, end = offsets[idx], offsets[idx + 1]
    counts = end - start
    rows = torch.repeat_interleave(torch.arange(idx.numel()), counts)
    pos = torch.arange(int(counts.sum())) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts
    ) + torch.repeat_interleave(start, counts)
    return rows, values[pos]


class Loss:
    """Base: holds the training triples; subclasses define batching and the objective."""

    name = "base"

    def __init__(self, train: Tensor, num_entities: int, num_relations: int) -> None:
        self.train = train
        self.num_entities = num_entities
        self.num_relations = num_relations

    def num_batches(self, batch_size: int) -> int:
        raise NotImplementedError

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[list[QueryBatch]]:
        raise NotImplementedError

    def __call__(self, model, batch: QueryBatch, ent: Tensor, rel: Tensor | None) -> Tensor:
        raise NotImplementedError


class KvsAllLoss(Loss):
    """1-N BCE with label smoothing ``ε``: targets ``(1 − ε)·y + ε / N``."""

    name = "kvsall"

    def __init__(self, train, num_entities, num_relations, *, label_smoothing: float = 0.1):
        super().__init__(train, num_entities, num_relations)
        self.label_smoothing = float(label_smoothing)
        h, r, t = train.unbind(1)
        self.tail_q = _unique_queries(h, r, t, num_entities, num_relations)
        self.head_q = _unique_queries(t, r, h, num_entities, num_relations)

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
            for kind, sel, q in (("tail", idx[idx < nt], self.tail_q),
                                 ("head", idx[idx >= nt] - nt, self.head_q)):
                if sel.numel() == 0:
                    continue
                a, r, offsets, ans = q
                rows, cols = _gather_csr(sel, offsets, ans)
                step.append(QueryBatch(kind, a[sel], r[sel], rows=rows, cols=cols))
            yield step

    def __call__(self, model, batch, ent, rel):
        dec = model.decoder
        if batch.kind == "tail":
            logits = dec.score_tails(ent, rel, batch.anchor, batch.relation)
        else:
            logits = dec.score_heads(ent, rel, batch.relation, batch.anchor)
        target = torch.zeros_like(logits)
        target[batch.rows.to(logits.device), batch.cols.to(logits.device)] = 1.0
        if self.label_smoothing:
            target = (1.0 - self.label_smoothing) * target + self.label_smoothing / logits.shape[1]
        return F.binary_cross_entropy_with_logits(logits.float(), target)


class OneVsAllLoss(Loss):
    """Cross-entropy of the true answer among all entities, both directions per triple."""

    name = "1vsall"

    def __init__(self, train, num_entities, num_relations, *, label_smoothing: float = 0.0):
        super().__init__(train, num_entities, num_relations)
        self.label_smoothing = float(label_smoothing)

    def num_batches(self, batch_size):
        return (self.train.shape[0] + batch_size - 1) // batch_size

    def batches(self, batch_size, generator):
        perm = torch.randperm(self.train.shape[0], generator=generator)
        for i in range(0, perm.numel(), batch_size):
            h, r, t = self.train[perm[i : i + batch_size]].unbind(1)
            yield [QueryBatch("tail", h, r, target=t), QueryBatch("head", t, r, target=h)]

    def __call__(self, model, batch, ent, rel):
        dec = model.decoder
        if batch.kind == "tail":
            logits = dec.score_tails(ent, rel, batch.anchor, batch.relation)
        else:
            logits = dec.score_heads(ent, rel, batch.relation, batch.anchor)
        return F.cross_entropy(
            logits.float(), batch.target.to(logits.device), label_smoothing=self.label_smoothing
        )


class NegativeSamplingLoss(Loss):
    r"""Self-adversarial negative sampling (RotatE):

    .. math::
        L = -\log\sigma(s^+) - \sum_i p_i \log\sigma(-s^-_i),\qquad
        p = \mathrm{softmax}(\alpha s^-)\ \text{(no gradient)}

    ``α = 0`` gives uniform weights ``1/K``. Scores should include the decoder's margin ``γ``.
    Negatives equal to a known training answer of the same query are masked out.
    """

    name = "nssa"

    def __init__(
        self, train, num_entities, num_relations, *, num_negatives: int = 64,
        adversarial_temperature: float = 1.0, filter_negatives: bool = True,
    ):
        super().__init__(train, num_entities, num_relations)
        self.num_negatives = int(num_negatives)
        self.alpha = float(adversarial_temperature)
        self.filter_negatives = filter_negatives
        h, r, t = train.unbind(1)
        n = num_entities
        self._keys = (torch.sort((h * num_relations + r) * n + t).values if filter_negatives
                      else None)

    def _is_train(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        key = (h * self.num_relations + r) * self.num_entities + t
        pos = torch.searchsorted(self._keys, key).clamp_max(self._keys.numel() - 1)
        return self._keys[pos] == key

    def num_batches(self, batch_size):
        return (self.train.shape[0] + batch_size - 1) // batch_size

    def batches(self, batch_size, generator):
        perm = torch.randperm(self.train.shape[0], generator=generator)
        for i in range(0, perm.numel(), batch_size):
            h, r, t = self.train[perm[i : i + batch_size]].unbind(1)
            neg = torch.randint(
                self.num_entities, (2, h.numel(), self.num_negatives), generator=generator
            )
            yield [QueryBatch("tail", h, r, target=t, other=neg[0]),
                   QueryBatch("head", t, r, target=h, other=neg[1])]

    def __call__(self, model, batch, ent, rel):
        dec = model.decoder
        dev = ent.device
        a, r, pos = batch.anchor.to(dev), batch.relation.to(dev), batch.target.to(dev)
        neg = batch.other.to(dev)
        cand = torch.cat([pos.unsqueeze(1), neg], dim=1)
        if batch.kind == "tail":
            s = dec.score_candidates(ent, rel, a, r, pos, cand, "tail")
        else:
            s = dec.score_candidates(ent, rel, pos, r, a, cand, "head")
        s = s.float()
        s_pos, s_neg = s[:, 0], s[:, 1:]
        mask = torch.ones_like(s_neg)
        if self.filter_negatives:
            if batch.kind == "tail":
                hit = self._is_train(a.cpu().unsqueeze(1).expand_as(neg.cpu()),
                                     r.cpu().unsqueeze(1).expand_as(neg.cpu()), neg.cpu())
            else:
                hit = self._is_train(neg.cpu(), r.cpu().unsqueeze(1).expand_as(neg.cpu()),
                                     a.cpu().unsqueeze(1).expand_as(neg.cpu()))
            mask = (~hit).to(dev, s_neg.dtype)
        if self.alpha > 0:
            w = torch.softmax(self.alpha * s_neg.detach() + torch.log(mask + 1e-30), dim=1)
        else:
            w = mask / mask.sum(1, keepdim=True).clamp_min(1.0)
        neg_term = -(w * F.logsigmoid(-s_neg)).sum(1)
        return (-F.logsigmoid(s_pos) + neg_term).mean()


LOSSES: dict[str, type[Loss]] = {
    "kvsall": KvsAllLoss,
    "1vsall": OneVsAllLoss,
    "nssa": NegativeSamplingLoss,
}


def build_loss(name: str, train: Tensor, num_entities: int, num_relations: int, **kwargs) -> Loss:
    try:
        cls = LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(LOSSES)}") from None
    return cls(train, num_entities, num_relations, **kwargs)


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

    Needs a decoder with ``density_terms(ent, rel, anchor, r, target, mode)`` (the
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
        if not hasattr(dec, "density_terms"):
            raise ValueError(f"loss 'flow_nll' needs a density decoder (decoder "
                             f"'stochastic_flow'), got {type(dec).__name__}; use '1vsall'")
        target = batch.target.to(ent.device)
        terms = dec.density_terms(ent, rel, batch.anchor.to(ent.device),
                                  batch.relation.to(ent.device), target, batch.kind)
        scores = terms["candidate_scores"].float()
        loss = F.cross_entropy(scores, torch.zeros_like(target))
        if self.gaussian_weight:
            loss = loss + self.gaussian_weight * F.cross_entropy(terms["gaussian"].float(), target)
        if self.nll_weight:
            loss = loss - self.nll_weight * terms["target_log_prob"].float().mean() / ent.shape[1]
        return loss


LOSSES["flow_nll"] = FlowNLLLoss


# variational embeddings (LIM / LFM): the estimator and its loss live in gnn_inn.variational,
# which imports nothing of this package
from ..variational import ELBOLoss  # noqa: E402

LOSSES["elbo"] = ELBOLoss

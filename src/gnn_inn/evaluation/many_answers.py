r"""Metrics for queries with several true answers (1-N / N-1 / N-N relations).

Filtered MRR asks "is *this* answer ranked first once the other answers are removed"; a query
``(h, r, ?)`` with a whole *set* ``S`` of true tails (``has_member``: all members of a group)
also asks whether the model recovers the set. For every query of the evaluated split whose
known answer set (train ∪ valid ∪ test, the filter index) has at least ``min_answers``
entities:

* **set recall@|S|** — share of ``S`` among the top ``|S|`` entities of the query's scores.
  Ties at the cut-off are broken at random *in expectation* (the realistic policy of
  :mod:`gnn_inn.evaluation.ranking`): with ``a`` true answers strictly above the ``|S|``-th
  score ``τ``, ``m`` true among the ``n_τ`` entities scoring exactly ``τ`` and ``k`` slots
  left, the expected hit count is ``a + m·k/n_τ``; constant scores give chance recall;
* **held-out recall@|S|** — the same for the split's own answers only (those not trained on);
* **sample recall@n** — draw ``n`` points from the decoder's answer distribution
  (``decoder.sample_entities``: nearest entity of each sample), share of ``S`` hit; a
  deterministic decoder (query map ``tail_query`` / ``head_query``) "samples" its one query
  point ``n`` times, so it can hit at most one answer; also the share of samples landing on a
  true answer (``sample_precision``) and the number of distinct entities hit.

Head queries ``(?, r, t)`` with several true heads (N-1 and N-N relations) are scored the
same way (``direction='head'``). :func:`category_mrr` adds the evaluator's filtered MRR per
relation category (1-1, 1-N, N-1, N-N; Bordes et al., 2013), per direction.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..data.triples import DIRECTIONS, check_direction
from .evaluator import evaluate

log = logging.getLogger(__name__)


@dataclass
class AnswerSets:
    """Queries of one direction with their answer sets.

    Attributes:
        direction: ``'tail'`` (``anchor`` = head, answers = tails) or ``'head'``.
        anchor, relation: ``LongTensor[Q]``.
        rows, cols: all known answers as pairs ``(query index [P], entity id [P])``.
        held_rows, held_cols: the evaluated split's answers, same layout.
        sizes: ``LongTensor[Q]`` — ``|S|`` per query.
    """

    direction: str
    anchor: Tensor
    relation: Tensor
    rows: Tensor
    cols: Tensor
    held_rows: Tensor
    held_cols: Tensor
    sizes: Tensor

    def __len__(self) -> int:
        return int(self.anchor.numel())

    def mask(self, start: int, stop: int, num_entities: int, held: bool = False) -> Tensor:
        """Boolean ``[stop − start, N]`` membership of queries ``start:stop``' answer sets."""
        rows, cols = (self.held_rows, self.held_cols) if held else (self.rows, self.cols)
        sel = (rows >= start) & (rows < stop)
        out = torch.zeros(stop - start, num_entities, dtype=torch.bool)
        out[rows[sel] - start, cols[sel]] = True
        return out


def answer_sets(kg, *, split: str = "test", direction: str = "tail", min_answers: int = 2,
                relations: Sequence[int] | None = None) -> AnswerSets:
    """The queries of ``split`` (unique ``(h, r)`` or ``(r, t)``) with ``≥ min_answers`` known
    answers in train ∪ valid ∪ test, optionally restricted to relation ids ``relations``."""
    from ..data.filters import FilterIndex

    check_direction(direction)
    triples = getattr(kg, split)
    if relations is not None:
        triples = triples[torch.isin(triples[:, 1], torch.as_tensor(list(relations)))]
    h, r, t = triples.unbind(1)
    a = h if direction == "tail" else t
    pairs = torch.unique(torch.stack([a, r], 1), dim=0)
    anchor, rel = pairs.unbind(1) if pairs.numel() else (a[:0], r[:0])

    def lookup(index) -> tuple[Tensor, Tensor]:
        return index.tails(anchor, rel) if direction == "tail" else index.heads(rel, anchor)

    rows, cols = lookup(kg.filter_index)
    sizes = torch.bincount(rows, minlength=anchor.numel())
    keep = sizes >= min_answers
    held_rows, held_cols = lookup(FilterIndex(triples, kg.num_entities, kg.num_relations))
    new_id = torch.cumsum(keep.long(), 0) - 1

    def remap(rr: Tensor, cc: Tensor) -> tuple[Tensor, Tensor]:
        sel = keep[rr]
        return new_id[rr[sel]], cc[sel]

    rows, cols = remap(rows, cols)
    held_rows, held_cols = remap(held_rows, held_cols)
    return AnswerSets(direction, anchor[keep], rel[keep], rows, cols, held_rows, held_cols,
                      sizes[keep])


def _scores(model, sets: AnswerSets, i: int, j: int) -> Tensor:
    a, r = sets.anchor[i:j], sets.relation[i:j]
    dev = next(model.parameters()).device
    if sets.direction == "tail":
        return model.score_tails(a.to(dev), r.to(dev)).float().cpu()
    return model.score_heads(r.to(dev), a.to(dev)).float().cpu()


def _expected_hits(scores: Tensor, truth: Tensor, k: Tensor) -> Tensor:
    """Expected ``|top_k ∩ truth|`` per row under random tie breaking, ``[B]`` float64."""
    kmax = int(k.max())
    tau = scores.topk(kmax, dim=1).values.gather(1, (k - 1).unsqueeze(1))
    above, tied = scores > tau, scores == tau
    slots = (k - above.sum(1)).double()
    frac = slots / tied.sum(1).clamp_min(1).double()
    return (truth & above).sum(1).double() + (truth & tied).sum(1).double() * frac


@torch.no_grad()
def set_recall(model, sets: AnswerSets, *, batch_size: int = 256) -> dict[str, Tensor]:
    """``{"set_recall": [Q], "heldout_recall": [Q]}`` (float64) at cut-off ``|S|``."""
    rec, held = [], []
    for i in range(0, len(sets), batch_size):
        j = min(i + batch_size, len(sets))
        scores = _scores(model, sets, i, j)
        n = scores.shape[1]
        k = sets.sizes[i:j]
        truth = sets.mask(i, j, n)
        htruth = sets.mask(i, j, n, held=True)
        rec.append(_expected_hits(scores, truth, k) / k.double())
        held.append(_expected_hits(scores, htruth, k)
                    / htruth.sum(1).clamp_min(1).double())
    empty = torch.empty(0, dtype=torch.float64)
    return {"set_recall": torch.cat(rec) if rec else empty,
            "heldout_recall": torch.cat(held) if held else empty}


def _nearest(points: Tensor, ent: Tensor, chunk: int = 4096) -> Tensor:
    """Euclidean-nearest entity id of each row of ``points [P, d]`` → ``[P]``."""
    out = [torch.cdist(points[i : i + chunk], ent).argmin(1)
           for i in range(0, points.shape[0], chunk)]
    return torch.cat(out) if out else points.new_empty(0, dtype=torch.long)


def sample_ids(model, anchor: Tensor, relation: Tensor, n: int, direction: str,
               generator: torch.Generator | None = None,
               temperature: float = 1.0) -> Tensor | None:
    """Entity ids ``[B, n]`` hit by ``n`` samples per query, or ``None`` when the decoder can
    neither sample nor map a query to a point.

    Decoders with ``sample_entities`` (the stochastic flow) sample; decoders with a query map
    (``tail_query`` / ``head_query``) return the entity nearest to their single query point,
    ``n`` times (a deterministic decoder's answer "distribution" is a point mass).
    ``temperature`` is passed to the sampler (base distribution ``N(0, T²I)``).
    """
    dec = model.decoder
    ent, rel = model.encode()
    dev = ent.device
    a, r = anchor.to(dev), relation.to(dev)
    if dec.samples_entities:
        return dec.sample_entities(ent, rel, a, r, n, generator, direction=direction,
                                   temperature=temperature).cpu()
    try:
        q = (dec.tail_query(ent, rel, a, r) if direction == "tail"
             else dec.head_query(ent, rel, r, a))
    except NotImplementedError:
        return None
    if q.shape[-1] != ent.shape[-1]:
        return None  # the query lives in another space (e.g. DistMult's h ⊙ r): no point
    return _nearest(q, ent).cpu().unsqueeze(1).expand(-1, n)


@torch.no_grad()
def sample_recall(model, sets: AnswerSets, *, n: int = 20, seed: int = 0,
                  batch_size: int = 256, temperature: float = 1.0) -> dict[str, Tensor] | None:
    """``{"sample_recall", "sample_precision", "distinct_hits"}``, each ``[Q]``; ``None`` when
    the decoder cannot sample (see :func:`sample_ids`)."""
    g = torch.Generator().manual_seed(seed)
    rec, prec, distinct = [], [], []
    num_entities = model.encode()[0].shape[0]
    for i in range(0, len(sets), batch_size):
        j = min(i + batch_size, len(sets))
        ids = sample_ids(model, sets.anchor[i:j], sets.relation[i:j], n, sets.direction, g,
                         temperature)
        if ids is None:
            return None
        truth = sets.mask(i, j, num_entities)
        hit = torch.zeros_like(truth).scatter_(1, ids, True)
        rec.append((hit & truth).sum(1).double() / sets.sizes[i:j].double())
        prec.append(truth.gather(1, ids).double().mean(1))
        distinct.append(hit.sum(1).double())
    cat = torch.cat
    return {"sample_recall": cat(rec), "sample_precision": cat(prec),
            "distinct_hits": cat(distinct)}


def _mean(x: Tensor | None) -> float:
    return float(x.mean()) if x is not None and x.numel() else math.nan


def many_answer_report(model, kg, *, split: str = "test", n_samples: int = 20, seed: int = 0,
                       min_answers: int = 2, relations: Sequence[int] | None = None,
                       directions: Sequence[str] = DIRECTIONS, batch_size: int = 256,
                       temperature: float = 1.0) -> dict[str, Any]:
    """Set and sample recall per direction (see the module docstring) plus ``"both"``, the
    query-weighted mean over directions.

    Returns ``{direction | "both": {"queries", "mean_set_size", "set_recall",
    "heldout_recall", "sample_recall", "sample_precision", "distinct_hits"}, "n_samples",
    "min_answers", "split", "temperature"}`` (NaN where a decoder cannot sample).
    """
    was_training = model.training
    model.eval()
    out: dict[str, Any] = {"split": split, "n_samples": n_samples, "min_answers": min_answers,
                           "temperature": temperature}
    pooled: dict[str, list[Tensor]] = {}
    try:
        for d in directions:
            sets = answer_sets(kg, split=split, direction=d, min_answers=min_answers,
                               relations=relations)
            entry: dict[str, Any] = {"queries": len(sets)}
            if len(sets):
                per = dict(set_recall(model, sets, batch_size=batch_size))
                per["mean_set_size"] = sets.sizes.double()
                sm = sample_recall(model, sets, n=n_samples, seed=seed, batch_size=batch_size,
                                   temperature=temperature)
                per.update(sm or {"sample_recall": None, "sample_precision": None,
                                  "distinct_hits": None})
                for key, v in per.items():
                    entry[key] = _mean(v)
                    if v is not None:
                        pooled.setdefault(key, []).append(v)
            out[d] = entry
        both: dict[str, Any] = {"queries": sum(out[d]["queries"] for d in directions)}
        for key, vs in pooled.items():
            both[key] = _mean(torch.cat(vs))
        out["both"] = both
    finally:
        model.train(was_training)
        model.invalidate_cache()
    return out


@torch.no_grad()
def category_mrr(model, kg, *, split: str = "test", relations: Sequence[int] | None = None,
                 batch_size: int = 256, policy: str = "realistic") -> dict[str, dict]:
    """Filtered MRR per relation category and direction of ``split`` (optionally only the
    triples of ``relations``): ``{category: {"head", "tail", "both": MRR, "count": triples}}``.
    """
    triples = getattr(kg, split)
    if relations is not None:
        triples = triples[torch.isin(triples[:, 1], torch.as_tensor(list(relations)))]
    res = evaluate(model, triples, kg.filter_index, batch_size=batch_size, policy=policy,
                   categories=kg.relation_categories())
    out = {}
    for cat, entry in res.per_category().items():
        out[cat] = {d: entry[d]["mrr"] for d in ("head", "tail", "both") if d in entry}
        out[cat]["count"] = entry["both"]["count"] // 2
    return out


__all__ = ["AnswerSets", "answer_sets", "category_mrr", "many_answer_report", "sample_ids",
           "sample_recall", "set_recall"]

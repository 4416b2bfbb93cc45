r"""Filtered rank-based link-prediction evaluation (entity ranking, both directions).

For every test triple :math:`(h, r, t)` the evaluator asks the scorer for

* **tail queries** :math:`(h, r, ?)`: ``scorer.score_tails(h, r) -> [B, N]``, target ``t``,
  filtered by ``filter_index.tails(h, r)``;
* **head queries** :math:`(?, r, t)`: ``scorer.score_heads(r, t) -> [B, N]``, target ``h``,
  filtered by ``filter_index.heads(r, t)``;

and ranks the target with :func:`~gnn_inn.evaluation.ranking.rank_targets` (tie policy named,
realistic by default). Filtering uses whatever triples the filter index was built from — by
convention train ∪ valid ∪ test with the query's own relation id (reciprocal relations are the
decoder's business and never reach the evaluator).

Memory: queries are processed in batches of ``batch_size``; the only ``B × N`` tensors alive at
a time are the scorer's output and one float32 scratch buffer reused for every batch, so peak
memory is about ``2 · batch_size · N · 4`` bytes on top of the model. No ``N × N`` matrix and no
float64 ``B × N`` tensor is ever built.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..data.filters import FilterIndex
from ..data.triples import DIRECTIONS
from .metrics import metrics_from_ranks
from .ranking import POLICIES, compute_dtype, rank_targets

log = logging.getLogger(__name__)

#: Relation categories (Bordes et al., 2013) accepted by :meth:`EvalResult.per_category`.
CATEGORIES: tuple[str, ...] = ("1-1", "1-N", "N-1", "N-N")


class Scorer(Protocol):
    """What :func:`evaluate` needs: scores ``[B, N]`` of every entity for a batch of queries."""

    def score_tails(self, h: Tensor, r: Tensor) -> Tensor: ...

    def score_heads(self, r: Tensor, t: Tensor) -> Tensor: ...


class FilterLike(Protocol):
    """The part of :class:`gnn_inn.data.filters.FilterIndex` the evaluator uses."""

    def tails(self, h: Tensor, r: Tensor) -> tuple[Tensor, Tensor]: ...

    def heads(self, r: Tensor, t: Tensor) -> tuple[Tensor, Tensor]: ...


@runtime_checkable
class CachingScorer(Protocol):
    """A scorer that caches encodings (e.g. :class:`~gnn_inn.model.LinkPredictor`): the
    evaluator drops its cache when it is done, so no inference-mode tensor outlives it."""

    def invalidate_cache(self) -> None: ...


def _nan_to_none(x: Any) -> Any:
    """JSON-safe copy: NaN floats become ``None``; dict keys become strings."""
    if isinstance(x, dict):
        return {str(k): _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def _with_count(ranks: Tensor) -> dict:
    return {**metrics_from_ranks(ranks), "count": int(ranks.numel())}


@dataclass
class EvalResult:
    r"""Ranks of a filtered link-prediction evaluation and the metrics derived from them.

    Attributes:
        triples: ``LongTensor[M, 3]`` (CPU) evaluated triples ``(h, r, t)``.
        ranks: ``{"head" | "tail": Tensor[M] (float64)}`` — 1-based rank of the true head
            (resp. tail) of each triple, aligned with ``triples``.
        policy: tie policy of the ranks (``"realistic"``, ``"optimistic"``, ``"pessimistic"``).
        num_relations: number of relations ``R`` (per-relation and per-category views).
        categories: optional relation category per relation id (``'1-1'``, ``'1-N'``,
            ``'N-1'``, ``'N-N'``), used by :meth:`per_category` and :meth:`to_dict`.
        seconds: wall-clock time of the evaluation.

    ``"both"`` pools head and tail ranks (``2M`` ranks), the usual "average over both
    directions" number of the literature.
    """

    triples: Tensor
    ranks: dict[str, Tensor]
    policy: str = "realistic"
    num_relations: int = 0
    categories: list[str] | None = None
    seconds: float = math.nan

    # ------------------------------------------------------------------ views
    @property
    def directions(self) -> tuple[str, ...]:
        return tuple(d for d in DIRECTIONS if d in self.ranks)

    def ranks_of(self, direction: str = "both") -> Tensor:
        """Ranks ``[M]`` of one direction, or ``[k·M]`` pooled over all evaluated ones."""
        if direction == "both":
            return torch.cat([self.ranks[d] for d in self.directions])
        if direction not in self.ranks:
            raise KeyError(
                f"direction {direction!r} was not evaluated (evaluated: {self.directions}); "
                "use 'both' or pass directions=('head', 'tail') to evaluate()"
            )
        return self.ranks[direction]

    def all_ranks(self) -> tuple[Tensor, Tensor]:
        """``(ranks [k·M], relation ids [k·M])`` pooled over the evaluated directions."""
        return self.ranks_of("both"), self._relations_of("both")

    def _relations_of(self, direction: str) -> Tensor:
        rel = self.triples[:, 1]
        return rel.repeat(len(self.directions)) if direction == "both" else rel

    def metrics(self, direction: str = "both") -> dict:
        """``{"mrr", "mr", "hits@1", "hits@3", "hits@10"}`` of "both", "head" or "tail"."""
        return metrics_from_ranks(self.ranks_of(direction))

    def per_relation(self, direction: str = "both") -> dict[int, dict]:
        """``{relation id: metrics + "count"}`` for every relation present in ``triples``."""
        ranks, rel = self.ranks_of(direction), self._relations_of(direction)
        return {int(r): _with_count(ranks[rel == r]) for r in torch.unique(rel).tolist()}

    def per_category(self, categories: Sequence[str] | None = None) -> dict[str, dict]:
        """``{category: {"head" | "tail" | "both": metrics + "count"}}``.

        ``categories[r]`` is the category of relation ``r`` (``'1-1'``, ``'1-N'``, ``'N-1'``,
        ``'N-N'``). As customary (Bordes et al., 2013), head and tail prediction are reported
        separately: for ``1-N`` relations predicting the head is the easy side. Categories
        without test triples are left out.
        """
        cats = list(categories) if categories is not None else self.categories
        if cats is None:
            raise ValueError(
                "per_category needs the category of each relation: pass categories=[...] here "
                "or to evaluate() (the data layer computes them from the training triples)"
            )
        rel = self.triples[:, 1]
        if rel.numel() and int(rel.max()) >= len(cats):
            raise ValueError(
                f"per_category: got {len(cats)} categories but relation ids go up to "
                f"{int(rel.max())}; pass one category per relation id"
            )
        unknown = sorted(set(cats) - set(CATEGORIES))
        if unknown:
            raise ValueError(f"per_category: unknown categories {unknown}; use {CATEGORIES}")
        cat_of_rel = torch.tensor([CATEGORIES.index(c) for c in cats], dtype=torch.long)
        cat_of_triple = cat_of_rel[rel]
        out: dict[str, dict] = {}
        for ci, name in enumerate(CATEGORIES):
            mask = cat_of_triple == ci
            if not bool(mask.any()):
                continue
            entry = {d: _with_count(self.ranks[d][mask]) for d in self.directions}
            entry["both"] = _with_count(torch.cat([self.ranks[d][mask] for d in self.directions]))
            out[name] = entry
        return out

    def to_dict(self) -> dict:
        """Nested, JSON-serialisable summary (NaN → ``None``, relation ids as strings)."""
        out: dict[str, Any] = {
            "policy": self.policy,
            "num_triples": int(self.triples.shape[0]),
            "directions": list(self.directions),
            "seconds": self.seconds,
            "metrics": {"both": self.metrics("both")}
            | {d: self.metrics(d) for d in self.directions},
            "per_relation": self.per_relation(),
        }
        if self.categories is not None:
            out["per_category"] = self.per_category()
        return _nan_to_none(out)

    def __repr__(self) -> str:
        m = self.metrics()
        return (
            f"EvalResult(triples={self.triples.shape[0]}, directions={self.directions}, "
            f"policy={self.policy!r}, mrr={m['mrr']:.4f}, hits@10={m['hits@10']:.4f})"
        )


@contextmanager
def evaluation_mode(scorer: Any) -> Iterator[None]:
    """Run the block in eval mode under :func:`torch.inference_mode`; afterwards restore the
    scorer's training mode and drop its encoder cache (a cache filled under inference_mode holds
    inference tensors that autograd refuses later; it is rebuilt on the next ``encode()``)."""
    was_training = isinstance(scorer, nn.Module) and scorer.training
    if was_training:
        scorer.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        if was_training:
            scorer.train()
        if isinstance(scorer, CachingScorer):
            scorer.invalidate_cache()


def _scorer_device(scorer: Any) -> torch.device:
    if isinstance(scorer, nn.Module):
        for t in scorer.parameters():
            return t.device
        for t in scorer.buffers():
            return t.device
    return torch.device("cpu")


def evaluate(
    scorer: Scorer,
    triples: Tensor,
    filter_index: FilterLike | None,
    *,
    batch_size: int = 256,
    policy: str = "realistic",
    directions: Sequence[str] = DIRECTIONS,
    num_relations: int | None = None,
    categories: Sequence[str] | None = None,
    progress: bool = False,
    device: torch.device | str | None = None,
) -> EvalResult:
    r"""Filtered entity-ranking evaluation of ``scorer`` on ``triples``.

    Args:
        scorer: any object with ``score_tails(h, r) -> [B, N]`` and ``score_heads(r, t) ->
            [B, N]`` (e.g. :class:`gnn_inn.model.LinkPredictor`). An ``nn.Module`` is put in eval
            mode for the evaluation and restored afterwards.
        triples: ``LongTensor[M, 3]`` of ``(h, r, t)`` to rank.
        filter_index: :class:`gnn_inn.data.filters.FilterIndex` (``tails(h, r)``,
            ``heads(r, t)``), usually built from train ∪ valid ∪ test; ``None`` for raw ranks.
        batch_size: queries per scorer call (``[B, N]`` score blocks, ``≈ 8 · B · N`` bytes;
            see docs/design-notes.md#evaluation-evaluator).
        policy: tie policy, see :mod:`gnn_inn.evaluation.ranking`.
        directions: subset of ``("head", "tail")``.
        num_relations: ``R`` for per-relation views (default: from the filter index or the
            triples).
        categories: optional category (``'1-1'``, ``'1-N'``, ``'N-1'``, ``'N-N'``) per relation.
        progress: show a tqdm bar (only when stderr is a terminal): queries done, queries per
            second, ETA and the running MRR.
        device: where queries are sent (default: the scorer's parameters' device, else CPU).

    Returns:
        :class:`EvalResult` holding the ranks per direction; ``.metrics()`` etc. derive the rest.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown rank policy {policy!r}; choose one of {', '.join(POLICIES)}")
    directions = tuple(directions)
    if not directions or any(d not in DIRECTIONS for d in directions):
        raise ValueError(f"directions must be a non-empty subset of {DIRECTIONS}, got {directions}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    triples = torch.as_tensor(triples)
    if triples.dim() != 2 or triples.shape[1] != 3:
        raise ValueError(f"triples must be LongTensor[M, 3] (h, r, t), got {tuple(triples.shape)}")
    triples = triples.to("cpu", torch.long)
    m = triples.shape[0]
    if num_relations is None:
        num_relations = (filter_index.num_relations if isinstance(filter_index, FilterIndex)
                         else None)
    if num_relations is None:
        num_relations = int(triples[:, 1].max()) + 1 if m else 0
    dev = torch.device(device) if device is not None else _scorer_device(scorer)

    ranks = {d: torch.empty(m, dtype=torch.float64) for d in directions}
    scratch: Tensor | None = None
    num_entities: int | None = None
    start = time.perf_counter()
    # queries done / total with tqdm's rate (queries/s) and ETA, plus the running MRR
    bar = tqdm(
        total=m * len(directions), unit="query", desc=f"evaluate ({policy})",
        disable=True if not progress else None, leave=False,
    )
    reciprocal_sum, ranked = 0.0, 0
    try:
        with evaluation_mode(scorer):
            for direction in directions:
                for i in range(0, m, batch_size):
                    h, r, t = triples[i : i + batch_size].unbind(1)
                    hd, rd, td = h.to(dev), r.to(dev), t.to(dev)
                    if direction == "tail":
                        scores, target = scorer.score_tails(hd, rd), td
                        flt = filter_index.tails(h, r) if filter_index is not None else None
                    else:
                        scores, target = scorer.score_heads(rd, td), hd
                        flt = filter_index.heads(r, t) if filter_index is not None else None
                    if scores.dim() != 2 or scores.shape[0] != h.numel():
                        raise ValueError(
                            f"scorer.score_{direction}s returned shape {tuple(scores.shape)} for "
                            f"{h.numel()} queries; expected [B, num_entities]"
                        )
                    if num_entities is None:
                        num_entities = scores.shape[1]
                    elif scores.shape[1] != num_entities:
                        raise ValueError(
                            f"scorer.score_{direction}s returned {scores.shape[1]} candidates, "
                            f"earlier batches {num_entities}; the entity count must not change"
                        )
                    dtype = compute_dtype(scores.dtype)
                    if scratch is None or scratch.dtype != dtype or scratch.device != scores.device:
                        scratch = torch.empty(
                            min(batch_size, m), scores.shape[1], dtype=dtype, device=scores.device
                        )
                    fr, fc = flt if flt is not None else (None, None)
                    batch_ranks = rank_targets(
                        scores, target, fr, fc, policy=policy, scratch=scratch
                    ).cpu()
                    ranks[direction][i : i + h.numel()] = batch_ranks
                    del scores
                    if not bar.disable:
                        reciprocal_sum += float(batch_ranks.reciprocal().sum())
                        ranked += h.numel()
                        bar.set_postfix(mrr=f"{reciprocal_sum / ranked:.4f}", refresh=False)
                    bar.update(h.numel())
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    result = EvalResult(
        triples=triples, ranks=ranks, policy=policy, num_relations=int(num_relations),
        categories=list(categories) if categories is not None else None, seconds=seconds,
    )
    if m:
        mm = result.metrics()
        log.debug(
            "evaluated %d triples x %d directions in %.2f s (%s ranks): MRR %.4f, Hits@10 %.4f",
            m, len(directions), seconds, policy, mm["mrr"], mm["hits@10"],
        )
    return result


__all__ = ["CATEGORIES", "DIRECTIONS", "EvalResult", "Scorer", "evaluate"]

r"""The OGB link-prediction protocol for knowledge graphs (``ogbl-biokg``, ``ogbl-wikikg2``).

For every triple :math:`(h, r, t)` of the split, OGB provides ``K`` (500) negatives per side;
the model scores the true tail against ``tail_neg`` and the true head against ``head_neg``
(``score_candidates`` with the true entity in column 0, so positive and negatives go through the
same code path), and the official ``ogb.linkproppred.Evaluator`` turns
``y_pred_pos [B]`` / ``y_pred_neg [B, K]`` (float32 tensors) into per-query lists of MRR and
Hits@{1, 3, 10}. Reported numbers are the means over both directions (the head-batch and
tail-batch lists concatenated), as in OGB's example code. No filtering: the candidate sets are
fixed by OGB.

Ties — the Evaluator's rank (ogb 1.3.6, torch branch) is
``0.5 · (#{neg > pos} + #{neg ≥ pos}) + 1 = 1 + g + e / 2`` with ``g`` the negatives scoring
higher and ``e`` those scoring equal: the *realistic* rank of
:mod:`gnn_inn.evaluation.ranking` (mean of optimistic and pessimistic), so constant scores give
the chance rank ``(K + 2) / 2``. A negative equal to the true entity counts as a tie, as in OGB.
The ranks are read back from the Evaluator's ``mrr_list`` (``1 / rank`` in float32; ranks are
half-integers ≤ ``K + 1``, so rounding ``2 / mrr`` recovers them exactly) and checked against its
Hits lists, so per-direction and per-relation views come from the Evaluator's own ranks.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .evaluator import DIRECTIONS, EvalResult, _scorer_device, evaluation_mode
from .metrics import metrics_from_ranks

log = logging.getLogger(__name__)

#: the Evaluator's list keys and the metric names they become
_OGB_KEYS = {"mrr_list": "mrr", "hits@1_list": "hits@1", "hits@3_list": "hits@3",
             "hits@10_list": "hits@10"}


@dataclass
class OGBEvalResult(EvalResult):
    r"""An :class:`EvalResult` of the OGB protocol (ranks among ``[true] + K`` candidates).

    Attributes (besides those of :class:`EvalResult`, ``policy`` is ``"realistic"``):
        ogb: ``{"head" | "tail" | "both": {"mrr", "hits@1", "hits@3", "hits@10"}}`` — the
            means of the Evaluator's lists; ``"both"`` over the two directions together.
        dataset: the OGB dataset name the Evaluator was built for.
        num_candidates: ``K`` negatives per query.

    :meth:`metrics` returns the Evaluator's numbers (plus ``"mr"`` from the same ranks).
    """

    ogb: dict[str, dict[str, float]] = field(default_factory=dict)
    dataset: str = ""
    num_candidates: int = 0

    def metrics(self, direction: str = "both") -> dict:
        out = metrics_from_ranks(self.ranks_of(direction))
        out.update(self.ogb.get(direction, {}))
        return out

    def to_dict(self) -> dict:
        out = super().to_dict()
        out.update(protocol="ogb", dataset=self.dataset, num_candidates=self.num_candidates,
                   ogb=self.ogb)
        return out


def _ranks_from_lists(lists: dict[str, Tensor], where: str) -> Tensor:
    """Ranks ``[B]`` (float64) from the Evaluator's ``mrr_list``, checked against Hits@k."""
    ranks = torch.round(2.0 / lists["mrr_list"].double()) / 2.0
    for k in (1, 3, 10):
        hits = lists[f"hits@{k}_list"].double()
        if not torch.equal((ranks <= k).double(), hits):
            raise RuntimeError(
                f"{where}: ranks read back from ogb's mrr_list disagree with its hits@{k}_list; "
                "this ogb version ranks differently from 1.3.6 — check "
                "ogb.linkproppred.Evaluator._eval_mrr and update gnn_inn.evaluation.ogb"
            )
    return ranks


def evaluate_ogb(model, kg, split: str = "test", *, batch_size: int = 256,
                 progress: bool = False, device: torch.device | str | None = None
                 ) -> OGBEvalResult:
    r"""Score ``kg``'s ``split`` with OGB's candidates and the official Evaluator.

    Args:
        model: anything with ``score_candidates(h [B], r [B], t [B], candidates [B, 1 + K],
            direction) -> [B, 1 + K]`` (e.g. :class:`gnn_inn.model.LinkPredictor`); an ``nn.Module``
            is put in eval mode for the evaluation and restored afterwards.
        kg: an :class:`~gnn_inn.data.ogb.OGBKnowledgeGraph` (``ogb_name``, ``ogb_candidates``
            ``{split: {"head_neg", "tail_neg": LongTensor[M, K]}}`` aligned with ``kg.<split>``).
        split: ``"valid"`` or ``"test"``.
        batch_size: queries per ``score_candidates`` call (memory ``≈ B · (K + 1) · d`` floats).
        progress: show a tqdm bar.
        device: where queries go (default: the model's parameters' device).

    Returns:
        :class:`OGBEvalResult`; ``.metrics()`` is the Evaluator's MRR / Hits averaged over both
        directions.
    """
    from ogb.linkproppred import Evaluator

    cands = kg.ogb_candidates or {}
    if split not in cands:
        raise ValueError(
            f"evaluate_ogb: {kg.name} has no OGB candidates for split "
            f"{split!r} (has {sorted(cands)}); load the dataset with gnn_inn.data.load_ogb"
        )
    if batch_size < 1:
        raise ValueError(f"evaluate_ogb: batch_size must be ≥ 1, got {batch_size}")
    name = kg.ogb_name or kg.name
    evaluator = Evaluator(name)
    triples = getattr(kg, split).to("cpu", torch.long)
    m = triples.shape[0]
    k = int(cands[split]["tail_neg"].shape[1])
    dev = torch.device(device) if device is not None else _scorer_device(model)
    lists: dict[str, dict[str, list[Tensor]]] = {d: {key: [] for key in _OGB_KEYS}
                                                  for d in DIRECTIONS}
    start = time.perf_counter()
    bar = tqdm(total=m * len(DIRECTIONS), unit="query", desc=f"evaluate {name} {split}",
               disable=True if not progress else None, leave=False)
    try:
        with evaluation_mode(model):
            for direction in DIRECTIONS:
                neg_all = cands[split][f"{direction}_neg"]
                for i in range(0, m, batch_size):
                    h, r, t = triples[i : i + batch_size].to(dev).unbind(1)
                    true = t if direction == "tail" else h
                    neg = neg_all[i : i + batch_size].to(dev)
                    cand = torch.cat([true[:, None], neg], dim=1)
                    scores = model.score_candidates(h, r, t, cand, direction)
                    if scores.shape != cand.shape:
                        raise ValueError(
                            f"evaluate_ogb: score_candidates returned shape "
                            f"{tuple(scores.shape)} for candidates {tuple(cand.shape)}"
                        )
                    scores = scores.float()  # float32 even under mixed precision
                    if bool(torch.isnan(scores).any()):
                        raise ValueError(f"evaluate_ogb: NaN scores on {split} rows {i}…"
                                         f"{i + h.numel() - 1}; check the model for overflow")
                    out = evaluator.eval({"y_pred_pos": scores[:, 0],
                                          "y_pred_neg": scores[:, 1:]})
                    for key in _OGB_KEYS:
                        lists[direction][key].append(out[key].detach().float().cpu())
                    bar.update(h.numel())
    finally:
        bar.close()
    cat = {d: {key: (torch.cat(v) if v else torch.empty(0)) for key, v in lists[d].items()}
           for d in DIRECTIONS}
    ogb_means: dict[str, dict[str, float]] = {}
    for d in (*DIRECTIONS, "both"):
        for key, metric in _OGB_KEYS.items():
            vals = (torch.cat([cat[x][key] for x in DIRECTIONS]) if d == "both" else cat[d][key])
            ogb_means.setdefault(d, {})[metric] = (float(vals.double().mean()) if vals.numel()
                                                   else math.nan)
    ranks = {d: _ranks_from_lists(cat[d], f"evaluate_ogb({name}, {split}, {d})")
             for d in DIRECTIONS}
    seconds = time.perf_counter() - start
    result = OGBEvalResult(
        triples=triples, ranks=ranks, policy="realistic", num_relations=kg.num_relations,
        seconds=seconds, ogb=ogb_means, dataset=name, num_candidates=k,
    )
    log.debug("%s %s: OGB MRR %.4f over %d triples x 2 directions (%d candidates) in %.2f s",
              name, split, ogb_means["both"]["mrr"], m, k, seconds)
    return result


__all__ = ["OGBEvalResult", "evaluate_ogb"]

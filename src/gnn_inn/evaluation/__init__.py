"""Filtered rank-based link-prediction evaluation.

* :func:`rank_targets` — filtered ranks of targets among ``[B, N]`` scores (tie policy named).
* :func:`metrics_from_ranks` — MRR, MR, Hits@k; the one place metrics are computed.
* :func:`evaluate` — batched head and tail ranking of test triples → :class:`EvalResult`.
* :func:`evaluate_ogb` — the OGB protocol (true entity vs. OGB's 500 negatives per side, the
  official ``Evaluator``) → :class:`OGBEvalResult`.
"""

from __future__ import annotations

from .evaluator import CATEGORIES, DIRECTIONS, EvalResult, evaluate
from .metrics import HITS_AT, METRIC_NAMES, metrics_from_ranks
from .ogb import OGBEvalResult, evaluate_ogb
from .ranking import POLICIES, rank_targets

__all__ = [
    "CATEGORIES", "DIRECTIONS", "EvalResult", "evaluate", "HITS_AT", "METRIC_NAMES",
    "metrics_from_ranks", "OGBEvalResult", "POLICIES", "evaluate_ogb", "rank_targets",
]

"""Filtered rank-based link-prediction evaluation.

* :func:`rank_targets` — filtered ranks of targets among ``[B, N]`` scores (tie policy named).
* :func:`metrics_from_ranks` — MRR, MR, Hits@k; the one place metrics are computed.
* :func:`evaluate` — batched head and tail ranking of test triples → :class:`EvalResult`.
"""

from __future__ import annotations

from .evaluator import CATEGORIES, DIRECTIONS, EvalResult, evaluate
from .metrics import HITS_AT, METRIC_NAMES, metrics_from_ranks
from .ranking import POLICIES, rank_targets

__all__ = [
    "CATEGORIES", "DIRECTIONS", "EvalResult", "evaluate", "HITS_AT", "METRIC_NAMES",
    "metrics_from_ranks", "POLICIES", "rank_targets",
]

r"""Rank-based metrics — the one place where metrics are computed from ranks.

For ranks :math:`r_1, …, r_M \ge 1` (possibly half-integers under the realistic tie policy):

.. math::
    \mathrm{MRR} = \frac1M \sum_i \frac1{r_i}, \qquad
    \mathrm{MR} = \frac1M \sum_i r_i, \qquad
    \mathrm{Hits@}k = \frac1M \sum_i [r_i \le k].

Hits@k on fractional ranks uses ``r ≤ k`` like PyKEEN (a realistic rank of 1.5 is not a hit
at 1). All sums are taken in float64. Empty input gives NaN metrics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

#: The ``k`` of the Hits@k metrics reported by :func:`metrics_from_ranks`.
HITS_AT: tuple[int, ...] = (1, 3, 10)

#: Metric names in the order :func:`metrics_from_ranks` returns them.
METRIC_NAMES: tuple[str, ...] = ("mrr", "mr", *(f"hits@{k}" for k in HITS_AT))


def metrics_from_ranks(ranks: Tensor | Sequence[float], ks: Sequence[int] = HITS_AT) -> dict:
    """``{"mrr", "mr", "hits@1", "hits@3", "hits@10"}`` (floats) from 1-based ranks ``[M]``.

    Raises:
        ValueError: a rank below 1 or NaN (ranks are 1-based; pass ranks, not 0-based positions).
    """
    r = torch.as_tensor(ranks, dtype=torch.float64).reshape(-1)
    if r.numel() == 0:
        return {"mrr": math.nan, "mr": math.nan, **{f"hits@{k}": math.nan for k in ks}}
    if bool(torch.isnan(r).any()) or float(r.min()) < 1.0:
        raise ValueError(
            "metrics_from_ranks: ranks must be 1-based and not NaN "
            f"(min {float(r.min()):g}); did you pass 0-based positions?"
        )
    out = {"mrr": float(r.reciprocal().mean()), "mr": float(r.mean())}
    for k in ks:
        out[f"hits@{k}"] = float((r <= k).to(torch.float64).mean())
    return out


__all__ = ["HITS_AT", "METRIC_NAMES", "metrics_from_ranks"]
